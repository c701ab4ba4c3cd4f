"""The markdown report of bench/scripts/speed.sh from the raw lines it
collected in a folder: meta (key=value), rows (bench_learners --list),
mela_rows and torch_rows (ROW lines), mela_conv and torch_conv (CONV and
SGEMM lines). Prints to stdout.

    python3 bench/scripts/speed_report.py RAW_DIR
"""
import os
import sys

# Issue 11's speed targets, PyTorch time / mela time, by row name; None:
# the issue sets none for that row.
TARGETS = {
    "protonet-20w5s": (2.5, "≥ 2.5x"),
    "fomaml-20w1s": (2.5, "≥ 2.5x"),
    "maml-20w1s": (3.0, "≥ 3x"),
    "fomaml-5w1s": (None, "none set"),
    "maml-5w1s": (4.0, "≥ 4x"),
    "maml-maxpool-5w1s": (4.0, "≥ 4x"),
    "maml-sinusoid": (10.0, "≥ 10x and ≤ 0.2 ms"),
    "siamese-128": (2.5, "≥ 2.5x"),
    "matchnet-20w1s": (2.5, "≥ 2.5x"),
    "reptile-5w": (None, "none set"),
    "mamlpp-5w": (3.0, "≥ 3x"),
}
SINUSOID_MS = 0.2
MEMORY = 1.0 / 3.0  # mela's peak RSS at most a third of PyTorch's


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)


def read(raw, name):
    path = os.path.join(raw, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.rstrip("\n") for l in f]


def by_id(lines):
    out = {}
    for l in lines:
        if l.startswith("ROW "):
            f = fields(l)
            out[int(f["id"])] = f
    return out


def conv_key(f):
    return (f["net"], int(f["n"]), int(f["c"]), int(f["hw"]), int(f["stride"]), f["kernel"])


def convs(lines):
    return {conv_key(fields(l)): fields(l) for l in lines if l.startswith("CONV ")}


def num(f, key):
    try:
        return float(f[key])
    except (KeyError, TypeError, ValueError):
        return None


def fmt(x, spec="%.1f"):
    return "—" if x is None else spec % x


def ms_fmt(x):
    if x is None:
        return "failed"
    return "%.3f" % x if x < 1 else "%.1f" % x


