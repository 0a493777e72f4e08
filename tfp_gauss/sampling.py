"""Stacked-layer maps: sampling (and ``log p``) over parameters stacked by layer.

``gaussianize_stacked`` / ``log_prob_stacked`` run the closed-form
direction as one ``tf.while_loop`` over the layers, in a graph traced once
per dtype for every batch size and model (what ``predict``, ``evaluate``
and the SavedModel's ``log_prob`` run); ``training_log_prob`` is the same
maps traced into a Keras training step. The rest of this module is the
inverse:

``flow.sample()`` through TFP runs every layer's bijector in turn, so a
``tf.function`` of it traces the mixture root-find once per layer (``L``
streaming loops and ``L`` Hermite-table solves) and XLA compiles them all:
10-60 s before the first sample on a 2-core CPU. Here the layers are a
``tf.while_loop`` over the stacked parameters ``[L, D, K]`` / ``[L, M, D]``
(so the graph does not grow with ``L``), and the root-find runs in one
XLA-compiled kernel of fixed shape: a buffer of ``_CHUNK`` elements, of
which a runtime count is valid, streamed through a working set of
``_CAPACITY`` slots (``root_finding._streaming_newton_loop``). Larger
inputs loop over chunks. Every solve (a marginal layer's, a coupling
layer's conditioning and conditioned coordinates, the Hermite tables'
nodes) runs that one kernel on parameter rows ``[_CHUNK, K]`` (``[D, K]``
if ``D > _CHUNK``), so XLA compiles it once per ``(D, K, dtype)`` and
process (``D`` sizes the
layer's Hermite table), whatever ``n``, the seed, ``L``, the
architecture or the model; the outer function is a plain graph traced
once per dtype (its input signature leaves every size unknown).

The inverse keeps the implicit-function gradient of
``root_finding.invert_increasing`` for every layer (``tf.custom_gradient``
around the whole inverse, whose backward pass runs the layers' closed-form
direction); no loop is differentiated.
"""

import functools

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import samplers

from tfp_gauss import _validation
from tfp_gauss.bijectors import householder_rotation
from tfp_gauss.math import coupling as coupling_math
from tfp_gauss.math import mixture_cdf
from tfp_gauss.math import root_finding

tfb = tfp.bijectors

__all__ = ["draw_stacked", "gaussianize_stacked", "gaussianize_stacked_x_gradient",
           "invert_stacked", "log_prob_stacked",
           "sample_stacked", "training_log_prob"]

# Elements per call of the compiled kernel, and its working set.
_CHUNK = 32768
_CAPACITY = 4096
_MAX_ITERATIONS = 100


def _chunks(t, n_chunks, value=0):
    """``t`` (``[n, ...]``) padded with ``value`` and split into ``[n_chunks, _CHUNK, ...]``."""
    pad = [[0, n_chunks * _CHUNK - tf.shape(t)[0]]] + [[0, 0]] * (len(t.shape) - 1)
    return tf.reshape(tf.pad(t, pad, constant_values=value),
                      tf.concat([[n_chunks, _CHUNK], tf.shape(t)[1:]], 0))


def _over_chunks(y, solve_chunk):
    """``solve_chunk(i, count) -> (x, converged)`` over every ``_CHUNK`` of flat ``y``.

    Returns ``(x, converged)``, flat, the padding dropped.
    """
    n = tf.size(y)
    n_chunks = (n + _CHUNK - 1) // _CHUNK

    def body(i, xs, converged):
        x, ok = solve_chunk(i, tf.minimum(_CHUNK, n - i * _CHUNK))
        return i + 1, xs.write(i, x), converged.write(i, ok)

    _, xs, converged = tf.compat.v1.while_loop(
        lambda i, *_: i < n_chunks, body,
        (tf.constant(0), tf.TensorArray(y.dtype, size=n_chunks, element_shape=[_CHUNK]),
         tf.TensorArray(tf.bool, size=n_chunks, element_shape=[_CHUNK])),
        back_prop=False, return_same_structure=True)
    return (tf.reshape(xs.stack(), [-1])[:n], tf.reshape(converged.stack(), [-1])[:n])


def _solve_chunk_impl(y, member, coordinate, count, logits, locs, scales, table_x, table_m,
                      use_table, max_iterations):
    """Roots of ``T(x; params[member_i]) = y_i`` for the first ``count`` of ``_CHUNK`` elements.

    Args:
      y: ``[_CHUNK]`` targets; ``member``: ``[_CHUNK]`` int32, each element's
        row of the parameters; ``count``: int32 scalar, how many are valid.
      logits, locs, scales: ``[_CHUNK, K]`` parameter rows: a coupling
        layer's conditional mixtures (``member`` the identity), or a layer's
        ``[D, K]`` base maps padded to ``_CHUNK`` rows (``_padded_maps``; kept
        at ``D`` rows if more).
      coordinate, table_x, table_m: each element's coordinate ``d`` and the
        layer's ``[D * GRID_SIZE]`` Hermite table of its base maps
        (``mixture_cdf.grid_table``), the start where ``use_table``;
        otherwise the start is the weighted mean of the component quantiles
        (how the table's own nodes are solved).
      max_iterations: int32 scalar, the cap per element (a runtime value).

    A non-finite start becomes the bracket's midpoint (``mixture_bracket``);
    inside XLA a NaN or inf ``y`` reaching the table's gather is harmless
    (its index is clamped and the start comes out non-finite).

    Returns ``(x, converged)``, ``[_CHUNK]`` each (0 and True past ``count``).
    """
    chunk_locs, chunk_scales = tf.gather(locs, member), tf.gather(scales, member)
    lower, upper, x_scale = mixture_cdf.mixture_bracket(y, chunk_locs, chunk_scales)
    weights = tf.math.softmax(tf.gather(logits, member), axis=-1)
    mean_start = tf.reduce_sum(weights * (chunk_locs + chunk_scales * y[:, tf.newaxis]), -1)
    table_start = mixture_cdf.hermite_start(y, coordinate, table_x, table_m)
    start = tf.where(use_table, table_start, mean_start)
    start = tf.where(tf.math.is_finite(start), start, 0.5 * (lower + upper))
    x = tf.clip_by_value(start, lower, upper)

    def gather_params(indices):
        rows = tf.gather(member, indices)
        return tuple(tf.gather(p, rows) for p in (logits, locs, scales))

    result = root_finding._streaming_newton_loop(
        mixture_cdf.mixture_cdf_value, y, x, lower, upper, x_scale, gather_params, _CAPACITY,
        max_iterations, size=count, record_width=False)
    return result.x, result.converged


