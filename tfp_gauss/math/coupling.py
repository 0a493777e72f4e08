r"""The mixture-CDF coupling's conditioner as plain tensors: masks, an MLP and its offsets.

A coupling layer maps every coordinate through the mixture-Gaussian CDF map;
the *conditioning* coordinates (``mask = 1``) keep the layer's base
parameters and the others get parameters shifted by an MLP of the
conditioning coordinates:

$$(\delta_\ell, \delta_\mu, \delta_s) = g(h \odot m),\qquad
  \ell' = \ell + \delta_\ell,\quad \mu' = \mu + \sigma\,\delta_\mu,\quad
  \sigma' = \sigma\,\exp\big(B \tanh(\delta_s / B)\big),$$

with every offset zeroed on the conditioning coordinates and ``B =
LOG_SCALE_BOUND`` (a scale moves by at most ``e^B`` either way). The MLP's
input is ``h * mask`` (all ``D`` columns, the others zeroed), so every
layer's weights have one shape whichever coordinates it conditions on, and
the weights of all layers stack over a leading ``[L]`` axis: the stacked maps
of ``tfp_gauss.sampling`` then loop over layers in one graph, as they do for
marginal layers. ``MixtureCDFCoupling`` with ``MLPConditioner`` computes the
same numbers through TFP's bijector interface.

Weights of one layer: ``[kernel_1, bias_1, ..., kernel_out, bias_out]``,
``kernel_i`` ``[n_in, n_out]``; the input width is ``D`` and the output
``D * 3 * K`` (ordered ``[D, 3, K]``: logit, location and log-scale offsets).
"""

import numpy as np
import tensorflow as tf

__all__ = ["DEFAULT_UNITS", "LOG_SCALE_BOUND", "conditioner_offsets", "conditioner_shapes",
           "coupled_parameters", "coupling_masks", "floored_scales", "gelu",
           "initial_conditioner_weights"]

# Bound on the log-scale offset (see the module docstring).
LOG_SCALE_BOUND = 3.0

# Hidden widths of the conditioner MLP by default.
DEFAULT_UNITS = (64, 64)


def coupling_masks(n_dims, n_layers):
    """``[L, D]`` float64 masks: 1 on each layer's conditioning coordinates.

    Even layers condition on the first ``D // 2`` coordinates, odd layers on
    the last ``D // 2`` (with the rotations between layers, which coordinates
    condition matters little; alternating halves is the RealNVP choice).

    Raises:
      ValueError: ``n_dims < 2`` (no coordinate to condition on).
    """
    n_dims, n_layers = int(n_dims), int(n_layers)
    if n_dims < 2:
        raise ValueError(f"A coupling layer needs at least 2 dimensions; got D = {n_dims}.")
    half = n_dims // 2
    masks = np.zeros([n_layers, n_dims])
    masks[0::2, :half] = 1.0
    masks[1::2, n_dims - half:] = 1.0
    return masks


def conditioner_shapes(n_dims, n_components, units=DEFAULT_UNITS):
    """Shapes of one layer's conditioner weights, ``[kernel, bias, ...]`` (no ``[L]`` axis)."""
    widths = [int(n_dims)] + [int(u) for u in units] + [3 * int(n_dims) * int(n_components)]
    shapes = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        shapes += [(n_in, n_out), (n_out,)]
    return shapes


def initial_conditioner_weights(n_dims, n_components, n_layers, units=DEFAULT_UNITS, *,
                                rng, dtype=np.float32):
    """Stacked starting weights: Glorot-uniform hidden kernels, zero biases, zero last layer.

    The last layer's kernel and bias are zero, so every offset is 0 and each
    coupling layer equals its base marginal layer until it trains.

    Returns:
      list of numpy arrays ``[L, ...]`` in ``conditioner_shapes`` order.
    """
    shapes = conditioner_shapes(n_dims, n_components, units)
    weights = []
    for i, shape in enumerate(shapes):
        last = i >= len(shapes) - 2
        if len(shape) == 2 and not last:
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            w = rng.uniform(-limit, limit, size=(n_layers,) + shape)
        else:
            w = np.zeros((n_layers,) + shape)
        weights.append(w.astype(dtype))
    return weights


def gelu(x):
    """``x Phi(x) = x erfc(-x / sqrt 2) / 2``, exact in float64.

    (``tf.nn.gelu`` is off by up to 5e-9 in float64 in TF 2.21.)
    """
    return 0.5 * x * tf.math.erfc(-x * x.dtype.as_numpy_dtype(1.0 / np.sqrt(2.0)))


def conditioner_offsets(h, mask, weights, n_components):
    """The offsets ``g(h * mask)`` of one layer, ``[N, D, 3, K]``, zero where ``mask = 1``.

    Args:
      h: ``[N, D]`` the layer's input.
      mask: ``[D]``, 1 on the conditioning coordinates.
      weights: one layer's ``[kernel, bias, ...]`` (``gelu`` between layers).
      n_components: ``K``.
    """
    mask = tf.cast(mask, h.dtype)
    out = tf.where(mask > 0, h, tf.zeros_like(h))  # exact zeros, even beside an inf
    n_dense = len(weights) // 2
    for i in range(n_dense):
        out = tf.matmul(out, tf.cast(weights[2 * i], h.dtype)) + tf.cast(weights[2 * i + 1],
                                                                         h.dtype)
        if i < n_dense - 1:
            out = gelu(out)
    out = tf.reshape(out, tf.concat([tf.shape(h), [3, n_components]], 0))
    return out * (1.0 - mask)[:, tf.newaxis, tf.newaxis]


def floored_scales(scales, floor=None):
    r"""Mixture scales ``[..., D, K]`` under a soft floor ``[..., D]``: ``sqrt(s^2 + f^2)``.

    $$\tilde\sigma_{dk} = \sqrt{\sigma_{dk}^2 + f_d^2}:$$ each component
    convolved with ``N(0, f_d^2)``, so no component of coordinate ``d`` is
    narrower than ``f_d`` (``fit_gaussianization_flow``'s ``scale_floor``).
    ``floor=None`` returns ``scales`` unchanged.
    """
    if floor is None:
        return scales
    floor = tf.cast(floor, scales.dtype)[..., tf.newaxis]
    return tf.sqrt(tf.square(scales) + tf.square(floor))


def coupled_parameters(logits, locs, scales, offsets, floor=None):
    """Per-row mixture parameters ``[N, D, K]`` from base ``[D, K]`` and offsets ``[N, D, 3, K]``.

    ``logits + d_l``, ``locs + scales * d_mu``, ``scales * exp(B tanh(d_s / B))``;
    where the offsets are 0 the base parameters come back exactly. With a
    ``floor`` ``[D]`` the scales then go through ``floored_scales`` (the
    floor holds after the conditioner's shift, as it does for base scales).
    """
    bound = tf.constant(LOG_SCALE_BOUND, offsets.dtype)
    return (logits + offsets[..., 0, :], locs + scales * offsets[..., 1, :],
            floored_scales(scales * tf.exp(bound * tf.tanh(offsets[..., 2, :] / bound)), floor))
