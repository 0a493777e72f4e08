"""Wall time of ``fit_gaussianization_flow``: the first fit of a process, and longer runs.

A user's first fit pays for tracing the training step and compiling it with
XLA. Every measurement runs in a fresh Python process (times exclude
importing TensorFlow): on the standardized built-in two-moons data (3,000 x
2) with marginal and with coupling layers (8 layers x 8 components, the
default greedy warm start, 10 % held out, ``early_stopping=False`` so that
every run trains exactly its steps), one process fits 100 steps twice (the
first fit, then a new model in the same process) and then 1,000 steps.
With ``--before DIR`` the same processes also run on another source tree
(``PYTHONPATH=DIR``), alternating with this one, and the report gives the
ratios (this tree / before, medians over ``--repeats``) and checks that both
trees end at the same validation NLL.

    python benchmarks/bench_fit_speed.py [--quick] [--repeats 2] [--before DIR]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import _common
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, sys, time
import numpy as np
import tfp_gauss
arch, steps = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
x = tfp_gauss.datasets.two_moons()
out = []
for n in steps:
    t = time.perf_counter()
    _, h = tfp_gauss.fit_gaussianization_flow(x, steps=n, seed=0, verbose=0, architecture=arch,
                                              early_stopping=False)
    out.append(dict(steps=n, seconds=time.perf_counter() - t,
                    val_nll=float(h.history["val_loss"][-1])))
print("RESULT " + json.dumps(out))
"""


def _run(tree, arch, steps):
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    # cwd=tree: `python -c` puts the working directory ahead of PYTHONPATH.
    proc = subprocess.run([sys.executable, "-c", _CHILD, arch, ",".join(map(str, steps))],
                          env=env, capture_output=True, text=True, check=True, cwd=str(tree))
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def markdown(res):
    cfg = res["config"]
    labels = ["first fit", "second fit (same process)", "longer fit"]
    lines = ["### First and longer fits (`fit_gaussianization_flow`, fresh processes)", "",
             f"Two-moons (3,000 x 2, standardized), 8 layers x 8 components, greedy warm start, "
             f"10 % held out, `early_stopping=False`; each process fits {cfg['steps'][0]} steps, "
             f"again {cfg['steps'][1]} steps on a new model, then {cfg['steps'][2]} steps. "
             f"Seconds, median of {cfg['repeats']} processes (range in brackets); times exclude "
             "importing TensorFlow.", ""]
    trees = list(res["runs"])
    head = "| layers | fit | " + " | ".join(trees) + (" | ratio |" if len(trees) > 1 else " |")
    lines += [head, "|---|---|" + "---:|" * (len(trees) + (len(trees) > 1))]
    for arch in cfg["architectures"]:
        for i, label in enumerate(labels):
            cells, medians = [], []
            for tree in trees:
                secs = [run[i]["seconds"] for run in res["runs"][tree][arch]]
                medians.append(float(np.median(secs)))
                cells.append(f"{medians[-1]:.1f} ({min(secs):.1f}-{max(secs):.1f})")
            ratio = f" | {medians[0] / medians[1]:.2f}x" if len(trees) > 1 else ""
            lines.append(f"| {arch} | {label}, {cfg['steps'][i]} steps | "
                         + " | ".join(cells) + ratio + " |")
    lines += ["", "Validation NLL at the end of the longer fit (first process): " + "; ".join(
        f"{tree} {arch} {res['runs'][tree][arch][0][2]['val_nll']:.5f}"
        for arch in cfg["architectures"] for tree in trees) + "."]
    if res.get("note"):
        lines += ["", res["note"]]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--before", default=None,
                        help="another source tree to compare with (e.g. a git worktree)")
    parser.add_argument("--before-label", default="before")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    steps = [5, 5, 10] if args.quick else [100, 100, 1000]
    repeats = 1 if args.quick else args.repeats
    archs = ["marginal"] if args.quick else ["marginal", "coupling"]
    trees = {"this tree": ROOT}
    if args.before and not args.quick:
        trees[args.before_label] = pathlib.Path(args.before)
    runs = {tree: {arch: [] for arch in archs} for tree in trees}
    for r in range(repeats):
        for arch in archs:
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for tree in order:
                result = _run(trees[tree], arch, steps)
                runs[tree][arch].append(result)
                print(f"[bench_fit_speed] {tree} {arch} repeat {r}: "
                      + ", ".join(f"{s['steps']} steps {s['seconds']:.1f} s" for s in result),
                      file=sys.stderr, flush=True)
    res = dict(config=dict(quick=args.quick, repeats=repeats, steps=steps, architectures=archs),
               runs=runs, note=args.note)
    return _common.report("fit_speed", res, markdown, write=not args.quick)


if __name__ == "__main__":
    main()
