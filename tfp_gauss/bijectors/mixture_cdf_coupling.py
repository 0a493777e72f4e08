"""``MixtureCDFCoupling``: a mixture-CDF layer whose parameters depend on other coordinates."""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

from tfp_gauss.bijectors.mixture_gaussian_cdf import MixtureGaussianCDF
from tfp_gauss.math import coupling as coupling_math

tfb = tfp.bijectors

__all__ = ["MLPConditioner", "MixtureCDFCoupling", "mixture_cdf_conditioner"]


def _split_dims(conditioning_dims, n_dims):
    """``(a, b)``: the conditioning coordinates and the transformed ones, int32 arrays."""
    a = [int(i) for i in np.atleast_1d(conditioning_dims)]
    if len(set(a)) != len(a) or not a or any(not 0 <= i < n_dims for i in a) or len(a) >= n_dims:
        raise ValueError(
            f"conditioning_dims must be distinct ints in [0, {n_dims}) leaving at least one "
            f"coordinate to transform; got {list(np.atleast_1d(conditioning_dims))!r}.")
    return np.array(a, np.int32), np.array([i for i in range(n_dims) if i not in a], np.int32)


def _keras_variables(conditioner, width, dtype):
    """The ``tf.Variable`` objects of a Keras conditioner (built on ``[1, width]`` if need be).

    A Keras 3 layer is not a ``tf.Module``, so a bijector holding one would
    not list its weights in ``trainable_variables`` (nor would a
    distribution built on it): an optimizer stepping on those lists left
    the conditioner untrained, silently. Held in an attribute, the
    variables underneath the Keras ones are found.
    """
    if not isinstance(conditioner, keras.layers.Layer):
        return ()
    if not conditioner.built:
        conditioner(tf.zeros([1, width], dtype))
    found = tuple(v.value for v in conditioner.variables)
    if not all(isinstance(v, tf.Variable) for v in found):
        # (inside a Keras autocast scope `.value` is a cast copy, not the variable)
        raise ValueError(
            "MixtureCDFCoupling could not reach the Keras conditioner's variables (their "
            "values are not tf.Variables here: inside a Keras autocast scope?). Build the "
            "coupling outside it.")
    return found


def mixture_cdf_conditioner(n_conditioning, n_transformed, n_components, hidden_units=(64, 64),
                            activation="gelu", seed=None, dtype="float32"):
    """The default conditioner of ``MixtureCDFCoupling``: a Keras MLP, zero at start.

    Maps ``x_a`` ``[..., n_conditioning]`` to ``[..., n_transformed * 3 * n_components]``
    offsets. Its last layer's kernel and bias start at zero, so a coupling built
    with it equals its base marginal layer exactly until it trains.

    Args:
      n_conditioning: width of the input ``x_a``.
      n_transformed: number of transformed coordinates ``D_b``.
      n_components: mixture components ``K``.
      hidden_units: widths of the hidden ``Dense`` layers.
      activation: their activation.
      seed: int seed of the hidden layers' initializers.
      dtype: the layers' dtype.

    Returns:
      A built ``keras.Sequential``.

    #### Example

    ```python
    import numpy as np
    from tfp_gauss.bijectors import mixture_cdf_conditioner

    net = mixture_cdf_conditioner(n_conditioning=2, n_transformed=3, n_components=4, seed=0)
    out = net(np.ones([5, 2], np.float32))                   # [5, 3 * 3 * 4], zeros at start
    assert out.shape == (5, 36) and not np.any(out)
    ```
    """
    init = keras.initializers.GlorotUniform(seed=seed)
    layers = [keras.Input((n_conditioning,), dtype=dtype)]
    layers += [keras.layers.Dense(u, activation=activation, kernel_initializer=init, dtype=dtype)
               for u in hidden_units]
    layers.append(keras.layers.Dense(n_transformed * 3 * n_components, kernel_initializer="zeros",
                                     bias_initializer="zeros", dtype=dtype))
    return keras.Sequential(layers)


