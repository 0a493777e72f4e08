"""The mixture-of-Gaussians CDF Gaussianizer: ``z = Phi^{-1}(F(x))``.

The class composes the maths of ``tfp_gauss.math.mixture_cdf`` (the map, its
gradient and the inverse's starting points) with the root-find of
``tfp_gauss.math.root_finding``.
"""

import functools

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import (
    cache_util,
    dtype_util,
    parameter_properties,
    tensor_util,
)

from tfp_gauss import _validation
from tfp_gauss.bijectors import _composite
from tfp_gauss.math import mixture_cdf, mixture_em, root_finding

tfb = tfp.bijectors

__all__ = ["MixtureGaussianCDF"]


# Eagerly, the closed-form map runs as one graph call: op by op, its ~100
# small ops cost ~25 ms per layer, so a 30-layer RBIG flow's log_prob of one
# row took 0.75 s (0.3 s so). One function per ranks of the arguments (the
# kernel needs static ranks), each relaxing its sizes (reduce_retracing), so
# a few traces serve every batch size and flow.
_EAGER_TRANSFORMS = {}


def _eager_transform(x, logits, locs, scales):
    key = tuple(tf.TensorShape(t.shape).rank for t in (x, logits, locs, scales))
    fn = _EAGER_TRANSFORMS.get(key)
    if fn is None:
        fn = _EAGER_TRANSFORMS[key] = tf.function(
            mixture_cdf.mixture_cdf_transform, reduce_retracing=True, autograph=False)
    return fn(x, logits, locs, scales)


# Eagerly, many elements of a [D, K] map are solved by the stacked sampler's
# kernel (`sampling._mixture_solver`: the Hermite-table start and the streaming
# root-find, XLA-compiled once per (D, K, dtype) and process for every size,
# and shared with `GaussianizationFlowModel.sample`). Its first call compiles
# (~2-4 s on a 2-core CPU); after that a 30-column fit_rbig flow's
# sample(10000) took a third of the graph solve's time (benchmarks/
# BENCHMARKS.md, "A greedy fit and its eager sample(10000)"). It is used from
# KERNEL_MIN_ELEMENTS elements and GRID_SIZE * 4 rows per coordinate (it
# solves a table of GRID_SIZE nodes per coordinate, slower for wide, short
# inputs), at the default cap or above (its table's nodes are solved with the
# same cap), and for finite parameters (the graph solve's roots of a map with
# a NaN parameter are NaN; the kernel's padded rows would hide it).
KERNEL_MIN_ELEMENTS = 2**18
_KERNEL_SOLVERS = {}
_DEFAULT_MAX_ITERATIONS = 100


def _kernel_solver(max_iterations):
    fn = _KERNEL_SOLVERS.get(max_iterations)
    if fn is None:
        from tfp_gauss import sampling  # noqa: PLC0415  (sampling imports the bijectors)

        def solve(h, logits, locs, scales):
            # (a tensor cap: one compilation for every cap, the model's sampler's too)
            cap = tf.constant(max_iterations, tf.int32)
            return sampling._mixture_solver(h, logits, locs, scales, cap)[0]

        fn = _KERNEL_SOLVERS[max_iterations] = tf.function(solve, reduce_retracing=True,
                                                           autograph=False)

    def solver(z, logits, locs, scales):
        h = tf.reshape(z, [-1, tf.shape(locs)[0]])
        # (constants: the caller's custom gradient supplies the gradient)
        return tf.reshape(fn(*(tf.stop_gradient(t) for t in (h, logits, locs, scales))),
                          tf.shape(z))

    return solver


def _uses_kernel(z, params, max_iterations):
    """Eager, finite ``[D, K]`` parameters, a ``[..., D]`` target of many elements."""
    size = tf.TensorShape(z.shape).num_elements()
    if not (tf.executing_eagerly() and size is not None and size >= KERNEL_MIN_ELEMENTS
            and isinstance(max_iterations, int) and max_iterations >= _DEFAULT_MAX_ITERATIONS
            and all(p.shape.rank == 2 for p in params)
            and params[0].shape == params[1].shape == params[2].shape
            and z.shape.rank >= 1 and z.shape[-1] == params[1].shape[0]
            and size >= 4 * mixture_cdf.GRID_SIZE * params[1].shape[0]):
        return False
    return all(bool(tf.reduce_all(tf.math.is_finite(p))) for p in params)


