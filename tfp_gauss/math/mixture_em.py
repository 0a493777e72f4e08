"""Maximum-likelihood fits of one-dimensional Gaussian mixtures, many at once.

``fit_mixture_em`` fits an independent K-component mixture to every column of
an ``[N, D]`` matrix with expectation-maximisation, vectorised over the columns
and compiled with XLA: all D fits advance together in one ``tf.while_loop``,
and a column stops updating once its mean log-likelihood has converged.
"""

import numpy as np
import tensorflow as tf

from tfp_gauss import _validation
from tfp_gauss.math import normal

__all__ = ["fit_mixture_em", "mixture_log_likelihood"]



def _log_joint(x, log_weights, locs, scales):
    """``log w_k + log N(x; mu_k, sigma_k)`` as ``[N, D, K]``."""
    dtype = x.dtype.as_numpy_dtype
    u = (x[:, :, tf.newaxis] - locs) / scales
    return log_weights - 0.5 * tf.square(u) - tf.math.log(scales) - dtype(normal.HALF_LOG_2PI)


def mixture_log_likelihood(x, log_weights, locs, scales):
    """Per-column mean log-likelihood ``[D]`` of ``x [N, D]`` under ``[D, K]`` mixtures."""
    return tf.reduce_mean(
        tf.reduce_logsumexp(_log_joint(x, log_weights, locs, scales), axis=-1), axis=0)


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def _em_loop(x, log_weights, locs, scales, min_scale, max_scale, max_iterations, tol, tail_weight):
    dtype = x.dtype.as_numpy_dtype
    n = tf.cast(tf.shape(x)[0], x.dtype)
    tiny = dtype(np.finfo(dtype).tiny) * 1e3
    # A component may not vanish: its weight stays above eps so that the log
    # weight handed to a trainable flow is finite.
    min_weight = dtype(np.finfo(dtype).eps)
    xk = x[:, :, tf.newaxis]
    min_var = tf.square(min_scale)  # [D, K]: a floor per component

    def step(log_weights, locs, scales):
        log_joint = _log_joint(x, log_weights, locs, scales)
        log_norm = tf.reduce_logsumexp(log_joint, axis=-1, keepdims=True)
        loglik = tf.reduce_mean(log_norm[..., 0], axis=0)
        resp = tf.exp(log_joint - log_norm)
        nk = tf.reduce_sum(resp, axis=0)
        safe_nk = tf.maximum(nk, tiny)
        new_locs = tf.reduce_sum(resp * xk, axis=0) / safe_nk
        new_locs = tf.where(nk > tiny, new_locs, locs)
        var = tf.reduce_sum(resp * tf.square(xk - new_locs), axis=0) / safe_nk
        new_scales = tf.minimum(tf.sqrt(tf.maximum(var, 0.0) + min_var), max_scale)
        new_scales = tf.where(nk > tiny, new_scales, scales)
        weights = tf.maximum(nk / n, min_weight)
        weights = weights / tf.reduce_sum(weights, -1, keepdims=True)
        # A floor on the last component's weight (0: none) is the constrained
        # M-step: the last weight is max(its EM value, floor), the others keep
        # their EM proportions in what is left.
        last = tf.maximum(weights[:, -1:], tail_weight)
        rest = weights[:, :-1]
        rest = rest * (1.0 - last) / tf.maximum(tf.reduce_sum(rest, -1, keepdims=True), tiny)
        weights = tf.where(tail_weight > 0, tf.concat([rest, last], axis=-1), weights)
        new_log_weights = tf.math.log(weights)
        return loglik, new_log_weights, new_locs, new_scales

    d = tf.shape(x)[1]
    init = (tf.constant(0), log_weights, locs, scales,
            tf.fill([d], dtype(-np.inf)), tf.zeros([d], tf.bool), tf.zeros([d], tf.int32))

    def cond(i, lw, mu, sd, prev, done, iters):
        return (i < max_iterations) & tf.logical_not(tf.reduce_all(done))

    def body(i, lw, mu, sd, prev, done, iters):
        loglik, lw_new, mu_new, sd_new = step(lw, mu, sd)
        active = tf.logical_not(done)
        converged = tf.abs(loglik - prev) <= tol * (1.0 + tf.abs(loglik))
        keep = active[:, tf.newaxis]
        lw = tf.where(keep, lw_new, lw)
        mu = tf.where(keep, mu_new, mu)
        sd = tf.where(keep, sd_new, sd)
        prev = tf.where(active, loglik, prev)
        iters += tf.cast(active, tf.int32)
        return i + 1, lw, mu, sd, prev, done | converged, iters

    _, lw, mu, sd, _, done, iters = tf.while_loop(cond, body, init)
    return lw, mu, sd, mixture_log_likelihood(x, lw, mu, sd), iters, done