def main():
    raw = sys.argv[1]
    meta = dict(l.split("=", 1) for l in read(raw, "meta") if "=" in l)
    rows = [l.split(" ", 2) for l in read(raw, "rows") if l.strip()]
    mela, torch = by_id(read(raw, "mela_rows")), by_id(read(raw, "torch_rows"))
    mconv_lines, tconv_lines = read(raw, "mela_conv"), read(raw, "torch_conv")
    mconv, tconv = convs(mconv_lines), convs(tconv_lines)
    sgemm = [fields(l) for l in mconv_lines if l.startswith("SGEMM ")]
    reps, threads = meta.get("reps", "?"), meta.get("threads", "?")

    print("# Training throughput: mela against PyTorch (issue 11)\n")
    print("Commit %s, %s. CPU: %s, %s cores. OPENBLAS_CORETYPE=%s (from `mela --version`, for both). "
          "mela's convolutions: %s. PyTorch %s. Load average %s at the start, %s at the end; the run took %s s.\n"
          % (meta.get("commit"), meta.get("date"), meta.get("cpu"), meta.get("cores"),
             meta.get("coretype"), meta.get("conv", "?"), meta.get("torch"), meta.get("load_start"),
             meta.get("load_end"), meta.get("seconds")))
    if sgemm:
        s = sgemm[0]
        print("Machine: cblas_sgemm %sx%s on %s OpenBLAS threads (median of %s), timed before and after "
              "the convolutions: %s GFLOP/s (when the two differ, the machine's load changed).\n"
              % (s["n"], s["n"], s["threads"], meta.get("conv_reps"),
                 " and ".join("%s" % g["gflops"] for g in sgemm)))
    print("Command: `bench/scripts/speed.sh %s > bench/results/speed.md`.\n" % reps)

    print("## Learners: one training iteration, %s threads each\n" % threads)
    print("Median of %s iterations after 2 warm-up ones, each row in its own process (mela: "
          "`build/bench_learners --only ROW --reps %s --threads %s`; PyTorch: `python3 "
          "bench/torch_learners.py --only ROW --reps %s --threads %s`). Ratio: PyTorch time / mela "
          "time. Peak RSS: ru_maxrss of the process that ran only that row (PyTorch's includes the "
          "interpreter and torch, the \"import\" column). Parameters: floats learned, mela / "
          "PyTorch (a check that the models are the same). mela eval: "
          "`mela_learner_evaluate` on one test task, median of %s calls after one warm-up.\n"
          % (reps, reps, threads, reps, threads, reps))
    print("| # | row | mela ms | PyTorch ms | ratio | target | speed | mela MB | PyTorch MB "
          "(import) | mela / PyTorch RSS | memory ≤ 1/3 | parameters mela / PyTorch | mela eval ms |")
    print("| ---: | --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | --- | --- | ---: |")
    for r in rows:
        i, name = int(r[0]), r[1]
        m, t = mela.get(i, {}), torch.get(i, {})
        mm, tm = num(m, "ms"), num(t, "ms")
        mr, tr, tb = num(m, "rss_mb"), num(t, "rss_mb"), num(t, "base_mb")
        ratio = tm / mm if mm and tm else None
        goal, goal_text = TARGETS.get(name, (None, "none set"))
        if goal is None or ratio is None:
            speed = "—" if goal is None else "no result"
        else:
            ok = ratio >= goal and (name != "maml-sinusoid" or mm <= SINUSOID_MS)
            speed = "met" if ok else "not met"
        mem_ratio = mr / tr if mr and tr else None
        memory = "—" if mem_ratio is None else ("met" if mem_ratio <= MEMORY else "not met")
        pm, pt = m.get("params"), t.get("params")
        params = "%s / %s%s" % (pm or "?", pt or "?", "" if pm == pt else " (differ)")
        print("| %d | %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s | %s | %s | %s |"
              % (i, name, ms_fmt(mm), ms_fmt(tm), fmt(ratio, "%.2fx"), goal_text, speed,
                 fmt(mr), fmt(tr), fmt(tb), fmt(mem_ratio, "%.2f"), memory, params,
                 fmt(num(m, "eval_ms"), "%.2f")))
    print()
    for r in rows:
        print("%s. %s: %s" % (r[0], r[1], r[2] if len(r) > 2 else ""))
    print()
    mela1 = by_id(read(raw, "mela_rows_1t"))
    for i, t1 in by_id(read(raw, "torch_rows_1t")).items():
        m1m, t1m = num(mela1.get(i, {}), "ms"), num(t1, "ms")
        if m1m and t1m:
            print("Row %d on 1 thread each (tiny operations: a second thread can cost more than it "
                  "gives): mela %s ms, PyTorch %s ms, PyTorch / mela %.2fx. The targets above use "
                  "the 2-thread row.\n" % (i, ms_fmt(m1m), ms_fmt(t1m), t1m / m1m))
    print("Targets (issue 11): ProtoNets, Matching, Siamese and first-order 20-way MAML ≥ 2.5x; "
          "exact MAML ≥ 3x on every row and ≥ 4x at 5-way 1-shot (rows 5 and 6 are both exact "
          "5-way 1-shot; row 11, MAML++ in its exact phase, is counted as exact MAML); sinusoid "
          "MAML ≥ 10x and 0.2 ms or less; the issue sets none for rows 4 and 10. Memory: mela's "
          "peak RSS at most a third of PyTorch's, every row.\n")
    print("PyTorch rows: the MAML family with functional weights and torch.autograd.grad "
          "(create_graph=True for exact second order), tasks one after another; sinusoids with the 25 "
          "tasks batched by hand (torch.bmm over per-task copies of the weights: PyTorch 1.13 has no "
          "torch.func / vmap), the fastest honest formulation; ProtoNets, Matching, Siamese and "
          "Reptile with nn modules and torch.optim (Reptile: a fresh inner Adam, beta1 = 0, per "
          "task). Batch norm uses batch statistics and keeps no running statistics in both.\n")

    print("## Convolutions of the Conv-4 layers, one thread each\n")
    print("GFLOP/s (2·N·OC·OH·OW·C·9 flops per call), median of %s calls after one warm-up: mela's "
          "kernels (`build/bench_conv --speed`: mk_conv2d, mk_conv2d_dx, mk_conv2d_dw, OpenBLAS "
          "on 1 thread) against PyTorch's (`python3 bench/torch_conv.py --threads 1`: "
          "F.conv2d without bias, torch.nn.grad.conv2d_input, torch.nn.grad.conv2d_weight). "
          "Ratio: PyTorch time / mela time; the target is ≥ 1 for every layer, forward and both "
          "gradients. 3x3 kernels, 64 filters, padding 1; max-pool Conv-4: stride 1, "
          "stride-2 Conv-4: stride 2.\n" % meta.get("conv_reps", "?"))
    print("| layer | N | fwd mela | fwd PyTorch | ratio | dx mela | dx PyTorch | ratio | dw mela "
          "| dw PyTorch | ratio | ≥ PyTorch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    shapes = []
    for k in list(mconv) + list(tconv):
        if k[:5] not in shapes:
            shapes.append(k[:5])
    shapes.sort(key=lambda s: (s[1], s[0], -s[3]))
    for net, n, c, hw, stride in shapes:
        oh = (hw + 2 - 3) // stride + 1
        cells, ok = [], True
        for kern in ("fwd", "dx", "dw"):
            m = mconv.get((net, n, c, hw, stride, kern), {})
            t = tconv.get((net, n, c, hw, stride, kern), {})
            mg, tg = num(m, "gflops"), num(t, "gflops")
            ratio = mg / tg if mg and tg else None
            ok = ok and ratio is not None and ratio >= 1
            cells += [fmt(mg), fmt(tg), fmt(ratio, "%.2fx")]
        print("| %s %dx%dx%d -> 64x%dx%d | %d | %s | %s |"
              % (net, c, hw, hw, oh, oh, n, " | ".join(cells), "met" if ok else "not met"))
    print()
    if any(l.strip() == "failed" for l in mconv_lines + tconv_lines):
        print("A convolution benchmark failed; see the run's stderr.\n")


if __name__ == "__main__":
    main()
