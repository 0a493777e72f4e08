"""Gaussianization flows as TFP distributions.

A flow is ``tfd.TransformedDistribution(N(0, I_D), tfb.Invert(G))`` where the
Gaussianizer ``G`` maps data ``x`` to latents ``z`` through ``L`` layers of

    MixtureGaussianCDF (per coordinate)  ->  HouseholderRotation (Q z).

``log_prob(x) = log N(G(x); 0, I) + log|det dG/dx|`` only runs ``G``'s closed
form direction; ``sample()`` runs ``G``'s inverse (the mixture root-find).
Greedy RBIG (``tfp_gauss.fit_rbig``), the trainable flow below and the Keras
model all build exactly this structure, so their parameters are interchangeable.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.bijectors import invert as invert_lib

from tfp_gauss import _validation
from tfp_gauss.bijectors import (
    HouseholderRotation,
    MixtureCDFCoupling,
    MixtureGaussianCDF,
    MLPConditioner,
)
from tfp_gauss.math import coupling as coupling_math

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["ARCHITECTURES", "STACKED_PARAMETERS", "check_architecture", "check_flow_arguments",
           "flow_from_layers", "flow_from_stacked", "flow_gaussianizer", "flow_layers",
           "flow_values", "gaussianization_flow", "gaussianizer", "random_flow_values",
           "softplus_inverse", "softplus_scales", "stack_flow_values", "stacked_arguments"]


def gaussianizer(layers, name="gaussianizer"):
    """The ``x -> z`` chain of ``[(mixture, rotation), ...]`` layers, first layer first."""
    parts = [b for layer in layers for b in layer]
    # tfb.Chain applies its list right to left.
    return tfb.Chain(parts[::-1], name=name)


def flow_from_layers(layers, name=None):
    """``TransformedDistribution`` of a standard normal through ``Invert(gaussianizer)``.

    Args:
      layers: list of ``(MixtureGaussianCDF or MixtureCDFCoupling,
        HouseholderRotation)`` pairs in ``x -> z`` order, all with event size
        ``D`` and one dtype.

    Returns:
      A ``tfd.TransformedDistribution`` with event shape ``[D]``.
    """
    if not layers:
        raise ValueError("A Gaussianization flow needs at least one layer.")
    mixture = layers[0][0]
    mixture = getattr(mixture, "marginal", mixture)  # a coupling's base mixture
    dtype = mixture.dtype
    n_dims = tf.TensorShape(mixture.locs.shape)[-2]
    base = tfd.Sample(tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)), n_dims)
    return tfd.TransformedDistribution(base, tfb.Invert(gaussianizer(layers)), name=name)


def flow_layers(dist):
    """The ``[(marginal, HouseholderRotation), ...]`` layers of a flow.

    ``marginal`` is a ``MixtureGaussianCDF`` or, in a coupling flow, a
    ``MixtureCDFCoupling``.

    Raises:
      ValueError: ``dist`` is not a flow built by tfp_gauss (a
        ``TransformedDistribution`` over ``Invert(Chain)`` of alternating
        mixture (or coupling) and rotation bijectors).
    """
    bij = getattr(dist, "bijector", None)
    chain = getattr(bij, "bijector", None)
    parts = getattr(chain, "bijectors", None)
    # tfb.Invert of a bijector that is not a CompositeTensor (a coupling
    # layer's Keras-free conditioner module is not) is the base class _Invert.
    if not isinstance(bij, invert_lib._Invert) or parts is None:
        raise ValueError(
            "Expected a Gaussianization flow: TransformedDistribution(N(0, I), "
            f"Invert(Chain([...]))); got {type(dist).__name__} with bijector {bij!r}.")
    parts = list(parts)[::-1]
    ok = (len(parts) % 2 == 0
          and all(isinstance(m, (MixtureGaussianCDF, MixtureCDFCoupling))
                  for m in parts[0::2])
          and all(isinstance(r, HouseholderRotation) for r in parts[1::2]))
    if not ok:
        kinds = [type(p).__name__ for p in parts]
        raise ValueError(
            "Expected alternating MixtureGaussianCDF (or MixtureCDFCoupling) and "
            "HouseholderRotation layers "
            f"(x -> z order); got {kinds}.")
    return list(zip(parts[0::2], parts[1::2]))


def flow_gaussianizer(dist):
    """The Gaussianizer ``G`` (``x -> z``) of a flow: its ``tfb.Chain`` of layers.

    ``G.forward(x)`` is the latent ``z``, ``G.inverse(z)`` the data point and
    ``G.forward_log_det_jacobian(x, event_ndims=1)`` the log-det of
    ``log p(x) = log N(G(x); 0, I) + log|det dG/dx|``. (The flow stores
    ``Invert(G)``, so this is ``dist.bijector.bijector``, checked.)

    Raises:
      ValueError: ``dist`` is not a flow built by tfp_gauss (see ``flow_layers``).

    #### Example

    ```python
    import tfp_gauss
    from tfp_gauss import flows

    flow = tfp_gauss.gaussianization_flow(2, n_layers=2, n_components=3)
    z = flows.flow_gaussianizer(flow).forward([[0.5, -1.0]])     # [1, 2] latents
    ```
    """
    flow_layers(dist)  # checks the structure
    return dist.bijector.bijector


def softplus_inverse(scales):
    """``softplus^{-1}(s) = s + log(-expm1(-s))`` in float64, cast back to ``s``'s dtype."""
    s = np.asarray(scales)
    s64 = s.astype(np.float64)
    return (s64 + np.log(-np.expm1(-s64))).astype(s.dtype)