# Traced once per dtype; XLA compiles once per (D, K, dtype): the parameter rows have a
# fixed shape, so the marginal layers' solves and a coupling layer's two kinds share one
# compilation (two were ~2 s more of a coupling flow's first sample on a 2-core CPU).
_solve_chunk = tf.function(_solve_chunk_impl, jit_compile=True, reduce_retracing=True,
                           autograph=False)


def _solve_rows(y, coordinate, logits, locs, scales, table, max_iterations):
    """``_solve_chunk`` over any number of elements, each with its own parameter row.

    Args: flat ``y`` and ``coordinate`` ``[n]``, parameters ``[n, K]``, the
    base maps' Hermite ``table`` for the starts.

    Returns ``(x, converged)``, flat.
    """
    n_chunks = (tf.size(y) + _CHUNK - 1) // _CHUNK
    y_c, coordinate_c = _chunks(y, n_chunks), _chunks(coordinate, n_chunks)
    logits_c, locs_c = _chunks(logits, n_chunks), _chunks(locs, n_chunks)
    scales_c = _chunks(scales, n_chunks, 1)  # positive padding: no 0/0 in the bracket
    identity = tf.range(_CHUNK)

    def solve_chunk(i, count):
        return _solve_chunk(y_c[i], identity, coordinate_c[i], count, logits_c[i], locs_c[i],
                            scales_c[i], *table, tf.constant(True), max_iterations)

    return _over_chunks(y, solve_chunk)


def _padded_maps(logits, locs, scales):
    """A layer's base maps ``[D, K]`` as the kernel's parameter rows.

    Padded to ``max(_CHUNK, D)`` rows (scale 1: no 0/0 in a bracket), once
    per layer: its table's nodes and its elements' solves share them.
    """
    n_dims = tf.shape(locs)[0]
    pad = [[0, tf.maximum(_CHUNK, n_dims) - n_dims], [0, 0]]
    return tf.pad(logits, pad), tf.pad(locs, pad), tf.pad(scales, pad, constant_values=1)


def _solve_flat(y, member, maps, table, use_table=True, max_iterations=_MAX_ITERATIONS):
    """Roots of ``T_m(x) = y`` over flat ``y``, element ``i`` in map ``member[i]``.

    ``maps`` are the layer's ``[D, K]`` base maps as ``_padded_maps`` rows
    (``_CHUNK`` of them, the kernel's fixed shape; ``D`` if more, another
    compilation). Each element starts from the Hermite interpolant of
    ``table`` (``(table_x, table_m)``, ``mixture_cdf.grid_table``), or,
    unless ``use_table``, from the weighted mean of the component quantiles
    (how the table's own nodes are solved; ``table`` then only gives the
    kernel its shape).

    Returns ``(x, converged)``, flat.
    """
    n_chunks = (tf.size(y) + _CHUNK - 1) // _CHUNK
    y_c, member_c = _chunks(y, n_chunks), _chunks(member, n_chunks)
    use_table = tf.constant(use_table)

    def solve_chunk(i, count):
        return _solve_chunk(y_c[i], member_c[i], member_c[i], count, *maps, *table, use_table,
                            max_iterations)

    return _over_chunks(y, solve_chunk)


def _layer_conditioner(conditioner, layer):
    return [w[layer] for w in conditioner]


def _layer_floor(floor, layer):
    return None if floor is None else floor[layer]


def _floored(scales, floor, layer):
    """Layer ``layer``'s base scales ``[D, K]`` under the flow's scale floor (if any)."""
    return coupling_math.floored_scales(scales[layer], _layer_floor(floor, layer))


def _coupled(h, layer, logits, locs, scales, masks, conditioner, floor=None):
    """Layer ``layer``'s per-row mixture parameters ``[N, D, K]`` at input ``h``."""
    offsets = coupling_math.conditioner_offsets(
        h, masks[layer], _layer_conditioner(conditioner, layer), tf.shape(locs)[-1])
    return coupling_math.coupled_parameters(logits[layer], locs[layer], scales[layer], offsets,
                                            _layer_floor(floor, layer))


