"""The mixture-of-Gaussians CDF map ``z = T(x) = Phi^{-1}(F(x))``: kernel and inverse starts.

This module holds the maths that ``MixtureGaussianCDF`` (and anything else
that needs a mixture CDF map, e.g. a coupling layer whose conditioner emits
mixture parameters per row) composes:

- ``mixture_cdf_transform(x, logits, locs, scales) -> (z, log dz/dx)``, with
  its analytic gradient, accurate far into both tails;
  ``mixture_cdf_value`` is the same without the custom gradient (for loops
  that are never differentiated), ``mixture_cdf_parts`` returns the
  intermediates (``MixtureCDFParts``).
- The inverse's bracket (``mixture_bracket``) and starting points: an
  anchor table (``anchor_start``) for few elements per parameter set, a
  cubic Hermite table of the inverse (``grid_start``, ``grid_table``,
  ``hermite_start``) for many; ``inverse_start`` chooses and returns what
  ``root_finding.invert_increasing`` takes.

Parameters ``logits``, ``locs``, ``scales`` have a trailing component axis
``K`` and broadcast against ``x``: ``[D, K]`` with ``x`` ``[..., D]`` (one
mixture per dimension), or ``[N, D, K]`` with ``x`` ``[N, D]`` (one per
element).
"""

from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf

from tfp_gauss.math import normal, root_finding

__all__ = ["ANCHOR_OFFSETS", "GRID_SIZE", "GRID_Z", "MixtureCDFParts", "RELATIVE_WEIGHT_FLOOR",
           "STACKED_GRADIENT_MIN_PARAMS", "anchor_inverse_start", "anchor_start",
           "grid_inverse_start", "grid_start",
           "grid_table", "hermite_start", "inverse_start", "mixture_bracket",
           "mixture_cdf_parts", "mixture_cdf_transform", "mixture_cdf_vjp", "mixture_cdf_value",
           "uses_grid_start"]


class MixtureCDFParts(NamedTuple):
    """The forward map and the intermediates its analytic gradient reuses.

    Per element (shaped like ``z``): ``z``, ``log_det`` (``log dz/dx``),
    ``lower`` (bool, ``F <= 1 - F``: ``z`` came from the lower tail),
    ``log_hazard_zeta`` (``log h(s z)``, ``h = phi / Phi``); with
    responsibilities, ``f_over_tail`` (``f / P``) and, per component (a
    component axis next to the element axes, as ``_Layout`` arranges it),
    ``r`` (CDF responsibilities ``w_k Phi(s u_k) / P``) and ``q`` (density
    responsibilities); otherwise those three are ``None``.
    """

    z: tf.Tensor
    log_det: tf.Tensor
    lower: tf.Tensor
    log_hazard_zeta: tf.Tensor
    f_over_tail: Optional[tf.Tensor] = None
    r: Optional[tf.Tensor] = None
    q: Optional[tf.Tensor] = None


def _static_sum_axes(grad_shape, target, others):
    """The axes that sum a broadcast gradient back to ``target``, from static shapes.

    ``grad_shape``, ``target`` and ``others`` (the other operands of the
    broadcast, right-aligned) are ``tf.TensorShape``s. Returns ``(lead,
    ones)``: ``grad``'s leading axes that ``target`` lacks, and ``target``'s
    axes of size 1 (summed, kept). An axis where ``target``'s size is unknown
    needs no sum if no other operand has it with a size other than 1;
    otherwise (or an unknown rank) returns ``None``: only the runtime shapes
    can tell.
    """
    if grad_shape.rank is None or target.rank is None or any(o.rank is None for o in others):
        return None
    n_lead = grad_shape.rank - target.rank
    if n_lead < 0:
        return None
    ones = []
    for i, size in enumerate(target.as_list()):
        if size == 1:
            ones.append(i)
        elif size is None and any(o.rank >= target.rank - i and o[i - target.rank] != 1
                                  for o in others):
            return None
    return list(range(n_lead)), ones


def _sum_to_shape(grad, shape, static=None):
    """Sums a broadcast gradient back to an input's ``shape``.

    With ``static`` (the input's and the other operands' ``tf.TensorShape``s,
    ``_static_sum_axes``) the axes are constants where those shapes decide
    them: XLA needs that inside a loop over tensors of unknown batch size
    (a Keras training step on a partial last batch), where
    ``BroadcastGradientArgs`` of the runtime shapes is not a compile-time
    constant. Where they cannot (an unknown rank, or an unknown size that
    another operand may broadcast), that op is used, which XLA compiles
    only outside such loops.
    """
    axes = None if static is None else _static_sum_axes(tf.TensorShape(grad.shape), *static)
    if axes is not None:
        lead, ones = axes
        if lead:
            grad = tf.reduce_sum(grad, axis=lead)
        return tf.reduce_sum(grad, axis=ones, keepdims=True) if ones else grad
    _, axes = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(grad), s1=shape)
    return tf.reshape(tf.reduce_sum(grad, axis=axes), shape)


