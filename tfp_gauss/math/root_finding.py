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


def _newton_update(fn, y, x, lower, upper, steps, x_scale, params):
    """One safeguarded Newton step on every element.

    Returns ``(x_new, lower, upper, steps, converged, log_slope)``; ``steps``
    holds the last two step lengths, ``[2, *y.shape]``, and ``log_slope`` is
    ``fn``'s at ``x`` (before the step).
    """
    np_dtype = y.dtype.as_numpy_dtype
    eps = np.finfo(np_dtype).eps
    bracket_tol = np_dtype(4 * eps)
    value, log_slope = fn(x, *params)
    residual = value - y
    lower = tf.where(residual < 0, x, lower)
    upper = tf.where(residual > 0, x, upper)
    step = residual * tf.exp(-log_slope)
    x_newton = x - step
    newton_ok = (tf.math.is_finite(x_newton) & (x_newton >= lower)
                 & (x_newton <= upper) & (tf.abs(step) <= 0.5 * steps[1]))
    x_new = tf.where(newton_ok, x_newton, 0.5 * (lower + upper))
    ulps = bracket_tol * tf.abs(x_new)
    converged = ((newton_ok & (tf.abs(step) <= tf.maximum(np_dtype(np.sqrt(eps)) * x_scale, ulps)))
                 | tf.equal(residual, 0)
                 | (upper - lower <= ulps + bracket_tol * x_scale))
    steps = tf.stack([tf.abs(x_new - x), steps[0]])
    return x_new, lower, upper, steps, converged, log_slope


def _newton_loop(fn, y, x, lower, upper, x_scale, params, max_iterations):
    """Iterates every element (vectorized) until all are done.

    Returns ``(x, num_iterations, log_slope)``, the last being ``fn``'s log
    slope at each element's last evaluated point (``-log x_scale`` where
    nothing was evaluated).
    """
    steps = tf.stack([upper - lower, upper - lower])
    done = tf.greater_equal(lower, upper)
    num_iterations = tf.zeros(tf.shape(y), tf.int32)
    log_slope = -tf.math.log(x_scale)

    def cond(x, lower, upper, steps, done, num_iterations, log_slope):
        del x, lower, upper, steps, num_iterations, log_slope
        return tf.logical_not(tf.reduce_all(done))

    def body(x, lower, upper, steps, done, num_iterations, log_slope):
        new = _newton_update(fn, y, x, lower, upper, steps, x_scale, params)
        active = tf.logical_not(done)
        x, lower, upper, steps, log_slope = (
            tf.where(active, a, b) for a, b in zip(new[:4] + new[5:],
                                                  (x, lower, upper, steps, log_slope)))
        num_iterations += tf.cast(active, tf.int32)
        return x, lower, upper, steps, done | new[4], num_iterations, log_slope

    x, _, _, _, _, num_iterations, log_slope = tf.while_loop(
        cond, body, (x, lower, upper, steps, done, num_iterations, log_slope),
        maximum_iterations=max_iterations)
    return x, num_iterations, log_slope


