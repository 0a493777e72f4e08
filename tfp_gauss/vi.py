r"""Gaussianization flows as variational surrogates and NeuTra transport maps.

A density model of data uses the Gaussianizer ``G`` (``x -> z``, closed form)
and samples through its root-find inverse. Variational inference needs the
opposite: it draws from the surrogate on every step and evaluates ``log q``
only at its own draws. So the surrogate here pushes ``z ~ N(0, I_D)`` forward
through the same family in the other direction,

$$x = b + S\,G(z), \qquad G = R_L \circ T_L \circ \dots \circ R_1 \circ T_1,$$

(``T_l`` elementwise ``MixtureGaussianCDF`` maps, ``R_l`` Householder
rotations, ``S`` lower triangular with positive diagonal), so that

$$\log q(x) = \log \mathcal N(z; 0, I) - \log|\det S|
              - \sum_{l,d} \log T_{l,d}'(h_{l-1,d})$$

comes out of the same closed-form pass as ``x``: no root-find while
training. ``sample``, ``experimental_sample_and_log_prob`` (what
``tfp.vi.fit_surrogate_posterior`` calls) and ``log_prob`` of the
surrogate's own samples (bijector cache) are closed form; ``log_prob`` of
other points (e.g. data, for the forward KL) solves for ``z`` with the
mixture root-find. The ``L`` layers run as one loop over stacked parameters
(``StackedGaussianizer``), so an XLA-compiled fit compiles one layer.

Initialisation: every mixture starts as a discretised standard normal
(``identity_mixture_values``: ``T_l(z) ~= z``), so the surrogate starts as
``N(b, S S^T)`` (standard normal by default, or a Gaussian fit such as
``gaussian_fit``'s), covering the target's bulk rather than one mode.

NeuTra: ``surrogate.bijector`` maps ``N(0, I)`` onto the fitted posterior;
``neutra_hmc`` runs HMC on the pulled-back target through
``tfp.mcmc.TransformedTransitionKernel``.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tensorflow_probability.python.distributions.transformed_distribution import (
    _TransformedDistribution,
)
from tensorflow_probability.python.internal import parameter_properties

from tfp_gauss.bijectors.stacked_gaussianizer import (
    StackedGaussianizer,
    stacked_forward,
)
from tfp_gauss.flows import check_flow_arguments, softplus_inverse

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["GaussianizationSurrogate", "StackedGaussianizer", "flattening_bijector", "gaussian_fit",
           "gaussianization_surrogate", "identity_mixture_values", "neutra_hmc",
           "surrogate_values"]


def identity_mixture_values(n_components, *, component_scale=np.sqrt(0.5), spread=2.5,
                            dtype=np.float32):
    r"""Mixture parameters ``[K]`` whose mixture is close to ``N(0, 1)``: ``T(z) ~= z``.

    Components of scale ``s`` sit on a grid over ``+-2.5 tau`` with
    ``tau^2 = 1 - s^2`` and weights ``w_k \propto N(mu_k; 0, tau^2)``: a
    discretised ``N(0, tau^2)`` convolved with ``N(0, s^2)``, rescaled to
    unit variance. With ``K = 8`` and ``s^2 = 1/2`` (the default) the grid
    spacing (0.5) is below ``s`` (0.71): ``|T(z) - z| < 0.05`` for
    ``|z| <= 3``, and the tails are a little heavier than Gaussian
    (``T(6) = 6.6``), so a stack of such layers starts slightly wider than
    ``N(0, I)``, not narrower. ``K = 1`` gives the identity exactly.

    Returns:
      dict of numpy ``[K]`` arrays: ``logits``, ``locs``, ``scales``.
    """
    k = int(n_components)
    if k == 1:
        return {name: np.asarray([v], dtype) for name, v in
                (("logits", 0.0), ("locs", 0.0), ("scales", 1.0))}
    s = float(component_scale)
    tau = np.sqrt(1.0 - s * s)
    locs = np.linspace(-spread, spread, k) * tau
    logits = -0.5 * (locs / tau) ** 2
    w = np.exp(logits - logits.max())
    w /= w.sum()
    std = np.sqrt((w * locs**2).sum() + s * s)
    return dict(logits=np.asarray(logits, dtype), locs=np.asarray(locs / std, dtype),
                scales=np.full(k, s / std, dtype))


def surrogate_values(event_size, n_layers, n_components, *, batch_shape=(), n_reflections=None,
                     vector_scale=4.0, seed=None, dtype=np.float32, **identity_kwargs):
    """Initial stacked values of a surrogate's Gaussianizer (``T_l ~= identity``).

    Args:
      event_size, n_layers, n_components: ``D``, ``L``, ``K``.
      batch_shape: leading batch axes of every parameter.
      n_reflections: ``M`` (default ``D``).
      vector_scale: standard deviation of the Householder vectors. ``Q``
        does not depend on their length, but Adam moves every coordinate by
        about the learning rate per step, so longer vectors turn the
        rotations more slowly: with 4 (rather than 1) a fit with Adam(1e-2)
        ends with a steadier, lower KL (banana, 16 layers: final KL(q||p)
        0.002-0.005 over three rotation seeds; 0.01-0.04 with 12 layers and
        unit vectors).
      seed: int seed of the random rotations.
      dtype: numpy float dtype.
      **identity_kwargs: passed to ``identity_mixture_values``.

    Returns:
      dict of numpy arrays ``logits``, ``locs``, ``raw_scales``
      (``[*batch_shape, L, D, K]``; ``scales = softplus(raw_scales)``) and
      ``vectors`` (``[*batch_shape, L, M, D]``, Gaussian, so each rotation is
      a Haar-like random orthogonal matrix).
    """
    rng = np.random.default_rng(seed)
    batch_shape = tuple(int(b) for b in batch_shape)
    m = event_size if n_reflections is None else int(n_reflections)
    mix = identity_mixture_values(n_components, dtype=np.float64, **identity_kwargs)
    shape = batch_shape + (n_layers, event_size, n_components)
    values = dict(logits=np.broadcast_to(mix["logits"], shape),
                  locs=np.broadcast_to(mix["locs"], shape),
                  raw_scales=np.broadcast_to(softplus_inverse(mix["scales"]), shape),
                  vectors=vector_scale * rng.standard_normal(
                      batch_shape + (n_layers, m, event_size)))
    return {name: np.array(v, dtype) for name, v in values.items()}


def _as_dtype(value, dtype):
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.cast(value, dtype)
    return tf.constant(np.asarray(value, dtype.as_numpy_dtype))


# The trainable S's diagonal is softplus(.) + this (tfb.FillScaleTriL).
_DIAG_SHIFT = 1e-5


def _checked_affine(loc, scale_tril, batch_shape, event_size, dtype, diag_shift):
    """``loc`` ``[*batch, D]`` and ``scale_tril`` ``[*batch, D, D]`` as ``dtype`` arrays.

    Both broadcast to those shapes (one value for a whole batch); the
    scale must be lower triangular with a positive diagonal and everything
    finite. An upper-triangular matrix was read as some other matrix and a
    negative diagonal made every sample NaN; a loc with a batch the
    surrogate was not given failed only inside ``tfp.vi``.
    """
    shapes = {"loc": batch_shape + (event_size,),
              "scale_tril": batch_shape + (event_size, event_size)}
    out = {}
    for name, value in (("loc", loc), ("scale_tril", scale_tril)):
        value = np.asarray(value, np.float64)
        try:
            value = np.broadcast_to(value, shapes[name])
        except ValueError:
            event = shapes[name][len(batch_shape):]
            lead = value.shape[:value.ndim - len(event)]
            hint = (f" For a batch of {lead} surrogates pass batch_shape={lead}."
                    if value.ndim > len(shapes[name]) and value.shape[len(lead):] == event
                    else "")
            raise ValueError(
                f"gaussianization_surrogate: {name} must broadcast to {shapes[name]} "
                f"(batch_shape + {shapes[name][len(batch_shape):]}); got shape "
                f"{value.shape}.{hint}") from None
        with np.errstate(over="ignore"):
            cast = value.astype(dtype)
        if not np.all(np.isfinite(cast)):
            raise ValueError(f"gaussianization_surrogate: {name} holds NaN or infinity (in "
                             f"{np.dtype(dtype).name}).")
        out[name] = cast
    tril = out["scale_tril"]
    above = np.triu(np.ones((event_size, event_size), bool), 1)
    if np.any(tril[..., above] != 0):
        index = np.argwhere(tril * above != 0)[0]
        raise ValueError(
            f"gaussianization_surrogate: scale_tril must be lower triangular; entry "
            f"{tuple(int(i) for i in index)} above the diagonal is {float(tril[tuple(index)]):g}. "
            f"For a covariance C pass np.linalg.cholesky(C).")
    diagonal = np.diagonal(tril, axis1=-2, axis2=-1)
    if np.any(diagonal <= diag_shift):
        index = np.argwhere(diagonal <= diag_shift)[0]
        raise ValueError(
            f"gaussianization_surrogate: scale_tril's diagonal must be above {diag_shift:g} "
            f"(positive, and above the trainable scale's floor); got "
            f"{float(diagonal[tuple(index)]):g} at {tuple(int(i) for i in index)} of the diagonal.")
    return out["loc"], tril


def gaussianization_surrogate(event_size, n_layers=16, n_components=8, *, loc=None,
                              scale_tril=None, affine=None, constraining_bijector=None,
                              batch_shape=(), n_reflections=None, dtype=tf.float32, seed=None,
                              initial_values=None, path_gradient=True,
                              name="gaussianization_surrogate"):
    r"""A trainable Gaussianization flow shaped for ``tfp.vi.fit_surrogate_posterior``.

    The surrogate is ``x = c(b + S G(z))``, ``z ~ N(0, I_D)``: ``G`` the
    ``StackedGaussianizer`` of ``L = n_layers`` layers (``K = n_components``
    mixture components per coordinate, ``M`` Householder reflections per
    rotation), ``b``, ``S`` a trainable affine map (``affine=True``) and ``c``
    an optional fixed ``constraining_bijector`` onto the target's support
    (e.g. ``tfb.Softplus()`` for positive parameters, ``tfb.Sigmoid()`` for
    ``(0, 1)``, or ``flattening_bijector(jd)`` for a ``JointDistribution``).
    See the module docstring for ``log q``. Sampling and ``log q`` of the
    samples are closed form; ``log_prob`` of other points uses the root-find.

    Args:
      event_size: ``D``, the unconstrained dimension.
      n_layers, n_components: ``L`` and ``K``.
      loc, scale_tril: initial ``b`` (``[*batch, D]``) and ``S``
        (``[*batch, D, D]``, lower triangular, positive diagonal), e.g. from
        ``gaussian_fit``; default ``0`` and ``I``. Each broadcasts over
        ``batch_shape`` (every surrogate of the batch gets its own copy);
        another shape, NaN, or an ``S`` that is not such a factor is a
        ``ValueError``.
      affine: include the trainable ``b + S h`` (else ``x = c(G(z))``).
        Default: only if ``loc`` or ``scale_tril`` is given. The mixtures
        learn location and scale themselves, and leaving the affine map out
        makes an XLA-compiled fit compile ~20 % faster (measured on the
        banana benchmark); give a Gaussian fit's ``loc``/``scale_tril`` for
        targets far from unit scale.
      constraining_bijector: fixed bijector applied last, or ``None``.
      batch_shape: a batch of independent surrogates (e.g. for a batch of
        targets); every parameter gets these leading axes.
      n_reflections: ``M`` (default ``D``).
      dtype: float32 or float64.
      seed: int seed of the random rotations.
      initial_values: stacked values (as from ``surrogate_values``) instead
        of the identity-like start.
      path_gradient: give ``experimental_sample_and_log_prob`` (what
        ``tfp.vi`` calls) the path-derivative gradient (see
        ``GaussianizationSurrogate``): same value, lower-variance unbiased
        ELBO gradient. ``False``: the plain reparameterised gradient.
      name: distribution name.

    Returns:
      ``tfd.TransformedDistribution`` with batch shape ``batch_shape`` and
      event shape ``[D]`` (or ``constraining_bijector``'s image of it). Its
      trainable variables: ``logits``, ``locs``, ``raw_scales``
      ``[*batch, L, D, K]``, ``vectors`` ``[*batch, L, M, D]`` and, with
      ``affine``, ``loc`` and the unconstrained ``scale_tril``. The
      reparameterised gradient is analytic (no loop is differentiated);
      second derivatives are not available.

    Raises:
      ValueError: bad ``dtype`` or a size below 1.

    #### Example

    ```python
    import tensorflow as tf
    import tensorflow_probability as tfp
    from tfp_gauss import vi

    tfd = tfp.distributions
    target = tfd.JointDistributionSequential([
        tfd.Normal(0., 1.5), lambda x1: tfd.Normal(0.4 * (x1**2 - 2.25), 0.5)])

    def target_log_prob(x):                       # x: [..., 2]
        return target.log_prob([x[..., 0], x[..., 1]])

    q = vi.gaussianization_surrogate(2, n_layers=4, n_components=4, seed=0)
    losses = tfp.vi.fit_surrogate_posterior(
        target_log_prob, q, optimizer=tf.optimizers.Adam(1e-2), num_steps=20,
        sample_size=32, seed=0)
    x, log_q = q.experimental_sample_and_log_prob(5, seed=1)   # [5, 2], [5]
    ```
    """
    dtype = check_flow_arguments(dtype, event_size=event_size, n_layers=n_layers,
                                 n_components=n_components)
    np_dtype = dtype.as_numpy_dtype
    batch_shape = tuple(int(b) for b in batch_shape)
    if affine is None:
        affine = loc is not None or scale_tril is not None
    if initial_values is None:
        initial_values = surrogate_values(event_size, n_layers, n_components,
                                          batch_shape=batch_shape, n_reflections=n_reflections,
                                          seed=seed, dtype=np_dtype)
    with tf.name_scope(name):
        v = {k: tf.Variable(np.asarray(initial_values[k], np_dtype), name=k)
             for k in ("logits", "locs", "raw_scales", "vectors")}
        gaussianizer = StackedGaussianizer(
            v["logits"], v["locs"], tfp.util.DeferredTensor(v["raw_scales"], tfb.Softplus()),
            v["vectors"])
        if affine:
            loc = np.zeros(batch_shape + (event_size,)) if loc is None else loc
            if scale_tril is None:
                scale_tril = np.broadcast_to(np.eye(event_size), batch_shape + (event_size,) * 2)
            if not any(tf.is_symbolic_tensor(t) for t in (loc, scale_tril)):
                loc, scale_tril = _checked_affine(loc, scale_tril, batch_shape, event_size,
                                                  np_dtype, _DIAG_SHIFT)
            loc = tf.Variable(_as_dtype(loc, dtype), name="loc")
            scale_tril = tfp.util.TransformedVariable(
                _as_dtype(scale_tril, dtype), tfb.FillScaleTriL(diag_shift=np_dtype(_DIAG_SHIFT)),
                name="scale_tril")
        else:
            loc = scale_tril = None
    return GaussianizationSurrogate(gaussianizer, loc=loc, scale_tril=scale_tril,
                                    constraining_bijector=constraining_bijector,
                                    path_gradient=path_gradient, name=name)


class GaussianizationSurrogate(_TransformedDistribution):
    r"""``x = c(b + S G(z))``, ``z ~ N(0, I_D)``: a Gaussianization flow in the sampling direction.

    Built by ``gaussianization_surrogate`` (see there and the module
    docstring). A ``tfd.TransformedDistribution`` (``distribution`` the base
    normal, ``bijector`` the whole chain, the NeuTra transport map) with one
    addition: with ``path_gradient`` (the default),
    ``experimental_sample_and_log_prob``, which ``tfp.vi`` losses call,
    returns ``log q`` with the *path derivative* of Roeder, Wu & Duvenaud
    (2017), "Sticking the landing": the value is the same, but its gradient
    reaches the parameters only through the sample ``x``,

    $$\nabla_\theta \log q_{\bar\theta}(x_\theta(z)) =
      \big(\nabla_x \log q_{\bar\theta}(x)\big)^\top \partial_\theta x_\theta(z),$$

    dropping the score term ``(\nabla_\theta \log q_\theta)(x)``, whose
    expectation is zero. The ELBO gradient stays unbiased and its variance
    vanishes as ``q`` approaches the target, which is what lets a fit end
    near the optimum instead of jittering around it. ``\nabla_x \log q``
    needs ``G``'s inverse Jacobian, which comes from the layers' slopes at
    the known preimage ``z`` (``known_inverse``): no root-find. ``sample``
    and ``log_prob`` are those of the ``TransformedDistribution``.

    With ``path_gradient=False`` the gradient is the plain reparameterised
    one (the derivative of the Monte Carlo ELBO at fixed noise).
    """

    def __init__(self, gaussianizer, loc=None, scale_tril=None, constraining_bijector=None,
                 path_gradient=True, validate_args=False, name="gaussianization_surrogate"):
        """Builds the surrogate from its parts (see ``gaussianization_surrogate``).

        Args:
          gaussianizer: a ``StackedGaussianizer`` with parameters ``[*batch, L, D, K]``.
          loc, scale_tril: the affine ``b`` ``[*batch, D]`` and ``S`` ``[*batch, D, D]``
            (variables or tensors), or both ``None``.
          constraining_bijector: fixed (parameter-free) bijector applied last, or ``None``.
          path_gradient: path-derivative gradient in ``experimental_sample_and_log_prob``.
          validate_args, name: as for ``tfd.TransformedDistribution``.
        """
        parameters = dict(locals())
        self._gaussianizer = gaussianizer
        self._loc, self._scale_tril = loc, scale_tril
        self._constraining = constraining_bijector
        self._path_gradient = bool(path_gradient)
        locs = tf.convert_to_tensor(gaussianizer.locs)
        dtype = locs.dtype
        event_size = tf.TensorShape(locs.shape)[-2]
        batch_shape = tf.TensorShape(locs.shape)[:-3]
        parts = [gaussianizer]
        if loc is not None:
            parts += [tfb.ScaleMatvecTriL(scale_tril), tfb.Shift(loc)]
        if constraining_bijector is not None:
            parts.append(constraining_bijector)
        base = tfd.Sample(tfd.Normal(tf.zeros(batch_shape, dtype), tf.ones([], dtype)),
                          event_size)
        super().__init__(base, tfb.Chain(parts[::-1]), validate_args=validate_args,
                         parameters=parameters, name=name)
        self._parameters = parameters

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(
            gaussianizer=parameter_properties.BatchedComponentProperties(event_ndims=1),
            loc=parameter_properties.ParameterProperties(event_ndims=1),
            scale_tril=parameter_properties.ParameterProperties(
                event_ndims=2,
                default_constraining_bijector_fn=parameter_properties.BIJECTOR_NOT_IMPLEMENTED),
            constraining_bijector=parameter_properties.BatchedComponentProperties(event_ndims=1))

    @property
    def gaussianizer(self):
        """The ``StackedGaussianizer`` ``G``."""
        return self._gaussianizer

    @property
    def path_gradient(self):
        """Whether ``experimental_sample_and_log_prob`` uses the path derivative."""
        return self._path_gradient

    def _sample_and_log_prob(self, sample_shape, seed, **kwargs):
        if not self._path_gradient or kwargs:
            return super()._sample_and_log_prob(sample_shape, seed=seed, **kwargs)
        z = self.distribution.sample(sample_shape, seed=seed)
        g = self._gaussianizer
        params = [tf.convert_to_tensor(p) for p in (g.logits, g.locs, g.scales)]
        h, fldj, score = stacked_forward(z, *params, g.rotations(), score=True)
        # log q(x) = log N(z) - log|det G'(z)| - log|det S| + log|det (c^{-1})'(x)|:
        # its value, with the parameters held fixed ...
        log_q = tf.stop_gradient(self.distribution.log_prob(z) - fldj)
        x = h
        if self._loc is not None:
            loc = tf.convert_to_tensor(self._loc)
            tril = tf.convert_to_tensor(self._scale_tril)
            log_q = log_q - tf.stop_gradient(
                tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(tril))), -1))
            x = tf.linalg.matvec(tril, h) + loc
            # ... and d log q / dh = S^T d log q / dx, so d log q / dx = S^{-T} score.
            score = tf.linalg.triangular_solve(
                tf.stop_gradient(tril), score[..., tf.newaxis], lower=True, adjoint=True)[..., 0]
        # ... which then depends on the parameters only through the sample x:
        # <score, x - stop(x)> is 0 with gradient `score`.
        log_q = log_q + tf.reduce_sum(score * (x - tf.stop_gradient(x)), axis=-1)
        if self._constraining is not None:
            c = self._constraining
            y = c.forward(x)
            # A new tensor, so that the cache does not short-cut the inverse
            # (its log-det depends on x only; the bijector has no parameters).
            log_q = log_q + c.inverse_log_det_jacobian(
                tf.nest.map_structure(tf.identity, y), event_ndims=c.forward_event_ndims(1))
            x = y
        return x, log_q


def gaussian_fit(target_log_prob_fn, event_size, *, num_steps=300, sample_size=64,
                 learning_rate=5e-2, batch_shape=(), dtype=tf.float32, seed=0):
    """A full-covariance Gaussian fit (ADVI) of an unnormalised density on ``R^D``.

    A quick starting point for ``gaussianization_surrogate(loc=...,
    scale_tril=...)``: the flow then starts as this Gaussian and only has
    to learn the non-Gaussian part.

    Returns:
      ``(loc, scale_tril)`` tensors ``[*batch, D]`` and ``[*batch, D, D]``.
    """
    dtype = tf.as_dtype(dtype)
    shape = tuple(batch_shape) + (event_size,)
    loc = tf.Variable(tf.zeros(shape, dtype))
    scale = tfp.util.TransformedVariable(
        tf.eye(event_size, batch_shape=batch_shape, dtype=dtype),
        tfb.FillScaleTriL(diag_shift=dtype.as_numpy_dtype(1e-5)))
    q = tfd.MultivariateNormalTriL(loc, scale)
    tfp.vi.fit_surrogate_posterior(target_log_prob_fn, q, tf.optimizers.Adam(learning_rate),
                                   num_steps, sample_size=sample_size, seed=seed,
                                   jit_compile=True)
    return tf.convert_to_tensor(loc), tf.convert_to_tensor(scale)


def flattening_bijector(target):
    """Bijector from ``R^D`` onto a ``JointDistribution``'s support and structure.

    ``Chain([event_space, Restructure, JointMap(Reshape), Split])``: splits a
    ``[D]`` vector into the target's parts, reshapes each to its
    unconstrained event shape, packs them into the target's structure (list,
    dict or namedtuple) and maps each onto its support with the target's
    ``experimental_default_event_space_bijector()``. Pass it as
    ``constraining_bijector`` to ``gaussianization_surrogate(D, ...)``; the
    surrogate then samples the target's structure, and
    ``target.unnormalized_log_prob`` (or ``log_prob``) is the
    ``target_log_prob_fn``. Pin observed parts first
    (``jd.experimental_pin(...)``).

    Args:
      target: a ``tfd.JointDistribution`` (or pinned one) with static event shapes.

    Returns:
      ``(bijector, D)``.
    """
    event_space = target.experimental_default_event_space_bijector()
    shapes = event_space.inverse_event_shape(target.event_shape)
    flat = [tf.TensorShape(s) for s in tf.nest.flatten(shapes)]
    if any(not s.is_fully_defined() for s in flat):
        raise ValueError(f"flattening_bijector needs static event shapes; got {shapes}.")
    sizes = [max(s.num_elements(), 1) for s in flat]
    reshape = tfb.JointMap([tfb.Reshape(s, event_shape_in=[n]) for s, n in zip(flat, sizes)])
    structure = tf.nest.pack_sequence_as(shapes, list(range(len(flat))))
    bijector = tfb.Chain([event_space, tfb.Restructure(structure), reshape, tfb.Split(sizes)])
    return bijector, int(sum(sizes))


def neutra_hmc(target_log_prob_fn, transport, *, num_results, num_burnin_steps, current_state,
               num_leapfrog_steps=4, step_size=0.1, target_accept_prob=0.75, seed=0,
               jit_compile=True):
    """HMC on ``target_log_prob_fn`` pulled back through a transport map (NeuTra).

    The chain runs on ``z`` with target ``log p(T(z)) + log|det T'(z)|``
    (``tfp.mcmc.TransformedTransitionKernel``), where ``T`` is e.g. a
    fitted surrogate's ``bijector``: if the surrogate matches the
    posterior, the pulled-back target is close to ``N(0, I)`` and HMC
    mixes in a few leapfrog steps. The step size adapts during burn-in
    (dual averaging). With ``transport=tfb.Identity()`` this is plain HMC.

    Hoffman, Sountsov, Dillon, Langmore, Tran & Vasudevan (2019), NeuTra-lizing
    bad geometry in Hamiltonian Monte Carlo using neural transport. arXiv:1903.03704.

    Args:
      target_log_prob_fn: log density of the target, ``[..., D] -> [...]``.
      transport: bijector from the latent space to the target space.
      num_results, num_burnin_steps: chain lengths.
      current_state: ``[C, D]`` initial states in target space (``C`` chains).
      num_leapfrog_steps, step_size, target_accept_prob: HMC settings.
      seed: stateless seed.
      jit_compile: compile the whole chain with XLA.

    Returns:
      dict: ``samples`` ``[num_results, C, D]`` (target space),
      ``is_accepted``, ``step_size`` (final), ``grad_evals`` (leapfrog steps
      after burn-in, per chain).
    """
    hmc = tfp.mcmc.HamiltonianMonteCarlo(target_log_prob_fn, step_size=step_size,
                                         num_leapfrog_steps=num_leapfrog_steps)
    kernel = tfp.mcmc.TransformedTransitionKernel(hmc, transport)
    kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
        kernel, num_adaptation_steps=int(0.8 * num_burnin_steps),
        target_accept_prob=target_accept_prob)

    def run(state, seed):
        return tfp.mcmc.sample_chain(
            num_results, state, kernel=kernel, num_burnin_steps=num_burnin_steps,
            trace_fn=lambda _, r: (r.inner_results.inner_results.is_accepted,
                                   r.new_step_size), seed=seed)

    run = tf.function(run, jit_compile=jit_compile, autograph=False)
    samples, (accepted, step) = run(tf.convert_to_tensor(current_state),
                                    tfp.random.sanitize_seed(seed))
    return dict(samples=samples, is_accepted=accepted, step_size=step[-1],
                grad_evals=num_results * num_leapfrog_steps)