# Parameters per layer (elements of each of logits, locs, scales) from which
# `mixture_cdf_transform`'s gradient reduces them over the batch as one tensor.
STACKED_GRADIENT_MIN_PARAMS = 128


@tf.custom_gradient
def mixture_cdf_transform(x, logits, locs, scales):
    """``z = Phi^{-1}(F(x))`` and ``log dz/dx``, accurate far into both tails.

    With ``u_k = (x - mu_k) / sigma_k`` and ``w = softmax(logits)``:

      F(x)     = sum_k w_k Phi(u_k),
      1 - F(x) = sum_k w_k Phi(-u_k).

    Let ``s = +1`` where ``F <= 1 - F`` (the lower half) and ``-1``
    elsewhere, and ``P = min(F, 1 - F) = Phi(s z)``. Then
    ``z = s * Phi^{-1}(P)`` takes the inverse from the smaller tail, so
    neither tail ever rounds ``F`` to 0 or 1. The log-derivative

      log dz/dx = log f(x) - log phi(z),  f(x) = sum_k w_k phi(u_k) / sigma_k,

    is formed without subtracting two huge numbers: dividing both densities by
    the same tail probability ``P`` gives

      log dz/dx = log(f / P) - log h(s z),

    with the hazard ``h = phi / Phi``, O(1) or O(|z|) in the tails.

    Both sums and ``f`` are formed relative to the nearest component's
    Gaussian factor (``_scaled_parts``), from ``Phi(-|u_k|) =
    exp(-u_k^2/2) erfcx(|u_k|/sqrt 2) / 2``: one exponential and one erfcx
    per component, no term that cancels, and nothing that underflows however
    far out ``x`` is, so ``P`` and ``f / P`` keep full relative precision in
    both tails: what log-sum-exps of ``log Phi(u_k)`` give, without their
    half-dozen logarithms and exponentials per component. Components lighter
    than 1e-30 (float32; 1e-300 in float64) of the heaviest count as weight 0.

    The gradient is analytic (``tf.custom_gradient``), from the same
    intermediates. With ``H = h(s z)``, the CDF responsibilities
    ``r_k = w_k Phi(s u_k) / P``, ``rho_k = w_k phi(u_k) / (sigma_k P)`` (so
    ``sum_k rho_k = f / P``) and density responsibilities
    ``q_k = rho_k / sum_j rho_j``:

      dz/dx = sum_k rho_k / H,   dz/dmu_k = -rho_k / H,   dz/dsigma_k = -u_k rho_k / H,
      dz/dlogit_k = s (r_k - w_k) / H,
      dlog_det = dlog f + z dz, with
      dlog f/dx = -sum_k q_k u_k / sigma_k,  dlog f/dmu_k = q_k u_k / sigma_k,
      dlog f/dsigma_k = q_k (u_k^2 - 1) / sigma_k,  dlog f/dlogit_k = q_k - w_k.

    Every factor is O(1) or O(|u|) in the tails, so the gradient is as safe
    as the value, and it costs a fraction of a forward pass.

    Args:
      x: float tensor ``[..., D]`` (any shape broadcasting with the parameters'
        batch shape).
      logits, locs, scales: ``[..., D, K]``.

    Returns:
      ``(z, log_det)``, each of the broadcast shape of ``x`` and the
      parameters' batch shape.
    """
    return _transform_with_vjp(x, logits, locs, scales)