def _streaming_newton_loop(fn, y, x, lower, upper, x_scale, gather_params, capacity,
                           max_iterations, size=None):
    """The same iteration on a fixed-size working set fed from a queue.

    The ``capacity`` slots start with the first elements (in flat order);
    whenever a slot's element converges (or reaches ``max_iterations``) its
    root is written out and the slot takes the next waiting element. One
    evaluation of ``fn`` then costs ``capacity`` elements, and the total work
    follows the *mean* number of iterations rather than the maximum, which is
    what a whole-tensor loop pays.

    With ``size`` (an int32 scalar tensor), only the first ``size`` elements
    (in flat order) are solved and the rest are returned as 0 with 0
    iterations: a fixed-shape buffer then serves any number of elements,
    so that XLA compiles the loop once.
    """
    shape = tf.shape(y)
    total = tf.size(y)
    n = total if size is None else tf.minimum(tf.convert_to_tensor(size, tf.int32), total)

    def flat(t):
        return tf.reshape(t, [-1])

    y, x, lower, upper, x_scale = (flat(t) for t in (y, x, lower, upper, x_scale))

    def fetch(index):
        safe = tf.maximum(tf.minimum(index, n - 1), 0)
        lo, up = tf.gather(lower, safe), tf.gather(upper, safe)
        return (tf.gather(y, safe), tf.gather(x, safe), lo, up, tf.stack([up - lo, up - lo]),
                tf.gather(x_scale, safe), gather_params(safe), lo >= up)

    index = tf.range(capacity)
    slot_y, slot_x, slot_lo, slot_up, slot_steps, slot_scale, slot_params, slot_done = fetch(index)
    slot_iterations = tf.zeros([capacity], tf.int32)
    # Entry `total` (past the end) takes the writes of empty slots.
    out_x = tf.zeros([total + 1], y.dtype)
    out_iterations = tf.zeros([total + 1], tf.int32)

    def cond(next_index, index, *_):
        del next_index
        return tf.reduce_any(index < n)

    def body(next_index, index, slot_y, slot_x, slot_lo, slot_up, slot_steps, slot_scale,
             slot_params, slot_done, slot_iterations, out_x, out_iterations):
        new = _newton_update(fn, slot_y, slot_x, slot_lo, slot_up, slot_steps, slot_scale,
                             slot_params)
        active = tf.logical_not(slot_done)
        slot_x, slot_lo, slot_up, slot_steps = (
            tf.where(active, a, b) for a, b in zip(new[:4], (slot_x, slot_lo, slot_up,
                                                            slot_steps)))
        slot_iterations += tf.cast(active, tf.int32)
        finished = slot_done | new[4] | (slot_iterations >= max_iterations)
        # Write out what finished (empty slots write to the discarded last entry).
        target = tf.where(finished & (index < n), index, total)[:, tf.newaxis]
        out_x = tf.tensor_scatter_nd_update(out_x, target, slot_x)
        out_iterations = tf.tensor_scatter_nd_update(out_iterations, target, slot_iterations)
        # Refill finished slots with the next waiting elements, in order.
        rank = tf.cumsum(tf.cast(finished, tf.int32)) - 1
        index = tf.where(finished, tf.minimum(next_index + rank, n), index)
        next_index = tf.minimum(next_index + tf.reduce_sum(tf.cast(finished, tf.int32)), n)
        fresh = fetch(index)
        take = finished & (index < n)
        slot_y, slot_x, slot_lo, slot_up, slot_scale = (
            tf.where(take, a, b) for a, b in zip(
                (fresh[0], fresh[1], fresh[2], fresh[3], fresh[5]),
                (slot_y, slot_x, slot_lo, slot_up, slot_scale)))
        slot_steps = tf.where(take, fresh[4], slot_steps)
        slot_params = tuple(
            tf.where(tf.reshape(take, [-1] + [1] * (len(p.shape) - 1)), p_new, p)
            for p_new, p in zip(fresh[6], slot_params))
        slot_done = tf.where(take, fresh[7], finished)
        slot_iterations = tf.where(take, 0, slot_iterations)
        return (next_index, index, slot_y, slot_x, slot_lo, slot_up, slot_steps, slot_scale,
                slot_params, slot_done, slot_iterations, out_x, out_iterations)

    loop_vars = (tf.minimum(capacity, n), tf.where(index < n, index, n), slot_y, slot_x,
                 slot_lo, slot_up, slot_steps, slot_scale, slot_params, slot_done,
                 slot_iterations, out_x, out_iterations)
    result = tf.compat.v1.while_loop(cond, body, loop_vars, back_prop=False,
                                    return_same_structure=True)
    return tf.reshape(result[-2][:-1], shape), tf.reshape(result[-1][:-1], shape)


