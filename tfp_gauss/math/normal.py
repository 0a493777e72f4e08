"""Log-space standard-normal CDF and its inverse, accurate far into the tails.

Everything here works on the *lower* tail: arguments ``t <= 0`` and log
probabilities ``y <= log(1/2)``. Callers reach the upper tail by symmetry,
``Phi(t) = 1 - Phi(-t)``, which is what keeps ``F`` from rounding to 1 in the
upper tail.

The building block is the scaled complementary error function
``erfcx(s) = exp(s^2) erfc(s)``: for ``t <= 0``

    Phi(t) = erfc(-t / sqrt 2) / 2 = exp(-t^2 / 2) * erfcx(-t / sqrt 2) / 2,

so ``log Phi(t) = -t^2/2 + log erfcx(-t/sqrt 2) - log 2`` has no cancellation and
no underflow until ``t^2`` itself overflows, and the hazard (inverse Mills
ratio) ``h(t) = phi(t) / Phi(t) = sqrt(2/pi) / erfcx(-t/sqrt 2)`` comes out of
the same evaluation. ``erfcx`` is evaluated only at non-negative arguments,
from the Chebyshev expansion of Shepherd & Laframboise (1981), "Chebyshev
approximation of (1 + 2x) exp(x^2) erfc x in 0 <= x < infinity", Math. Comp.
36(153), which is accurate to a few ulps in float32 and float64.
"""

import numpy as np
import tensorflow as tf

__all__ = ["erfcx_nonnegative_value", "log_ndtr_lower", "ndtri_exp_lower_value"]

_LOG_2 = np.log(2.0)
HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
INV_SQRT2 = 1.0 / np.sqrt(2.0)
_HALF_LOG_2_OVER_PI = 0.5 * np.log(2.0 / np.pi)


# Chebyshev coefficients c_0 ... c_30 of (1 + 2x) erfcx(x) in the variable
# y = (x - 3.75) / (x + 3.75), from Shepherd & Laframboise (1981), summed as
# c_0 + sum_{k>=1} c_k T_k(y).
_ERFCX_CHEBYSHEV = (
    1.177578934567401754080, -4.590054580646477331e-03, -8.4249133366517915584e-02,
    5.9209939998191890498e-02, -2.6658668435305752277e-02, 9.074997670705265094e-03,
    -2.413163540417608191e-03, 4.90775836525808632e-04, -6.9169733025012064e-05,
    4.139027986073010e-06, 7.74038306619849e-07, -2.18864010492344e-07,
    1.0764999465671e-08, 4.521959811218e-09, -7.75440020883e-10,
    -6.3180883409e-11, 2.8687950109e-11, 1.94558685e-13, -9.65469675e-13,
    3.2525481e-14, 3.33478119e-14, -1.864563e-15, -1.250795e-15, 7.4182e-17,
    5.0681e-17, -2.237e-18, -2.187e-18, 2.7e-20, 9.7e-20, 3e-21, -4e-21)


def erfcx_nonnegative_value(x):
    """``exp(x^2) erfc(x)`` for ``x >= 0`` (including ``+inf``), plain ops."""
    dtype = x.dtype.as_numpy_dtype
    finite_x = tf.where(tf.math.is_finite(x), x, dtype(1.0))
    y = (finite_x - dtype(3.75)) / (finite_x + dtype(3.75))
    two_y = y + y
    # Clenshaw recurrence b_k = 2 y b_{k+1} - b_{k+2} + c_k, value y b_1 - b_2 + c_0.
    b1 = tf.zeros_like(y)
    b2 = tf.zeros_like(y)
    # |c_k| < 1e-10 for k >= 15: float32 needs only the first 15 terms (the
    # rest change the value by < 1e-10 relative), float64 all 31.
    n_terms = 15 if x.dtype == tf.float32 else len(_ERFCX_CHEBYSHEV)
    for c in _ERFCX_CHEBYSHEV[n_terms - 1:0:-1]:
        b1, b2 = two_y * b1 - b2 + dtype(c), b1
    value = (y * b1 - b2 + dtype(_ERFCX_CHEBYSHEV[0])) / (dtype(1.0) + dtype(2.0) * finite_x)
    return tf.where(tf.equal(x, np.inf), dtype(0.0), value)


def log_ndtr_lower(t):
    """``(log Phi(t), log h(t))`` for ``t <= 0``, with ``h = phi / Phi``.

    Plain ops: its callers (the mixture transform, inside its own custom
    gradient) never differentiate it.

    Args:
      t: float tensor, every element ``<= 0`` (not checked; positive values give
        garbage).

    Returns:
      A pair of tensors shaped like ``t``: ``log Phi(t)`` and the log hazard
      ``log(phi(t) / Phi(t))``.
    """
    dtype = t.dtype.as_numpy_dtype
    log_erfcx = tf.math.log(erfcx_nonnegative_value(-t * dtype(INV_SQRT2)))
    log_phi_cdf = -0.5 * tf.square(t) + log_erfcx - dtype(_LOG_2)
    log_hazard = dtype(_HALF_LOG_2_OVER_PI) - log_erfcx
    return log_phi_cdf, log_hazard


