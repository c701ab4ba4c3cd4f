"""test_mela.py - the Python package mela against libmela and the mela CLI.

Run by CTest (test `python`) with PYTHONPATH=build/python, MELA_BIN (the
mela tool) and MELA_DUMP (py_dump_episodes: the C library's episodes, raw).
Needs no downloaded data: it writes a small Omniglot of its own (zip
archives of PNGs and Vinyals split files) and checks, on it:
  - safetensors written by Python are read by a parser written here, and
    checkpoints of the CLI read back bit for bit;
  - episodes of every split kind are the C library's bits, and their pixels
    are the dataset's images turned as the split says;
  - a training run from Python writes the same checkpoint bytes as
    `mela train` with the same options (sinusoids, ProtoNets, MAML), a
    stopped one resumes to the same bytes, and the GIL is free meanwhile;
  - Model.classify gives `mela classify`'s labels and probabilities.
With ../shared/data/omniglot present it also compares episodes of the real
Vinyals test split.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib

import numpy as np

import mela

MELA = os.environ["MELA_BIN"]
DUMP = os.environ["MELA_DUMP"]
failures = 0


def check(ok, what):
    global failures
    if not ok:
        failures += 1
    print(("ok   " if ok else "FAIL ") + what, flush=True)


def raises(exc, fn, needle=""):
    try:
        fn()
    except exc as e:
        return needle in str(e)
    return False


# ------------------------------------------------------------------ helpers

def png(a):
    """A grey 8-bit PNG of the uint8 array a (H, W)."""
    h, w = a.shape
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_pixels(path):
    """The pixels of a PNG that png() wrote (grey 8-bit, filter 0 on every row)."""
    with open(path, "rb") as f:
        data = f.read()
    at, idat, w, h = 8, b"", 0, 0
    while at < len(data):
        n, t = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + n]
        if t == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif t == b"IDAT":
            idat += body
        at += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w + 1)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:]


def glyph(rng, cls):
    """A 28x28 drawing: white paper, a dark pattern of its class, noise."""
    r = np.random.default_rng(1000 + cls)
    img = np.where(r.random((28, 28)) < 0.25, 0, 255).astype(np.uint8)
    flip = rng.random((28, 28)) < 0.05
    img[flip] = 255 - img[flip]
    return img


def fake_omniglot(root):
    """images_background.zip (2 alphabets x 5 characters), images_evaluation.zip
    (1 x 5), 6 drawings each, and Vinyals split files over them."""
    rng = np.random.default_rng(7)
    os.makedirs(os.path.join(root, "splits", "vinyals"))
    sets = {"images_background": ["Alpha", "Beta"], "images_evaluation": ["Gamma"]}
    cid, chars = 0, {}
    for arch, alphabets in sets.items():
        with zipfile.ZipFile(os.path.join(root, arch + ".zip"), "w") as z:
            for a in alphabets:
                for c in range(1, 6):
                    cid += 1
                    chars.setdefault(arch, []).append(f"{a}/character{c:02d}")
                    for d in range(1, 7):
                        z.writestr(f"{arch}/{a}/character{c:02d}/{cid:04d}_{d:02d}.png", png(glyph(rng, cid)))
    bg, ev = chars["images_background"], chars["images_evaluation"]
    splits = {"train": [f"{c}/rot{r:03d}" for c in bg for r in (0, 90)],
              "val": [f"{c}/rot180" for c in bg],
              "test": [f"{c}/rot{r:03d}" for c in ev for r in (0, 90)]}
    splits["trainval"] = splits["train"] + splits["val"]
    for k, lines in splits.items():
        with open(os.path.join(root, "splits", "vinyals", k + ".txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


def safetensors_parse(path):
    """A reader of our own: {name: (shape, raw bytes)}, metadata."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    out = {}
    for k, v in header.items():
        assert v["dtype"] == "F32"
        b, e = v["data_offsets"]
        out[k] = (tuple(v["shape"]), body[b:e])
    return out, meta


