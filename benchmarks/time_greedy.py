"""Wall time of a greedy fit and its flow's eager ``sample``, this tree against another.

What a user of ``fit_rbig`` meets first: ``flow = fit_rbig(x, seed=0)`` on
float64 data (numpy's default; the fit keeps the dtype) and float32 data, then
``flow.sample(10000)`` through TFP, eagerly: first call (tracing and any
compilation), again, and with a new seed. Data: scikit-learn's breast cancer
table (569 x 30, standardized) and two-moons (3,000 x 2). Each child is a
fresh process (TensorFlow's import not timed); the trees alternate. Each
child also reports the flow's layers and the mean log-likelihood of the
table's last 100 rows held out of the fit (``validation_split`` at its
default inside the fit), so that speed is not bought with a worse fit.

    git worktree add /tmp/before <commit>
    python benchmarks/time_greedy.py --before /tmp/before --repeats 2
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys, time
import numpy as np
import tfp_gauss
from sklearn.datasets import load_breast_cancer
name, dtype = sys.argv[1], np.dtype(sys.argv[2])
if name == "breast-cancer":
    x = load_breast_cancer().data
else:
    x = tfp_gauss.datasets.two_moons(3100, seed=0)
x = ((x - x.mean(0)) / x.std(0)).astype(dtype)
train, held = x[:-100], x[-100:]
out = {}
start = time.perf_counter()
flow = tfp_gauss.fit_rbig(train, seed=0)
out["fit"] = time.perf_counter() - start
for key, seed in (("sample_first", 1), ("sample_again", 1), ("sample_new_seed", 2)):
    start = time.perf_counter()
    s = flow.sample(10000, seed=seed).numpy()
    out[key] = time.perf_counter() - start
out["layers"] = len(flow.bijector.bijector.bijectors) // 2
out["held_out"] = float(np.mean(flow.log_prob(held)))
out["samples_finite"] = bool(np.isfinite(s).all())
print("RESULT " + json.dumps(out))
"""


def _child(tree, name, dtype):
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    # cwd=tree: `python -c` puts the working directory first on sys.path.
    result = subprocess.run([sys.executable, "-c", _CHILD, name, dtype], env=env, cwd=tree,
                            capture_output=True, text=True, check=True)
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="source tree of the earlier commit")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    trees = {"before": pathlib.Path(args.before).resolve(), "this tree": ROOT}
    for name, dtype in (("breast-cancer", "float64"), ("breast-cancer", "float32"),
                        ("two-moons", "float64")):
        runs = {label: [] for label in trees}
        for _ in range(args.repeats):
            for label, tree in trees.items():
                runs[label].append(_child(tree, name, dtype))
        print(f"\n{name}, {dtype} (seconds: median of {args.repeats} processes, range)")
        keys = ("fit", "sample_first", "sample_again", "sample_new_seed")
        print("| tree | " + " | ".join(keys) + " | layers | held-out log-lik |")
        print("|---|" + "---:|" * (len(keys) + 2))
        for label, rs in runs.items():
            cells = [f"{np.median([r[k] for r in rs]):.2f} ({min(r[k] for r in rs):.2f}-"
                     f"{max(r[k] for r in rs):.2f})" for k in keys]
            assert all(r["samples_finite"] for r in rs)
            print(f"| {label} | " + " | ".join(cells)
                  + f" | {rs[0]['layers']} | {rs[0]['held_out']:.3f} |")


if __name__ == "__main__":
    main()
