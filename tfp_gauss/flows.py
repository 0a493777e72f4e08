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

from tfp_gauss.bijectors import HouseholderRotation, MixtureGaussianCDF

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["flow_from_layers", "flow_layers", "flow_values", "gaussianization_flow", "softplus_inverse",
           "softplus_scales",
           "gaussianizer", "random_flow_values"]


def gaussianizer(layers, name="gaussianizer"):
    """The ``x -> z`` chain of ``[(mixture, rotation), ...]`` layers, first layer first."""
    parts = [b for layer in layers for b in layer]
    # tfb.Chain applies its list right to left.
    return tfb.Chain(parts[::-1], name=name)


def flow_from_layers(layers, name="gaussianization_flow"):
    """``TransformedDistribution`` of a standard normal through ``Invert(gaussianizer)``.

    Args:
      layers: list of ``(MixtureGaussianCDF, HouseholderRotation)`` pairs in
        ``x -> z`` order, all with event size ``D`` and one dtype.

    Returns:
      A ``tfd.TransformedDistribution`` with event shape ``[D]``.
    """
    if not layers:
        raise ValueError("A Gaussianization flow needs at least one layer.")
    mixture = layers[0][0]
    dtype = mixture.dtype
    n_dims = tf.TensorShape(mixture.locs.shape)[-2]
    base = tfd.Sample(tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)), n_dims)
    return tfd.TransformedDistribution(base, tfb.Invert(gaussianizer(layers)), name=name)


def flow_layers(dist):
    """The ``[(MixtureGaussianCDF, HouseholderRotation), ...]`` layers of a flow.

    Raises:
      ValueError: ``dist`` is not a flow built by tfp_gauss (a
        ``TransformedDistribution`` over ``Invert(Chain)`` of alternating
        mixture and rotation bijectors).
    """
    bij = getattr(dist, "bijector", None)
    chain = getattr(bij, "bijector", None)
    parts = getattr(chain, "bijectors", None)
    if not isinstance(bij, tfb.Invert) or parts is None:
        raise ValueError(
            "Expected a Gaussianization flow: TransformedDistribution(N(0, I), "
            f"Invert(Chain([...]))); got {type(dist).__name__} with bijector {bij!r}.")
    parts = list(parts)[::-1]
    ok = (len(parts) % 2 == 0
          and all(isinstance(m, MixtureGaussianCDF) for m in parts[0::2])
          and all(isinstance(r, HouseholderRotation) for r in parts[1::2]))
    if not ok:
        kinds = [type(p).__name__ for p in parts]
        raise ValueError(
            "Expected alternating MixtureGaussianCDF and HouseholderRotation layers "
            f"(x -> z order); got {kinds}.")
    return list(zip(parts[0::2], parts[1::2]))


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


def _raw_scales(scales):
    """The unconstrained values behind ``softplus_scales``, else ``None``."""
    if not isinstance(scales, tfp.util.DeferredTensor):
        return None
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
    (their exact unconstrained values).
    """
    values = []
    for mixture, rotation in flow_layers(dist):
        layer = {k: np.asarray(tf.convert_to_tensor(getattr(mixture, k)))
                 for k in ("logits", "locs", "scales")}
        layer["vectors"] = np.asarray(tf.convert_to_tensor(rotation.vectors))
        raw = _raw_scales(mixture.scales)
        if raw is not None:
            layer["raw_scales"] = raw
        values.append(layer)
    return values


def random_flow_values(n_dims, n_layers, n_components, *, n_reflections=None, seed=None,
                       dtype=np.float32):
    """Random initial parameter values (the "random init" of a trainable flow).

    Each marginal starts as an equal-weight mixture with means spread over
    ``[-2.5, 2.5]`` (jittered) and scales equal to the mean spacing, i.e. close
    to a smooth monotone map of standardized data; each rotation has Gaussian
    reflection vectors (a Haar-like random orthogonal matrix).
    """
    rng = np.random.default_rng(seed)
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


def gaussianization_flow(n_dims, n_layers=8, n_components=8, *, dtype=tf.float32,
                         seed=None, initial_values=None, name="gaussianization_flow"):
    r"""A trainable Gaussianization flow as a ``tfd.TransformedDistribution``.

    The Gaussianizer is ``n_layers`` of ``[MixtureGaussianCDF -> HouseholderRotation]``
    on ``D = n_dims`` coordinates:

    $$\log p(x) = \log \mathcal N(G(x); 0, I_D) + \sum_{l} \sum_{d}
        \log T'_{l,d}\big(h_{l-1,d}\big),$$

    where rotations contribute nothing to the log-det. Every parameter is a
    ``tf.Variable`` (scales through ``softplus`` of an unconstrained variable,
    so they stay positive), so the distribution trains with any TF optimizer.

    Args:
      n_dims: event size ``D``.
      n_layers: number of ``[marginal -> rotation]`` layers ``L``.
      n_components: mixture components ``K`` per coordinate.
      dtype: ``tf.float32`` or ``tf.float64``.
      seed: int seed of the random initialisation.
      initial_values: optional per-layer dicts of initial values (as returned
        by ``flow_values``), e.g. from a greedy RBIG fit; overrides ``seed``.
      name: distribution name.

    Returns:
      ``tfd.TransformedDistribution`` with event shape ``[n_dims]``; its
      ``trainable_variables`` are the ``4 L`` variables.

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
    dtype = tf.as_dtype(dtype)
    if dtype not in (tf.float32, tf.float64):
        raise ValueError(f"dtype must be float32 or float64; got {dtype.name}.")
    if initial_values is None:
        initial_values = random_flow_values(n_dims, n_layers, n_components, seed=seed,
                                            dtype=dtype.as_numpy_dtype)
    layers = []
    for i, v in enumerate(initial_values):
        mixture = MixtureGaussianCDF(
            logits=tf.Variable(v["logits"], dtype=dtype, name=f"layer{i}/logits"),
            locs=tf.Variable(v["locs"], dtype=dtype, name=f"layer{i}/locs"),
            scales=softplus_scales(tf.Variable(
                v["raw_scales"] if "raw_scales" in v else softplus_inverse(v["scales"]),
                dtype=dtype, name=f"layer{i}/raw_scales")),
            name=f"layer{i}_marginal")
        rotation = HouseholderRotation(
            tf.Variable(v["vectors"], dtype=dtype, name=f"layer{i}/vectors"),
            name=f"layer{i}_rotation")
        layers.append((mixture, rotation))
    return flow_from_layers(layers, name=name)
