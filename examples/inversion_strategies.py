"""Inverting the mixture-CDF marginal: bisection, Newton, and the safeguarded hybrid.

The inverse x = T^{-1}(z) of MixtureGaussianCDF has no closed form. For the
reference bimodal marginal (6 components, EM fit) this script compares, on a
grid of 2001 targets z in [-8, 8] (float64):

1. iterations to tolerance (|x - x*| <= 1e-10 (1 + |x*|)) of plain bisection in
   the bracket [min_k(mu_k + sigma_k z), max_k(mu_k + sigma_k z)], plain Newton
   from the moment-matched Gaussian start, and tfp_gauss's bracketed,
   safeguarded Newton started from its table of T at mu_k + {-2, 0, 2} sigma_k
   (used for a few elements per dimension) or from a cubic Hermite table of
   the inverse at 64 nodes (used for many: the table costs 64 solves per
   dimension);
2. the gradient dx/dtheta: tfp_gauss's implicit-function gradient against
   central finite differences, and against autodiff through an unrolled loop of
   n Newton steps, which is only right once the loop has converged (and costs
   memory proportional to n).

Saves one figure with both comparisons.

    python examples/inversion_strategies.py [--out FIGURE.png]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfp_gauss.bijectors import MixtureGaussianCDF  # noqa: E402
from tfp_gauss.math import mixture_cdf  # noqa: E402
from tfp_gauss.math import root_finding  # noqa: E402

MAX_ITERS = 200

# T(x) and log T'(x), compiled once per marginal: the plain bisection and Newton
# baselines below call it MAX_ITERS times from Python.
transform_value = tf.function(mixture_cdf.mixture_cdf_value)


# Figures go to examples/figures/ by default, not into the current directory.
FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures")


def bimodal_marginal():
    """The reference notebook's marginal: 6-component EM fit of a bimodal sample."""
    rng = np.random.default_rng(13)
    x = np.concatenate([rng.normal(-2.0, 0.5, 3000), rng.normal(1.5, 0.8, 3000)])[:, None]
    return MixtureGaussianCDF.from_data(x, n_components=6)


def separated_marginal():
    """Narrow, well-separated modes: T is nearly flat between them (hard for Newton)."""
    return MixtureGaussianCDF(np.zeros((1, 3)), np.array([[-8.0, 0.0, 9.0]]),
                              np.array([[0.2, 0.3, 0.25]]))


def iterations_to_tolerance(path, x_star):
    """Iterations after which the iterate stays within tolerance of the root."""
    path = np.asarray(path).reshape(len(path), -1)
    x_star = np.asarray(x_star).ravel()
    with np.errstate(invalid="ignore"):
        ok = np.abs(path - x_star) <= 1e-10 * (1.0 + np.abs(x_star))
    # index of the last iterate outside the tolerance, + 1 (iterations are 1-based)
    last_bad = len(ok) - 1 - np.argmax(~ok[::-1], axis=0)
    return np.where(ok[-1], np.where(ok.all(0), 1, last_bad + 2), MAX_ITERS)


def bisection_path(params, z):
    lower, upper, _, _ = (t.numpy() for t in mixture_cdf.anchor_start(z, *params))
    path = []
    for _ in range(MAX_ITERS):
        mid = 0.5 * (lower + upper)
        value = transform_value(tf.constant(mid), *params)[0].numpy()
        lower = np.where(value < z.numpy(), mid, lower)
        upper = np.where(value >= z.numpy(), mid, upper)
        path.append(0.5 * (lower + upper))
    return np.array(path)