def cli(*args):
    p = subprocess.run([MELA, *map(str, args)], capture_output=True, text=True)
    if p.returncode:
        print(p.stdout, p.stderr)
    return p


def same_files(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


# -------------------------------------------------------------- safetensors

def test_safetensors(tmp):
    path = os.path.join(tmp, "t.safetensors")
    rng = np.random.default_rng(3)
    tensors = {"conv.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
               "bias": rng.standard_normal(4),  # float64: stored as float32
               "scale": np.float32(2.5),         # a scalar: shape (1)
               "fc": rng.standard_normal((3, 5)).astype(np.float32).T}  # not contiguous
    mela.write_safetensors(path, tensors, {"note": "hello", "step": 7})
    raw, meta = safetensors_parse(path)
    check(list(raw) == list(tensors) and meta == {"note": "hello", "step": "7"},
          "safetensors: names in dict order and metadata as written")
    ok = all(raw[k][0] == (np.shape(v) or (1,)) and
             raw[k][1] == np.ascontiguousarray(v, dtype=np.float32).tobytes() for k, v in tensors.items())
    check(ok, "safetensors: each tensor's shape and float32 bytes, read by an independent parser")
    back, meta2 = mela.read_safetensors(path)
    check(meta2 == meta and all(back[k].dtype == np.float32 and
                                np.array_equal(back[k], np.asarray(v, np.float32).reshape(back[k].shape))
                                for k, v in tensors.items()), "safetensors: read back equal")
    check(raises(mela.Error, lambda: mela.read_safetensors(os.path.join(tmp, "none.safetensors")),
                 "none.safetensors"), "safetensors: a missing file raises mela.Error naming it")
    check(raises(ValueError, lambda: mela.write_safetensors(path, {"x": np.zeros((1, 1, 1, 1, 2))}), "x"),
          "safetensors: five dimensions refused, naming the tensor")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 4)
    check(raises(mela.Error, lambda: mela.read_safetensors(path), "truncated"),
          "safetensors: a truncated file raises mela's message")


# ----------------------------------------------------------------- episodes

def dump(kind, root, split, which, n, k, q, seed, start, count, flags, C, H, W, tmp):
    out = os.path.join(tmp, "episodes.raw")
    subprocess.run([DUMP, kind, root, split, which] +
                   [str(x) for x in (n, k, q, seed, start, count, int(flags))] + [out], check=True)
    raw = open(out, "rb").read()
    img = C * H * W
    fields = [("x_support", np.float32, (n * k, C, H, W)), ("x_query", np.float32, (n * q, C, H, W)),
              ("y_support", np.int32, (n * k,)), ("y_query", np.int32, (n * q,)), ("label", np.int32, (n,)),
              ("split_class", np.int32, (n,)), ("support_index", np.int32, (n * k,)),
              ("query_index", np.int32, (n * q,)), ("group", np.int32, ())]
    eps, off = [], 0
    for _ in range(count):
        e = {}
        for name, dt, shape in fields:
            size = int(np.prod(shape)) * 4
            e[name] = np.frombuffer(raw[off:off + size], dt).reshape(shape)
            off += size
        eps.append(e)
    assert off == len(raw) and img
    return eps


