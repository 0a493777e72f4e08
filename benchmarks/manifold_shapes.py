"""Is manifold8's gap to the GaussianMixture the knot's topology? Closed against open curves.

``manifold8`` (``_datasets.manifold``) is a trefoil knot, a closed curve, in
8-D with isotropic noise; the default fit trails a full-covariance
GaussianMixture on it. A diffeomorphism onto one Gaussian must squeeze a
closed loop's hole, so the gap could be topological. This script builds the
same kind of data from open curves of the same construction (the same
rotation into 8-D and relative noise): a helix of 1.5 turns and the trefoil
cut to 80 % of its parameter range. For each it fits the default
``fit_gaussianization_flow(train, validation_data=val, seed=0)`` and
GaussianMixtures of 8 / 16 / 32 / 64 full components on the standardized
70 % training rows, and prints mean log-likelihoods on the 10 % validation
rows (standardized units; the test rows are not read). Not run by
``run_all.py``; ~2 min per curve on 2 cores.

    python benchmarks/manifold_shapes.py            # writes results/manifold_shapes.md
"""

import argparse
import time

import _common
import _datasets
import numpy as np
from sklearn.mixture import GaussianMixture

import tfp_gauss

CURVES = {
    "trefoil": lambda rng, n: _datasets.trefoil(rng.uniform(0.0, 2.0 * np.pi, n)),  # closed
    "helix": lambda rng, n: _helix(rng.uniform(0.0, 3.0 * np.pi, n)),  # open, 1.5 turns
    "open trefoil": lambda rng, n: _datasets.trefoil(rng.uniform(0.0, 1.6 * np.pi, n)),
}


def _helix(t):
    return np.stack([2.0 * np.cos(t), 2.0 * np.sin(t), 0.6 * t], axis=1)


def data(kind):
    """``_datasets.manifold``'s construction around ``CURVES[kind]``: standardized train/val."""
    x = _datasets.manifold(np.random.default_rng(0), curve=CURVES[kind])
    parts = _datasets.split_standardized(x, seed=0)
    return parts["train_std"], parts["val_std"]


def run(kinds=CURVES):
    rows = {}
    for kind in kinds:
        train, val = data(kind)
        start = time.perf_counter()
        model, history = tfp_gauss.fit_gaussianization_flow(train, validation_data=val, seed=0,
                                                            verbose=0)
        flow = float(np.mean(model.log_prob(val)))
        seconds = time.perf_counter() - start
        gmm = {k: float(GaussianMixture(k, covariance_type="full", random_state=0,
                                        max_iter=500).fit(train).score(val))
               for k in (8, 16, 32, 64)}
        best_k = max(gmm, key=gmm.get)
        rows[kind] = dict(flow=flow, best_step=history.best_step, fit_seconds=seconds,
                          gmm=gmm, gmm_best_k=best_k, gap=flow - gmm[best_k])
        print(kind, rows[kind], flush=True)
    return dict(curves=rows)


def markdown(res):
    lines = ["### Closed against open curves in 8-D (`benchmarks/manifold_shapes.py`; validation "
             "mean log-likelihood, standardized units, test not read)", "",
             "| curve | tfp_gauss default | best GaussianMixture (full) | flow - mixture |",
             "|---|---:|---:|---:|"]
    for kind, r in res["curves"].items():
        gmm = {int(k): v for k, v in r["gmm"].items()}  # (JSON keys are strings)
        lines.append(f"| {kind} | {r['flow']:.3f} (best step {r['best_step']}) | "
                     f"{gmm[int(r['gmm_best_k'])]:.3f} "
                     f"({r['gmm_best_k']} components) | {r['gap']:+.3f} |")
    lines += ["", "The trefoil is `manifold8`'s curve (closed); the helix (1.5 turns) and the "
              "trefoil cut to 80 % of its length are open, built the same way (rotated into "
              "8-D, noise 5 % of the curve's spread, 20,000 rows, 70/10/20). The default fit "
              "trails the mixture on the open curves too (one seed), so most of its deficit "
              "on manifold8 is not the loop's topology but the thin tube itself, whose "
              "straight pieces a full-covariance mixture fits well (Gaussian noise around a "
              "line is a Gaussian); the helix's smaller gap leaves room for a part due to "
              "the loop."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", nargs="+", default=list(CURVES), choices=list(CURVES))
    args = parser.parse_args(argv)
    # (the committed result is the run of every curve)
    return _common.report("manifold_shapes", run(args.curves), markdown,
                          write=list(args.curves) == list(CURVES))


if __name__ == "__main__":
    main()