def softplus_scales(raw_scales, name=None):
    """Scales ``softplus(raw)`` that stay bound to ``raw`` (a tensor or variable).

    This is the one parameterisation of mixture scales that flows, greedy
    fits and the Keras model share, so values pass between them exactly (no
    ``softplus(softplus^{-1}(s))`` rounding).
    """
    return tfp.util.DeferredTensor(raw_scales, tfb.Softplus(), name=name)


class _LayerFloor:
    """Layer ``index``'s slice ``[D]`` of an ``[L, D]`` scale floor, read when called."""

    def __init__(self, floor, index):
        self.floor, self.index = floor, int(index)

    def __call__(self):
        return tf.convert_to_tensor(self.floor)[self.index]


class _LayerSlice:
    """``DeferredTensor`` transform: layer ``index`` of a stacked ``[L, ...]`` parameter.

    With ``softplus``, the slice goes through ``tfb.Softplus`` (mixture scales
    from their unconstrained values), exactly as ``softplus_scales`` does;
    with a ``floor`` (``[L, D]``, read at every call) the scales then go
    through ``coupling.floored_scales`` with its slice ``index``.
    """

    def __init__(self, index, softplus=False, floor=None):
        self.index = int(index)
        self.softplus = tfb.Softplus() if softplus else None
        self.layer_floor = (lambda: None) if floor is None else _LayerFloor(floor, index)
        self.name = self.__name__ = (
            f"layer{self.index}_softplus" if softplus else f"layer{self.index}")

    def __call__(self, stacked):
        value = stacked[self.index]
        if self.softplus is None:
            return value
        floor = self.layer_floor()
        value = self.softplus.forward(value)
        return value if floor is None else coupling_math.floored_scales(value, floor)


def _layer_slice(stacked, index, softplus=False, name=None, floor=None):
    shape = tf.TensorShape(stacked.shape)[1:]
    return tfp.util.DeferredTensor(stacked, _LayerSlice(index, softplus, floor), shape=shape,
                                   name=name)


# The stacked parameters of a trainable flow, in the order of its variables.
STACKED_PARAMETERS = ("logits", "locs", "raw_scales", "vectors")

# Kinds of layer a flow is made of: mixture CDF maps of each coordinate alone
# ("marginal"), or coupling layers whose mixture parameters for half of the
# coordinates depend on the other half through an MLP ("coupling",
# ``MixtureCDFCoupling``); a rotation follows each.
ARCHITECTURES = ("marginal", "coupling")


