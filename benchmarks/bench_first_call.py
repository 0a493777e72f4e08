"""First-call (compilation) and steady-state times of sampling, log_prob, fit_rbig and export.

Every measurement runs in a fresh Python process (so the first call pays
all tracing and XLA compilation, as a user's script does), repeated
``--repeats`` times; the report gives the range. Times exclude importing
TensorFlow and building the model.

- ``sample``: ``GaussianizationFlowModel.sample(10000)`` at D = 2 and D = 24
  (8 layers x 8 components): first call, second call, a new ``n`` and a new
  seed; and, for comparison, the pre-issue-15 path
  (``tf.function(dist.sample, jit_compile=True)``, traced and compiled per
  ``n``) with its round-trip error next to the new one.
- ``log_prob``: ``model.log_prob`` (eager), ``model(x)`` and
  ``model.predict`` on a first and on a new batch size.
- ``fit_rbig``: 6000 x 8 data, 12 layers x 8 components (the RBIG
  benchmark's data), first and second call.
- ``export``: ``export_saved_model`` of the D = 2 model, and the first
  served ``sample`` in another fresh process.

    python benchmarks/bench_first_call.py [--quick] [--repeats 3]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

import _common
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

_PRELUDE = """
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, {here!r})
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tfp_gauss
from tensorflow_probability.python.internal import samplers
out = {{}}
def timed(name, fn):
    start = time.perf_counter()
    r = fn()
    for t in tf.nest.flatten(r):
        if hasattr(t, "numpy"):
            t.numpy()
    out[name] = time.perf_counter() - start
    return r
"""

_SAMPLE = """
d, layers, k, n = {d}, {layers}, {k}, {n}
model = tfp_gauss.keras.GaussianizationFlowModel(d, layers, k, seed=0)
timed("first", lambda: model.sample(n, seed=1))
timed("second", lambda: model.sample(n, seed=1))
timed("new_n", lambda: model.sample(n + 1234, seed=1))
timed("new_seed", lambda: model.sample(n, seed=2))
seed = tf.constant([5, 6])
x = model.sample(n, seed=seed)
z = samplers.normal([n, d], seed=seed)
out["round_trip_max_abs_z"] = float(np.abs(model.distribution.bijector.bijector.forward(x) - z).max())
"""

_OLD_SAMPLE = """
d, layers, k, n = {d}, {layers}, {k}, {n}
model = tfp_gauss.keras.GaussianizationFlowModel(d, layers, k, seed=0)
dist = model.distribution
fn = tf.function(lambda n, seed: dist.sample(n, seed=seed), jit_compile=True)
seed = tf.constant([5, 6])
x = timed("first", lambda: fn(n, seed))
timed("second", lambda: fn(n, seed))
# XLA's stateless RNG differs from TF's: compare with the z it drew itself
z = tf.function(lambda: dist.distribution.sample(n, seed=seed), jit_compile=True)()
out["round_trip_max_abs_z"] = float(np.abs(dist.bijector.bijector.forward(x) - z).max())
"""

_LOG_PROB = """
d, layers, k = {d}, {layers}, {k}
model = tfp_gauss.keras.GaussianizationFlowModel(d, layers, k, seed=0)
rng = np.random.default_rng(0)
x1, x2 = (rng.normal(size=(m, d)).astype("float32") for m in (1000, 1234))
timed("log_prob_first", lambda: model.log_prob(x1))
timed("log_prob_new_batch", lambda: model.log_prob(x2))
timed("call_first", lambda: model(x1))
timed("call_new_batch", lambda: model(x2))
timed("predict_first", lambda: model.predict(x1, batch_size=1000, verbose=0))
timed("predict_new_batch", lambda: model.predict(x2, batch_size=1234, verbose=0))
timed("predict_again", lambda: model.predict(x2, batch_size=1234, verbose=0))
"""

_RBIG = """
import bench_rbig
x = bench_rbig.data({n})
timed("first", lambda: tfp_gauss.fit_rbig(x, n_layers={layers}, n_components=8, random_state=0))
timed("second", lambda: tfp_gauss.fit_rbig(x, n_layers={layers}, n_components=8, random_state=0))
"""

_EXPORT = """
d, layers, k = {d}, {layers}, {k}
model = tfp_gauss.keras.GaussianizationFlowModel(d, layers, k, seed=0)
timed("export", lambda: tfp_gauss.export_saved_model(model, {path!r}))
"""

_SERVE = """
m = tf.saved_model.load({path!r})
sig = m.signatures["sample"]
timed("served_sample_first", lambda: sig(n=tf.constant(10000), seed=tf.constant([1, 2])))
timed("served_sample_second", lambda: sig(n=tf.constant(10000), seed=tf.constant([1, 2])))
timed("served_log_prob_first",
      lambda: m.signatures["log_prob"](x=tf.zeros([1000, {d}])))