def _coupling_solver(h, layer, logits, locs, scales, masks, conditioner, max_iterations,
                     floor=None):
    """Root of a coupling layer's map for ``h`` ``[N, D]``: ``(x, converged)``.

    The conditioning coordinates are solved with the base parameters (as a
    marginal layer's); their roots give the other coordinates' parameters,
    which are solved element by element, each starting from the base map's
    Hermite-table interpolant (the base root would be as rough a start for
    a shifted mixture, and solving for it cost the base map's evaluations
    for every free element).
    """
    base_scales = _floored(scales, floor, layer)
    maps = _padded_maps(logits[layer], locs[layer], base_scales)
    table = _mixture_table(logits[layer], locs[layer], base_scales, maps, max_iterations)
    flat_h = tf.reshape(h, [-1])
    member = tf.tile(tf.range(tf.shape(h)[1]), [tf.shape(h)[0]])
    free = tf.reshape(tf.broadcast_to(tf.equal(masks[layer], 0), tf.shape(h)), [-1])
    fixed, where = tf.where(~free), tf.where(free)
    x_fixed, converged_fixed = _solve_flat(
        tf.gather_nd(flat_h, fixed), tf.gather_nd(member, fixed), maps, table,
        max_iterations=max_iterations)
    h_free, free_member = tf.gather_nd(flat_h, where), tf.gather_nd(member, where)
    # (x0's free entries still hold their targets: the conditioner masks them out.)
    x0 = tf.reshape(tf.tensor_scatter_nd_update(flat_h, fixed, x_fixed), tf.shape(h))
    params = _coupled(x0, layer, logits, locs, scales, masks, conditioner, floor)
    k = tf.shape(locs)[-1]
    rows = [tf.gather_nd(tf.reshape(p, [-1, k]), where) for p in params]
    x_free, converged_free = _solve_rows(h_free, free_member, *rows, table, max_iterations)
    x = tf.tensor_scatter_nd_update(tf.reshape(x0, [-1]), where, x_free)
    converged = tf.tensor_scatter_nd_update(
        tf.tensor_scatter_nd_update(tf.ones_like(free), fixed, converged_fixed), where,
        converged_free)
    return tf.reshape(x, tf.shape(h)), tf.reshape(converged, tf.shape(h))


def _mixture_table(logits, locs, scales, maps, max_iterations):
    """The Hermite table (``mixture_cdf.grid_table``) of one layer's map, params ``[D, K]``.

    ``maps`` are the same parameters as the kernel's rows (``_padded_maps``).
    The nodes are solved from the component quantiles' weighted mean. (A
    node that did not converge only makes a worse start; the elements' own
    solves are what is reported.)
    """
    dtype = locs.dtype
    np_dtype = dtype.as_numpy_dtype
    n_dims = tf.shape(locs)[0]
    grid_size, grid_z = mixture_cdf.GRID_SIZE, np_dtype(mixture_cdf.GRID_Z)
    z_grid = tf.reshape(tf.broadcast_to(
        tf.linspace(-grid_z, grid_z, grid_size)[:, tf.newaxis], [grid_size, n_dims]), [-1])
    grid_member = tf.tile(tf.range(n_dims), [grid_size])
    no_table = (tf.zeros([n_dims * grid_size], dtype),) * 2
    x_grid, _ = _solve_flat(z_grid, grid_member, maps, no_table, use_table=False,
                            max_iterations=max_iterations)
    x_grid = tf.reshape(x_grid, [grid_size, n_dims])
    _, log_slope = mixture_cdf.mixture_cdf_value(x_grid, logits, locs, scales)
    return mixture_cdf.grid_table(x_grid, log_slope)


def _mixture_solver(h, logits, locs, scales, max_iterations):
    """Root of one layer's mixture CDF map for ``h`` ``[N, D]`` (params ``[D, K]``).

    Returns ``(x, converged)``, ``[N, D]`` each, each element started from
    the layer's Hermite table (``_mixture_table``).
    """
    maps = _padded_maps(logits, locs, scales)
    table = _mixture_table(logits, locs, scales, maps, max_iterations)
    member = tf.tile(tf.range(tf.shape(locs)[0]), [tf.shape(h)[0]])
    x, converged = _solve_flat(tf.reshape(h, [-1]), member, maps, table,
                               max_iterations=max_iterations)
    return tf.reshape(x, tf.shape(h)), tf.reshape(converged, tf.shape(h))


def _invert_layers(z, logits, locs, scales, rotations, max_iterations=_MAX_ITERATIONS,
                   masks=None, conditioner=None, floor=None):
    """The inverse over the layers, last layer first (a graph loop; no gradient).

    With ``masks`` and ``conditioner`` the layers are couplings
    (``_coupling_solver``); ``floor`` is the flow's ``[L, D]`` scale floor.

    Returns ``(x, unconverged)``: ``[N, D]`` and ``[N]`` int32, each row's
    number of coordinate solves (over all layers) that stopped at
    ``max_iterations``.
    """
    max_iterations = tf.convert_to_tensor(max_iterations, tf.int32)

    def body(layer, h, unconverged):
        h = tf.matmul(h, rotations[layer])  # the rotation's inverse: rows h -> h Q
        if conditioner is None:
            h, converged = _mixture_solver(h, logits[layer], locs[layer],
                                           _floored(scales, floor, layer), max_iterations)
        else:
            h, converged = _coupling_solver(h, layer, logits, locs, scales, masks, conditioner,
                                            max_iterations, floor)
        unconverged += tf.reduce_sum(tf.cast(~converged, tf.int32), axis=-1)
        return layer - 1, h, unconverged

    # back_prop=False: never differentiated (see `invert_stacked`), and no
    # gradient bookkeeping inside the compiled kernel when a tape is active.
    _, x, unconverged = tf.compat.v1.while_loop(
        lambda layer, *_: layer >= 0, body,
        (tf.shape(locs)[0] - 1, z, tf.zeros(tf.shape(z)[:1], tf.int32)), back_prop=False,
        return_same_structure=True)
    return x, unconverged