@_composite.register
class MixtureGaussianCDF(_composite.CompositeBijector):
    r"""Gaussianizes each coordinate through a Gaussian-mixture CDF.

    The map is elementwise (`forward_min_event_ndims = 0`):

    $$z = T(x) = \Phi^{-1}\Big(\sum_{k=1}^K w_k\,\Phi\big(\tfrac{x - \mu_k}{\sigma_k}\big)\Big),
      \qquad w = \mathrm{softmax}(\text{logits}),$$

    so if `x` follows the mixture $\sum_k w_k N(\mu_k, \sigma_k^2)$, `z` is
    standard normal. The log-derivative is closed form,
    $\log T'(x) = \log f(x) - \log\phi(z)$ with $f$ the mixture density.

    Parameters carry a trailing component axis `K`: `logits`, `locs` and
    `scales` of shape `[D, K]` act on `x` of shape `[..., D]` and give the
    bijector batch shape `[D]` (any broadcastable batch shape works).

    Numerics. Forward and log-det are computed from the smaller of the two
    tails, `min(F, 1 - F)`, with every term formed relative to the nearest
    component (one exponential and one erfcx per component), so nothing
    cancels or underflows and there is no probability clipping: `z` keeps
    growing in the tails (float32 stays finite and monotone for `|x|` up to
    `1e4`, within 1e-5 of the float64 result; a clipped implementation
    plateaus near `|z| = 4.9`). Components lighter than 1e-30 (float32;
    1e-300 in float64) of the heaviest count as weight 0. The inverse solves `T(x) = z`
    by Newton's method safeguarded by bisection inside the bracket
    `[min_k(mu_k + sigma_k z), max_k(mu_k + sigma_k z)]`, in a bounded
    `tf.while_loop` (XLA compatible) of at most `max_iterations` steps per
    element; an element that reaches the cap keeps its last iterate (inside
    the bracket), is reported by `inverse_diagnostics`, and is an error
    under `validate_args=True`. For many elements per dimension it
    starts from a cubic Hermite table of the inverse (64 nodes per dimension,
    most elements then converge after one step) and streams the elements
    through a working set, so the few slow ones do not cost a pass over the
    whole batch per iteration (eagerly, the solve is one graph call, traced
    once per rank and parameter shapes, from the anchors for few elements;
    from `2**18` elements of `[D, K]` maps, without `validate_args`, it is
    the XLA kernel `GaussianizationFlowModel.sample` runs, compiled once per
    `(D, K, dtype)` and process for every batch size).
    Its gradient, with respect to `z` and to every parameter, comes from the
    implicit-function theorem
    ($dx/dz = 1/T'(x)$, $dx/d\theta = -\partial_\theta T / T'$) through
    `tf.custom_gradient`; the loop itself is never differentiated, so the
    inverse has no second derivatives.

    Parameters may be `tf.Variable`s or `tfp.util.DeferredTensor`s (e.g.
    `tfp.util.TransformedVariable(s, tfb.Softplus())` to keep scales
    positive); they are read on every call, so the bijector trains.

    #### Example

    ```python
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp
    from tfp_gauss.bijectors import MixtureGaussianCDF

    b = MixtureGaussianCDF(logits=[[0., 0.]], locs=[[-2., 1.5]],
                           scales=[[0.5, 0.8]])            # D = 1, K = 2
    x = tf.constant([[-2.], [0.], [1.5]])                 # [N, D]
    z = b.forward(x)                                      # Gaussianized
    np.testing.assert_allclose(b.inverse(z), x, atol=1e-5)
    dist = tfp.distributions.TransformedDistribution(
        tfp.distributions.Sample(tfp.distributions.Normal(0., 1.), 1),
        tfp.bijectors.Invert(b))                          # the mixture density
    log_p = dist.log_prob(x)                              # [N]
    ```

    References:
      Laparra, Camps-Valls & Malo (2011), Iterative Gaussianization: from ICA
      to random rotations. IEEE Trans. Neural Networks 22(4).
      Meng, Song, Song & Ermon (2020), Gaussianization Flows. AISTATS.
    """

    # z and log dz/dx come out of one evaluation: the forward stores the log-det
    # in the cache, so `log_prob` (forward + log-det) evaluates the mixture once.
    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse")

    def __init__(self, logits, locs, scales, validate_args=False, max_iterations=100,
                 name="mixture_gaussian_cdf"):
        """Builds the bijector.

        Args:
          logits: float tensor/variable ``[..., K]``, unnormalised log weights.
          locs: float ``[..., K]``, component means.
          scales: positive float ``[..., K]``, component standard deviations.
          validate_args: check that scales are positive and every parameter
            finite (once for tensors, on every call for variables), that
            inputs are finite, and that the inverse's root-find converged for
            every element (see ``inverse_diagnostics``).
          max_iterations: Python int >= 1, cap on the inverse's
            Newton/bisection steps per element (typically 1-6 are taken).
          name: name scope of the ops.

        Raises:
          ValueError: the three parameters disagree statically on ``K`` or are
            scalars, or ``max_iterations`` is below 1.
          TypeError: the parameters' dtype is not float32 or float64.
        """
        parameters = dict(locals())
        if int(max_iterations) < 1:
            raise ValueError(f"max_iterations must be an int >= 1; got {max_iterations!r}.")
        self._max_iterations = int(max_iterations)
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([logits, locs, scales], dtype_hint=tf.float32)
            if tf.as_dtype(dtype) not in mixture_cdf.RELATIVE_WEIGHT_FLOOR:
                raise TypeError(
                    "MixtureGaussianCDF supports float32 and float64 parameters (its tail "
                    f"numerics are tuned to those two); got {tf.as_dtype(dtype).name}. Cast "
                    "the parameters to float32 or float64.")
            self._logits = tensor_util.convert_nonref_to_tensor(logits, dtype=dtype, name="logits")
            self._locs = tensor_util.convert_nonref_to_tensor(locs, dtype=dtype, name="locs")
            self._scales = tensor_util.convert_nonref_to_tensor(scales, dtype=dtype, name="scales")
            self._check_static_shapes()
            super().__init__(
                forward_min_event_ndims=0,
                validate_args=validate_args,
                parameters=parameters,
                dtype=dtype,
                name=name)

    def _check_static_shapes(self):
        ks = {}
        for pname in ("logits", "locs", "scales"):
            shape = getattr(self, "_" + pname).shape
            if shape.rank is not None:
                if shape.rank == 0:
                    raise ValueError(
                        f"`{pname}` needs a trailing component axis K, shape [..., K]; "
                        "got a scalar.")
                if shape[-1] is not None:
                    ks[pname] = shape[-1]
        if len(set(ks.values())) > 1:
            raise ValueError(
                "`logits`, `locs` and `scales` must share the component axis K (their "
                f"last axis); got {ks}.")
        # The other axes ([..., D]) broadcast, or every call fails later in a
        # bare broadcasting error.
        shapes = {p: tf.TensorShape(getattr(self, "_" + p).shape)[:-1]
                  for p in ("logits", "locs", "scales")}
        try:
            functools.reduce(tf.broadcast_static_shape, shapes.values())
        except ValueError:
            raise ValueError(
                "`logits`, `locs` and `scales` must have shapes [..., D] (before the "
                "component axis K) that broadcast together; got "
                + ", ".join(f"{p} {shape}" for p, shape in shapes.items()) + ".") from None

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(
            logits=parameter_properties.ParameterProperties(event_ndims=1),
            locs=parameter_properties.ParameterProperties(event_ndims=1),
            scales=parameter_properties.ParameterProperties(
                event_ndims=1,
                default_constraining_bijector_fn=(
                    lambda: tfb.Softplus(low=dtype_util.eps(dtype)))))

    @property
    def logits(self):
        """Unnormalised log mixture weights, ``[..., K]``."""
        return self._logits

    @property
    def locs(self):
        """Component means, ``[..., K]``."""
        return self._locs

    @property
    def scales(self):
        """Component standard deviations, ``[..., K]``."""
        return self._scales

    @property
    def max_iterations(self):
        """Cap on the inverse's root-find steps per element."""
        return self._max_iterations

    @classmethod
    def _is_increasing(cls):
        return True

    def _params(self):
        return (tf.convert_to_tensor(self._logits), tf.convert_to_tensor(self._locs),
                tf.convert_to_tensor(self._scales))

    def _finite_input(self, t, what):
        if not self.validate_args:
            return t
        return tf.debugging.assert_all_finite(
            t, f"MixtureGaussianCDF: {what} holds NaN or infinity; it must be finite.")

    def _augmented_forward(self, x):
        # log|dz/dx| = log f(x) - log phi(z); see `mixture_cdf_transform`.
        transform = (_eager_transform if tf.executing_eagerly()
                     else mixture_cdf.mixture_cdf_transform)
        x = tf.convert_to_tensor(self._finite_input(x, "forward input x"), self.dtype)
        params = self._params()
        mixture_cdf.check_width(x, params[1])  # (the eager function relaxes shapes)
        z, log_det = transform(x, *params)
        return z, {"ildj": -log_det}

    def _augmented_inverse(self, z):
        # The inverse log-det is left lazy: -fldj(x), evaluated only if asked.
        return self._inverse(z), None

    def _forward(self, x):
        return self._augmented_forward(x)[0]

    def _forward_log_det_jacobian(self, x):
        return -self._augmented_forward(x)[1]["ildj"]

    def _broadcast_target(self, z):
        z = self._finite_input(tf.convert_to_tensor(z, self.dtype), "inverse input z")
        logits, locs, scales = params = self._params()
        mixture_cdf.check_width(z, locs)
        batch_shape = tf.shape(locs[..., 0] + scales[..., 0] + logits[..., 0])
        return tf.broadcast_to(z, tf.broadcast_dynamic_shape(tf.shape(z), batch_shape)), params

    @staticmethod
    def _start(z, params):
        """The inverse's start, and whether to solve in a cached graph function.

        Eagerly, the root-find runs as one graph call, traced once for every
        size of that rank and those parameter shapes
        (``root_finding.solve_increasing``), from the start ``inverse_start``
        chooses by the number of elements (the Hermite table for many, the
        anchors for few). Few elements were solved op by op before: a
        30-layer flow's ``sample(5)`` took 1.9 s per call, against 0.3 s
        now (1.2 s with its traces).
        """
        if not tf.executing_eagerly():
            return mixture_cdf.inverse_start, False
        if mixture_cdf.uses_grid_start(z, *params):
            return mixture_cdf.grid_inverse_start, True
        return mixture_cdf.anchor_inverse_start, True

    def _inverse(self, z):
        # Non-convergence: see `inverse_diagnostics`; with validate_args an error.
        z, params = self._broadcast_target(z)
        if not self.validate_args and _uses_kernel(z, params, self._max_iterations):
            return root_finding.invert_increasing(
                mixture_cdf.mixture_cdf_transform, z, params, None,
                solver=_kernel_solver(self._max_iterations))
        start, eager_graph = self._start(z, params)
        return root_finding.invert_increasing(
            mixture_cdf.mixture_cdf_transform, z, params, start,
            solve_fn=mixture_cdf.mixture_cdf_value,
            max_iterations=self._max_iterations, validate=self.validate_args,
            what=f"{type(self).__name__} ({self.name}) inverse", eager_graph=eager_graph)

    def inverse_diagnostics(self, z):
        """The inverse's root-find with its convergence record (no gradient).

        ``inverse(z)`` solves ``T(x) = z`` per element by safeguarded Newton
        steps, at most ``max_iterations`` each. An element that reaches the
        cap without converging keeps its last iterate, which lies inside the
        element's final bracket (finite, between the component quantiles,
        but not accurate to the working precision); with
        ``validate_args=True`` the inverse raises
        ``tf.errors.InvalidArgumentError`` instead, naming how many elements
        and the first one (under XLA, which has no assertions, those
        elements are NaN). This method runs the same solve and returns what
        the inverse does not: how many steps each element took and whether
        it converged. (Eagerly, the inverse of many elements runs the
        sampler's compiled kernel instead, whose roots agree within the
        tolerance; this method runs the graph solve.)

        Args:
          z: ``[..., D]`` latents (as for ``inverse``).

        Returns:
          ``tfp_gauss.math.root_finding.RootSearchResult`` with fields ``x``
          (``inverse(z)``), ``num_iterations`` (int32), ``converged`` (bool)
          and ``bracket_width`` (a bound on each root's error), each shaped
          like ``x``.

        #### Example

        ```python
        from tfp_gauss.bijectors import MixtureGaussianCDF

        b = MixtureGaussianCDF([[0., 0.]], [[-2., 1.5]], [[0.5, 0.8]], max_iterations=2)
        r = b.inverse_diagnostics([[-3.], [0.], [4.]])
        r.converged, r.num_iterations     # which roots reached the tolerance, in how many steps
        ```
        """
        z, params = self._broadcast_target(z)
        start, eager_graph = self._start(z, params)
        return root_finding.solve_increasing(mixture_cdf.mixture_cdf_value, z, params, start,
                                             self._max_iterations, eager_graph)

    # The inverse log-det is left to the base class: -fldj(inverse(z)), which
    # differentiates correctly through the implicit gradient of the inverse.

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args:
            return []
        assertions = []
        for pname in ("logits", "locs", "scales"):
            param = getattr(self, "_" + pname)
            if is_init != tensor_util.is_ref(param):
                assertions.append(tf.debugging.assert_all_finite(
                    tf.convert_to_tensor(param),
                    f"MixtureGaussianCDF: `{pname}` holds NaN or infinity."))
        if is_init != tensor_util.is_ref(self._scales):
            assertions.append(tf.debugging.assert_positive(
                self._scales,
                message="MixtureGaussianCDF: `scales` must be positive (they are "
                        "component standard deviations); got a value <= 0."))
        # Eagerly the checks have run (and raised) already; their results are
        # eager tensors, which a later graph (tf.function) cannot depend on.
        return [] if tf.executing_eagerly() else assertions

    @classmethod
    def from_data(cls, x, n_components=8, seed=None, *, max_iterations=500,
                  validate_args=False, name="mixture_gaussian_cdf", random_state=None):
        """Maximum-likelihood mixture per dimension, fit by EM.

        Every column of ``x`` gets its own ``K``-component mixture, fit by
        expectation-maximisation (vectorised over columns, XLA compiled) from
        a quantile initialisation. Component scales are floored at 1e-3 of
        the column's standard deviation.

        Args:
          x: array-like ``[N, D]``, finite. The parameters take ``x``'s float
            dtype (float32 for integer data).
          n_components: ``K``.
          seed: int or ``np.random.Generator`` for the jitter of the
            initial means; ``None`` means ``0`` (reproducible).
          max_iterations: cap on EM iterations (0 returns the quantile
            initialisation itself).
          validate_args, name: passed to the constructor.
          random_state: deprecated name of ``seed``.

        Returns:
          A ``MixtureGaussianCDF`` with ``[D, K]`` constant parameters.

        Raises:
          ValueError: ``x`` is not of rank 2, holds NaN/inf rows (the message
            says how many and in which columns), or a column is constant. (A
            column with fewer distinct values than ``K`` gets a mixture over
            its values: components on the same value are copies.)

        Warns:
          TiedValuesWarning: a column of ``x`` holds many repeated values
            (rounded or discrete data): the mixture grows narrow peaks at them.

        #### Example

        ```python
        import numpy as np
        from tfp_gauss.bijectors import MixtureGaussianCDF

        rng = np.random.default_rng(13)
        x = np.concatenate([rng.normal(-2, .5, 3000), rng.normal(1.5, .8, 3000)])
        b = MixtureGaussianCDF.from_data(x[:, None], n_components=6)   # [D=1, K=6]
        ```
        """
        given = x
        x = _validation.check_data(x, name="x")
        seed = _validation.renamed_seed(seed, random_state, "MixtureGaussianCDF.from_data")
        fit = mixture_em.fit_mixture_em(x, n_components, seed=seed,
                                        max_iterations=max_iterations)
        # (after the fit, which raises for constant columns)
        _validation.warn_if_tied(x, "x", stacklevel=2, given=given)
        return cls(logits=fit["log_weights"], locs=fit["locs"], scales=fit["scales"],
                   validate_args=validate_args, name=name)