def compare_episodes(ds, kind, root, split, n, k, q, seed, start, count, flags, tmp):
    """flags: 1 within groups, 2 distinct classes (MELA_EPISODE_*)."""
    C, H, W = ds.shape
    opts = dict(within_group=bool(flags & 1), distinct_classes=bool(flags & 2))
    ref = dump(kind, root, *split.split("/"), n, k, q, seed, start, count, flags, C, H, W, tmp)
    got = mela.episodes(ds, split, n, k, q, seed, start, count, **opts)
    same = all(got[f][i].tobytes() == ref[i][f].tobytes() for i in range(count) for f in ref[i])
    check(same, f"episodes {split} {n}-way {k}-shot {q}-query seed {seed} from {start} x{count}"
                f"{' within groups' if flags & 1 else ''}{' distinct classes' if flags & 2 else ''}"
                f": the C library's bits")
    one = mela.episodes(ds, split, n, k, q, seed, start + count - 1, **opts)
    check(all(np.array_equal(one[f], got[f][-1]) for f in one), f"episodes {split}: one episode = the last of many")
    # the pixels: image support_index of the split class, turned rot quarter turns
    sp = ds.split(split)
    cls = sp.classes
    images, classes = ds.images, ds.classes
    ok = True
    for i in range(count):
        for row in range(n * k):
            slot = row // k
            c, rot = cls[got["split_class"][i][slot]]
            img = images[classes[c][2] + got["support_index"][i][row]] * np.float32(1 / 255)  # as mela: p * (1.0f / 255)
            ok &= np.array_equal(np.rot90(img, rot, axes=(1, 2)), got["x_support"][i][row])
            ok &= got["y_support"][i][row] == got["label"][i][slot]
    check(ok, f"episodes {split}: support pixels are the dataset's images turned as the split says, labels by slot")


def test_episodes(tmp, omni, cache):
    ds = mela.omniglot(omni, cache_dir=cache)
    check(len(ds.classes) == 15 and ds.images.shape == (90, 1, 28, 28), "omniglot: the archives' 15 characters")
    a, b = ds.images, ds.images
    check(np.shares_memory(a, b) and not a.flags.writeable, "dataset images: read-only views of one buffer")
    compare_episodes(ds, "omniglot", omni, "vinyals/test", 5, 1, 2, 11, 0, 4, 0, tmp)
    compare_episodes(ds, "omniglot", omni, "vinyals/train", 3, 2, 3, 2**63 + 5, 10**12, 3, 0, tmp)
    compare_episodes(ds, "omniglot", omni, "vinyals/train", 4, 1, 1, 9, 0, 5, 2, tmp)
    sp = ds.split("vinyals/train").classes
    chars = mela.episodes(ds, "vinyals/train", 4, 1, 1, 9, 0, 50, distinct_classes=True)["split_class"]
    check(all(len({int(sp[c][0]) for c in e}) == 4 for e in chars),
          "distinct_classes: no character twice in an episode")
    check(raises(mela.Error, lambda: ds.split("finn/train"), "1,623"),
          "finn split: a dataset of 15 characters is refused with the numbers")
    compare_episodes(ds, "omniglot", omni, "lake/train", 5, 1, 1, 4, 7, 3, 1, tmp)
    groups = mela.episodes(ds, "lake/train", 5, 1, 1, 4, 7, 3, within_group=True)["group"]
    check(all(g in (0, 1) for g in groups), "lake/train within groups: each episode names its alphabet")
    check(raises(mela.Error, lambda: mela.episodes(ds, "vinyals/test", 11, 1, 1, 0), "11"),
          "episodes: more ways than the split has classes raises mela's message")
    check(raises(mela.Error, lambda: ds.split("vinyals/nope"), "nope"), "split: an unknown file is named")
    # a user's folder
    fold = os.path.join(tmp, "folder")
    rng = np.random.default_rng(5)
    for c in range(4):
        os.makedirs(os.path.join(fold, f"c{c}"))
        for j in range(3):
            with open(os.path.join(fold, f"c{c}", f"{j}.png"), "wb") as f:
                f.write(png(glyph(rng, 100 + c)))
    fds = mela.folder(fold)
    compare_episodes(fds, "folder", fold, "all/mine", 3, 1, 2, 9, 0, 3, False, tmp)
    # nearest-pixel resizing (PIL's for 1-bit images): row and column o of S take
    # input (2o + 1) * 28 // (2S), computed here from the PNG's own pixels
    rows = lambda n, S: (2 * np.arange(S) + 1) * n // (2 * S)
    for S in (9, 28, 40):
        nds = mela.folder(fold, size=S, resize="nearest")
        src = png_pixels(os.path.join(fold, "c2", "1.png"))
        want = src[rows(28, S)][:, rows(28, S)]
        got = nds.images[nds.classes[2][2] + 1, 0]
        check(np.array_equal(got, want), f"folder resize='nearest' to {S}: the PNG's pixels at PIL's rows")
        img = mela.load_image(os.path.join(fold, "c2", "1.png"), size=S, resize="nearest")
        check(np.array_equal(img[0], want.astype(np.float32) * np.float32(1 / 255)),
              f"load_image resize='nearest' to {S}: the same pixels")
    nomni = mela.omniglot(omni, cache_dir=cache, resize="nearest", size=14)
    aomni = mela.omniglot(omni, cache_dir=cache, size=14)
    check(set(np.unique(nomni.images)) == {0, 255} and len(np.unique(aomni.images)) > 2,
          "omniglot 28 -> 14 of binary drawings: nearest keeps 0 and 255, area makes greys")
    check(raises(ValueError, lambda: mela.folder(fold, resize="bilinear"), "bilinear"),
          "resize='bilinear' raises, naming the value")
    s = mela.sinusoid_tasks(5, 3, 2, shots=4, queries=6)
    x, y, amp, ph = s["x_query"][1, :, 0], s["y_query"][1, :, 0], s["amplitude"][1], s["phase"][1]
    check(np.allclose(y, amp * np.sin(x - ph), atol=1e-5) and 0.1 <= amp <= 5 and 0 <= ph <= np.pi,
          "sinusoid tasks: y = A sin(x - phase) with A, phase in MAML's ranges")
    shared = os.environ.get("MELA_SHARED_DATA", "")
    real = os.path.join(shared, "omniglot")
    if shared and os.path.exists(os.path.join(real, "images_background.zip")):
        rds = mela.omniglot(real)
        compare_episodes(rds, "omniglot", real, "vinyals/test", 5, 1, 15, 0, 595, 5, False, tmp)
    else:
        print("note: no ../shared/data/omniglot: the real Vinyals episodes are not compared")