def _transform_with_vjp(x, logits, locs, scales):
    """``mixture_cdf_transform``'s values and its analytic vector-Jacobian product.

    Returns ``((z, log_det), grad)``, ``grad(dz, dlog_det)`` giving the
    gradients of ``x, logits, locs, scales``: the custom gradient, and what
    ``mixture_cdf_vjp`` applies without one.
    """
    layout = _Layout(x, logits, locs, scales)
    parts = _scaled_parts(layout, responsibilities=True)
    z, log_det = parts.z, parts.log_det
    x_shape, param_shapes = tf.shape(x), [tf.shape(p) for p in (logits, locs, scales)]
    static_shapes = [tf.TensorShape(p.shape) for p in (logits, locs, scales)]
    x_static = tf.TensorShape(x.shape)
    # The three parameter gradients reduce as one stacked tensor only from
    # STACKED_GRADIENT_MIN_PARAMS up (BENCHMARKS.md, "Mixture-CDF kernel").
    stack_param_grads = (
        static_shapes[0].is_fully_defined()
        and static_shapes[0].num_elements() >= STACKED_GRADIENT_MIN_PARAMS
        and all(s == static_shapes[0] for s in static_shapes[1:]))

    def grad(dz, dlog_det):
        expand = layout.expand
        inv_scales, w, q, r = layout.inv_scales, layout.w, parts.q, parts.r
        u = layout.u()
        sign = tf.where(parts.lower, tf.ones_like(z), -tf.ones_like(z))
        a = (dz + dlog_det * z) * tf.exp(-parts.log_hazard_zeta)
        a_f = a * parts.f_over_tail
        dld_k = expand(dlog_det)
        q_over_scale = q * inv_scales
        # rho_k = q_k f / P, so a_k rho_k = q_k (a f / P).
        g_locs = q_over_scale * (dld_k * u) - q * expand(a_f)
        g_scales = u * g_locs - dld_k * q_over_scale
        g_logits = expand(a * sign) * (r - w) + dld_k * (q - w)
        g_x = a_f - dlog_det * tf.reduce_sum(q_over_scale * u, axis=layout.axis)
        g_params = [g_logits, g_locs, g_scales]
        if layout.component_major:
            g_params = [tf.linalg.matrix_transpose(g) for g in g_params]
        if stack_param_grads:
            # The three parameter gradients in one reduction over the batch.
            stacked = tf.stack(g_params)
            pad = tf.ones([tf.rank(stacked) - 1 - tf.size(param_shapes[0])], tf.int32)
            static = None
            if stacked.shape.rank is not None:  # (the three parameters' shapes are equal)
                n_pad = stacked.shape.rank - 1 - static_shapes[0].rank
                static = (tf.TensorShape([3] + [1] * n_pad).concatenate(static_shapes[0]),
                          [x_static.concatenate([1])])
            summed = _sum_to_shape(stacked, tf.concat([[3], pad, param_shapes[0]], 0), static)
            # (stack_param_grads: the parameters' static shape is fully defined.)
            g_params = [tf.reshape(g, static_shapes[0]) for g in tf.unstack(summed)]
        else:
            # A parameter broadcasts against x (with its component axis) and the
            # other two parameters.
            g_params = [_sum_to_shape(g, shape, (static_shapes[i], [x_static.concatenate([1])]
                                                 + static_shapes[:i] + static_shapes[i + 1:]))
                        for i, (g, shape) in enumerate(zip(g_params, param_shapes))]
        return [_sum_to_shape(g_x, x_shape, (x_static, [p[:-1] for p in static_shapes]))
                ] + list(g_params)

    return (z, log_det), grad


def mixture_cdf_vjp(x, logits, locs, scales):
    """``mixture_cdf_transform``'s values and its vector-Jacobian product, as a function.

    The analytic gradient of ``mixture_cdf_transform`` applied directly, with
    no ``tf.custom_gradient`` op in the graph: what a loop that needs first
    derivatives uses (a custom gradient inside a ``tf.while_loop`` body is not
    saved in a SavedModel, whose loads then warn that gradients will fail).

    Args:
      x, logits, locs, scales: as ``mixture_cdf_transform``.

    Returns:
      ``(z, log_det, vjp)``, where ``vjp(dz, dlog_det=None)`` returns the
      gradients ``[dx, dlogits, dlocs, dscales]`` (each of its input's shape)
      for output gradients ``dz`` and ``dlog_det`` (default zero), from the
      intermediates of this one forward pass.
    """
    (z, log_det), grad = _transform_with_vjp(x, logits, locs, scales)

    def vjp(dz, dlog_det=None):
        return list(grad(dz, tf.zeros_like(log_det) if dlog_det is None else dlog_det))

    return z, log_det, vjp


# Components lighter than this fraction of the heaviest are dropped (weight
# 0): every remaining weight is then a normal number, which `_scaled_parts`
# relies on. They could only matter where F, 1 - F and f all lie below that
# fraction of the heaviest weight (|z| beyond ~11 in float32, ~37 in float64).
RELATIVE_WEIGHT_FLOOR = {tf.float32: 1e-30, tf.float64: 1e-300}