def _initial_parameters(x_sorted, n_components, rng, distinct, n_free):
    """Quantile initialisation: component k starts at quantile (k + 1/2) / K.

    A column with at most ``n_free`` distinct values (``distinct [D]``;
    ``n_free`` is ``K``, or ``K - 1`` when the last component becomes the tail
    component) starts with one of the first ``n_free`` components on each
    value (quantiles alone would miss a rare one) and the rest at quantiles,
    without jitter: components on the same value are then exact copies,
    which EM keeps equal (equal responsibilities, equal updates), so the
    column's fit is a mixture over its distinct values written with ``K``
    components.
    """
    n, _ = x_sorted.shape
    levels = (np.arange(n_components) + 0.5) / n_components
    idx = np.clip(np.round(levels * (n - 1)).astype(int), 0, n - 1)
    locs = x_sorted[idx].T  # [D, K]
    coded = distinct <= n_free
    for j in np.flatnonzero(coded):
        values = np.unique(x_sorted[:, j])
        extra = n_free - values.size
        extra_idx = np.round((np.arange(extra) + 0.5) / max(extra, 1) * (n - 1)).astype(int)
        locs[j, :n_free] = np.sort(np.concatenate([values, x_sorted[extra_idx, j]]))
    std = x_sorted.std(axis=0)
    # Width comparable to the spacing of the starting means; the jitter breaks
    # ties between equal quantiles (heavily discretised data), which EM could
    # otherwise never separate.
    scales = np.repeat((std * 2.0 / n_components)[:, None], n_components, axis=1)
    jitter = 1e-2 * scales * rng.standard_normal(locs.shape)
    locs = locs + np.where(coded[:, None], 0.0, jitter)
    return locs, scales, std