# ----------------------------------------------------------------- training

def train_both(name, tmp, opts, files=("best.safetensors", "last.safetensors")):
    """`mela train` and mela.train with the same options into the same
    out_dir (one after the other): the same checkpoint bytes."""
    out = os.path.join(tmp, name)
    args = [x for k, v in opts.items() for x in (f"--{k.replace('_', '-')}", v)]
    p = cli("train", *args, "--out-dir", out, "--report", 2)
    keep = os.path.join(tmp, name + "-cli")
    os.makedirs(keep)
    for f in files:
        os.replace(os.path.join(out, f), os.path.join(keep, f))
    seen = []
    res = mela.train(dict(opts, out_dir=out), progress=seen.append, report=2, overwrite=True)
    its = opts["iterations"]
    check(p.returncode == 0 and res["status"] == "complete" and res["iteration"] == its,
          f"train {name}: the CLI and Python both complete {its} iterations")
    check(all(same_files(os.path.join(out, f), os.path.join(keep, f)) for f in files),
          f"train {name}: Python's {', '.join(files)} are the CLI's bytes")
    check([s["iteration"] for s in seen] == list(range(2, its + 1, 2)) and seen == res["progress"] and
          len(res["metrics"]) == len(seen) and res["metrics"][-1]["iteration"] == its,
          f"train {name}: progress every 2 iterations and the metrics back")
    return out