def check_architecture(architecture, n_dims):
    """``architecture`` after checking it is one of ``ARCHITECTURES`` and fits ``D``."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}; got {architecture!r}.")
    if architecture == "coupling" and int(n_dims) < 2:
        raise ValueError(
            f"architecture='coupling' needs at least 2 dimensions (a coupling layer conditions "
            f"half of the coordinates on the other half); got D = {n_dims}. Use 'marginal'.")
    return architecture


def stack_flow_values(values):
    """Per-layer parameter dicts (as from ``flow_values``) stacked over layers.

    Returns:
      dict of numpy arrays: ``logits``, ``locs``, ``raw_scales`` (``[L, D, K]``;
      the layers' exact ``raw_scales`` where given, else ``softplus^{-1}``
      of their ``scales``) and ``vectors`` (``[L, M, D]``); for coupling
      layers also ``masks`` (``[L, D]``, 1 on each layer's conditioning
      coordinates) and ``conditioner`` (a list of the MLP's weights, each
      ``[L, ...]``: ``tfp_gauss.math.coupling``); for a flow with a scale
      floor, ``scale_floor`` (``[L, D]``; 0 for layers without one).

    Raises:
      ValueError: no layers, layers that do not all share ``D``, ``K`` and
        ``M`` (and the conditioner's shapes), or coupling and marginal
        layers mixed.
    """
    if not values:
        raise ValueError("A Gaussianization flow needs at least one layer; got no layer values.")
    raw = [dict(logits=v["logits"], locs=v["locs"], vectors=v["vectors"],
                raw_scales=v["raw_scales"] if "raw_scales" in v
                else softplus_inverse(v["scales"])) for v in values]
    shapes = sorted({(np.shape(v["locs"]), np.shape(v["vectors"])) for v in raw})
    if len(shapes) != 1:
        raise ValueError(
            f"All layers must share D, K and M to be stacked; got shapes {shapes} "
            "(locs [D, K], vectors [M, D]).")
    stacked = {p: np.stack([np.asarray(v[p]) for v in raw]) for p in STACKED_PARAMETERS}
    couplings = ["conditioner" in v for v in values]
    if any(couplings):
        if not all(couplings):
            raise ValueError("A flow's layers must be all coupling layers or all marginal ones "
                             f"to be stacked; got coupling layers at {np.flatnonzero(couplings)} "
                             f"of {len(values)}.")
        cond_shapes = {tuple(np.shape(w) for w in v["conditioner"]) for v in values}
        if len(cond_shapes) != 1:
            raise ValueError("All coupling layers must share the conditioner's shapes to be "
                             f"stacked; got {sorted(cond_shapes)}.")
        stacked["masks"] = np.stack([np.asarray(v["mask"], np.float64) for v in values])
        stacked["conditioner"] = [np.stack([np.asarray(v["conditioner"][i]) for v in values])
                                  for i in range(len(values[0]["conditioner"]))]
    if any("scale_floor" in v for v in values):
        n_dims = stacked["locs"].shape[1]
        stacked["scale_floor"] = np.stack([
            np.broadcast_to(np.asarray(v.get("scale_floor", 0.0), stacked["locs"].dtype),
                            (n_dims,)) for v in values])
    return stacked


def stacked_arguments(stacked):
    """``(params, coupling)`` of a ``stack_flow_values`` dict for ``tfp_gauss.sampling``.

    ``params`` is the ``STACKED_PARAMETERS`` arrays in order; ``coupling`` is
    ``dict(masks=..., conditioner=...)`` for a coupling flow, else ``{}``,
    plus ``scale_floor`` for a flow with one: the keyword arguments that
    ``flow_from_stacked`` and the stacked maps of ``tfp_gauss.sampling`` take.
    """
    params = [stacked[p] for p in STACKED_PARAMETERS]
    coupling = ({} if "conditioner" not in stacked else
                dict(masks=stacked["masks"], conditioner=list(stacked["conditioner"])))
    if "scale_floor" in stacked:
        coupling["scale_floor"] = stacked["scale_floor"]
    return params, coupling


def flow_from_stacked(logits, locs, raw_scales, vectors, name=None, *,
                      masks=None, conditioner=None, scale_floor=None):
    """A flow whose layer ``l`` reads slice ``l`` of stacked parameters.

    Args:
      logits, locs, raw_scales: ``[L, D, K]`` tensors or variables; layer
        ``l``'s mixture has ``scales = softplus(raw_scales[l])``.
      vectors: ``[L, M, D]``, layer ``l``'s Householder vectors.
      name: distribution name; by default TFP's own, which a joint
        distribution treats as unset (so the flow takes the name its
        ``JointDistributionSequential`` argument gives it).
      masks, conditioner: for a coupling flow, ``[L, D]`` masks (numpy; 1
        on layer ``l``'s conditioning coordinates) and the conditioner MLP's
        stacked weights (``[kernel, bias, ...]``, each ``[L, ...]``, tensors or
        variables): layer ``l`` is then ``MixtureCDFCoupling`` with an
        ``MLPConditioner`` reading slice ``l``.
      scale_floor: optional ``[L, D]`` soft floor of the mixture scales
        (tensor, variable or numpy, ``>= 0``): layer ``l``'s maps use
        ``sqrt(s^2 + scale_floor[l]^2)`` for every scale ``s`` of
        coordinate ``d`` (after a coupling conditioner's shift;
        ``tfp_gauss.math.coupling.floored_scales``).

    Returns:
      The flow of ``flow_from_layers``, bound to the stacked values: a
      variable's updates show in every later call, and its gradient is one
      ``[L, ...]`` tensor, so an optimizer updates four variables per step
      however many layers there are.

    Raises:
      ValueError: the shapes are not ``[L, D, K]`` (three alike) and
        ``[L, M, D]`` with static ``L``, ``D`` and ``K``.

    #### Example

    ```python
    import numpy as np
    import tensorflow as tf
    from tfp_gauss import flows

    values = flows.stack_flow_values(flows.random_flow_values(2, 3, 4, seed=0))
    variables = [tf.Variable(values[p]) for p in flows.STACKED_PARAMETERS]
    flow = flows.flow_from_stacked(*variables)       # 3 layers, D = 2, K = 4
    flow.log_prob(np.zeros([5, 2], np.float32))      # [5]
    ```
    """
    shapes = [tf.TensorShape(t.shape) for t in (logits, locs, raw_scales, vectors)]
    mixture_shape, vectors_shape = shapes[1], shapes[3]
    if (any(s.rank != 3 for s in shapes) or not mixture_shape.is_fully_defined()
            or any(s != mixture_shape for s in shapes[:3])
            or vectors_shape[0] != mixture_shape[0] or vectors_shape[2] != mixture_shape[1]):
        raise ValueError(
            "flow_from_stacked needs logits, locs and raw_scales of one static shape "
            "[L, D, K] and vectors of shape [L, M, D]; got shapes "
            f"{[s.as_list() if s.rank is not None else None for s in shapes]}.")
    n_layers, n_dims, n_components = mixture_shape.as_list()
    if (conditioner is None) != (masks is None):
        raise ValueError("A coupling flow needs both masks and conditioner weights.")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (n_layers, n_dims):
            raise ValueError(f"masks must have shape [L, D] = [{n_layers}, {n_dims}]; got "
                             f"{masks.shape}.")
    if scale_floor is not None:
        floor_shape = tuple(tf.TensorShape(getattr(scale_floor, "shape", np.shape(scale_floor))))
        if floor_shape != (n_layers, n_dims):
            raise ValueError(f"scale_floor must have shape [L, D] = [{n_layers}, {n_dims}]; "
                             f"got {floor_shape}.")
    layers = []
    for i in range(n_layers):
        # A coupling applies the floor itself, after the conditioner's shift.
        marginal_floor = scale_floor if conditioner is None else None
        mixture = MixtureGaussianCDF(
            logits=_layer_slice(logits, i), locs=_layer_slice(locs, i),
            scales=_layer_slice(raw_scales, i, softplus=True, floor=marginal_floor),
            name=f"layer{i}_marginal")
        if conditioner is not None:
            dims = np.flatnonzero(masks[i])
            net = MLPConditioner(conditioner, dims, n_dims, n_components, layer=i,
                                 name=f"layer{i}_conditioner")
            mixture = MixtureCDFCoupling(
                mixture.logits, mixture.locs, mixture.scales, net, dims,
                scale_floor=None if scale_floor is None else _LayerFloor(scale_floor, i),
                name=f"layer{i}_coupling")
        rotation = HouseholderRotation(_layer_slice(vectors, i), name=f"layer{i}_rotation")
        layers.append((mixture, rotation))
    return flow_from_layers(layers, name=name)


def _raw_scales(scales):
    """The unconstrained values behind ``softplus_scales``, else ``None``."""
    if not isinstance(scales, tfp.util.DeferredTensor):
        return None
    if isinstance(scales.transform_fn, _LayerSlice):
        if scales.transform_fn.softplus is None:
            return None
        stacked = np.asarray(tf.convert_to_tensor(scales.pretransformed_input))
        return stacked[scales.transform_fn.index]
    # DeferredTensor keeps a bijector as its bound `forward` method.
    softplus = getattr(scales.transform_fn, "__self__", scales.transform_fn)
    if (isinstance(softplus, tfb.Softplus) and softplus.hinge_softness is None
            and softplus.low is None):
        return np.asarray(tf.convert_to_tensor(scales.pretransformed_input))
    return None


def flow_values(dist):
    """Current parameter values of a flow as numpy arrays, one dict per layer.

    Keys: ``logits``, ``locs``, ``scales`` (``[D, K]``), ``vectors``
    (``[M, D]``) and, when the scales are ``softplus_scales``, ``raw_scales``
    (their exact unconstrained values). A coupling layer also has ``mask``
    (``[D]``, 1 on its conditioning coordinates) and ``conditioner`` (its
    MLP's weights, ``tfp_gauss.math.coupling``). A layer of a flow with a
    scale floor (``flow_from_stacked(..., scale_floor=...)``) also has
    ``scale_floor`` (``[D]``); its ``scales`` are then the base scales, and
    the maps use ``sqrt(scales^2 + scale_floor^2)`` (after a coupling's
    shift).

    Raises:
      ValueError: not a tfp_gauss flow, or a coupling layer whose
        conditioner is not an ``MLPConditioner`` (its weights cannot be read).
    """
    values = []
    for mixture, rotation in flow_layers(dist):
        net = coupling_floor = None
        if isinstance(mixture, MixtureCDFCoupling):
            net = mixture.conditioner
            if not isinstance(net, MLPConditioner):
                raise ValueError(
                    "Only coupling layers whose conditioner is an MLPConditioner (the flows "
                    f"of tfp_gauss) have parameter values; got {type(net).__name__}.")
            coupling_floor = mixture.scale_floor
            if coupling_floor is not None:
                coupling_floor = tf.convert_to_tensor(coupling_floor)
            mixture = mixture.marginal
        floor = None if net is None else coupling_floor
        if net is None and isinstance(mixture.scales, tfp.util.DeferredTensor) and isinstance(
                mixture.scales.transform_fn, _LayerSlice):
            floor = mixture.scales.transform_fn.layer_floor()
        layer = {k: np.asarray(tf.convert_to_tensor(getattr(mixture, k)))
                 for k in ("logits", "locs", "scales")}
        if floor is not None:
            layer["scale_floor"] = np.asarray(floor)
            if net is None:  # report the base scales, as a coupling layer's marginal does
                layer["scales"] = np.asarray(tf.nn.softplus(_raw_scales(mixture.scales)))
        layer["vectors"] = np.asarray(tf.convert_to_tensor(rotation.vectors))
        raw = _raw_scales(mixture.scales)
        if raw is not None:
            layer["raw_scales"] = raw
        if net is not None:
            layer["mask"] = np.array(net.mask)
            layer["conditioner"] = [np.asarray(w) for w in net.layer_weights()]
        values.append(layer)
    return values


def random_flow_values(n_dims, n_layers, n_components, *, n_reflections=None, seed=None,
                       dtype=np.float32):
    """Random initial parameter values (the "random init" of a trainable flow).

    Each marginal starts as an equal-weight mixture with means spread over
    ``[-2.5, 2.5]`` (jittered) and scales equal to the mean spacing, i.e. close
    to a smooth monotone map of standardized data; each rotation has Gaussian
    reflection vectors (a Haar-like random orthogonal matrix). ``seed``: int
    or ``np.random.Generator``; ``None`` means ``0`` (reproducible).
    """
    rng = _validation.as_rng(seed)
    n_reflections = n_dims if n_reflections is None else n_reflections
    k = n_components
    spacing = 5.0 / k
    values = []
    for _ in range(n_layers):
        locs = np.linspace(-2.5 + spacing / 2, 2.5 - spacing / 2, k)
        locs = locs + 0.2 * spacing * rng.standard_normal((n_dims, k))
        values.append(dict(
            logits=np.zeros((n_dims, k)),
            locs=locs,
            scales=np.full((n_dims, k), spacing),
            vectors=rng.standard_normal((n_reflections, n_dims))))
    return [{name: np.asarray(v, dtype) for name, v in layer.items()} for layer in values]


def check_flow_arguments(dtype, **sizes):
    """``tf.as_dtype(dtype)`` after checking it is float32/float64 and every size an int >= 1.

    Raises:
      ValueError: another dtype, or a size that is not a whole number >= 1
        (the message names them).
    """
    dtype = tf.as_dtype(dtype)
    if dtype not in (tf.float32, tf.float64):
        raise ValueError(f"dtype must be float32 or float64; got {dtype.name}.")
    for v in sizes.values():
        try:  # (ints, numpy integers and integer scalar tensors, as the Keras model takes)
            _validation.check_int(v, "size")
        except ValueError:
            raise ValueError(f"{', '.join(sizes)} must be whole numbers >= 1; got "
                             f"{', '.join(repr(v) for v in sizes.values())}.") from None
    return dtype


def gaussianization_flow(n_dims, n_layers=8, n_components=8, *, dtype=tf.float32,
                         seed=None, initial_values=None, architecture="marginal",
                         conditioner_units=coupling_math.DEFAULT_UNITS,
                         name=None):
    r"""A trainable Gaussianization flow as a ``tfd.TransformedDistribution``.

    The Gaussianizer is ``n_layers`` of ``[MixtureGaussianCDF -> HouseholderRotation]``
    on ``D = n_dims`` coordinates:

    $$\log p(x) = \log \mathcal N(G(x); 0, I_D) + \sum_{l} \sum_{d}
        \log T'_{l,d}\big(h_{l-1,d}\big),$$

    where rotations contribute nothing to the log-det. Every parameter lives
    in a ``tf.Variable`` (scales through ``softplus`` of an unconstrained
    variable, so they stay positive), so the distribution trains with any TF
    optimizer.

    Args:
      n_dims: event size ``D``.
      n_layers: number of ``[marginal -> rotation]`` layers ``L``.
      n_components: mixture components ``K`` per coordinate.
      dtype: ``tf.float32`` or ``tf.float64``.
      seed: int seed of the random initialisation (``None`` means ``0``).
      initial_values: optional per-layer dicts of initial values (as returned
        by ``flow_values``), e.g. from a greedy RBIG fit; overrides ``seed``
        for the mixtures and rotations (and for the conditioners too when
        the dicts carry them).
      architecture: ``"marginal"`` (the layers above) or ``"coupling"``:
        each mixture map becomes a ``MixtureCDFCoupling`` whose parameters
        for half of the coordinates (alternating halves) are shifted by an
        MLP of the other half (``tfp_gauss.math.coupling``); its last layer
        starts at zero, so the flow starts equal to the marginal one.
      conditioner_units: the coupling MLP's hidden widths.
      name: distribution name; by default TFP's own, which a joint
        distribution treats as unset (so the flow takes the name its
        ``JointDistributionSequential`` argument gives it).

    Returns:
      ``tfd.TransformedDistribution`` with event shape ``[n_dims]``; its
      ``trainable_variables`` are four variables stacked over the layers:
      ``logits``, ``locs``, ``raw_scales`` (``[L, D, K]``) and ``vectors``
      (``[L, M, D]``); layer ``l`` reads slice ``l`` (``flow_from_stacked``);
      a coupling flow adds its conditioner's weights, also stacked.
      One update per parameter kind, not per layer, is what makes an
      optimizer step cheap: at ``D = 2`` it halves the time of an XLA
      training step with Adam.

    Raises:
      ValueError: ``dtype`` is not float32 or float64, or ``n_dims``,
        ``n_layers`` or ``n_components`` is below 1.

    #### Example

    ```python
    import tensorflow as tf
    import tfp_gauss

    flow = tfp_gauss.gaussianization_flow(n_dims=2, n_layers=4, n_components=4, seed=0)
    x = tf.random.normal([128, 2])
    opt = tf.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x))
    opt.apply_gradients(zip(tape.gradient(loss, flow.trainable_variables),
                            flow.trainable_variables))
    samples = flow.sample(5, seed=1)          # [5, 2], via the root-find
    ```
    """
    dtype = check_flow_arguments(dtype, n_dims=n_dims, n_layers=n_layers,
                                 n_components=n_components)
    check_architecture(architecture, n_dims)
    rng = _validation.as_rng(seed)
    if initial_values is None:
        initial_values = random_flow_values(n_dims, n_layers, n_components, seed=rng,
                                            dtype=dtype.as_numpy_dtype)
    stacked = stack_flow_values(initial_values)
    variables = [tf.Variable(stacked[p], dtype=dtype, name=p) for p in STACKED_PARAMETERS]
    coupling = {}
    if architecture == "coupling":
        n_layers, n_dims, n_components = stacked["locs"].shape
        if "conditioner" not in stacked:
            stacked["masks"] = coupling_math.coupling_masks(n_dims, n_layers)
            stacked["conditioner"] = coupling_math.initial_conditioner_weights(
                n_dims, n_components, n_layers, conditioner_units, rng=rng)
        coupling = dict(masks=stacked["masks"], conditioner=[
            tf.Variable(w, dtype=dtype, name=f"conditioner_{i}")
            for i, w in enumerate(stacked["conditioner"])])
    elif "conditioner" in stacked:
        raise ValueError("initial_values hold coupling layers; pass architecture='coupling'.")
    if "scale_floor" in stacked:  # values of a flow with a floor keep it (a constant)
        coupling["scale_floor"] = tf.constant(stacked["scale_floor"], dtype)
    return flow_from_stacked(*variables, name=name, **coupling)