class MixtureCDFCoupling(tfb.Bijector):
    r"""Mixture-CDF Gaussianization of every coordinate, some conditioned on the others.

    The coordinates split into ``x_a`` (``conditioning_dims``) and ``x_b`` (the
    rest). Each goes through the mixture-Gaussian CDF map of
    ``MixtureGaussianCDF``,

    $$T(x; w, \mu, \sigma)
      = \Phi^{-1}\Big(\sum_k w_k\,\Phi\big(\tfrac{x-\mu_k}{\sigma_k}\big)\Big),$$

    with ``x_a``'s parameters fixed (``logits``, ``locs``, ``scales``) and
    ``x_b``'s shifted by a conditioner ``g(x_a) = (\delta_\ell, \delta_\mu, \delta_s)``:

    $$\text{logits}_b + \delta_\ell,\qquad \mu_b + \sigma_b\,\delta_\mu,\qquad
      \sigma_b\,\exp\big(3\tanh(\delta_s / 3)\big).$$

    The Jacobian is block triangular, so
    $\log|\det \partial y/\partial x| = \sum_a \log T'(x_a) + \sum_b \log T'(x_b \mid x_a)$,
    closed form. The inverse first solves for ``x_a`` (its parameters are
    fixed), then for ``x_b`` with the conditioner evaluated at that ``x_a``:
    both by ``MixtureGaussianCDF``'s bracketed Newton root-find, with its
    implicit gradient. When ``g`` is zero (``mixture_cdf_conditioner``'s
    start) the bijector is exactly ``MixtureGaussianCDF(logits, locs, scales)``.

    Shapes: ``logits``, ``locs``, ``scales`` ``[D, K]``; ``x`` ``[..., D]``;
    the conditioner maps ``[..., D_a]`` to ``[..., D_b * 3 * K]`` (ordered
    ``[D_b, 3, K]``: logit, location and log-scale offsets). Event rank 1.

    #### Example

    ```python
    import numpy as np
    from tfp_gauss.bijectors import MixtureCDFCoupling, MixtureGaussianCDF

    rng = np.random.default_rng(0)
    base = MixtureGaussianCDF.from_data(rng.normal(size=(500, 4)).astype("float32"), 4)
    coupling = MixtureCDFCoupling.from_marginal(base, conditioning_dims=[0, 1], seed=0)
    x = rng.normal(size=(3, 4)).astype("float32")
    z = coupling.forward(x)                                  # [3, 4]
    np.testing.assert_allclose(coupling.inverse(z), x, atol=1e-4)
    coupling.forward_log_det_jacobian(x, event_ndims=1)      # [3]
    ```
    """

    # y and its log-det come out of one evaluation (as in MixtureGaussianCDF).
    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse")

    def __init__(self, logits, locs, scales, conditioner, conditioning_dims,
                 validate_args=False, name="mixture_cdf_coupling", *, scale_floor=None):
        """Builds the coupling.

        Args:
          logits, locs, scales: ``[D, K]`` base mixture parameters (tensors or
            variables; ``scales`` positive).
          conditioner: callable ``[N, D_a] -> [N, D_b * 3 * K]`` (inputs of
            other ranks are flattened to rows for it). A Keras model or layer
            (built here on one row if it is not yet) has its variables listed
            in the bijector's ``trainable_variables``, as those of a
            ``tf.Module`` are, so they train with the bijector's.
          conditioning_dims: the ``D_a`` coordinates that pass through fixed
            maps and condition the others; distinct ints in ``[0, D)``, at
            least one coordinate left over.
          validate_args: passed on to the mixture maps.
          name: name scope.
          scale_floor: optional ``[D]`` soft floor of the scales (a tensor,
            or a callable returning one): every coordinate's map uses
            ``sqrt(s^2 + floor_d^2)``, after the conditioner's shift
            (``tfp_gauss.math.coupling.floored_scales``).

        Raises:
          ValueError: parameters not ``[D, K]`` of one static shape, or bad
            ``conditioning_dims``.
        """
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._marginal = MixtureGaussianCDF(logits, locs, scales, validate_args=validate_args)
            shape = tf.TensorShape(self._marginal.locs.shape)
            if shape.rank != 2 or not shape.is_fully_defined():
                raise ValueError(
                    f"MixtureCDFCoupling needs [D, K] parameters of static shape; got locs "
                    f"of shape {shape}.")
            n_dims, self._n_components = shape.as_list()
            self._a, self._b = _split_dims(conditioning_dims, n_dims)
            self._merge = np.argsort(np.concatenate([self._a, self._b])).astype(np.int32)
            self._conditioner = conditioner
            self._conditioner_variables = _keras_variables(conditioner, len(self._a),
                                                           self._marginal.dtype)
            self._scale_floor = scale_floor
            super().__init__(forward_min_event_ndims=1, validate_args=validate_args,
                             parameters=parameters, dtype=self._marginal.dtype, name=name)

    @classmethod
    def from_marginal(cls, marginal, conditioning_dims, hidden_units=(64, 64), seed=None,
                      validate_args=False, name="mixture_cdf_coupling"):
        """A coupling equal to ``marginal`` (a ``[D, K]`` ``MixtureGaussianCDF``) until it trains.

        Shares ``marginal``'s parameters (variables stay variables) and adds a
        ``mixture_cdf_conditioner`` with a zero last layer.
        """
        n_dims, k = tf.TensorShape(marginal.locs.shape).as_list()
        a, b = _split_dims(conditioning_dims, n_dims)
        net = mixture_cdf_conditioner(len(a), len(b), k, hidden_units, seed=seed,
                                      dtype=marginal.dtype.name)
        return cls(marginal.logits, marginal.locs, marginal.scales, net, conditioning_dims,
                   validate_args=validate_args, name=name)

    @property
    def marginal(self):
        """The base ``MixtureGaussianCDF`` (all ``D`` coordinates, fixed parameters).

        Its scales are the base scales: with a ``scale_floor`` the coupling's
        maps use ``floored_scales`` of them (and of the shifted ones).
        """
        return self._marginal

    @property
    def conditioner(self):
        return self._conditioner

    @property
    def conditioning_dims(self):
        return tuple(int(i) for i in self._a)

    @property
    def scale_floor(self):
        """The ``[D]`` scale floor (a tensor), or ``None``."""
        floor = self._scale_floor
        if floor is None:
            return None
        return tf.convert_to_tensor(floor() if callable(floor) else floor, self.dtype)

    def _floor(self, idx):
        floor = self.scale_floor
        return None if floor is None else tf.gather(floor, idx)

    def _base(self, idx):
        return [tf.gather(tf.convert_to_tensor(p), idx, axis=0) for p in (
            self._marginal.logits, self._marginal.locs, self._marginal.scales)]

    def _fixed(self):
        """``x_a``'s mixture map (fixed parameters)."""
        logits, locs, scales = self._base(self._a)
        return MixtureGaussianCDF(logits, locs,
                                  coupling_math.floored_scales(scales, self._floor(self._a)),
                                  validate_args=self.validate_args)

    def _conditional(self, x_a):
        """``x_b``'s mixture map given ``x_a`` (parameters ``[..., D_b, K]``)."""
        # (as rows: a Keras network takes [N, D_a] only)
        rows = tf.reshape(x_a, [-1, len(self._a)])
        out = tf.cast(self._conditioner(rows), self.dtype)
        out = tf.reshape(out, tf.concat(
            [tf.shape(x_a)[:-1], [len(self._b), 3, self._n_components]], 0))
        return MixtureGaussianCDF(
            *coupling_math.coupled_parameters(*self._base(self._b), out, self._floor(self._b)),
            validate_args=self.validate_args)

    def _split(self, x):
        width, n_dims = tf.TensorShape(x.shape)[-1:], len(self._a) + len(self._b)
        if width.rank == 1 and width[0] is not None and width[0] != n_dims:
            # (a gather would drop extra columns silently)
            raise ValueError(
                f"{type(self).__name__} ({self.name}) acts on {n_dims} coordinates; got an "
                f"input of shape {tf.TensorShape(x.shape)}, whose last axis must be {n_dims}.")
        return tf.gather(x, self._a, axis=-1), tf.gather(x, self._b, axis=-1)

    def _join(self, a, b):
        return tf.gather(tf.concat([a, b], axis=-1), self._merge, axis=-1)

    def _augmented_forward(self, x):
        # One conditioner call and one mixture evaluation give y and its log-det.
        x_a, x_b = self._split(x)
        fixed, conditional = self._fixed(), self._conditional(x_a)
        y = self._join(fixed.forward(x_a), conditional.forward(x_b))
        log_det = (tf.reduce_sum(fixed.forward_log_det_jacobian(x_a, event_ndims=0), -1)
                   + tf.reduce_sum(conditional.forward_log_det_jacobian(x_b, event_ndims=0), -1))
        return y, {"ildj": -log_det}

    def _augmented_inverse(self, y):
        return self._inverse(y), None

    def _forward(self, x):
        return self._augmented_forward(x)[0]

    def _forward_log_det_jacobian(self, x):
        return -self._augmented_forward(x)[1]["ildj"]

    def _inverse(self, y):
        y_a, y_b = self._split(y)
        x_a = self._fixed().inverse(y_a)
        return self._join(x_a, self._conditional(x_a).inverse(y_b))