def test_training(tmp, omni, cache):
    sin = {"dataset": "sinusoid", "iterations": 6, "meta_batch": 4, "val_every": 2, "val_episodes": 4,
           "test_episodes": 4, "threads": 1, "data_dir": omni}
    out = train_both("sinusoid", tmp, sin)
    # stopped at the first report, then resumed: the weights and metadata
    # (out_dir aside) of the run never stopped
    part = os.path.join(tmp, "stopped")
    r1 = mela.train(dict(sin, out_dir=part), progress=lambda p: False, report=2)
    r2 = mela.resume(part)
    (ta, ma), (tb, mb) = (mela.read_safetensors(os.path.join(d, "best.safetensors")) for d in (part, out))
    ma.pop("out_dir"), mb.pop("out_dir")
    check(r1["status"] == "stopped" and r1["iteration"] < 6 and r2["status"] == "complete" and ma == mb and
          list(ta) == list(tb) and all(ta[k].tobytes() == tb[k].tobytes() for k in ta),
          f"train: stopped by the callback (at iteration {r1['iteration']}), resumed to the bits of a run "
          "never stopped")

    def boom(p):
        raise KeyError("from the callback")
    check(raises(KeyError, lambda: mela.train(dict(sin, out_dir=os.path.join(tmp, "boom")), progress=boom),
                 "from the callback"), "train: the callback's exception reaches the caller")
    check(raises(mela.Error, lambda: mela.train(dict(sin, out_dir=out)), "already holds a run"),
          "train: a used out_dir is refused with mela's message")
    check(raises(mela.Error, lambda: mela.train(dict(sin, shots=0)), "shots"), "train: a bad option is named")
    # the GIL is free while a run computes: this thread keeps running (the
    # longest pause between two of its loops is a small part of the run)
    res, stamps = [], []
    t = threading.Thread(target=lambda: res.append(
        mela.train(dict(sin, iterations=1000, val_every=0, out_dir=""), report=1000)))
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())
    t.join()
    fit = res[0]["progress"][-1]["seconds"] if res else 0
    gap = max(np.diff(stamps)) if len(stamps) > 1 else fit
    check(fit > 0 and gap < 0.4 * fit, f"train: Python ran while the run computed (longest pause {gap:.3f} s "
                                       f"in {fit:.3f} s)")
    small = {"data_dir": omni, "cache_dir": cache, "ways": 5, "shots": 1, "queries": 2, "test_ways": 5,
             "test_shots": 1, "test_queries": 2, "iterations": 4, "meta_batch": 2, "val_every": 2,
             "val_episodes": 3, "test_episodes": 3, "width": 8, "threads": 1}
    proto = train_both("protonet", tmp, dict(small, learner="protonet"))
    maml = train_both("maml", tmp, dict(small, learner="maml", steps=1, test_steps=2))
    ck = os.path.join(proto, "best.safetensors")
    p, ev = cli("eval", ck, "--episodes", 5), mela.evaluate(ck, episodes=5)
    check(p.returncode == 0 and f"accuracy {100 * ev['acc']:.2f}% +- {100 * ev['acc_ci']:.2f}%" in p.stdout and
          ev["episodes"] == 5, f"evaluate: `mela eval`'s accuracy ({p.stdout.strip()})")
    d = mela.defaults("maml", "sinusoid", 1)
    check(d["meta_batch"] == 25 and d["shots"] == 10 and d["steps"] == 1 and abs(d["inner_lr"] - 0.01) < 1e-9,
          "defaults: MAML on sinusoids as Finn et al. (meta-batch 25, K = 10, one step of 0.01)")
    siam = train_both("siamese", tmp, dict(small, learner="siamese", pairs=8, split="vinyals"))
    return out, proto, maml, siam


# ------------------------------------------------------------------ classify