def bracketed_newton(fn, y, lower, upper, initial, params=(), max_iterations=100,
                     x_scale=None, gather_params=None, capacity=None,
                     return_log_slope=False):
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
    a few ulps. The loop is a ``tf.while_loop`` and each element takes at most
    ``max_iterations`` steps, so it compiles under XLA and terminates.

    A vectorized loop evaluates ``fn`` on every element until the slowest one
    has converged. Given ``gather_params``, in a graph (``tf.function``,
    XLA) the iteration instead runs on a working set of ``capacity`` elements
    that is refilled from the queue of waiting elements as its members
    converge, so the cost follows the mean number of iterations, not the
    maximum. (Eagerly the vectorized loop is used: there each iteration costs
    a Python dispatch per op.) Both give the same iterates per element.

    Args:
      fn: callable ``fn(x, *params) -> (value, log_slope)`` with
        ``log_slope = log d value / dx``; elementwise and increasing in ``x``.
      y: target values, same shape as ``x``.
      lower, upper: tensors broadcastable to ``y`` with
        ``fn(lower) <= y <= fn(upper)``.
      initial: starting point inside the bracket.
      params: extra tensors passed to ``fn``.
      max_iterations: Python int, cap on the iterations of each element.
      x_scale: positive tensor, the length scale over which ``fn``'s slope
        changes (for a mixture CDF, the smallest component scale); defaults
        to 1.
      gather_params: optional ``gather_params(flat_indices) -> params``: the
        parameters of the elements at ``flat_indices`` of ``y`` (flattened),
        shaped so that ``fn`` maps a vector of those elements.
      capacity: size of the working set (default: an eighth of ``y``'s size,
        at least 1024 elements, at most all of them).
      return_log_slope: also return ``fn``'s log slope at each element's last
        evaluated point, within one converged Newton step of the root (only
        without ``gather_params``).

    Returns:
      ``(x, num_iterations)``: the root and the per-element iteration count
      (int32), both shaped like ``y``; with ``return_log_slope``, also the
      log slope.
    """
    shape = tf.shape(y)
    lower = tf.broadcast_to(lower, shape)
    upper = tf.broadcast_to(upper, shape)
    x = tf.clip_by_value(tf.broadcast_to(initial, shape), lower, upper)
    x_scale = tf.ones_like(y) if x_scale is None else tf.broadcast_to(x_scale, shape)
    # Eagerly, each loop iteration costs a Python dispatch of every op, and
    # the vectorized loop needs far fewer iterations than the working set.
    if gather_params is None or return_log_slope or tf.executing_eagerly():
        # Elements whose bracket is empty from the start (all components agree)
        # are done, at the common endpoint.
        x, num_iterations, log_slope = _newton_loop(fn, y, x, lower, upper, x_scale, params,
                                                    max_iterations)
        return (x, num_iterations, log_slope) if return_log_slope else (x, num_iterations)
    size = tf.TensorShape(y.shape).num_elements()
    if capacity is None:
        capacity = (max(1024, size // 8) if size is not None else
                    tf.maximum(1024, tf.size(y) // 8))
    # Never more slots than elements (nor any, for an empty input).
    capacity = min(capacity, size) if size is not None else tf.minimum(capacity, tf.size(y))
    return _streaming_newton_loop(fn, y, x, lower, upper, x_scale, gather_params, capacity,
                                  max_iterations)


def invert_increasing(fn, y, params, bracket_fn, max_iterations=100, solve_fn=None):
    """Differentiable elementwise inverse of an increasing map ``fn``.

    Args:
      fn: ``fn(x, *params) -> (value, log_slope)``, elementwise, increasing.
      y: targets; must already have the full broadcast shape of the output.
      params: tuple of tensors (not variables: read variables before calling,
        so that their gradient flows through the read).
      bracket_fn: ``bracket_fn(y, *params) -> (lower, upper, initial, x_scale)``,
        optionally followed by a dict of keyword arguments for
        ``bracketed_newton`` (e.g. ``gather_params``).
      max_iterations: Python int, cap on the Newton/bisection iterations.
      solve_fn: the same map for the loop, where it is never differentiated
        (e.g. without custom-gradient ops, which cost tracing and SavedModel
        export time); defaults to ``fn``, which the gradient uses.

    Returns:
      ``x`` with ``fn(x) = y``. Gradients with respect to ``y`` and every
      parameter follow the implicit-function rule; the loop is never
      differentiated.
    """
    params = tuple(params)

    @tf.custom_gradient
    def _inverse(y, *params):
        lower, upper, initial, x_scale, *options = bracket_fn(y, *params)
        options = options[0] if options else {}
        x, _ = bracketed_newton(solve_fn or fn, y, lower, upper, initial, params,
                                max_iterations=max_iterations, x_scale=x_scale, **options)

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