def check_width(x, locs):
    """A ``ValueError`` if ``x``'s last axis is statically neither ``D`` nor 1.

    ``D`` is the parameters' coordinate axis (``locs`` of shape ``[..., D, K]``);
    ``x`` of width 1 broadcasts, as in TFP. Without it, a wrong width failed
    deep in the kernel ("Incompatible shapes: [4,1,3] vs. [8,2]").
    """
    width, n_dims = tf.TensorShape(x.shape)[-1:], tf.TensorShape(locs.shape)[-2:-1]
    if (width.rank == 1 and n_dims.rank == 1 and None not in (width[0], n_dims[0])
            and 1 not in (width[0], n_dims[0]) and width[0] != n_dims[0]):
        raise ValueError(
            f"The mixture CDF has parameters for {n_dims[0]} coordinates (locs of shape "
            f"{tf.TensorShape(locs.shape)}, [..., D, K]); got an input of shape "
            f"{tf.TensorShape(x.shape)}, whose last axis must be {n_dims[0]} (or 1, to "
            "broadcast).")


class _Layout:
    """Parameters arranged for the reductions over components.

    Component-major layout ``[..., K, D]``: the reductions over K then add
    whole D-vectors, and the parameter gradients reduce over the leading
    sample axes; both vectorize, unlike a trailing axis of size K (see
    BENCHMARKS.md, "Mixture-CDF kernel"). Parameters without a batch axis
    keep the trailing K axis. Parameters with a batch axis broadcast against
    ``x`` (``[..., D, K]`` against ``[..., D]``), so a batch of parameters,
    one set per row, works as one set per dimension does.
    """

    def __init__(self, x, logits, locs, scales):
        ranks = [tf.TensorShape(t.shape).rank for t in (x, logits, locs, scales)]
        if None in ranks:
            raise ValueError(
                "The mixture CDF needs inputs and parameters of known rank (their sizes may "
                "be unknown); got shapes "
                f"{', '.join(str(tf.TensorShape(t.shape)) for t in (x, logits, locs, scales))} "
                "for x, logits, locs, scales. In a tf.function, give the input_signature a "
                "rank, e.g. tf.TensorSpec([None, D]).")
        self.component_major = tf.TensorShape(locs.shape).rank != 1
        check_width(x, locs)
        if self.component_major:
            if tf.TensorShape(x.shape).rank == 0:
                x = x[tf.newaxis]
            self.axis = -2
            logits, locs, scales = (tf.linalg.matrix_transpose(p) for p in (logits, locs, scales))
        else:
            self.axis = -1
        self.x, self.locs = x, locs
        dtype = x.dtype.as_numpy_dtype
        w = tf.math.softmax(logits, axis=self.axis)
        keep = w >= dtype(RELATIVE_WEIGHT_FLOOR[x.dtype]) * tf.reduce_max(
            w, axis=self.axis, keepdims=True)
        self.w = tf.where(keep, w, tf.zeros_like(w))
        self.log_w = tf.where(keep, tf.math.log_softmax(logits, axis=self.axis),
                              tf.fill(tf.shape(w), dtype(-np.inf)))
        # Finite even for a scale that underflowed to 0 (u is then 0 at the
        # mean, not NaN).
        self.inv_scales = tf.minimum(tf.math.reciprocal(scales), dtype(np.finfo(dtype).max))

    def expand(self, t):
        """A per-element tensor with a component axis inserted."""
        return t[..., tf.newaxis, :] if self.component_major else t[..., tf.newaxis]

    def u(self):
        """The standardized arguments ``u_k = (x - mu_k) / sigma_k``."""
        return (self.expand(self.x) - self.locs) * self.inv_scales


