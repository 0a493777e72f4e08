"""Bracketed, safeguarded Newton root-finding with an implicit-function gradient.

The root-find inverts a scalar, strictly increasing map ``y = T(x; theta)``
elementwise. It never differentiates through its own iterations: the inverse
``x* = T^{-1}(y; theta)`` is wrapped in ``tf.custom_gradient`` and gets its
derivatives from the implicit-function theorem at the root,

    dx*/dy     =  1 / T'(x*)
    dx*/dtheta = -(dT/dtheta)(x*) / T'(x*),

where ``dT/dtheta`` is obtained by automatic differentiation of ``T`` itself.
"""

import numpy as np
import tensorflow as tf

__all__ = ["bracketed_newton", "invert_increasing"]


def bracketed_newton(fn, y, lower, upper, initial, params=(), max_iterations=100,
                     x_scale=None):
    """Solves ``fn(x, *params)[0] = y`` elementwise for increasing ``fn``.

    Each iteration takes a Newton step; a step that is not finite, leaves the
    current bracket ``[lower, upper]``, or is larger than half the step before
    the previous one (Newton cycling between two points; the ``rtsafe`` rule of
    Numerical Recipes) is replaced by bisection. The bracket shrinks with the sign of the
    residual, so the iteration cannot diverge or cycle.
    Convergence is decided per element: an element stops when a *Newton* step
    is below ``sqrt(eps) * x_scale`` (the error after it is then quadratic,
    about ``eps * x_scale`` when ``x_scale`` is the length over which the slope
    changes) or below a few ulps of ``x``, or when the bracket has collapsed to
    a few ulps. The loop is a
    ``tf.while_loop`` bounded by ``max_iterations``, so it compiles under XLA.

    Args:
      fn: callable ``fn(x, *params) -> (value, log_slope)`` with
        ``log_slope = log d value / dx``; elementwise and increasing in ``x``.
      y: target values, same shape as ``x``.
      lower, upper: tensors broadcastable to ``y`` with
        ``fn(lower) <= y <= fn(upper)``.
      initial: starting point inside the bracket.
      params: extra tensors passed to ``fn``.
      max_iterations: Python int, hard cap on the number of iterations.
      x_scale: positive tensor, the length scale over which ``fn``'s slope
        changes (for a mixture CDF, the smallest component scale); defaults
        to 1.

    Returns:
      ``(x, num_iterations)``: the root and the per-element iteration count
      (int32), both shaped like ``y``.
    """
    dtype = y.dtype
    np_dtype = dtype.as_numpy_dtype
    eps = np.finfo(np_dtype).eps
    newton_tol = np_dtype(np.sqrt(eps))
    bracket_tol = np_dtype(4 * eps)
    shape = tf.shape(y)
    lower = tf.broadcast_to(lower, shape)
    upper = tf.broadcast_to(upper, shape)
    x = tf.clip_by_value(tf.broadcast_to(initial, shape), lower, upper)
    x_scale = tf.ones_like(y) if x_scale is None else tf.broadcast_to(x_scale, shape)
    done = tf.greater_equal(lower, upper)
    num_iterations = tf.zeros(shape, tf.int32)
    steps = tf.stack([upper - lower, upper - lower])  # last two step lengths

    def cond(i, x, lower, upper, steps, done, num_iterations):
        del x, lower, upper, steps, num_iterations
        return tf.logical_and(i < max_iterations, tf.logical_not(tf.reduce_all(done)))

    def body(i, x, lower, upper, steps, done, num_iterations):
        value, log_slope = fn(x, *params)
        residual = value - y
        new_lower = tf.where(residual < 0, x, lower)
        new_upper = tf.where(residual > 0, x, upper)
        step = residual * tf.exp(-log_slope)
        x_newton = x - step
        newton_ok = (tf.math.is_finite(x_newton) & (x_newton >= new_lower)
                     & (x_newton <= new_upper) & (tf.abs(step) <= 0.5 * steps[1]))
        x_new = tf.where(newton_ok, x_newton, 0.5 * (new_lower + new_upper))
        ulps = bracket_tol * tf.abs(x_new)
        converged = ((newton_ok & (tf.abs(step) <= tf.maximum(newton_tol * x_scale, ulps)))
                     | tf.equal(residual, 0)
                     | (new_upper - new_lower <= ulps + bracket_tol * x_scale))
        active = tf.logical_not(done)
        steps = tf.where(active, tf.stack([tf.abs(x_new - x), steps[0]]), steps)
        x = tf.where(active, x_new, x)
        lower = tf.where(active, new_lower, lower)
        upper = tf.where(active, new_upper, upper)
        num_iterations += tf.cast(active, tf.int32)
        done = done | converged
        return i + 1, x, lower, upper, steps, done, num_iterations

    _, x, lower, upper, _, done, num_iterations = tf.while_loop(
        cond, body, (tf.constant(0), x, lower, upper, steps, done, num_iterations),
        maximum_iterations=max_iterations)
    # Elements whose bracket was empty from the start (all components agree)
    # sit exactly at the common endpoint.
    return x, num_iterations


def invert_increasing(fn, y, params, bracket_fn, max_iterations=100):
    """Differentiable elementwise inverse of an increasing map ``fn``.

    Args:
      fn: ``fn(x, *params) -> (value, log_slope)``, elementwise, increasing.
      y: targets; must already have the full broadcast shape of the output.
      params: tuple of tensors (not variables: read variables before calling,
        so that their gradient flows through the read).
      bracket_fn: ``bracket_fn(y, *params) -> (lower, upper, initial, x_scale)``.
      max_iterations: Python int, cap on the Newton/bisection iterations.

    Returns:
      ``x`` with ``fn(x) = y``. Gradients with respect to ``y`` and every
      parameter follow the implicit-function rule; the loop is never
      differentiated.
    """
    params = tuple(params)

    @tf.custom_gradient
    def _inverse(y, *params):
        lower, upper, initial, x_scale = bracket_fn(y, *params)
        x, _ = bracketed_newton(fn, y, lower, upper, initial, params,
                                max_iterations=max_iterations, x_scale=x_scale)

        def grad(dx):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(params)
                value, log_slope = fn(x, *params)
            dy = dx * tf.exp(-log_slope)
            dparams = tape.gradient(
                value, params, output_gradients=-dy,
                unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return (dy,) + tuple(dparams)

        return x, grad

    return _inverse(y, *params)
