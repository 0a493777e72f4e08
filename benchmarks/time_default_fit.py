"""Wall time of the default fit against the previous default recipe, on two-moons.

The previous default: every one of 3000 steps trained, warm start from an
8-layer greedy fit with no held-out selection. The new default: 10 % held
out, greedy depth and scale floor chosen on it, best-validation weights,
early stop. Both in one process, alternating, after a warm-up fit of each
(so both pay no first-call compilation); prints median seconds and the
held-out log-likelihood each returns on the same 600 test rows.

``--issue-tree DIR`` instead times the call that issue 14 measured, in the
source tree ``DIR`` (a git worktree of the commit the issue was filed at,
8f42393): ``fit_gaussianization_flow(train, init="rbig",
validation_data=val, seed=0, verbose=0)``, 3,000 steps of marginal layers,
against this tree's ``fit_gaussianization_flow(train, validation_data=val,
seed=0, verbose=0)``, on split seed 0's 2,100 training and 300 validation rows;
each in a fresh process (its first-call compilation included, TensorFlow's
import not), alternating.

    python benchmarks/time_default_fit.py [--repeats 2]
    git worktree add /tmp/issue14 8f42393
    python benchmarks/time_default_fit.py --issue-tree /tmp/issue14 --repeats 2
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import _common  # noqa: F401  (quiet TensorFlow start-up)
import _datasets
import numpy as np

import tfp_gauss


ROOT = pathlib.Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys, time
import numpy as np
import tfp_gauss
d = np.load(sys.argv[1])
kwargs = json.loads(sys.argv[2])
start = time.perf_counter()
model, _ = tfp_gauss.fit_gaussianization_flow(d["train"], validation_data=d["val"], seed=0,
                                              verbose=0, **kwargs)
seconds = time.perf_counter() - start
print("RESULT " + json.dumps(dict(
    seconds=seconds, test=float(np.mean(model.log_prob(d["test"]).numpy())))))
"""


def _child(tree, data_file, kwargs):
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    # cwd=tree: `python -c` puts the working directory first on sys.path, ahead
    # of PYTHONPATH, so run from elsewhere the child would import that tree.
    proc = subprocess.run([sys.executable, "-c", _CHILD, data_file, json.dumps(kwargs)],
                          env=env, capture_output=True, text=True, check=True, cwd=str(tree))
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def against_issue_tree(tree, repeats):
    data = _datasets.splits("two-moons", seed=0)
    runs = {"issue 14's call (3000 steps), its tree": (tree, {"init": "rbig"}),
            "default now": (ROOT, {})}
    results = {name: [] for name in runs}
    with tempfile.TemporaryDirectory() as tmp:
        data_file = os.path.join(tmp, "two_moons.npz")
        np.savez(data_file, train=data["train_std"], val=data["val_std"],
                 test=data["test_std"])
        for repeat in range(repeats):
            for name in (list(runs) if repeat % 2 == 0 else list(runs)[::-1]):
                tree_dir, kwargs = runs[name]
                results[name].append(_child(tree_dir, data_file, kwargs))
    for name, rs in results.items():
        secs = [r["seconds"] for r in rs]
        print(f"{name}: {np.median(secs):.1f} s (runs {np.round(secs, 1)}), test mean "
              f"log-lik {rs[0]['test']:.3f} (standardized units)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--issue-tree", default=None,
                        help="source tree of the commit issue 14 was filed at (8f42393)")
    args = parser.parse_args(argv)
    if args.issue_tree:
        return against_issue_tree(args.issue_tree, args.repeats)
    data = _datasets.splits("two-moons", seed=0)
    x = np.concatenate([data["train_std"], data["val_std"]])  # what a user would pass
    recipes = {
        "previous default (3000 steps, no selection)": dict(
            validation_split=0, early_stopping=False, steps=3000,
            rbig_kwargs=dict(bandwidth_factor=0, tail_component=False)),
        "new default": {},
    }
    times = {name: [] for name in recipes}
    scores = {}
    for repeat in range(args.repeats + 1):
        for name, kwargs in recipes.items():
            start = time.perf_counter()
            model, _ = tfp_gauss.fit_gaussianization_flow(x, seed=0, verbose=0, **kwargs)
            seconds = time.perf_counter() - start
            if repeat:  # the first round compiles
                times[name].append(seconds)
            scores[name] = float(np.mean(model.log_prob(data["test_std"]).numpy()))
    for name in recipes:
        print(f"{name}: {np.median(times[name]):.1f} s (runs {np.round(times[name], 1)}), "
              f"test mean log-lik {scores[name]:.3f} (standardized units)")


if __name__ == "__main__":
    main()