def newton_path(params, z):
    logits, locs, scales = (p.numpy() for p in params)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    mean = (w * locs).sum(-1)
    sd = np.sqrt((w * (scales**2 + locs**2)).sum(-1) - mean**2)
    x = mean + sd * z.numpy()
    path = []
    for _ in range(MAX_ITERS):
        value, log_slope = (t.numpy() for t in transform_value(tf.constant(x), *params))
        with np.errstate(over="ignore", invalid="ignore"):
            x = x - (value - z.numpy()) * np.exp(-log_slope)
        path.append(x)
    return np.array(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(FIGURES, "inversion_strategies.png"),
                        help="PNG to write (default: examples/figures/inversion_strategies.png)")
    parser.add_argument("--targets", type=int, default=2001)
    args = parser.parse_args(argv)

    z = tf.constant(np.linspace(-8, 8, args.targets)[:, None])
    results = {}
    for label, marginal in (("reference bimodal", bimodal_marginal()),
                            ("separated modes", separated_marginal())):
        p = tuple(tf.constant(t) for t in (marginal.logits, marginal.locs, marginal.scales))
        x_star = marginal.inverse(z).numpy()
        lower, upper, initial, scale = mixture_cdf.anchor_start(z, *p)
        hybrid_iters = root_finding.bracketed_newton(
            mixture_cdf.mixture_cdf_value, z, lower, upper, initial, p,
            x_scale=scale).num_iterations
        lower, upper, initial, scale, _ = mixture_cdf.inverse_start(z, *p, use_grid=True)
        table_iters = root_finding.bracketed_newton(
            mixture_cdf.mixture_cdf_value, z, lower, upper, initial, p,
            x_scale=scale).num_iterations
        results[label] = {
            "bisection": iterations_to_tolerance(bisection_path(p, z), x_star),
            "Newton (no safeguard)": iterations_to_tolerance(newton_path(p, z), x_star),
            "bracketed Newton, anchor start": hybrid_iters.numpy().ravel(),
            "bracketed Newton, Hermite-table start": table_iters.numpy().ravel(),
        }
        for name, it in results[label].items():
            done = it < MAX_ITERS
            print(f"{label:18s} {name:30s} iterations: mean {it[done].mean():6.2f}, "
                  f"max {it[done].max():3d}; not converged in {MAX_ITERS}: {int((~done).sum())}")

    b = bimodal_marginal()
    params = tuple(tf.constant(p) for p in (b.logits, b.locs, b.scales))

    # Gradient of sum(sin(x)) w.r.t. the component means, at 9 targets.
    z9 = tf.constant(np.linspace(-4, 4, 9)[:, None])
    locs = tf.Variable(params[1])

    def loss_implicit():
        return tf.reduce_sum(tf.sin(MixtureGaussianCDF(params[0], locs, params[2]).inverse(z9)))

    with tf.GradientTape() as tape:
        value = loss_implicit()
    g_implicit = tape.gradient(value, locs).numpy()
    h = 1e-6
    g_fd = np.zeros_like(g_implicit)
    base = locs.numpy()
    for idx in np.ndindex(*base.shape):
        for sign in (1, -1):
            shifted = base.copy()
            shifted[idx] += sign * h
            locs.assign(shifted)
            g_fd[idx] += sign * loss_implicit().numpy() / (2 * h)
    locs.assign(base)

    def loss_unrolled(n_steps):
        x = tf.constant(MixtureGaussianCDF(*params).inverse(z9).numpy() + 0.5)  # a start near
        for _ in range(n_steps):
            value, log_slope = mixture_cdf.mixture_cdf_transform(x, params[0], locs, params[2])
            x = x - (value - z9) * tf.exp(-log_slope)
        return tf.reduce_sum(tf.sin(x))

    unrolled_err = []
    depths = list(range(0, 9))
    for n in depths:
        with tf.GradientTape() as tape:
            value = loss_unrolled(n)
        g = tape.gradient(value, locs)
        g = np.zeros_like(g_fd) if g is None else g.numpy()
        unrolled_err.append(np.abs(g - g_fd).max() / np.abs(g_fd).max())
    implicit_err = np.abs(g_implicit - g_fd).max() / np.abs(g_fd).max()
    print(f"implicit gradient vs finite differences: max relative error {implicit_err:.2e}")
    print("unrolled-loop gradient error by depth: "
          + ", ".join(f"{n}: {e:.1e}" for n, e in zip(depths, unrolled_err)))

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2))
    bins = np.arange(0, 62)
    for a, (label, res) in zip(axes[:2], results.items()):
        for name, it in res.items():
            a.hist(np.minimum(it, 60), bins=bins, histtype="step", lw=2, label=name)
        a.set(xlabel="iterations to tolerance 1e-10 (60 = 60 or more / never)",
              ylabel="targets", title=f"{label}: {args.targets} targets, |z| <= 8",
              yscale="log")
        a.legend(fontsize=8)
    c = axes[2]
    c.semilogy(depths, unrolled_err, "o-", label="autodiff through n unrolled Newton steps")
    c.axhline(max(implicit_err, 1e-16), color="tab:green", ls="--",
              label="implicit-function gradient (tfp_gauss)")
    c.set(xlabel="unrolled steps n", ylabel="max relative error vs finite differences",
          title="gradient of the inverse w.r.t. component means")
    c.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"saved {args.out}")
    return dict(iterations={label: {k: v.tolist() for k, v in res.items()}
                            for label, res in results.items()},
                implicit_error=float(implicit_err), unrolled_error=unrolled_err)


if __name__ == "__main__":
    main()