def _scaled_parts(layout, responsibilities):
    """The forward of ``mixture_cdf_transform`` in plain ops, with its intermediates.

    Plain ops (no custom gradients inside): the custom gradient around it
    replaces their gradients, and the root-find never differentiates.
    Returns ``MixtureCDFParts``; its responsibility fields are filled only
    if ``responsibilities`` (what the gradient needs).

    It takes one exponential and one erfcx per component.

    With ``alpha_k = log w_k - u_k^2 / 2``, ``c = max_k alpha_k`` and
    ``E_k = exp(alpha_k - c)`` (at most 1, and 1 for the nearest component),
    every term is formed relative to ``e^c``:

      w_k Phi(-|u_k|)  = e^c E_k t_k,   t_k = erfcx(|u_k| / sqrt 2) / 2,
      sqrt(2 pi) f     = e^c sum_k E_k / sigma_k,
      F     = W_+ + e^c (A_- - A_+),    1 - F = W_- + e^c (A_+ - A_-),

    where ``A_-``, ``W_-`` (``A_+``, ``W_+``) sum ``E_k t_k`` and ``w_k`` over
    the components with ``u_k <= 0`` (``> 0``). No term cancels
    (``e^c A_+ <= W_+ / 2``), and where ``W_+ = 0`` the logarithm is taken as
    ``c + log A_-``, so nothing underflows however far out ``x`` is: this is
    the log-space result to rounding, at the cost of the direct formulas.
    It needs every ``w_k`` to be a normal number or 0 (``_Layout`` sees to
    that), so that ``W_+ > 0`` whenever a component lies below ``x``.
    """
    axis, expand = layout.axis, layout.expand
    dtype = layout.x.dtype.as_numpy_dtype
    u = layout.u()
    w = layout.w
    alpha = layout.log_w - dtype(0.5) * tf.square(u)
    c = tf.reduce_max(alpha, axis=axis, keepdims=True)
    finite_c = tf.math.is_finite(c)
    c = tf.where(finite_c, c, tf.zeros_like(c))
    e = tf.exp(alpha - c)
    g = e * (dtype(0.5) * normal.erfcx_nonnegative_value(tf.abs(u) * dtype(normal.INV_SQRT2)))
    neg = u <= 0
    zero = tf.zeros_like(g)

    terms = [tf.where(neg, g, zero), tf.where(neg, zero, g), tf.where(neg, w, zero),
             tf.where(neg, zero, w), e * layout.inv_scales]
    if responsibilities:
        # One reduction over the five stacked sums: XLA CPU gives each
        # separate reduction its own kernel, each re-reading (or recomputing)
        # its inputs. Faster for the forward + log-det, slower inside the
        # root-find's loop (BENCHMARKS.md, "Mixture-CDF kernel").
        terms = tf.unstack(tf.reduce_sum(tf.stack(terms), axis=axis))
    else:
        terms = [tf.reduce_sum(t, axis=axis) for t in terms]
    a_neg, a_pos, w_neg, w_pos, density = terms
    c = tf.squeeze(c, axis)
    e_c = tf.exp(c)
    # log F - c and log(1 - F) - c, without forming c + log A - c where c is
    # large (in float32 its rounding would swamp log f/P and r_k far out).
    # (Each logarithm sees 1 where its branch is not taken: the other
    # argument can be 0, and autodiff of log(0) turned even a zero upstream
    # gradient into NaN, which a persistent tape's eager gradient, through
    # the intermediates a tf.function exports, sends on.)
    one = tf.ones_like(w_pos)
    has_pos, has_neg = w_pos > 0, w_neg > 0
    lower_rel = tf.where(has_pos, tf.math.log(tf.where(has_pos, w_pos + e_c * (a_neg - a_pos),
                                                       one)) - c,
                         tf.math.log(tf.where(has_pos, one, a_neg)))
    upper_rel = tf.where(has_neg, tf.math.log(tf.where(has_neg, w_neg + e_c * (a_pos - a_neg),
                                                       one)) - c,
                         tf.math.log(tf.where(has_neg, one, a_pos)))
    lower = lower_rel <= upper_rel
    tail_rel = tf.minimum(lower_rel, upper_rel)  # log P - c
    log_tail = c + tail_rel
    zeta, log_hazard_zeta = normal.ndtri_exp_lower_value(log_tail, return_log_hazard=True)
    log_f_over_tail = tf.math.log(density) - dtype(normal.HALF_LOG_2PI) - tail_rel
    z, log_det = tf.where(lower, zeta, -zeta), log_f_over_tail - log_hazard_zeta
    # Where every u_k^2 overflows (|u| beyond ~1.8e19 in float32) with all
    # components on one side, the sums above are 0 and z would be +-inf. There
    # the widest component alone decides: Phi(s z) = w Phi(s u) gives
    # z = u - log(w) / u + ..., which is u in working precision, and dz/dx = 1 / sigma.
    # Its parameters are reduced over K only (parameter-sized), so this costs
    # a few elementwise ops per element.
    far = tf.squeeze(~finite_c, axis) & ((w_neg == 0) | (w_pos == 0))
    kept_inv_scales = tf.where(w > 0, layout.inv_scales, tf.fill(tf.shape(w), dtype(np.inf)))
    widest_inv_scale = tf.reduce_min(kept_inv_scales, axis=axis, keepdims=True)
    widest_loc = tf.reduce_max(tf.where(tf.equal(kept_inv_scales, widest_inv_scale), layout.locs,
                                        dtype(-np.inf)), axis=axis)
    widest_inv_scale = tf.squeeze(widest_inv_scale, axis)
    z = tf.where(far, (layout.x - widest_loc) * widest_inv_scale, z)
    log_det = tf.where(far, tf.math.log(widest_inv_scale), log_det)
    parts = MixtureCDFParts(z, log_det, lower, log_hazard_zeta)
    if responsibilities:
        f_over_tail = tf.exp(log_f_over_tail)
        # r_k = w_k Phi(s u_k) / P: e^c E_k t_k / P on the tail's side (at
        # most 1 by construction), (w_k - e^c E_k t_k) / P on the other,
        # where P >= w_k / 2 keeps 1 / P finite unless w_k = 0 (a dropped
        # component, whose 0 / P must stay 0).
        lower_k = expand(lower)
        inv_tail = tf.exp(tf.minimum(-log_tail, dtype(np.log(np.finfo(dtype).max) - 1.0)))
        r = tf.where(tf.equal(lower_k, neg), g * expand(tf.exp(-tail_rel)),
                     (w - expand(e_c) * g) * expand(inv_tail))
        q = e * layout.inv_scales / expand(density)
        parts = parts._replace(f_over_tail=f_over_tail, r=r, q=q)
    return parts


