"""Wall time of ``model.sample(10000)`` for a coupling flow, this tree against another.

A coupling flow is fitted once on diamonds (``bench_compare``'s split seed 0,
standardized; ``--steps`` optimizer steps, 1,500 by default: the timing does
not depend on how well it is trained) and saved; then each tree's code
(``--before DIR``: a git worktree of an earlier commit) loads the same saved
model in a fresh process, draws once (compiling) and times ``--draws`` more
draws of 10,000 rows; the processes alternate between the trees. Each child
also reports the round-trip error ``|z - G(G^{-1}(z))|`` of the stacked
inverse on 10,000 latents ``1.5 * N(0, I)`` (median, 99th percentile, max).
Prints the median and minimum seconds per tree; not run by ``run_all.py``.

    git worktree add /tmp/before <commit>
    python benchmarks/time_sampling.py --before /tmp/before --repeats 3
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import _common  # noqa: F401  (quiet TensorFlow start-up)
import _datasets
import numpy as np

import tfp_gauss

ROOT = pathlib.Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys, time
import keras, numpy as np, tensorflow as tf
from tfp_gauss import sampling
from tfp_gauss.bijectors import householder_rotation
model = keras.models.load_model(sys.argv[1])
draws = int(sys.argv[2])
model.sample(10000, seed=0)  # compiles
seconds = []
for i in range(draws):
    start = time.perf_counter()
    model.sample(10000, seed=i + 1).numpy()
    seconds.append(time.perf_counter() - start)
logits, locs, raw_scales, vectors = (w.value for w in model._flow_weights)
scales = tf.nn.softplus(raw_scales)
rotations = householder_rotation.householder_product(vectors)
extra = model._coupling_kwargs()
floor = extra.pop("scale_floor", None)
z = 1.5 * tf.random.stateless_normal([10000, model.n_dims], seed=[1, 2])
x = sampling.invert_stacked(z, logits, locs, scales, rotations, extra["masks"],
                            extra["conditioner"], scale_floor=floor)
back, _ = sampling.gaussianize_stacked(x, logits, locs, scales, rotations,
                                       tf.constant(extra["masks"], z.dtype),
                                       extra["conditioner"], scale_floor=floor)
error = np.abs(back.numpy() - z.numpy())
print("RESULT " + json.dumps(dict(seconds=seconds,
                                  error=[float(q) for q in np.quantile(error, [0.5, 0.99, 1])])))
"""


def _child(tree, model_file, draws):
    env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    # cwd=tree: `python -c` puts the working directory ahead of PYTHONPATH.
    proc = subprocess.run([sys.executable, "-c", _CHILD, model_file, str(draws)], env=env,
                          capture_output=True, text=True, check=True, cwd=str(tree))
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="source tree to compare against")
    parser.add_argument("--repeats", type=int, default=3, help="processes per tree")
    parser.add_argument("--draws", type=int, default=15, help="timed draws per process")
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args(argv)
    data = _datasets.splits("diamonds", seed=0)
    model, _ = tfp_gauss.fit_gaussianization_flow(
        data["train_std"], validation_data=data["val_std"], steps=args.steps, seed=0,
        verbose=0, architecture="coupling")
    trees = {"before": pathlib.Path(args.before).resolve(), "this tree": ROOT}
    results = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        model_file = os.path.join(tmp, "diamonds_coupling.keras")
        model.save(model_file)
        for repeat in range(args.repeats):
            for name in (list(trees) if repeat % 2 == 0 else list(trees)[::-1]):
                results[name].append(_child(trees[name], model_file, args.draws))
    for name, runs in results.items():
        medians = [np.median(r["seconds"]) for r in runs]
        error = np.max([r["error"] for r in runs], axis=0)
        print(f"{name}: sample(10000) median {np.median(medians):.3f} s (per process "
              f"{np.round(medians, 3)}, fastest draw {min(min(r['seconds']) for r in runs):.3f} s);"
              f" round-trip |z - G(G^-1(z))| median {error[0]:.1e}, 99th percentile "
              f"{error[1]:.1e}, max {error[2]:.1e}")


if __name__ == "__main__":
    main()