class MLPConditioner(tf.Module):
    """The conditioner of the coupling layers of tfp_gauss's flows, on given weights.

    ``x_a`` ``[..., D_a]`` is placed in its columns of a ``D``-wide input
    (zeros elsewhere) and run through the MLP of
    ``tfp_gauss.math.coupling.conditioner_offsets`` (GELU hidden layers);
    the output is the transformed coordinates' offsets,
    ``[..., D_b * 3 * K]``, as ``MixtureCDFCoupling`` expects. This is the
    form the stacked maps of ``tfp_gauss.sampling``, the Keras model and the
    SavedModel export understand: layer ``l`` of a flow reads slice ``l`` of
    weights stacked over the layers.

    Args:
      weights: ``[kernel_1, bias_1, ..., kernel_out, bias_out]`` tensors or
        variables, each with a leading ``[L]`` axis when ``layer`` is given
        (read at every call, so variables stay live).
      conditioning_dims: the ``D_a`` coordinates it sees.
      n_dims: ``D``; n_components: ``K``.
      layer: index into stacked weights, or ``None`` for one layer's weights.

    #### Example

    ```python
    import numpy as np
    from tfp_gauss.bijectors import MLPConditioner
    from tfp_gauss.math import coupling

    w = coupling.initial_conditioner_weights(4, 3, n_layers=1, units=(8,),
                                             rng=np.random.default_rng(0))
    net = MLPConditioner([v[0] for v in w], conditioning_dims=[0, 1], n_dims=4, n_components=3)
    net(np.ones([5, 2], np.float32)).shape                  # [5, 2 * 3 * 3]
    ```
    """

    def __init__(self, weights, conditioning_dims, n_dims, n_components, layer=None,
                 name="mlp_conditioner"):
        super().__init__(name=name)
        self.weights = list(weights)
        self.n_dims, self.n_components = int(n_dims), int(n_components)
        self.layer = None if layer is None else int(layer)
        a, b = _split_dims(conditioning_dims, self.n_dims)
        self.conditioning_dims = tuple(int(i) for i in a)
        self._b = b
        self._merge = np.argsort(np.concatenate([a, b])).astype(np.int32)
        mask = np.zeros(self.n_dims)
        mask[a] = 1.0
        self.mask = mask

    def layer_weights(self):
        """This layer's weights as tensors (slice ``layer`` of stacked weights)."""
        ws = [tf.convert_to_tensor(w) for w in self.weights]
        return ws if self.layer is None else [w[self.layer] for w in ws]

    def __call__(self, x_a):
        x_a = tf.convert_to_tensor(x_a)
        batch = tf.shape(x_a)[:-1]
        flat = tf.reshape(x_a, [-1, len(self.conditioning_dims)])
        zeros = tf.zeros([tf.shape(flat)[0], len(self._b)], flat.dtype)
        h = tf.gather(tf.concat([flat, zeros], -1), self._merge, axis=-1)
        out = coupling_math.conditioner_offsets(h, self.mask, self.layer_weights(),
                                                self.n_components)
        out = tf.gather(out, self._b, axis=1)
        return tf.reshape(out, tf.concat([batch, [len(self._b) * 3 * self.n_components]], 0))