def _implicit_vjp(x, dx, logits, locs, scales, rotations, masks=None, conditioner=None,
                  floor=None):
    """Gradients of ``x = G^{-1}(z)`` by the implicit-function rule, layer by layer.

    Layer ``l``'s inverse is ``h_l = T_l^{-1}(h_{l+1} Q_l)``: with
    ``y = T_l(h_l)`` (closed form, from ``x`` upwards), ``dy = dh_l / T_l'(h_l)``,
    ``dtheta_l = -(dT_l/dtheta_l)^T dy``, ``dQ_l = h_{l+1}^T dy`` and
    ``dh_{l+1} = dy Q_l^T``: what ``root_finding.invert_increasing`` gives each
    layer, never differentiating a loop of the root-find.

    A coupling layer ``y = F(h)`` has a block-triangular Jacobian ``J``
    (``y_b`` depends on ``h_a`` through the conditioner), so
    ``dy = J^{-T} dh`` is solved in two steps: ``dy_b = dh_b / T'(h_b)``, then
    ``dy_a = (dh_a - (J^T dy_b)_a) / T'(h_a)``, with ``J^T dy_b`` one
    vector-Jacobian product; the conditioner's weights get
    ``-(dF/dW)^T dy``.

    Returns ``(dz, d_logits, d_locs, d_scales, d_rotations, *d_conditioner)``.
    """
    n_layers = tf.shape(locs)[0]
    conditioner = list(conditioner or [])

    def body(layer, h, dh, d_logits, d_locs, d_scales, d_rotations, *d_conditioner):
        params = [logits[layer], locs[layer], scales[layer]]
        layer_floor = _layer_floor(floor, layer)
        # The mixture's gradients come from `mixture_cdf_vjp` (its analytic
        # gradient applied directly), the tapes record only plain ops: no
        # custom-gradient op in this loop body, which a SavedModel could not
        # save (its loads then warned that gradients would fail).
        if not conditioner:
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(params[2])
                floored = coupling_math.floored_scales(params[2], layer_floor)
            y, log_slope, vjp = mixture_cdf.mixture_cdf_vjp(h, params[0], params[1], floored)
            dy = dh * tf.exp(-log_slope)
            _, g_logits, g_locs, g_floored = vjp(-dy)
            grads = [g_logits, g_locs,
                     tape.gradient(floored, params[2], output_gradients=g_floored,
                                   unconnected_gradients=tf.UnconnectedGradients.ZERO)]
        else:
            weights = _layer_conditioner(conditioner, layer)
            with tf.GradientTape(watch_accessed_variables=False, persistent=True) as tape:
                tape.watch([h] + params + weights)
                offsets = coupling_math.conditioner_offsets(h, masks[layer], weights,
                                                            tf.shape(locs)[-1])
                coupled = list(coupling_math.coupled_parameters(*params, offsets, layer_floor))

            y, log_slope, mixture_vjp = mixture_cdf.mixture_cdf_vjp(h, *coupled)

            def vjp(dy):
                """``dy^T dy/d(h, params, weights)``: the mixture's, then the tape's."""
                g = mixture_vjp(dy)
                back = tape.gradient(coupled, [h] + params + weights, output_gradients=g[1:],
                                     unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return [g[0] + back[0]] + back[1:]

            mask = tf.cast(masks[layer], h.dtype)
            inv_slope = tf.exp(-log_slope)
            dy_free = dh * inv_slope * (1.0 - mask)
            through = vjp(dy_free)[0]
            dy = dy_free + (dh - through) * inv_slope * mask
            grads = vjp(-dy)[1:]
            del tape
        q = rotations[layer]
        h_next = tf.matmul(y, q, transpose_b=True)
        written = [a.write(layer, g) for a, g in zip(d_conditioner, grads[3:])]
        return (layer + 1, h_next, tf.matmul(dy, q, transpose_b=True),
                d_logits.write(layer, grads[0]), d_locs.write(layer, grads[1]),
                d_scales.write(layer, grads[2]),
                d_rotations.write(layer, tf.matmul(h_next, dy, transpose_a=True)), *written)

    arrays = [tf.TensorArray(t.dtype, size=n_layers)
              for t in (logits, locs, scales, rotations, *conditioner)]
    out = tf.while_loop(lambda layer, *_: layer < n_layers, body,
                        (tf.constant(0), x, dx, *arrays))
    return (out[2],) + tuple(a.stack() for a in out[3:])


def gaussianize_stacked(x, logits, locs, scales, rotations, masks=None, conditioner=None, *,
                        unroll=False, scale_floor=None):
    """The Gaussianizer ``z = G(x)`` and ``log|det dG/dx|`` as one loop over stacked layers.

    Layer ``l`` maps rows ``h -> T_l(h) Q_l^T`` (the mixture CDF map per
    coordinate, then the rotation ``Q_l``); the log-det is the sum of the
    mixture log-derivatives (rotations add 0). A ``tf.while_loop`` over
    the layers: the graph (and a SavedModel's export time) does not grow
    with ``L``. Gradients come from ``mixture_cdf_transform``'s analytic
    gradient, as in the flow.

    Args:
      x: ``[N, D]``.
      logits, locs, scales: ``[L, D, K]``; rotations: ``[L, D, D]``.
      masks, conditioner: for coupling layers, ``[L, D]`` masks and the
        conditioner's stacked weights (``tfp_gauss.math.coupling``): layer
        ``l``'s parameters are then per row, shifted by the conditioner.
      scale_floor: optional ``[L, D]`` floor of the mixture scales: layer
        ``l`` uses ``sqrt(s^2 + scale_floor[l]^2)`` (after the conditioner's
        shift; ``tfp_gauss.math.coupling.floored_scales``).
      unroll: a Python loop over the layers instead of the ``tf.while_loop``
        (``L`` must be static). When ``L`` is static the while loop is
        bounded by it, so its gradient compiles with XLA.

    Returns:
      ``(z, log_det)``: ``[N, D]`` and ``[N]``, what
      ``flows.flow_gaussianizer(flow_from_stacked(...))`` gives (``forward`` and
      ``forward_log_det_jacobian(x, event_ndims=1)``) to rounding.
    """

    def body(layer, h, log_det):
        if conditioner is None:
            params = (logits[layer], locs[layer], _floored(scales, scale_floor, layer))
        else:
            params = _coupled(h, layer, logits, locs, scales, masks, conditioner, scale_floor)
        y, ld = mixture_cdf.mixture_cdf_transform(h, *params)
        return layer + 1, tf.matmul(y, rotations[layer], transpose_b=True), (
            log_det + tf.reduce_sum(ld, axis=-1))

    state = (tf.constant(0), x, tf.zeros(tf.shape(x)[:1], x.dtype))
    n_layers = tf.compat.dimension_value(locs.shape[0])
    if unroll:
        if n_layers is None:
            raise ValueError("gaussianize_stacked(unroll=True) needs a static number of layers; "
                             f"locs has shape {locs.shape}.")
        for _ in range(n_layers):
            state = body(*state)
        return state[1], state[2]
    _, z, log_det = tf.while_loop(lambda layer, *_: layer < tf.shape(locs)[0], body, state,
                                  maximum_iterations=n_layers)
    return z, log_det


def gaussianize_stacked_x_gradient(x, logits, locs, scales, rotations, masks=None,
                                   conditioner=None, *, scale_floor=None):
    """``gaussianize_stacked``'s ``(z, log_det)``, differentiable in ``x`` after a SavedModel load.

    ``gaussianize_stacked`` differentiates its layer loop, whose body holds
    ``mixture_cdf_transform``'s custom gradient: a SavedModel does not keep a
    custom gradient inside a ``tf.while_loop``, so a tape through a reloaded
    signature failed ("... is out of scope"). Here the custom gradient wraps
    the whole computation instead (and is saved with it). The forward keeps
    nothing; the gradient recomputes the layer inputs from ``x`` and runs
    the layers in reverse, applying each mixture map's analytic
    vector-Jacobian product (``mixture_cdf_vjp``, plain ops) and, for a
    coupling layer, its parameters' path through the conditioner (a tape in
    the loop body). Both loops are plain differentiable ops, so second
    derivatives (a nested tape) are right too. The gradient reaches ``x``
    only (a served model's parameters are constants); the parameters get none.

    Args and returns: as ``gaussianize_stacked``.

    #### Example

    ```python
    import numpy as np
    import tensorflow as tf
    import tfp_gauss
    from tfp_gauss import sampling
    from tfp_gauss.bijectors.householder_rotation import householder_product

    flow = tfp_gauss.gaussianization_flow(2, n_layers=3, n_components=4, seed=0)
    layers = tfp_gauss.flows.flow_values(flow)         # one dict of arrays per layer
    params = [np.stack([layer[k] for layer in layers]) for k in ("logits", "locs", "scales")]
    params.append(householder_product(np.stack([layer["vectors"] for layer in layers])))
    x = tf.constant([[0.5, -1.0], [2.0, 0.3]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        z, log_det = sampling.gaussianize_stacked_x_gradient(x, *params)   # [2, 2], [2]
        log_prob = tf.reduce_sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi), -1) + log_det
    score = tape.gradient(log_prob, x)                                     # d log p / dx
    np.testing.assert_allclose(log_prob, flow.log_prob(x), rtol=1e-5)
    ```
    """
    # (tensors, read here: the custom gradient below must capture no variables)
    logits, locs, scales, rotations = (tf.convert_to_tensor(p)
                                       for p in (logits, locs, scales, rotations))
    if conditioner is not None:
        masks, conditioner = tf.convert_to_tensor(masks), [tf.convert_to_tensor(w)
                                                           for w in conditioner]
    if scale_floor is not None:
        scale_floor = tf.convert_to_tensor(scale_floor)
    n_layers = tf.shape(locs)[0]

    def layer_params(h, layer):
        if conditioner is None:
            return logits[layer], locs[layer], _floored(scales, scale_floor, layer)
        return _coupled(h, layer, logits, locs, scales, masks, conditioner, scale_floor)

    def forward(x, keep_inputs):
        def body(layer, h, log_det, inputs):
            if keep_inputs:
                inputs = inputs.write(layer, h)
            y, ld = mixture_cdf.mixture_cdf_value(h, *layer_params(h, layer))
            return (layer + 1, tf.matmul(y, rotations[layer], transpose_b=True),
                    log_det + tf.reduce_sum(ld, axis=-1), inputs)

        inputs = (tf.TensorArray(x.dtype, size=n_layers, element_shape=x.shape)
                  if keep_inputs else tf.zeros([], x.dtype))
        _, z, log_det, inputs = tf.while_loop(
            lambda layer, *_: layer < n_layers, body,
            (tf.constant(0), x, tf.zeros(tf.shape(x)[:1], x.dtype), inputs))
        return z, log_det, (inputs.stack() if keep_inputs else None)

    @tf.custom_gradient
    def run(x):
        z, log_det, _ = forward(x, keep_inputs=False)

        def grad(dz, dlog_det):
            # (an output the caller does not use may come with no gradient)
            dz = tf.zeros_like(z) if dz is None else dz
            dlog_det = tf.zeros_like(log_det) if dlog_det is None else dlog_det
            dlog_det = tf.broadcast_to(dlog_det[:, tf.newaxis], tf.shape(dz))
            inputs = forward(x, keep_inputs=True)[2]

            def back(layer, dh):
                # out = T(h) Q^T, so dT = dh Q
                h = inputs[layer]
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(h)
                    params = layer_params(h, layer)
                _, _, vjp = mixture_cdf.mixture_cdf_vjp(h, *params)
                dh_prev, *d_params = vjp(tf.matmul(dh, rotations[layer]), dlog_det)
                if conditioner is not None:
                    dh_prev += tape.gradient(params, h, output_gradients=d_params,
                                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return layer - 1, dh_prev

            return tf.while_loop(lambda layer, _: layer >= 0, back, (n_layers - 1, dz))[1]

        return (z, log_det), grad

    return run(tf.convert_to_tensor(x, logits.dtype))


def _split_extras(extras, has_floor):
    """``(scale_floor, masks, conditioner)`` from positional ``[floor,] [masks, *weights]``."""
    extras = list(extras)
    floor = extras.pop(0) if has_floor else None
    masks, conditioner = (extras[0], extras[1:]) if extras else (None, None)
    return floor, masks, conditioner


def _log_prob_impl(x, logits, locs, raw_scales, vectors, *extras, unroll=False, has_floor=False):
    scales = tfb.Softplus().forward(raw_scales)
    rotations = householder_rotation.householder_product(vectors)
    floor, masks, conditioner = _split_extras(extras, has_floor)
    z, log_det = gaussianize_stacked(x, logits, locs, scales, rotations, masks, conditioner,
                                     unroll=unroll, scale_floor=floor)
    # The flow's base, N(0, I_D).
    half_log_2pi = x.dtype.as_numpy_dtype(0.5 * np.log(2.0 * np.pi))
    return (-0.5 * tf.reduce_sum(tf.square(z), axis=-1)
            - tf.cast(tf.shape(z)[-1], x.dtype) * half_log_2pi + log_det)


_LOG_PROB_FNS = {}


def _coupling_specs(dtype, conditioner):
    """Input specs of ``masks`` and the conditioner's stacked weights (sizes unknown)."""
    return [tf.TensorSpec([None, None], dtype)] + [
        tf.TensorSpec([None] * (3 if i % 2 == 0 else 2), dtype) for i in range(len(conditioner))]


def _coupling_args(dtype, masks, conditioner, scale_floor=None):
    """The positional extras ``[floor,] [masks, *weights]`` as tensors of ``dtype``."""
    floor = [] if scale_floor is None else [tf.convert_to_tensor(scale_floor, dtype)]
    if conditioner is None:
        return floor
    return floor + [tf.convert_to_tensor(t, dtype) for t in [masks, *conditioner]]


def _extra_specs(dtype, conditioner, scale_floor):
    floor = [] if scale_floor is None else [tf.TensorSpec([None, None], dtype)]
    return floor + ([] if conditioner is None else _coupling_specs(dtype, conditioner))


def log_prob_stacked(x, logits, locs, raw_scales, vectors, *, masks=None, conditioner=None,
                     scale_floor=None):
    """``log p(x)`` of ``flow_from_stacked(logits, locs, raw_scales, vectors)``, one graph.

    The flow's ``log_prob`` (to rounding) from ``gaussianize_stacked``, in a
    graph traced once per dtype and process for every batch size, ``D``,
    ``L`` and model (its signature leaves every size unknown), so a new
    batch size costs no tracing. Called inside another ``tf.function`` it
    is a function call; under ``jit_compile=True`` XLA inlines it (and, as
    for any XLA computation, compiles once per input shape).

    Args:
      x: ``[N, D]``.
      logits, locs, raw_scales: ``[L, D, K]`` tensors or variables (scales
        are ``softplus(raw_scales)``); vectors: ``[L, M, D]``.
      masks, conditioner: a coupling flow's ``[L, D]`` masks and stacked
        conditioner weights (``flow_from_stacked``).
      scale_floor: optional ``[L, D]`` scale floor (``flow_from_stacked``).

    Returns:
      ``[N]`` log densities. Differentiable (the mixture maps' analytic
      gradient).
    """
    x = tf.convert_to_tensor(x)
    has_floor = scale_floor is not None
    key = (x.dtype, None if conditioner is None else len(conditioner), has_floor)
    fn = _LOG_PROB_FNS.get(key)
    if fn is None:
        spec = tf.TensorSpec([None, None, None], x.dtype)
        extra = _extra_specs(x.dtype, conditioner, scale_floor)
        fn = _LOG_PROB_FNS[key] = tf.function(
            functools.partial(_log_prob_impl, has_floor=has_floor),
            input_signature=[tf.TensorSpec([None, None], x.dtype), spec, spec, spec, spec,
                             *extra], autograph=False)
    return fn(x, *(tf.convert_to_tensor(p, x.dtype)
                   for p in (logits, locs, raw_scales, vectors)),
              *_coupling_args(x.dtype, masks, conditioner, scale_floor))


def training_log_prob(x, logits, locs, raw_scales, vectors, *, masks=None, conditioner=None,
                      scale_floor=None):
    """``log p(x)`` of ``flow_from_stacked(...)`` for a training step, traced inline.

    The same maps as ``log_prob_stacked`` (and the flow's ``log_prob``, to
    rounding), for a ``train_step``: traced into the caller's graph with
    the parameters' static shapes, so its gradient compiles with XLA.
    Marginal layers run in a ``tf.while_loop`` bounded by ``L`` (a
    1,000-step marginal fit takes 0.80x the time of one through the
    ``tfb.Chain``, ``benchmarks/results/fit_speed.md``); coupling layers
    are unrolled (in one ad-hoc two-moons measurement the bounded loop
    compiled faster but trained coupling layers slower per step).

    Args: as ``log_prob_stacked`` (``L`` static).

    Returns:
      ``[N]`` log densities, differentiable in every parameter.
    """
    x = tf.convert_to_tensor(x)
    params = [tf.convert_to_tensor(p, x.dtype) for p in (logits, locs, raw_scales, vectors)]
    return _log_prob_impl(x, *params, *_coupling_args(x.dtype, masks, conditioner, scale_floor),
                          unroll=conditioner is not None, has_floor=scale_floor is not None)


def invert_stacked(z, logits, locs, scales, rotations, masks=None, conditioner=None, *,
                   scale_floor=None):
    """The Gaussianizer's inverse ``x = G^{-1}(z)`` for parameters stacked by layer.

    Args:
      z: ``[N, D]`` latents.
      logits, locs, scales: ``[L, D, K]`` (``scales`` positive).
      rotations: ``[L, D, D]``, layer ``l``'s orthogonal ``Q`` (its forward is
        ``x -> Q x``).
      masks, conditioner: a coupling flow's ``[L, D]`` masks and stacked
        conditioner weights.
      scale_floor: optional ``[L, D]`` scale floor (a constant: no gradient).

    Returns:
      ``[N, D]``: what ``flow_from_stacked(...).bijector.forward(z)`` gives (to
      the root-find's tolerance), with the implicit-function gradient
      (``tf.custom_gradient``; no loop is differentiated).
    """
    z = tf.convert_to_tensor(z)
    conditioner = [] if conditioner is None else [tf.convert_to_tensor(w) for w in conditioner]
    masks = tf.convert_to_tensor(masks, z.dtype) if conditioner else None
    floor = None if scale_floor is None else tf.convert_to_tensor(scale_floor, z.dtype)

    @tf.custom_gradient
    def _invert(z, logits, locs, scales, rotations, *weights):
        fixed = [tf.stop_gradient(t) for t in (z, logits, locs, scales, rotations)]
        x, _ = _invert_layers(*fixed, masks=masks,
                              conditioner=[tf.stop_gradient(w) for w in weights] or None,
                              floor=floor)

        def grad(dx):
            return list(_implicit_vjp(x, dx, logits, locs, scales, rotations, masks,
                                      list(weights), floor))

        return x, grad

    return _invert(z, logits, locs, scales, rotations, *conditioner)


def draw_stacked(n, seed, logits, locs, raw_scales, vectors, max_iterations=_MAX_ITERATIONS,
                 *coupling, scale_floor=None):
    """The graph of ``sample_stacked`` without its gradient, to embed in another graph.

    What a SavedModel's ``sample`` signature runs (``tfp_gauss.export``): the
    latents the flow's base draws for ``seed``, inverted layer by layer
    with the root-find in the kernel XLA compiles once per ``(D, K, dtype)``.

    Args:
      n: int32 scalar; seed: int32 ``[2]`` stateless seed.
      logits, locs, raw_scales: ``[L, D, K]`` tensors or variables;
        ``vectors``: ``[L, M, D]``.
      max_iterations: int32 scalar, the root-find's cap per element.
      *coupling: for a coupling flow, ``masks`` ``[L, D]`` then the
        conditioner's stacked weights.
      scale_floor: optional ``[L, D]`` scale floor.

    Returns:
      ``(x, unconverged)``: ``[n, D]`` draws and ``[n]`` int32 counts of
      each draw's coordinate solves that stopped at the cap.
    """
    locs = tf.convert_to_tensor(locs)
    # What the flow's base, tfd.Sample(tfd.Normal(0, 1), D), draws for `seed`.
    z = samplers.normal([n, tf.shape(locs)[1]], seed=seed, dtype=locs.dtype)
    scales = tfb.Softplus().forward(raw_scales)
    rotations = householder_rotation.householder_product(vectors)
    masks, conditioner = (coupling[0], list(coupling[1:])) if coupling else (None, None)
    return _invert_layers(z, logits, locs, scales, rotations, max_iterations, masks, conditioner,
                          scale_floor)


def _draw(n, seed, logits, locs, raw_scales, vectors, max_iterations, *extras, has_floor=False):
    # draw_stacked without defaults: what tf.function's input signature needs.
    floor, masks, conditioner = _split_extras(extras, has_floor)
    coupling = [] if conditioner is None else [masks, *conditioner]
    return draw_stacked(n, seed, logits, locs, raw_scales, vectors, max_iterations, *coupling,
                        scale_floor=floor)


_SAMPLE_FNS = {}


def sample_stacked(n, seed, logits, locs, raw_scales, vectors, *, max_iterations=_MAX_ITERATIONS,
                   validate_args=False, return_diagnostics=False, masks=None, conditioner=None,
                   scale_floor=None):
    """``n`` draws of ``flow_from_stacked(logits, locs, raw_scales, vectors)``.

    Equal (to the root-find's tolerance) to that flow's ``sample(n, seed=seed)``
    for a stateless seed: the same latents, inverted by ``invert_stacked``. One graph per dtype
    serves every ``n``, seed, model and ``max_iterations``; the compiled
    kernel is shared by models with the same ``D``, ``K`` and dtype.

    Each coordinate of each layer is a root-find of at most
    ``max_iterations`` steps. A solve that reaches the cap keeps its last
    iterate (inside its bracket: finite, but not accurate); with
    ``validate_args`` that is an error, and ``return_diagnostics`` reports
    how many such solves each draw went through.

    Args:
      n: int, the number of draws.
      seed: an int (the same rows for the same int: the stateless seed
        ``[s mod 2**31, s >> 31]``; TFP's own int seeds are stateful), a
        ``np.random.Generator`` (a stateless seed drawn from it, so it
        advances), a stateless seed (int32 ``[2]``), or ``None`` for fresh
        draws.
      logits, locs, raw_scales: ``[L, D, K]``; ``vectors``: ``[L, M, D]``.
      max_iterations: int >= 1, cap on each root-find's steps (a runtime
        value: changing it does not recompile).
      validate_args: raise ``tf.errors.InvalidArgumentError`` if any solve
        stopped at the cap (the message says how many, in which draw).
      return_diagnostics: also return the counts.
      masks, conditioner: a coupling flow's ``[L, D]`` masks and stacked
        conditioner weights (``flows.flow_from_stacked``); the gradient then
        reaches the conditioner too.
      scale_floor: optional ``[L, D]`` scale floor (``flows.flow_from_stacked``).

    Returns:
      ``[n, D]`` tensor; with ``return_diagnostics``, ``(x, unconverged)``
      where ``unconverged`` (``[n]`` int32) counts each draw's coordinate
      solves, over all layers, that stopped at the cap (0 everywhere when
      every solve converged).

    #### Example

    ```python
    from tfp_gauss import flows, sampling

    values = flows.stack_flow_values(flows.random_flow_values(2, 3, 4, seed=0))
    params = [values[p] for p in flows.STACKED_PARAMETERS]
    x, unconverged = sampling.sample_stacked(100, 1, *params, return_diagnostics=True)
    int(unconverged.numpy().sum())      # 0: every root converged
    ```
    """
    n = _validation.check_int(n, "n", 0)
    max_iterations = _validation.check_int(max_iterations, "max_iterations")
    dtype = tf.as_dtype(getattr(locs, "dtype", None) or np.asarray(locs).dtype)
    has_floor = scale_floor is not None
    key = (dtype, None if conditioner is None else len(conditioner), has_floor)
    fn = _SAMPLE_FNS.get(key)
    if fn is None:
        spec = tf.TensorSpec([None, None, None], dtype)
        scalar = tf.TensorSpec([], tf.int32)
        extra = _extra_specs(dtype, conditioner, scale_floor)
        fn = _SAMPLE_FNS[key] = tf.function(
            functools.partial(_draw, has_floor=has_floor),
            input_signature=[scalar, tf.TensorSpec([2], tf.int32), spec, spec, spec, spec,
                             scalar, *extra], autograph=False)
    seed = tfp.random.sanitize_seed(_validation.stateless_seed(seed))
    params = [tf.convert_to_tensor(p, dtype) for p in (logits, locs, raw_scales, vectors)]
    floor = None if scale_floor is None else tf.convert_to_tensor(scale_floor, dtype)
    coupling = _coupling_args(dtype, masks, conditioner)
    # The compiled function is called on constants (no tape records it, so
    # TF builds no gradient bookkeeping inside it); the gradient is attached
    # below, from the samples.
    x, unconverged = fn(tf.constant(n, tf.int32), seed,
                        *(tf.stop_gradient(p) for p in params),
                        tf.constant(int(max_iterations), tf.int32),
                        *([] if floor is None else [floor]),
                        *(tf.stop_gradient(t) for t in coupling))
    if validate_args:
        failed = tf.reduce_sum(tf.cast(unconverged > 0, tf.int32))
        check = tf.debugging.Assert(
            tf.equal(failed, 0),
            ["sample_stacked: the root-find stopped at max_iterations =", max_iterations,
             "without converging in", failed, "of", n, "draws (the first is draw",
             tf.argmax(unconverged, output_type=tf.int32), "with",
             tf.reduce_max(unconverged), "unconverged coordinate solves). Raise "
             "max_iterations, or check the parameters (scales spanning many orders of "
             "magnitude need more bisection steps)."], summarize=1)
        with tf.control_dependencies([check] if check is not None else []):
            x = tf.identity(x)

    masks = coupling[0] if coupling else None

    @tf.custom_gradient
    def _attach_gradient(logits, locs, raw_scales, vectors, *weights):
        def grad(dx):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch([raw_scales, vectors])
                scales = tfb.Softplus().forward(raw_scales)
                rotations = householder_rotation.householder_product(vectors)
            _, d_logits, d_locs, d_scales, d_rotations, *d_weights = _implicit_vjp(
                x, dx, logits, locs, scales, rotations, masks, list(weights), floor)
            d_raw, d_vectors = tape.gradient(
                [scales, rotations], [raw_scales, vectors],
                output_gradients=[d_scales, d_rotations],
                unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return [d_logits, d_locs, d_raw, d_vectors, *d_weights]

        return tf.identity(x), grad

    x = _attach_gradient(*params, *coupling[1:])
    return (x, unconverged) if return_diagnostics else x