"""


def _run(snippet, **fmt):
    code = textwrap.dedent(_PRELUDE).format(here=str(HERE)) + textwrap.dedent(snippet).format(
        **fmt) + "\nprint('@@' + json.dumps(out))\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1]
    return json.loads(line[2:])


def _repeat(repeats, snippet, **fmt):
    runs = [_run(snippet, **fmt) for _ in range(repeats)]
    return {key: dict(min=min(r[key] for r in runs), max=max(r[key] for r in runs),
                      median=float(np.median([r[key] for r in runs])))
            for key in runs[0]}


def run(quick=False, repeats=3):
    if quick:
        # Smoke test: one tiny configuration, in this process.
        import time

        import tfp_gauss
        model = tfp_gauss.keras.GaussianizationFlowModel(2, 2, 3, seed=0)
        start = time.perf_counter()
        model.sample(100, seed=1).numpy()
        first = time.perf_counter() - start
        return dict(config=dict(quick=True), sample={"2": dict(first=dict(
            min=first, max=first, median=first))})
    layers, k, n = 8, 8, 10000
    res = dict(config=dict(layers=layers, components=k, n=n, repeats=repeats,
                           rbig=dict(n=6000, d=8, layers=12)),
               sample={}, old_sample={})
    for d in (2, 24):
        res["sample"][str(d)] = _repeat(repeats, _SAMPLE, d=d, layers=layers, k=k, n=n)
        res["old_sample"][str(d)] = _repeat(1, _OLD_SAMPLE, d=d, layers=layers, k=k, n=n)
    res["log_prob"] = _repeat(repeats, _LOG_PROB, d=24, layers=layers, k=k)
    res["fit_rbig"] = _repeat(repeats, _RBIG, n=6000, layers=12)
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sm")
            r = _run(_EXPORT, d=2, layers=layers, k=k, path=path)
            r.update(_run(_SERVE, d=2, path=path))
            runs.append(r)
    res["export"] = {key: dict(min=min(r[key] for r in runs), max=max(r[key] for r in runs),
                               median=float(np.median([r[key] for r in runs])))
                     for key in runs[0]}
    return res


def _fmt(stat, digits=2):
    lo, hi = stat["min"], stat["max"]
    return f"{lo:.{digits}f}" if f"{lo:.{digits}f}" == f"{hi:.{digits}f}" else (
        f"{lo:.{digits}f}-{hi:.{digits}f}")


def markdown(res):
    c = res["config"]
    if c.get("quick"):
        return f"### First calls (quick)\n\nsample(100), D=2: {res['sample']['2']['first']['median']:.2f} s"
    lines = [
        f"### First calls ({c['repeats']} fresh processes each; ranges; seconds)", "",
        f"`GaussianizationFlowModel.sample({c['n']})`, {c['layers']} layers x "
        f"{c['components']} components; the first call includes all tracing and XLA "
        "compilation (target <= 5 s). \"old\" is the path before issue 15 "
        "(`tf.function(dist.sample, jit_compile=True)`, traced and compiled per `n`; one run).",
        "",
        "| D | first | second | new n | new seed | old first | old second | round trip max abs z (new / old) |",
        "|---|---|---|---|---|---|---|---|"]
    for d, s in res["sample"].items():
        o = res["old_sample"][d]
        lines.append(
            f"| {d} | {_fmt(s['first'])} | {_fmt(s['second'], 3)} | {_fmt(s['new_n'], 3)} | "
            f"{_fmt(s['new_seed'], 3)} | {_fmt(o['first'])} | {_fmt(o['second'], 3)} | "
            f"{s['round_trip_max_abs_z']['max']:.1e} / {o['round_trip_max_abs_z']['max']:.1e} |")
    lp = res["log_prob"]
    lines += ["", "log p at D = 24 (8 x 8), batch 1000 then a new batch size 1234:", "",
              "| call | first | new batch size |", "|---|---|---|",
              f"| `model.log_prob` (eager) | {_fmt(lp['log_prob_first'])} | "
              f"{_fmt(lp['log_prob_new_batch'])} |",
              f"| `model(x)` (eager) | {_fmt(lp['call_first'])} | {_fmt(lp['call_new_batch'])} |",
              f"| `model.predict` | {_fmt(lp['predict_first'])} | "
              f"{_fmt(lp['predict_new_batch'])} (again: {_fmt(lp['predict_again'], 3)}) |"]
    rb, ex = res["fit_rbig"], res["export"]
    r = c["rbig"]
    lines += ["",
              f"- `fit_rbig` {r['n']} x {r['d']}, {r['layers']} layers x 8: first call "
              f"{_fmt(rb['first'])} s, second {_fmt(rb['second'])} s (target <= 2 s first).",
              f"- `export_saved_model` (D = 2, 8 x 8): {_fmt(ex['export'])} s; in a fresh "
              f"process the served `sample(n=10000)` takes {_fmt(ex['served_sample_first'])} s "
              f"first, {_fmt(ex['served_sample_second'], 3)} s after; served `log_prob` "
              f"first {_fmt(ex['served_log_prob_first'])} s."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    return _common.report("first_call", run(quick=args.quick, repeats=args.repeats), markdown,
                          write=not args.quick)


if __name__ == "__main__":
    main()