def fit_mixture_em(x, n_components, *, seed=None, max_iterations=500,
                   tol=None, min_scale_ratio=1e-3, tail_scale_ratio=None, tail_weight=0.0):
    """Fits a ``K``-component Gaussian mixture to every column of ``x``.

    Args:
      x: float ``np.ndarray`` of shape ``[N, D]`` (already validated: finite,
        float32 or float64). The fit runs in ``x``'s dtype.
      n_components: ``K``.
      seed: int or ``np.random.Generator`` seeding the small jitter of
        the quantile initialisation. ``None`` uses a fixed seed, so fits are
        reproducible.
      max_iterations: cap on EM iterations.
      tol: stop a column when its mean log-likelihood changes by less than
        ``tol * (1 + |loglik|)``; default ``1e-5`` (float32) or ``1e-7``
        (float64).
      min_scale_ratio: component scales are kept above this fraction of the
        column's standard deviation (a scalar, or one per column ``[D]``),
        so a component cannot collapse onto a repeated value and send the
        likelihood to infinity.
      tail_scale_ratio: if given (and ``K >= 2``), the last component is a
        *tail component*: it starts at the column's mean, and its scale is
        fixed at this many standard deviations of the column (or at the
        others' floor, ``min_scale_ratio``, if that is wider); EM fits its
        weight and location like any other's. Far from the data the widest
        component decides the map ``Phi^-1(F(x))``'s slope, ``1/sigma``.
        With ``sigma`` one standard deviation, a point past the data moves
        out by about as many standard deviations as it came in with, layer
        after layer (as long as no free component is wider: EM may make one
        so on skewed columns). Narrower widest components compound into an
        explosive forward tail (a point just past the training range scoring
        -1e7 after 28 layers), wider ones into an explosive inverse (samples at
        1e6 standard deviations). A floor alone, which EM then widens, is
        the second case.
      tail_weight: a floor on the tail component's weight (needs
        ``tail_scale_ratio``); the M-step maximises the likelihood subject
        to it (the others keep their EM proportions of the rest). ``0``: EM
        alone, which may starve the tail component.

    Returns:
      dict of float arrays: ``log_weights``, ``locs``, ``scales`` (each
      ``[D, K]``), ``log_likelihood`` ``[D]`` (mean per sample), ``iterations``
      ``[D]`` and ``converged`` ``[D]``.

    A column with fewer distinct values than ``K`` (a binary or coded
    column) gets a mixture over its values: its components (but the tail
    component) start one on each value and the rest in proportion to the
    counts, and components on the same value stay
    copies of each other (the density is that of a mixture with one component
    per value, each as narrow as the scale floor allows).

    Raises:
      ValueError: a column is constant.
    """
    x = np.asarray(x)
    dtype = x.dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"fit_mixture_em needs float32/float64 data; got {dtype}.")
    n_components = int(n_components)
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1; got {n_components}.")
    x_sorted = np.sort(x, axis=0)
    distinct = 1 + np.count_nonzero(np.diff(x_sorted, axis=0) > 0, axis=0)
    constant = np.flatnonzero(distinct < 2)
    if constant.size:
        raise ValueError(
            f"Cannot fit a mixture to constant column(s) {constant.tolist()} (value(s) "
            f"{x_sorted[0, constant].tolist()}): a constant has no density. Drop them first.")
    try:
        tail_weight = float(tail_weight)
    except (TypeError, ValueError):
        raise TypeError(f"tail_weight must be a number in [0, 1); got {tail_weight!r}.") from None
    # the others' weights must stay representable next to the tail's (eps each)
    top = 1.0 - n_components * float(np.finfo(dtype).eps)
    if not 0.0 <= tail_weight <= top:
        raise ValueError(f"tail_weight must be in [0, 1) (at most {top!r} in {dtype.name}); "
                         f"got {tail_weight!r}.")
    tail = tail_scale_ratio is not None and n_components >= 2
    if tail_weight > 0 and not tail:
        raise ValueError("tail_weight needs a tail component: pass tail_scale_ratio and "
                         f"n_components >= 2; got tail_scale_ratio={tail_scale_ratio!r}, "
                         f"n_components={n_components}.")
    if tail_scale_ratio is not None:
        try:
            ok = bool(np.isfinite(float(tail_scale_ratio)) and float(tail_scale_ratio) > 0)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"tail_scale_ratio must be a finite number > 0; got "
                             f"{tail_scale_ratio!r}.")
    rng = _validation.as_rng(seed)
    locs, scales, std = _initial_parameters(x_sorted, n_components, rng, distinct,
                                            n_components - int(tail))
    min_scale = np.broadcast_to(np.asarray(min_scale_ratio) * std, std.shape)
    min_scale = np.repeat(min_scale[:, None], n_components, axis=1)
    max_scale = np.full(min_scale.shape, np.inf)  # no cap, except the tail's fixed scale
    if tail:
        # Fixed at the ratio, or at the others' floor if that is wider (a
        # floor above it would make every component wider than the tail's).
        tail_scale = np.maximum(tail_scale_ratio * std, min_scale[:, -1])
        locs[:, -1] = x.mean(axis=0)
        scales[:, -1] = min_scale[:, -1] = max_scale[:, -1] = tail_scale
    if tol is None:
        tol = 1e-5 if dtype == np.float32 else 1e-7
    log_weights = np.full_like(locs, -np.log(n_components))
    out = _em_loop(
        tf.constant(x), tf.constant(log_weights, dtype), tf.constant(locs, dtype),
        tf.constant(scales, dtype), tf.constant(min_scale, dtype), tf.constant(max_scale, dtype),
        tf.constant(max_iterations, tf.int32), tf.constant(tol, dtype),
        tf.constant(tail_weight, dtype))
    lw, mu, sd, loglik, iters, done = (t.numpy() for t in out)
    return dict(log_weights=lw, locs=mu, scales=sd, log_likelihood=loglik,
                iterations=iters, converged=done)
