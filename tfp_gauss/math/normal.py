"""Log-space standard-normal CDF and its inverse, accurate far into the tails.

Everything here works on the *lower* tail: arguments ``t <= 0`` and log
probabilities ``y <= log(1/2)``. Callers reach the upper tail by symmetry,
``Phi(t) = 1 - Phi(-t)``, which is what keeps ``F`` from rounding to 1 in the
upper tail.

The building block is the scaled complementary error function: for ``t <= 0``

    Phi(t) = erfc(-t / sqrt 2) / 2 = exp(-t^2 / 2) * erfcx(-t / sqrt 2) / 2,

so ``log Phi(t) = -t^2/2 + log erfcx(-t/sqrt 2) - log 2`` has no cancellation and
no underflow until ``t^2`` itself overflows, and the hazard (inverse Mills
ratio) ``h(t) = phi(t) / Phi(t) = sqrt(2/pi) / erfcx(-t/sqrt 2)`` comes out of
the same evaluation. ``tfp.math.erfcx`` is accurate to a few ulps in float32
and float64 for non-negative arguments, the only ones used here.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = [
    "log_ndtr_lower",
    "log_ndtr_pair",
    "ndtri_exp_lower",
]

_LOG_2 = np.log(2.0)
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
_HALF_LOG_2_OVER_PI = 0.5 * np.log(2.0 / np.pi)
_INV_SQRT2 = 1.0 / np.sqrt(2.0)


def log_ndtr_lower(t):
    """``(log Phi(t), log h(t))`` for ``t <= 0``, with ``h = phi / Phi``.

    Args:
      t: float tensor, every element ``<= 0`` (not checked; positive values give
        garbage).

    Returns:
      A pair of tensors shaped like ``t``: ``log Phi(t)`` and the log hazard
      ``log(phi(t) / Phi(t))``.
    """
    dtype = t.dtype.as_numpy_dtype
    log_erfcx = tf.math.log(tfp.math.erfcx(-t * dtype(_INV_SQRT2)))
    log_phi_cdf = -0.5 * tf.square(t) + log_erfcx - dtype(_LOG_2)
    log_hazard = dtype(_HALF_LOG_2_OVER_PI) - log_erfcx
    return log_phi_cdf, log_hazard


def log_ndtr_pair(u):
    """Log CDF, log survival and both log hazards of the standard normal.

    Only the tail that lies below zero is evaluated by ``erfcx``; the other
    follows from ``log(1 - Phi(a)) = log1p(-exp(log Phi(a)))``, which is
    accurate because ``Phi(a) <= 1/2`` there.

    Args:
      u: float tensor of any shape.

    Returns:
      ``(log Phi(u), log Phi(-u), log h(u), log h(-u))``, each shaped like
      ``u``, where ``h(t) = phi(t) / Phi(t)``.
    """
    dtype = u.dtype.as_numpy_dtype
    neg = u <= 0
    # `where` rather than `-abs(u)`: the gradient of abs is 0 at u = 0.
    a = tf.where(neg, u, -u)
    log_cdf_a, log_hazard_a = log_ndtr_lower(a)
    log_cdf_b = tf.math.log1p(-tf.exp(log_cdf_a))
    log_hazard_b = -0.5 * tf.square(a) - dtype(_HALF_LOG_2PI) - log_cdf_b
    log_cdf = tf.where(neg, log_cdf_a, log_cdf_b)
    log_sf = tf.where(neg, log_cdf_b, log_cdf_a)
    log_hazard = tf.where(neg, log_hazard_a, log_hazard_b)
    log_hazard_neg = tf.where(neg, log_hazard_b, log_hazard_a)
    return log_cdf, log_sf, log_hazard, log_hazard_neg


def _ndtri_exp_lower_value(y):
    """Solves ``log Phi(t) = y`` for ``t <= 0`` (``y <= log 1/2``), no gradient."""
    np_dtype = y.dtype.as_numpy_dtype
    # exp(y) is a normal float down to ~-708 (float64) or ~-87 (float32); below
    # that the start comes from the asymptotic expansion
    # log Phi(t) ~ -t^2/2 - log(-t) - log(2 pi)/2, i.e. t^2 ~ q - log q - log 2pi
    # with q = -2y, good to O(log(q) / q^2) relatively.
    threshold = np_dtype(-700.0 if y.dtype == tf.float64 else -80.0)
    body = y > threshold
    t_body = tf.math.ndtri(tf.exp(tf.where(body, y, np_dtype(-1.0))))
    q = -2.0 * tf.where(body, np_dtype(-threshold), y)
    t_tail = -tf.sqrt(q - tf.math.log(q) - np_dtype(np.log(2.0 * np.pi)))
    t = tf.where(body, t_body, t_tail)
    # Newton on log Phi(t) - y: the slope d log Phi / dt is the hazard h(t).
    # Two steps take either start to full precision in both dtypes.
    for _ in range(2):
        log_cdf, log_hazard = log_ndtr_lower(t)
        t = tf.minimum(t - (log_cdf - y) * tf.exp(-log_hazard), np_dtype(0.0))
    return tf.where(tf.equal(y, -np.inf), np_dtype(-np.inf), t)


@tf.custom_gradient
def ndtri_exp_lower(y):
    """Inverse of the log normal CDF on the lower half: ``t = Phi^{-1}(exp(y))``.

    Accurate in relative terms for every ``y <= log(1/2)`` down to ``-inf``
    (float32: beyond ``exp``'s range, where ``ndtri(exp(y))`` would return
    ``-inf``). The gradient is the closed form ``dt/dy = Phi(t) / phi(t)``;
    the Newton polish is never differentiated.

    Args:
      y: float tensor with every element ``<= log(1/2)``.

    Returns:
      ``t <= 0`` shaped like ``y``.
    """
    t = _ndtri_exp_lower_value(y)

    def grad(dt):
        _, log_hazard = log_ndtr_lower(t)
        return dt * tf.exp(-log_hazard)

    return t, grad