def mixture_cdf_parts(x, logits, locs, scales, responsibilities=False):
    """``T(x)``, ``log T'(x)`` and the intermediates, in plain ops (autodiff-able).

    Args:
      x: ``[..., D]``; logits, locs, scales: ``[..., D, K]`` (or ``[K]``),
        broadcasting against ``x``.
      responsibilities: also fill the fields the analytic gradient needs.

    Returns:
      ``MixtureCDFParts``.
    """
    return _scaled_parts(_Layout(x, logits, locs, scales), responsibilities)


def mixture_cdf_value(x, logits, locs, scales):
    """``mixture_cdf_transform`` without its custom gradient, for the root-find loops.

    Returns ``(z, log_det)`` as ``mixture_cdf_transform`` does (the five
    sums reduced separately: what is fastest inside the root-find's loop).
    """
    parts = _scaled_parts(_Layout(x, logits, locs, scales), responsibilities=False)
    return parts.z, parts.log_det


# Anchor points mu_k + c * sigma_k at which T is tabulated to start the inverse.
ANCHOR_OFFSETS = (-2.0, 0.0, 2.0)


def mixture_bracket(z, locs, scales):
    """``[min_k(mu_k + sigma_k z), max_k(mu_k + sigma_k z)]`` and ``min_k sigma_k``."""
    ends = locs + scales * z[..., tf.newaxis]
    return (tf.reduce_min(ends, axis=-1), tf.reduce_max(ends, axis=-1),
            tf.reduce_min(scales, axis=-1))


