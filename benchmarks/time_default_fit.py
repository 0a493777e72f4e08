"""Wall time of the default fit against the previous default recipe, on two-moons.

The previous default: every one of 3000 steps trained, warm start from an
8-layer greedy fit with no held-out selection. The new default: 10 % held
out, greedy depth and scale floor chosen on it, best-validation weights,
early stop. Both in one process, alternating, after a warm-up fit of each
(so both pay no first-call compilation); prints median seconds and the
held-out log-likelihood each returns on the same 600 test rows.

    python benchmarks/time_default_fit.py [--repeats 2]
"""

import argparse
import time

import _common  # noqa: F401  (quiet TensorFlow start-up)
import _datasets
import numpy as np

import tfp_gauss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
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