# Wichura (1988), "Algorithm AS 241: the percentage points of the normal
# distribution", Applied Statistics 37(3): rational approximations of
# Phi^{-1}(p) with relative error ~1e-16. Coefficients in increasing degree.
_AS241_CENTRAL = (
    (3.3871328727963666080e0, 1.3314166789178437745e2, 1.9715909503065514427e3,
     1.3731693765509461125e4, 4.5921953931549871457e4, 6.7265770927008700853e4,
     3.3430575583588128105e4, 2.5090809287301226727e3),
    (1.0, 4.2313330701600911252e1, 6.8718700749205790830e2, 5.3941960214247511077e3,
     2.1213794301586595867e4, 3.9307895800092710610e4, 2.8729085735721942674e4,
     5.2264952788528545610e3))
_AS241_NEAR = (
    (1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0,
     3.64784832476320460504e0, 1.27045825245236838258e0, 2.41780725177450611770e-1,
     2.27238449892691845833e-2, 7.74545014278341407640e-4),
    (1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
     1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4,
     1.05075007164441684324e-9))
_AS241_FAR = (
    (6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0,
     2.96560571828504891230e-1, 2.65321895265761230930e-2, 1.24266094738807843860e-3,
     2.71155556874348757815e-5, 2.01033439929228813265e-7),
    (1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
     7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7,
     2.04426310338993978564e-15))


def _rational(coeffs, x):
    num, den = coeffs
    dtype = x.dtype.as_numpy_dtype
    p = tf.zeros_like(x) + dtype(num[-1])
    for c in num[-2::-1]:
        p = p * x + dtype(c)
    q = tf.zeros_like(x) + dtype(den[-1])
    for c in den[-2::-1]:
        q = q * x + dtype(c)
    return p / q


def _ndtri_exp_start(y):
    """AS 241 evaluated from ``log p`` (no ``exp`` underflow), asymptotic beyond.

    The tail branches of AS 241 only need ``r = sqrt(-log p)``, which is
    ``sqrt(-y)``; ``exp(y)`` is formed only in the central region, where it is
    at least 0.075. Below ``y = -700`` (past AS 241's design range) the start
    comes from the expansion ``log Phi(t) ~ -t^2/2 - log(-t) - log(2 pi)/2``,
    i.e. ``t^2 ~ q - log q - log 2 pi`` with ``q = -2y``.
    """
    dtype = y.dtype.as_numpy_dtype
    central = y > dtype(np.log(0.075))
    q = tf.exp(tf.where(central, y, dtype(-1.0))) - dtype(0.5)
    t_central = q * _rational(_AS241_CENTRAL, dtype(0.180625) - tf.square(q))
    far_limit = dtype(-700.0)
    in_range = y >= far_limit
    r = tf.sqrt(-tf.where(in_range & ~central, y, dtype(-1.0)))
    t_near = -_rational(_AS241_NEAR, r - dtype(1.6))
    t_far = -_rational(_AS241_FAR, r - dtype(5.0))
    t_tail = tf.where(r <= 5.0, t_near, t_far)
    big_q = -2.0 * tf.where(in_range, far_limit, y)
    t_sq = big_q - tf.math.log(big_q) - dtype(np.log(2.0 * np.pi))
    # One fixed-point pass on t^2 = q - log t^2 - log 2pi + 2 log(1 - 1/t^2)
    # cuts the relative error to ~1e-9 at the -700 switch-over (and less
    # beyond), so a single Newton step finishes the job.
    t_sq = big_q - tf.math.log(t_sq) - dtype(np.log(2.0 * np.pi)) + 2.0 * tf.math.log1p(-1.0 / t_sq)
    t_asymptotic = -tf.sqrt(t_sq)
    return tf.where(central, t_central, tf.where(in_range, t_tail, t_asymptotic))


def ndtri_exp_lower_value(y, return_log_hazard=False):
    """``t = Phi^{-1}(exp(y))`` on the lower half, ``y <= log(1/2)``, from plain ops.

    Accurate in relative terms for every ``y`` down to ``-inf`` (float32:
    beyond ``exp``'s range, where ``ndtri(exp(y))`` would return ``-inf``).
    Its callers never differentiate it.

    With ``return_log_hazard``, also returns ``log h(t)`` at the result, carried
    to first order from the start's (``d log h / dt = -t - h``): exact to
    rounding, as the polish moves ``t`` by a few ulps of the start's precision.
    """
    np_dtype = y.dtype.as_numpy_dtype
    t = _ndtri_exp_start(y)
    # One Newton step on log Phi(t) - y, whose slope is the hazard h(t): the
    # residual is computed in log space, so the polish is accurate wherever
    # the start was, and the error after it is quadratic in the start's.
    log_cdf, log_hazard = log_ndtr_lower(t)
    t_new = tf.minimum(t - (log_cdf - y) * tf.exp(-log_hazard), np_dtype(0.0))
    at_zero = tf.equal(y, -np.inf)
    t_new = tf.where(at_zero, np_dtype(-np.inf), t_new)
    if not return_log_hazard:
        return t_new
    log_hazard = log_hazard + (t + tf.exp(log_hazard)) * (t - t_new)
    # h(t) ~ -t as t -> -inf.
    return t_new, tf.where(at_zero, np_dtype(np.inf), log_hazard)