def anchor_start(z, logits, locs, scales):
    """Bracket, start and length scale for the root of ``T(x) = z``.

    ``F(x) = sum_k w_k Phi((x - mu_k) / sigma_k)`` is a convex combination, so
    ``F`` at ``min_k(mu_k + sigma_k z)`` is at most ``Phi(z)`` and at
    ``max_k(...)`` at least ``Phi(z)``: the root lies between, in any precision.

    That bracket is then tightened with a table of ``T`` at the anchors
    ``a = mu_k + c sigma_k`` (``c`` in ``ANCHOR_OFFSETS``): as ``T`` is
    increasing, the nearest anchors with ``T(a) <= z`` and ``T(a) >= z`` also
    bracket the root, and linear interpolation between them is the start.
    The table costs ``3K`` evaluations per batch member and a few comparisons
    per element, and cuts the Newton iterations roughly in half.
    """
    dtype = z.dtype.as_numpy_dtype
    lower, upper, x_scale = mixture_bracket(z, locs, scales)
    # Anchors [..., M] (M = 3K), evaluated with the sample axis M in front.
    anchors = tf.concat([locs + dtype(c) * scales for c in ANCHOR_OFFSETS], axis=-1)
    rank = tf.rank(anchors)
    perm_front = tf.concat([[rank - 1], tf.range(rank - 1)], 0)
    perm_back = tf.concat([tf.range(1, rank), [0]], 0)
    anchor_z, anchor_log_slope = mixture_cdf_value(
        tf.transpose(anchors, perm_front), logits, locs, scales)
    anchor_z = tf.transpose(anchor_z, perm_back)
    anchor_inv_slope = tf.exp(-tf.transpose(anchor_log_slope, perm_back))
    zk = z[..., tf.newaxis]
    below = anchor_z <= zk
    above = anchor_z >= zk
    inf = dtype(np.inf)
    x_lo = tf.reduce_max(tf.where(below, anchors, -inf), -1)
    z_lo = tf.reduce_max(tf.where(below, anchor_z, -inf), -1)
    x_hi = tf.reduce_min(tf.where(above, anchors, inf), -1)
    z_hi = tf.reduce_min(tf.where(above, anchor_z, inf), -1)
    lower = tf.maximum(lower, x_lo)
    upper = tf.minimum(upper, x_hi)
    has_lo = tf.math.is_finite(z_lo)
    has_hi = tf.math.is_finite(z_hi)
    inside = has_lo & has_hi & (z_hi > z_lo)
    frac = tf.where(inside, (z - z_lo) / tf.where(inside, z_hi - z_lo, dtype(1.0)), dtype(0.5))
    # Outside the table: a Newton step from the outermost anchor.
    edge = tf.where(has_lo, tf.reduce_max(anchors, -1), tf.reduce_min(anchors, -1))
    edge_is_max = tf.equal(anchors, edge[..., tf.newaxis])
    edge_z = tf.reduce_max(tf.where(edge_is_max, anchor_z, -inf), -1)
    edge_inv_slope = tf.reduce_max(tf.where(edge_is_max, anchor_inv_slope, -inf), -1)
    outside = tf.where(tf.math.is_finite(edge_z) & tf.math.is_finite(edge_inv_slope),
                       edge + (z - edge_z) * edge_inv_slope, 0.5 * (lower + upper))
    initial = tf.where(inside, x_lo + frac * (x_hi - x_lo), outside)
    return lower, upper, initial, x_scale


# The interpolation table of the inverse: T^{-1} at GRID_SIZE equally spaced
# z in [-GRID_Z, GRID_Z], with its slopes, per batch member.
GRID_SIZE = 64
GRID_Z = 5.0


def grid_start(z, member, logits, locs, scales):
    """Starting points from a cubic Hermite table of the inverse.

    ``x_g = T^{-1}(z_g)`` is solved (bracketed Newton) at
    ``GRID_SIZE`` equally spaced ``z_g`` per batch member, with the slopes
    ``dx/dz = 1 / T'(x_g)``; each element then starts from the cubic Hermite
    interpolant between its two nodes (kept between them, as ``T^{-1}`` is
    increasing), or from the tangent at the end node beyond the table. The
    interpolation error is ``O(dz^4)``, so most elements converge after the
    first Newton step.

    Args:
      z: targets, any shape.
      member: int32, shaped like ``z``: the flat index of each element's
        batch member in ``logits``, ``locs``, ``scales``.
      logits, locs, scales: ``[P, K]``.

    Returns:
      The starting points, shaped like ``z``.
    """
    dtype = z.dtype.as_numpy_dtype
    n_members = tf.shape(locs)[0]
    z_grid = tf.broadcast_to(
        tf.linspace(dtype(-GRID_Z), dtype(GRID_Z), GRID_SIZE)[:, tf.newaxis],
        [GRID_SIZE, n_members])
    # Started from the weighted mean of the component quantiles (inside the
    # bracket); the slopes come from the solve's last evaluation, within one
    # converged Newton step of the node, accurate enough to interpolate.
    lower, upper, x_scale = mixture_bracket(z_grid, locs, scales)
    initial = tf.reduce_sum(tf.math.softmax(logits, axis=-1)
                            * (locs + scales * z_grid[..., tf.newaxis]), axis=-1)
    grid = root_finding.bracketed_newton(
        mixture_cdf_value, z_grid, lower, upper, initial, (logits, locs, scales),
        x_scale=x_scale, return_log_slope=True)
    return hermite_start(z, member, *grid_table(grid.x, grid.log_slope))


def grid_table(x_grid, log_slope):
    """Node values and slopes per grid step, ``[P * GRID_SIZE]`` in member-major order.

    ``x_grid`` and ``log_slope`` (``log T'`` at the nodes) are ``[GRID_SIZE, P]``.
    """
    step = x_grid.dtype.as_numpy_dtype(2.0 * GRID_Z / (GRID_SIZE - 1))
    return (tf.reshape(tf.transpose(x_grid), [-1]),
            tf.reshape(tf.transpose(tf.exp(-log_slope) * step), [-1]))


