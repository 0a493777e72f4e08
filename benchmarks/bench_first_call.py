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
- ``coupling_sample``: the same for a coupling flow (the architecture the
  default fit chooses from 1,000 training rows) at D = 2 and D = 7, the
  conditioner's last layer given small random weights so that the
  conditional solves differ from the base map's; with ``--baseline-tree``
  the other tree is timed as often, alternating.
- ``eager_sample``: ``fit_rbig``'s flow (a ``TransformedDistribution`` of
  per-layer TFP bijectors, fit on ``datasets.two_moons()``): its eager
  ``sample(10000)`` first and second, and ``sample(5000)``; with
  ``--baseline-tree`` also timed there, alternating.
- ``log_prob``: ``model.log_prob`` (eager), ``model(x)`` and
  ``model.predict`` on a first and on a new batch size.
- ``fit_rbig``: 6000 x 8 data, 12 layers x 8 components (the RBIG
  benchmark's data), first and second call.
- ``export``: ``export_saved_model`` of the D = 2 model, and the first
  served ``sample`` in another fresh process.
- ``cli``: the ``tfp-gauss`` command end to end (``python -m tfp_gauss.cli``,
  subprocess wall time including Python and TensorFlow start-up): ``fit``
  of a 2000 x 2 CSV (8 layers x 8 components, 300 steps), ``sample -n
  10000`` and ``score`` of the 2000 rows; and, for scale, ``python -c
  "import tfp_gauss"`` alone.

    python benchmarks/bench_first_call.py [--quick] [--repeats 3]
    python benchmarks/bench_first_call.py --only export cli   # those parts; the rest kept
    python benchmarks/bench_first_call.py --only export cli --baseline-tree /tmp/base \
        --baseline-label 81d5452   # also time a source tree of another commit (once)
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import time

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

_COUPLING_SAMPLE = """
d, layers, k, n = {d}, {layers}, {k}, {n}
model = tfp_gauss.keras.GaussianizationFlowModel(d, layers, k, architecture="coupling", seed=0)
model(np.zeros([1, d], "float32"))
rng = np.random.default_rng(0)
for w in model.trainable_weights:  # the conditioners' last kernels start at zero
    if len(w.shape) == 3 and not np.any(w.numpy()):
        w.assign(0.1 * rng.standard_normal(w.shape).astype("float32"))
timed("first", lambda: model.sample(n, seed=1))
timed("second", lambda: model.sample(n, seed=1))
timed("new_n", lambda: model.sample(n + 1234, seed=1))
seed = tf.constant([5, 6])
x = model.sample(n, seed=seed)
z = samplers.normal([n, d], seed=seed)
z_back = model.distribution.bijector.bijector.forward(x)
out["round_trip_max_abs_z"] = float(np.abs(z_back - z).max())
"""

_EAGER_SAMPLE = """
flow, info = tfp_gauss.fit_rbig(tfp_gauss.datasets.two_moons(), seed=0, return_info=True)
out["layers"] = float(info.best_n_layers)
timed("first", lambda: flow.sample({n}, seed=1))
timed("second", lambda: flow.sample({n}, seed=2))
timed("new_n", lambda: flow.sample({n} // 2, seed=3))
timed("few", lambda: flow.sample(5, seed=4))
timed("few_again", lambda: flow.sample(5, seed=5))
row = tfp_gauss.datasets.two_moons()[:1]
timed("log_prob_row", lambda: flow.log_prob(row))
timed("log_prob_row_again", lambda: flow.log_prob(row))
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
timed("first", lambda: tfp_gauss.fit_rbig(x, n_layers={layers}, n_components=8, seed=0))
timed("second", lambda: tfp_gauss.fit_rbig(x, n_layers={layers}, n_components=8, seed=0))
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


def _env(root=ROOT):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(
        [str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


def _run(snippet, root=ROOT, **fmt):
    code = textwrap.dedent(_PRELUDE).format(here=str(HERE)) + textwrap.dedent(snippet).format(
        **fmt) + "\nprint('@@' + json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(root), cwd=str(root))
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1]
    return json.loads(line[2:])


def _summary(runs):
    return {key: dict(min=min(r[key] for r in runs), max=max(r[key] for r in runs),
                      median=float(np.median([r[key] for r in runs])))
            for key in runs[0]}


def _repeat(repeats, snippet, **fmt):
    return _summary([_run(snippet, **fmt) for _ in range(repeats)])


def _alternating(repeats, baseline_tree, snippet, **fmt):
    """``snippet``'s summary here and (if given) in ``baseline_tree``, runs alternating."""
    runs, base_runs = [], []
    for _ in range(repeats):
        runs.append(_run(snippet, **fmt))
        if baseline_tree:
            base_runs.append(_run(snippet, root=baseline_tree, **fmt))
    return _summary(runs), (_summary(base_runs) if base_runs else None)


def _export_once(root=ROOT, layers=8, k=8):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sm")
        r = _run(_EXPORT, root=root, d=2, layers=layers, k=k, path=path)
        r.update(_run(_SERVE, root=root, d=2, path=path))
    return r


def _timed_command(args, root, cwd):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable] + args, capture_output=True, text=True,
                          env=_env(root), cwd=cwd)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    return elapsed


