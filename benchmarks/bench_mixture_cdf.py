"""MixtureGaussianCDF throughput and root-find statistics.

N = 100k rows, D = 10, K = 8, float32: forward + log-det and inverse, each
eager, in ``tf.function`` and compiled with XLA; mean and maximum Newton
iterations per element; round-trip error. Target: the XLA inverse costs at
most 8x the XLA forward + log-det.

In graphs the inverse starts from a cubic Hermite table of itself (64 nodes
per dimension) and streams the elements through a working set, so its cost
follows the mean number of Newton iterations, not the maximum.

    python benchmarks/bench_mixture_cdf.py [--quick]
"""

import argparse

import _common  # noqa: F401  (sets TF log level first)
import numpy as np
import tensorflow as tf

from tfp_gauss.bijectors import MixtureGaussianCDF
from tfp_gauss.math import mixture_cdf
from tfp_gauss.math import root_finding


def run(n=100_000, d=10, k=8, repeats=5):
    rng = np.random.default_rng(0)
    # A realistic layer: EM fit to a skewed, multimodal sample.
    data = np.concatenate([rng.gamma(2.0, 1.0, (n // 2, d)),
                           rng.normal(-3.0, 0.7, (n - n // 2, d))]).astype(np.float32)
    b = MixtureGaussianCDF.from_data(data[:20_000], n_components=k)
    x = tf.constant(data)
    z = tf.constant(rng.standard_normal((n, d)).astype(np.float32))

    def forward_and_log_det(x):
        return b.forward(x), b.forward_log_det_jacobian(x)

    def inverse(z):
        return b.inverse(z)

    modes = {"eager": lambda f: f, "tf.function": tf.function,
             "XLA": lambda f: tf.function(f, jit_compile=True)}
    rows = {}
    for mode, wrap in modes.items():
        reps = max(1, repeats // 2) if mode == "eager" else repeats
        t_fwd = _common.time_call(wrap(forward_and_log_det), x, repeats=reps)
        t_inv = _common.time_call(wrap(inverse), z, repeats=reps)
        rows[mode] = dict(forward_log_det_seconds=t_fwd, inverse_seconds=t_inv,
                          forward_log_det_elements_per_s=n * d / t_fwd,
                          inverse_elements_per_s=n * d / t_inv,
                          inverse_over_forward=t_inv / t_fwd)

    logits, locs, scales = (tf.convert_to_tensor(p) for p in (b.logits, b.locs, b.scales))
    params = (logits, locs, scales)

    def iterations(start):
        # Newton iterations per element from the anchor table alone, and from
        # the start the bijector uses here (the Hermite table of the inverse).
        def solve():
            lower, upper, initial, x_scale, *options = start(z, *params)
            return root_finding.bracketed_newton(
                mixture_cdf.mixture_cdf_transform, z, lower, upper, initial, params,
                x_scale=x_scale, **(options[0] if options else {})).num_iterations
        return tf.function(solve, jit_compile=True)().numpy()

    iters = iterations(mixture_cdf.inverse_start)
    anchor_iters = iterations(mixture_cdf.anchor_start)
    x_back = b.inverse(z.numpy()).numpy()
    z_back = b.forward(x_back).numpy()
    zn = z.numpy()
    rt = np.abs(z_back - zn) / np.maximum(1.0, np.abs(zn))
    grid = np.repeat(np.linspace(-8, 8, 2001, dtype=np.float32)[:, None], d, axis=1)
    rt_grid = np.abs(b.forward(b.inverse(grid).numpy()).numpy() - grid) / np.maximum(1, np.abs(grid))
    return dict(
        config=dict(n=n, d=d, k=k, dtype="float32", repeats=repeats),
        modes=rows,
        newton_iterations=dict(mean=float(iters.mean()), max=int(iters.max()),
                               histogram=np.bincount(iters.ravel()).tolist()),
        newton_iterations_anchor_start=dict(
            mean=float(anchor_iters.mean()), max=int(anchor_iters.max()),
            histogram=np.bincount(anchor_iters.ravel()).tolist()),
        round_trip=dict(max_rel_error_normal_sample=float(rt.max()),
                        max_rel_error_grid_abs_z_le_8=float(rt_grid.max())),
        target=dict(xla_inverse_over_forward_max=8.0,
                    met=rows["XLA"]["inverse_over_forward"] <= 8.0),
    )


def markdown(res):
    c = res["config"]
    lines = [f"### MixtureGaussianCDF (N={c['n']:,}, D={c['d']}, K={c['k']}, float32)", "",
             "| mode | forward+log-det (elem/s) | inverse (elem/s) | inverse / forward |",
             "|---|---:|---:|---:|"]
    for mode, r in res["modes"].items():
        lines.append(f"| {mode} | {r['forward_log_det_elements_per_s']:.3g} | "
                     f"{r['inverse_elements_per_s']:.3g} | {r['inverse_over_forward']:.2f}x |")
    it, rt = res["newton_iterations"], res["round_trip"]
    anchor = res["newton_iterations_anchor_start"]
    lines += ["", f"Newton iterations per element: mean {it['mean']:.2f}, max {it['max']} "
              f"(from the anchor table alone: mean {anchor['mean']:.2f}, max {anchor['max']}). "
              f"Round trip z -> x -> z: max relative error {rt['max_rel_error_normal_sample']:.2e} "
              f"(N(0,1) sample), {rt['max_rel_error_grid_abs_z_le_8']:.2e} (|z| <= 8 grid). "
              f"Target XLA inverse <= 8x XLA forward+log-det: "
              f"{'met' if res['target']['met'] else 'NOT met'} "
              f"({res['modes']['XLA']['inverse_over_forward']:.2f}x)."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for smoke tests")
    args = parser.parse_args(argv)
    res = run(n=2_000, repeats=1) if args.quick else run()
    return _common.report("mixture_cdf", res, markdown, write=not args.quick)


if __name__ == "__main__":
    main()