def test_classify(tmp, sin_dir, proto_dir, maml_dir, siam_dir):
    rng = np.random.default_rng(9)
    sup = os.path.join(tmp, "support")
    for c in range(5):
        os.makedirs(os.path.join(sup, f"class{c}"))
        for j in range(2):
            with open(os.path.join(sup, f"class{c}", f"{j}.png"), "wb") as f:
                f.write(png(glyph(rng, 1 + 2 * c)))
    queries = []
    for i in range(4):
        queries.append(os.path.join(tmp, f"q{i}.png"))
        with open(queries[-1], "wb") as f:
            f.write(png(glyph(rng, 1 + 2 * i)))
    for name, d in (("protonet", proto_dir), ("maml", maml_dir)):
        ck = os.path.join(d, "best.safetensors")
        p = cli("classify", ck, sup, *queries)
        rows = [line.split("\t") for line in p.stdout.strip().split("\n")]
        model = mela.Model(ck)
        classes, pred, probs = model.classify_files(sup, queries)
        want = [[float(kv.split("=")[1]) for kv in r[2].split()] for r in rows]
        check(p.returncode == 0 and [r[0] for r in rows] == queries and [r[1] for r in rows] == pred and
              np.abs(probs - np.array(want)).max() <= 0.5e-4 + 1e-6,
              f"classify {name}: Model.classify_files gives `mela classify`'s classes and probabilities")
        # arrays straight: the same numbers as from the files
        ds = mela.folder(sup, 28, invert=True)
        xs = ds.images.astype(np.float32) / 255
        ys = np.repeat(np.arange(5), 2)
        xq = np.stack([mela.load_image(q, invert=True) for q in queries])
        p2, pr2 = model.classify(xs, ys, xq)
        check(np.array_equal(pr2, probs) and np.allclose(pr2.sum(axis=1), 1, atol=1e-5),
              f"classify {name}: on arrays the same probabilities, each row summing to 1")
        check(raises(mela.Error, lambda: model.classify(xs[:8], ys[:8] % 4, xq), "5-way")
              if name == "maml" else raises(mela.Error, lambda: model.classify(xs[:3], np.array([0, 0, 1]), xq),
                                            "same number"),
              f"classify {name}: a support set the model cannot take raises mela's message")
    siam = os.path.join(siam_dir, "best.safetensors")
    pairs = [(queries[0], queries[1]), (queries[2], queries[2])]
    ok = True
    for a, b in pairs:
        p = cli("compare", siam, a, b)
        got = mela.Model(siam).compare(mela.load_image(a, invert=True), mela.load_image(b, invert=True))
        ok &= p.returncode == 0 and p.stdout.strip() == f"p(same class) = {got:.4f}" and 0 <= got <= 1
    check(ok, "compare (siamese): Model.compare gives `mela compare`'s p(same class)")
    check(raises(mela.Error, lambda: mela.Model(os.path.join(proto_dir, "best.safetensors")).compare(
        xq[0], xq[1]), "only siamese"), "compare: a protonet checkpoint raises mela's message")
    model = mela.Model(os.path.join(sin_dir, "best.safetensors"))
    t = mela.sinusoid_tasks(77, 0, 1, shots=10, queries=50)
    xs, ys, xq, yq = t["x_support"][0], t["y_support"][0], t["x_query"][0], t["y_query"][0]
    p0, p5 = model.adapt(xs, ys, xq, steps=0), model.adapt(xs, ys, xq, steps=5)
    check(p5.shape == (50, 1) and not np.array_equal(p0, p5), "adapt (regression): predictions change with steps")


def test_shipped_models():
    """A shipped model (models/ of this checkout) opens by name, as in the CLI."""
    dirs = mela.model_dirs()
    index = [os.path.join(d, "index.tsv") for d in dirs if os.path.isfile(os.path.join(d, "index.tsv"))]
    if not index:
        print("shipped models: none found, skipped")
        return
    names = sorted({line.split("\t")[0] for line in open(index[0]) if line.strip() and not line.startswith("#")})
    for name in names:
        model = mela.Model(name)
        check(model.path.endswith(name + ".safetensors") and model.config["learner"] in name,
              f"Model({name!r}) opens the shipped model ({model.path})")
    check(raises(mela.Error, lambda: mela.Model("no-such-model"), "no-such-model"),
          "an unknown model name raises mela's message naming it")


def main():
    print("mela", mela.version(), "numpy", np.__version__)
    with tempfile.TemporaryDirectory(prefix="mela-py-") as tmp:
        omni, cache = os.path.join(tmp, "omniglot"), os.path.join(tmp, "cache")
        fake_omniglot(omni)
        test_safetensors(tmp)
        test_episodes(tmp, omni, cache)
        sin_dir, proto_dir, maml_dir, siam_dir = test_training(tmp, omni, cache)
        test_classify(tmp, sin_dir, proto_dir, maml_dir, siam_dir)
        test_shipped_models()
    print(f"python: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
