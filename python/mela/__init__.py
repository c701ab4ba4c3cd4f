"""mela from Python: few-shot learning over libmela with NumPy arrays.

    import mela
    model = mela.Model("runs/protonet-omniglot/best.safetensors")
    pred, probs = model.classify(support_x, support_y, query_x)

Everything computes in libmela (C) with the GIL released; failures raise
mela.Error with libmela's message. See docs/python.md.
"""
import json
import os

import numpy as np

from . import _mela
from ._mela import Dataset, Error, Sampler, Split

__all__ = [
    "Error", "Model", "Dataset", "Split", "Sampler", "version", "omniglot", "folder", "load_image",
    "episodes", "sinusoid_tasks", "defaults", "train", "resume", "evaluate", "read_safetensors",
    "write_safetensors",
]


def version():
    """libmela's version, "MAJOR.MINOR.PATCH"."""
    return _mela.version()


# ---------------------------------------------------------------- safetensors

def read_safetensors(path):
    """(tensors, metadata): {name: float32 array} in file order, {key: str}."""
    return _mela.read_safetensors(os.fspath(path))


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: array} (stored as float32, at most 4 dimensions, in the
    dict's order) and {key: str} metadata atomically to path."""
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    _mela.write_safetensors(os.fspath(path), dict(tensors), meta)


# -------------------------------------------------------------------- data

def _nearest(resize):
    if resize not in ("area", "nearest"):
        raise ValueError(f"mela: resize {resize!r} is not 'area' or 'nearest'")
    return resize == "nearest"


def omniglot(data_dir, size=28, cache_dir=None, cache=True, background=True, evaluation=True,
             resize="area"):
    """Omniglot from data_dir/images_background.zip and images_evaluation.zip,
    size x size, ink = 1. resize: "area" (grey levels) or "nearest" (the
    nearest pixel, as PIL resized the papers' 1-bit PNGs: ink stays 0 or 1).
    The cache (default $XDG_CACHE_HOME/mela) makes a second load fast."""
    sets = (1 if background else 0) | (2 if evaluation else 0)
    if not sets:
        raise ValueError("mela.omniglot: background, evaluation or both")
    return _mela.omniglot(os.fspath(data_dir), size, None if cache_dir is None else os.fspath(cache_dir),
                          not cache, sets, _nearest(resize))


def folder(root, size=28, rgb=False, invert=False, resize="area"):
    """root/<class>/<image> (PNG, JPEG), resized to size (an int or (H, W))
    by resize ("area" or "nearest"); invert=True for dark strokes on white
    paper (ink = 1, as Omniglot)."""
    h, w = (size, size) if isinstance(size, int) else size
    return _mela.folder(os.fspath(root), h, w, rgb, invert, _nearest(resize))


def load_image(path, size=28, channels=1, invert=False, resize="area"):
    """One image file as float32 (channels, H, W) in [0, 1], resized as
    mela.folder resizes."""
    h, w = (size, size) if isinstance(size, int) else size
    return _mela.load_image(os.fspath(path), channels, h, w, invert, _nearest(resize))


def _split(dataset, split):
    return split if isinstance(split, Split) else dataset.split(split)


def episodes(dataset, split, ways, shots, queries, seed, start=0, count=None, within_group=False,
             distinct_classes=False):
    """N-way K-shot episodes start.. of a split, the same bits as libmela's
    mela_sampler_episode(seed, i): a dict of x_support (N*K, C, H, W),
    y_support (N*K), x_query, y_query, label (N), split_class (N),
    support_index, query_index, group. count=None: one episode; count=n:
    every array gets a leading dimension of n. within_group: each episode's
    classes from one alphabet (Lake's protocol); distinct_classes: no
    character twice in one episode, in any rotation (Finn et al.'s tasks, as
    `mela train --split finn` draws them)."""
    s = Sampler(_split(dataset, split), ways, shots, queries, within_group, distinct_classes)
    e = s.draw(seed, start, 1 if count is None else count)
    if count is None:
        e = {k: v[0] for k, v in e.items()}  # views
    return e


def sinusoid_tasks(seed, start=0, count=1, shots=10, queries=10):
    """MAML's sinusoid tasks start..start+count-1 under seed (libmela's
    mela_sinusoid_task): x/y_support (count, K, 1), x/y_query (count, Q, 1),
    amplitude, phase (count)."""
    return _mela.sinusoid(seed, start, count, shots, queries)


# ------------------------------------------------------------------ models

def model_dirs():
    """Where shipped models are looked for, as `mela models` does:
    $MELA_MODELS, then models/ of the source checkout this package was
    built in (build/python/mela -> models/)."""
    dirs = []
    if os.environ.get("MELA_MODELS"):
        dirs.append(os.environ["MELA_MODELS"])
    here = os.path.dirname(os.path.realpath(__file__))
    dirs.append(os.path.normpath(os.path.join(here, "..", "..", "..", "models")))
    return dirs


def model_path(name):
    """name itself when it is a file; else the shipped model of that name
    (NAME.safetensors in model_dirs()); else name, for the error to name."""
    if os.path.isfile(name) or os.sep in name:
        return name
    for d in model_dirs():
        p = os.path.join(d, name + ".safetensors")
        if os.path.isfile(p):
            return p
    return name


class Model:
    """A checkpoint of `mela train` that adapts to arrays.

    Model(path, **overrides): overrides are run options (threads=2, ...)."""

    def __init__(self, checkpoint, **overrides):
        self.path = model_path(os.fspath(checkpoint))
        self._p = _mela.Predictor(self.path, [f"{k}={_text(v)}" for k, v in overrides.items()])
        self.config = {k: _value(v) for k, v in self._p.config.items()}

    @property
    def regression(self):
        return self.config["dataset"] == "sinusoid"

    @property
    def input_shape(self):
        """The shape of one example: (1, S, S) images, or (1,) for sinusoids."""
        s = self.config["image_size"]
        return (1,) if self.regression else (1, s, s)

    def adapt(self, support_x, support_y, query_x, steps=None):
        """Adapts to the support set and scores the queries (one batch):
        (Q, N) class probabilities, or (Q, 1) predictions for regression."""
        return self._p.adapt(support_x, support_y, query_x, -1 if steps is None else steps)

    def classify(self, support_x, support_y, query_x, steps=None):
        """(predicted labels (Q,), probabilities (Q, N)); support_y holds
        class numbers 0..N-1, every class the same number of times."""
        probs = self.adapt(support_x, support_y, query_x, steps)
        return probs.argmax(axis=1), probs

    def compare(self, a, b):
        """Siamese checkpoints: p(same class) of two images (1, S, S)."""
        return self._p.compare(a, b)

    def classify_files(self, support_dir, queries, steps=None, invert=True):
        """`mela classify CHECKPOINT SUPPORT_DIR QUERY...` on arrays:
        (class names, predicted names, probabilities)."""
        s = self.config["image_size"]
        ds = folder(support_dir, s, invert=invert)
        classes = [name for _, name, _, _ in ds.classes]
        ys = np.repeat(np.arange(len(classes), dtype=np.float32), [c for _, _, _, c in ds.classes])
        xs = ds.images.astype(np.float32) / np.float32(255)
        xq = np.stack([load_image(q, s, invert=invert) for q in queries])
        pred, probs = self.classify(xs, ys, xq, steps)
        return classes, [classes[i] for i in pred], probs


# ----------------------------------------------------------------- training

def _text(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    return os.fspath(v) if isinstance(v, os.PathLike) else str(v)


def _value(s):
    for t in (int, float):
        try:
            return t(s)
        except ValueError:
            pass
    return s


def defaults(learner="maml", dataset="omniglot", ways=5):
    """The options of `mela train` with the papers' defaults: {key: value}."""
    return {k: _value(v) for k, v, _ in _mela.options(learner, dataset, ways)}


def _run(opts, progress, report, overwrite, resume):
    history = []

    def on_progress(p):
        history.append(p)
        if progress is not None:
            return progress(p)
        return None

    opts = dict(opts)
    learner = _text(opts.get("learner", "maml"))
    dataset = _text(opts.get("dataset", "omniglot"))
    ways = int(opts.get("test_ways") or opts.get("ways") or 0)  # as `mela train`
    kv = [f"{k}={_text(v)}" for k, v in opts.items()]
    res = _mela.train(learner, dataset, ways, kv, report, on_progress, overwrite, resume)
    res["config"] = {k: _value(v) for k, v in res["config"].items()}
    res["progress"] = history
    out = res["config"]["out_dir"]
    res["metrics"] = []
    if out and os.path.exists(os.path.join(out, "metrics.jsonl")):
        with open(os.path.join(out, "metrics.jsonl")) as f:
            res["metrics"] = [json.loads(line) for line in f if line.strip()]
    return res


def train(options, progress=None, report=100, overwrite=False):
    """Meta-trains as `mela train --key value ...` does with the same options
    (a dict; data_dir must be given for Omniglot) and returns
    {"status": "complete" | "stopped", "iteration", "config", "progress":
    [every report], "metrics": [records of out_dir/metrics.jsonl]}.
    progress(p) is called every `report` iterations with a dict (iteration,
    loss, acc, val_acc, ...); returning False, raising, or Ctrl-C stops the
    run with its state saved (continue it with mela.resume)."""
    return _run(options, progress, report, overwrite, None)


def resume(run_dir, progress=None, report=0, **overrides):
    """Continues the run saved in run_dir exactly (`mela train --resume`)."""
    return _run(overrides, progress, report, False, os.fspath(run_dir))


def evaluate(checkpoint, episodes=None, steps=None, **overrides):
    """`mela eval`: the fixed test episodes -> {"acc", "acc_ci", "loss", ...}."""
    over = [f"{k}={_text(v)}" for k, v in overrides.items()]
    return _mela.evaluate(os.fspath(checkpoint), over, episodes or 0, -1 if steps is None else steps)