def _cli_once(root=ROOT):
    """Wall times of ``tfp-gauss fit`` / ``sample`` / ``score`` run as a user would."""
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        t = rng.uniform(0, np.pi, 2000)
        side = rng.integers(0, 2, 2000)
        x = np.stack([np.where(side, 1 - np.cos(t), np.cos(t)),
                      np.where(side, 0.5 - np.sin(t), np.sin(t))], 1)
        x += 0.1 * rng.standard_normal(x.shape)
        np.savetxt(os.path.join(tmp, "data.csv"), x, delimiter=",", header="a,b", comments="")
        cli = ["-m", "tfp_gauss.cli"]
        return dict(
            import_only=_timed_command(["-c", "import tfp_gauss"], root, tmp),
            fit=_timed_command(cli + ["fit", "data.csv", "--out", "run", "--steps", "300"],
                               root, tmp),
            sample=_timed_command(cli + ["sample", "run", "-n", "10000", "--out", "s.csv"],
                                  root, tmp),
            score=_timed_command(cli + ["score", "run", "data.csv", "--out", "lp.csv"],
                                 root, tmp))


PARTS = ("sample", "coupling_sample", "eager_sample", "log_prob", "fit_rbig", "export", "cli")


def run(quick=False, repeats=3, only=PARTS, previous=None, baseline_tree=None,
        baseline_label=None):
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
    res = dict(previous or {})
    res.pop("environment", None)
    old_config = res.get("config", {})
    res["config"] = dict(layers=layers, components=k, n=n,
                         # the parts not rerun keep the repeats they were measured with
                         repeats=old_config.get("repeats", repeats) if previous else repeats,
                         rbig=dict(n=6000, d=8, layers=12),
                         cli=dict(rows=2000, d=2, layers=8, components=8, steps=300,
                                  sample_n=10000, repeats=repeats))
    if "cli" not in only and "cli" in old_config:
        res["config"]["cli"] = old_config["cli"]
    # The committed numbers of the parts rerun now, kept as "before".
    before = dict(res.get("before", {}))
    before.update({part: res[part] for part in only
                   if part in res and part not in ("sample", "cli")})
    if before:
        res["before"] = before
    if "sample" in only:
        res["sample"], res["old_sample"] = {}, {}
        for d in (2, 24):
            res["sample"][str(d)] = _repeat(repeats, _SAMPLE, d=d, layers=layers, k=k, n=n)
            res["old_sample"][str(d)] = _repeat(1, _OLD_SAMPLE, d=d, layers=layers, k=k, n=n)
    label = baseline_label or str(baseline_tree)
    for part in ("coupling", "eager"):  # a rerun's baseline is its own, or none
        if f"{part}_sample" in only:
            res.pop(f"{part}_baseline", None)
    if "coupling_sample" in only:
        res["coupling_sample"], base_coupling = {}, {}
        for d in (2, 7):
            res["coupling_sample"][str(d)], base = _alternating(
                repeats, baseline_tree, _COUPLING_SAMPLE, d=d, layers=layers, k=k, n=n)
            if base:
                base_coupling[str(d)] = base
        if base_coupling:  # (its own label: the export/cli baseline may be another tree)
            res["coupling_baseline"] = dict(base_coupling, label=label)
    if "eager_sample" in only:
        res["eager_sample"], base = _alternating(repeats, baseline_tree, _EAGER_SAMPLE, n=n)
        if base:
            res["eager_baseline"] = dict(base, label=label)
    if "log_prob" in only:
        res["log_prob"] = _repeat(repeats, _LOG_PROB, d=24, layers=layers, k=k)
    if "fit_rbig" in only:
        res["fit_rbig"] = _repeat(repeats, _RBIG, n=6000, layers=12)
    if "export" in only:
        res["export"] = _summary([_export_once(layers=layers, k=k) for _ in range(repeats)])
    if "cli" in only:
        res["cli"] = _summary([_cli_once() for _ in range(repeats)])
    if baseline_tree and ({"export", "cli"} & set(only)):
        # Another commit's source tree, timed once per part (for before/after).
        base = dict(res.get("baseline", {}), label=baseline_label or str(baseline_tree))
        if "export" in only:
            base["export"] = _export_once(root=baseline_tree, layers=layers, k=k)
        if "cli" in only:
            base["cli"] = _cli_once(root=baseline_tree)
        res["baseline"] = base
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
    if "coupling_sample" in res:
        cs = res["coupling_sample"]
        bc = res.get("coupling_baseline")
        lines += ["", f"Coupling flows (`architecture=\"coupling\"`, the default fit's choice "
                  f"from 1,000 training rows; {c['layers']} x {c['components']}, conditioners' "
                  "last kernels 0.1 x N(0, 1)): `sample(10000)`"
                  + (f"; the source tree of {bc['label']} timed as often, alternating (a "
                     "run of its own, on whatever machine ran it: compare a row with its "
                     "own 'before' columns)" if bc else "") + ":", "",
                  "| D | first | second | new n | round trip max abs z |"
                  + (" first, before | second, before |" if bc else ""),
                  "|---|---|---|---|---|" + ("---|---|" if bc else "")]
        for d, s in cs.items():
            line = (f"| {d} | {_fmt(s['first'])} | {_fmt(s['second'], 3)} | "
                    f"{_fmt(s['new_n'], 3)} | {s['round_trip_max_abs_z']['max']:.1e} |")
            if bc:
                line += f" {_fmt(bc[d]['first'])} | {_fmt(bc[d]['second'], 3)} |"
            lines.append(line)
    if "eager_sample" in res:
        es, eb = res["eager_sample"], res.get("eager_baseline")
        lines += ["", f"`fit_rbig(two_moons, seed=0)`'s flow ({es['layers']['max']:.0f} layers of "
                  "TFP bijectors), eager `flow.sample`"
                  + (f"; the source tree of {eb['label']} timed as often, alternating" if eb
                     else "") + ":", "",
                  "| call | seconds |" + (" before |" if eb else ""),
                  "|---|---|" + ("---|" if eb else "")]
        for key, label in (("first", f"`sample({c['n']})`, first"),
                           ("second", f"`sample({c['n']})`, second"),
                           ("new_n", f"`sample({c['n'] // 2})`"),
                           ("few", "`sample(5)`, first"), ("few_again", "`sample(5)`, again"),
                           ("log_prob_row", "`log_prob` of one row, first"),
                           ("log_prob_row_again", "`log_prob` of one row, again")):
            if key in es:  # (the last four: timed from session 17 on)
                lines.append(f"| {label} | {_fmt(es[key])} |"
                             + (f" {_fmt(eb[key])} |" if eb and key in eb else ""))
    before = res.get("before", {})
    lp, lp0 = res["log_prob"], before.get("log_prob")
    rows = [("`model.log_prob` (eager)", "log_prob_first", "log_prob_new_batch"),
            ("`model(x)` (eager)", "call_first", "call_new_batch"),
            ("`model.predict`", "predict_first", "predict_new_batch")]
    lines += ["", "log p at D = 24 (8 x 8), batch 1000 then a new batch size 1234"
              + (" (before: the previously committed run)" if lp0 else "") + ":", "",
              "| call | first | new batch size |" + (" before: first | before: new |"
                                                    if lp0 else ""),
              "|---|---|---|" + ("---|---|" if lp0 else "")]
    for label, first, new in rows:
        line = f"| {label} | {_fmt(lp[first])} | {_fmt(lp[new])} |"
        if lp0:
            line += f" {_fmt(lp0[first])} | {_fmt(lp0[new])} |"
        lines.append(line)
    lines.append(f"\n`model.predict` again on the new batch size: {_fmt(lp['predict_again'], 3)} s"
                 + (f" (before: {_fmt(lp0['predict_again'], 3)} s)." if lp0 else "."))
    rb, ex = res["fit_rbig"], res["export"]
    r = c["rbig"]
    ex0 = before.get("export")
    lines += ["",
              f"- `fit_rbig` {r['n']} x {r['d']}, {r['layers']} layers x 8: first call "
              f"{_fmt(rb['first'])} s, second {_fmt(rb['second'])} s (target <= 2 s first).",
              f"- `export_saved_model` (D = 2, 8 x 8): {_fmt(ex['export'])} s; in a fresh "
              f"process the served `sample(n=10000)` takes {_fmt(ex['served_sample_first'])} s "
              f"first, {_fmt(ex['served_sample_second'], 3)} s after; served `log_prob` "
              f"first {_fmt(ex['served_log_prob_first'])} s."
              + (f" Before (previously committed run): export {_fmt(ex0['export'])} s, served "
                 f"sample first {_fmt(ex0['served_sample_first'])} s, served `log_prob` first "
                 f"{_fmt(ex0['served_log_prob_first'])} s." if ex0 else "")]
    base = res.get("baseline", {})
    if "export" in base:
        b = base["export"]
        lines.append(f"- Same machine and run, source tree of {base['label']} (once): export "
                     f"{b['export']:.2f} s, served sample first {b['served_sample_first']:.2f} s, "
                     f"served `log_prob` first {b['served_log_prob_first']:.2f} s.")
    if "cli" in res:
        cc, cl = c["cli"], res["cli"]
        cb = base.get("cli")
        lines += ["", f"`tfp-gauss` end to end (`python -m tfp_gauss.cli`, wall time of the "
                  f"whole process, {cc.get('repeats', c['repeats'])} runs; data {cc['rows']} x {cc['d']} CSV; "
                  f"`fit --steps {cc['steps']}` with the default {cc['layers']} layers x "
                  f"{cc['components']} components; `sample -n {cc['sample_n']}`; `score` of "
                  "the data):", "",
                  "| command | seconds |" + (f" {base['label']} (once) |" if cb else ""),
                  "|---|---|" + ("---|" if cb else "")]
        for key, label in (("import_only", "`python -c \"import tfp_gauss\"`"),
                           ("fit", "`tfp-gauss fit`"), ("sample", "`tfp-gauss sample`"),
                           ("score", "`tfp-gauss score`")):
            lines.append(f"| {label} | {_fmt(cl[key])} |" + (f" {cb[key]:.2f} |" if cb else ""))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS),
                        help="parts to run; the others keep their committed results")
    parser.add_argument("--baseline-tree", help="another commit's source tree to time once "
                        "(export and cli parts; coupling_sample: as often as this one)")
    parser.add_argument("--baseline-label")
    args = parser.parse_args(argv)
    previous = None
    committed = _common.RESULTS / "first_call.json"
    if set(args.only) != set(PARTS) and committed.exists():
        previous = json.loads(committed.read_text())
    res = run(quick=args.quick, repeats=args.repeats, only=args.only, previous=previous,
              baseline_tree=args.baseline_tree, baseline_label=args.baseline_label)
    return _common.report("first_call", res, markdown, write=not args.quick)


if __name__ == "__main__":
    main()