def hermite_start(z, member, table_x, table_m):
    """The cubic Hermite interpolant of ``grid_table``'s table at ``z`` (see ``grid_start``)."""
    dtype = z.dtype.as_numpy_dtype
    step = dtype(2.0 * GRID_Z / (GRID_SIZE - 1))
    t = (z + dtype(GRID_Z)) / step
    # (a NaN z gets cell 0, not the int32 cast of NaN, an index out of range:
    # its start, and so its root, is NaN)
    cell = tf.clip_by_value(tf.floor(tf.where(tf.math.is_nan(t), dtype(0.0), t)), dtype(0.0),
                            dtype(GRID_SIZE - 2))
    s = t - cell
    index = member * GRID_SIZE + tf.cast(cell, tf.int32)
    x0, x1 = tf.gather(table_x, index), tf.gather(table_x, index + 1)
    m0, m1 = tf.gather(table_m, index), tf.gather(table_m, index + 1)
    c = tf.clip_by_value(s, dtype(0.0), dtype(1.0))
    c2 = c * c
    hermite = (x0 + c2 * (3.0 - 2.0 * c) * (x1 - x0)
               + c * (1.0 - c) * ((1.0 - c) * m0 - c * m1))
    hermite = tf.clip_by_value(hermite, x0, x1)
    beyond = tf.where(s < 0, x0 + s * m0, x1 + (s - 1.0) * m1)
    return tf.where((s < 0) | (s > 1), beyond, hermite)


def uses_grid_start(z, logits, locs, scales):
    """Whether ``inverse_start`` starts from the Hermite table (static shapes decide).

    Yes with at least ``4 * GRID_SIZE`` elements per batch member of the
    parameters, or an unknown number of elements (but known members).
    """
    static_batch = tf.TensorShape(logits.shape)[:-1]
    for p in (locs, scales):
        static_batch = tf.broadcast_static_shape(static_batch, tf.TensorShape(p.shape)[:-1])
    static_members = static_batch.num_elements()
    static_size = tf.TensorShape(z.shape).num_elements()
    return static_members is not None and (
        static_size is None or static_size >= 4 * GRID_SIZE * static_members)


def inverse_start(z, logits, locs, scales, use_grid=None):
    """Bracket, start and solver options for ``MixtureGaussianCDF._inverse``.

    With many elements per batch member (at least ``4 * GRID_SIZE``, or an
    unknown count, as when serving ``sample(n)``) the start comes from the
    Hermite table of ``grid_start``, otherwise from the anchor table of
    ``anchor_start`` (``use_grid`` overrides the choice). The root-find
    streams the elements through a working set (``gather_params`` gives each
    element's parameters), so the few slow elements do not make every
    element pay for their iterations.
    """
    k = tf.shape(locs)[-1]
    batch_shape = tf.shape(locs[..., 0] + scales[..., 0] + logits[..., 0])
    full_shape = tf.concat([batch_shape, [k]], 0)
    flat = [tf.reshape(tf.broadcast_to(p, full_shape), [-1, k]) for p in (logits, locs, scales)]
    n_members = tf.reduce_prod(batch_shape)
    member = tf.broadcast_to(tf.reshape(tf.range(n_members), batch_shape), tf.shape(z))

    def gather_params(indices):
        rows = tf.gather(tf.reshape(member, [-1]), indices)
        return tuple(tf.gather(p, rows) for p in flat)

    if use_grid is None:
        use_grid = uses_grid_start(z, logits, locs, scales)
    if use_grid:
        lower, upper, x_scale = mixture_bracket(z, locs, scales)
        grid = grid_start(z, member, *flat)
        initial = tf.where(tf.math.is_finite(grid), grid, 0.5 * (lower + upper))
    else:
        lower, upper, initial, x_scale = anchor_start(z, logits, locs, scales)
    options = dict(gather_params=gather_params)
    return lower, upper, initial, x_scale, options


def grid_inverse_start(z, logits, locs, scales):
    """``inverse_start`` with the Hermite-table start, whatever the number of elements."""
    return inverse_start(z, logits, locs, scales, use_grid=True)


def anchor_inverse_start(z, logits, locs, scales):
    """``inverse_start`` with the anchor-table start, whatever the number of elements."""
    return inverse_start(z, logits, locs, scales, use_grid=False)
