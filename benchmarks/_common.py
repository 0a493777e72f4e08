"""Shared helpers for the benchmarks: timing, environment, result files."""

import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def time_call(fn, *args, repeats=5, warmup=1):
    """Median wall time (s) of ``fn(*args)`` after ``warmup`` calls; forces results."""
    for _ in range(warmup):
        _force(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _force(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _force(out):
    for t in tf.nest.flatten(out):
        if hasattr(t, "numpy"):
            t.numpy()


def environment():
    import keras
    return dict(python=platform.python_version(), tensorflow=tf.__version__,
                tensorflow_probability=tfp.__version__, keras=keras.__version__,
                numpy=np.__version__, machine=platform.machine(),
                cpu_count=os.cpu_count(), date=time.strftime("%Y-%m-%d"))


def write_result(name, payload, markdown=None):
    """Writes ``results/<name>.json`` (and ``.md`` if given); returns the JSON path."""
    RESULTS.mkdir(exist_ok=True)
    payload = dict(payload, environment=environment())
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    if markdown is not None:
        (RESULTS / f"{name}.md").write_text(markdown + "\n")
    return path


def report(name, res, markdown_fn, write):
    """Prints a benchmark's markdown and, if ``write``, saves JSON and markdown."""
    text = markdown_fn(res)
    if write:
        path = write_result(name, res, text)
        print(f"wrote {path}", file=sys.stderr)
    print(text)
    return res
