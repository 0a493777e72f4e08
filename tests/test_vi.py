"""The variational surrogate: closed-form sampling direction, exact gradients, TFP plumbing."""

import inspect

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import householder_reference, mixture_reference

from tfp_gauss import flows, vi
from tfp_gauss.bijectors import MixtureGaussianCDF
from tfp_gauss.bijectors.stacked_gaussianizer import StackedGaussianizer

tfb = tfp.bijectors
tfd = tfp.distributions


def _banana():
    return tfd.JointDistributionSequential([
        tfd.Normal(np.float64(0.0), 1.5),
        lambda x1: tfd.Normal(0.4 * (x1**2 - 2.25), np.float64(0.5))])


def _banana_log_prob(x):
    return _banana().log_prob([x[..., 0], x[..., 1]])


def _perturbed_surrogate(dtype=np.float64, batch_shape=(), **kwargs):
    """A small surrogate whose mixtures are far from the identity start."""
    rng = np.random.default_rng(3)
    values = vi.surrogate_values(2, 2, 3, batch_shape=batch_shape, seed=1, dtype=dtype)
    values = {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(dtype)
              for k, v in values.items()}
    return vi.gaussianization_surrogate(
        2, 2, 3, dtype=dtype, initial_values=values, batch_shape=batch_shape,
        loc=np.array([0.3, -0.2]), scale_tril=np.array([[1.2, 0.0], [0.4, 0.8]]), **kwargs)


def _gaussianizer(q):
    return next(b for b in q.bijector.bijectors if isinstance(b, StackedGaussianizer))


def test_identity_start_is_close_to_a_standard_normal():
    m = vi.identity_mixture_values(8, dtype=np.float64)
    z = np.linspace(-3.0, 3.0, 61)
    x, _ = mixture_reference(z[:, None], m["logits"][None], m["locs"][None], m["scales"][None])
    assert np.abs(x[:, 0] - z).max() < 0.05
    q = vi.gaussianization_surrogate(3, 4, 8, seed=0, dtype=tf.float64)
    x, log_q = q.experimental_sample_and_log_prob(4000, seed=(1, 2))
    log_n = tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64)).log_prob(x)
    assert 0 <= np.mean(log_q - log_n) < 0.02  # KL(q || N(0, I)), Monte Carlo


def test_stacked_gaussianizer_equals_the_chain_of_its_layers():
    values = flows.stack_flow_values(flows.random_flow_values(3, 3, 4, seed=0, dtype=np.float64))
    params = [tf.Variable(values[p]) for p in flows.STACKED_PARAMETERS]
    g = StackedGaussianizer(params[0], params[1],
                            tfp.util.DeferredTensor(params[2], tfb.Softplus()), params[3])
    chain = flows.flow_from_stacked(*params).bijector.bijector  # the flow's Gaussianizer
    z = np.random.default_rng(0).standard_normal((9, 3))
    with tf.GradientTape(persistent=True) as tape:
        outs = []
        for b in (g, chain, flows.gaussianizer(g.layers())):
            x, ld = b.forward(z), b.forward_log_det_jacobian(z, event_ndims=1)
            outs.append((x, ld, tf.reduce_sum(tf.sin(x)) + tf.reduce_sum(ld * tf.cos(x[:, 0]))))
    for x, ld, _ in outs[1:]:
        np.testing.assert_allclose(outs[0][0], x, atol=1e-12)
        np.testing.assert_allclose(outs[0][1], ld, atol=1e-12)
    for ga, gb in zip(tape.gradient(outs[0][2], params), tape.gradient(outs[1][2], params)):
        np.testing.assert_allclose(ga, gb, atol=1e-10)
    x = tf.constant(outs[0][0].numpy())  # a new tensor: the root-find, not the cache
    np.testing.assert_allclose(g.inverse(x), z, atol=1e-9)


def test_sample_and_log_prob_match_an_independent_float64_reference():
    q = _perturbed_surrogate()
    g = _gaussianizer(q)
    z = np.random.default_rng(1).standard_normal((50, 2))
    # Reference: scipy mixture CDFs and numpy Householder products, layer by layer.
    logits, locs, scales = (np.asarray(tf.convert_to_tensor(t))
                            for t in (g.logits, g.locs, g.scales))
    vectors = np.asarray(g.vectors)
    h, log_det = z, np.zeros(len(z))
    for layer in range(2):
        h, ld = mixture_reference(h, logits[layer], locs[layer], scales[layer])
        h = h @ householder_reference(vectors[layer]).T
        log_det += ld.sum(-1)
    tril = np.array([[1.2, 0.0], [0.4, 0.8]])
    x_ref = h @ tril.T + np.array([0.3, -0.2])
    log_q_ref = (-0.5 * (z**2).sum(-1) - np.log(2 * np.pi) - log_det
                 - np.log(np.diag(tril)).sum())
    x = q.bijector.forward(z)
    np.testing.assert_allclose(x, x_ref, atol=1e-6)  # FillScaleTriL's diag shift
    np.testing.assert_allclose(q.log_prob(x), log_q_ref, atol=1e-5)
    # log q of arbitrary points (root-find) agrees with that of own samples (cache).
    xs, log_qs = q.experimental_sample_and_log_prob(64, seed=(3, 4))
    np.testing.assert_allclose(q.log_prob(tf.constant(xs.numpy())), log_qs, atol=1e-9)


def test_density_integrates_to_one():
    q = _perturbed_surrogate()
    grid = np.linspace(-12.0, 12.0, 481)
    xx, yy = np.meshgrid(grid, grid)
    pts = np.stack([xx.ravel(), yy.ravel()], -1)
    mass = np.exp(q.log_prob(pts)).sum() * (grid[1] - grid[0]) ** 2
    assert abs(mass - 1.0) < 2e-3


def _loss_fn(q, seed=(5, 6), sample_size=16):
    """The negative ELBO as ``tfp.vi`` forms it, at fixed noise (a graph, for speed)."""

    @tf.function(autograph=False)
    def loss():
        x, log_q = q.experimental_sample_and_log_prob(sample_size, seed=seed)
        return tf.reduce_mean(log_q - _banana_log_prob(x))

    return loss


def _entries(shape, rng, n=3):
    """Up to ``n`` entries of every variable (all of a small one)."""
    indices = list(np.ndindex(*shape))
    picks = rng.choice(len(indices), size=min(n, len(indices)), replace=False)
    return [indices[i] for i in sorted(picks)]


def _central_differences(fn, variables, entries, h=1e-6):
    out = []
    for var, indices in zip(variables, entries):
        value = var.numpy()
        fd = {}
        for index in indices:
            bumped = []
            for sign in (1.0, -1.0):
                v = value.copy()
                v[index] += sign * h
                var.assign(v)
                bumped.append(float(fn()))
            fd[index] = (bumped[0] - bumped[1]) / (2 * h)
        var.assign(value)
        out.append(fd)
    return out


def _at(grad, fd, var):
    grad = np.zeros(var.shape) if grad is None else np.asarray(grad)
    return np.array([grad[i] for i in fd]), np.array(list(fd.values()))


def test_elbo_gradient_matches_central_finite_differences_for_every_variable():
    # The plain reparameterised gradient is the derivative of the Monte Carlo
    # ELBO at fixed noise.
    q = _perturbed_surrogate(path_gradient=False)
    variables = q.trainable_variables
    names = sorted(v.name.split("/")[-1].split(":")[0] for v in variables)
    assert names == ["loc", "locs", "logits", "raw_scales", "scale_tril", "vectors"]
    loss = _loss_fn(q)
    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, variables)
    entries = [_entries(v.shape, np.random.default_rng(i)) for i, v in enumerate(variables)]
    for var, grad, fd in zip(variables, grads, _central_differences(loss, variables, entries)):
        np.testing.assert_allclose(*_at(grad, fd, var), rtol=1e-6, atol=1e-7, err_msg=var.name)


def test_path_gradient_is_the_elbo_gradient_without_the_score_term():
    # Path derivative = d/dtheta [MC ELBO at fixed noise] minus the score
    # term d/dtheta log q_theta(x) at the (fixed) samples x, both by finite
    # differences; log q at fixed x goes through the root-find.
    q = _perturbed_surrogate()
    assert q.path_gradient
    variables = q.trainable_variables
    loss = _loss_fn(q)
    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, variables)
    x = tf.constant(q.experimental_sample_and_log_prob(16, seed=(5, 6))[0].numpy())
    entries = [_entries(v.shape, np.random.default_rng(i)) for i, v in enumerate(variables)]
    fd_loss = _central_differences(loss, variables, entries)
    fd_score = _central_differences(lambda: tf.reduce_mean(q.log_prob(x)), variables, entries)
    for var, grad, a, b in zip(variables, grads, fd_loss, fd_score):
        actual, total = _at(grad, a, var)
        score = np.array(list(b.values()))
        np.testing.assert_allclose(actual, total - score, rtol=1e-5, atol=1e-6, err_msg=var.name)


def test_fit_surrogate_posterior_compiled_reduces_the_kl():
    q = vi.gaussianization_surrogate(2, 4, 4, seed=0)
    target = lambda x: tf.cast(_banana_log_prob(tf.cast(x, tf.float64)), tf.float32)  # noqa: E731
    losses = tfp.vi.fit_surrogate_posterior(target, q, optimizer=tf.optimizers.Adam(2e-2),
                                            num_steps=150, sample_size=64, seed=0,
                                            jit_compile=True)
    assert losses.shape == (150,) and np.isfinite(losses).all()
    assert np.mean(losses[-30:]) < np.mean(losses[:10]) - 0.2
    # The banana's curvature has started to show: E[x2 | |x1| > 1.5] is well above E[x2].
    x = q.sample(4000, seed=(1, 1)).numpy()
    assert x[np.abs(x[:, 0]) > 1.5, 1].mean() > x[:, 1].mean() + 0.3


def test_constrained_support_through_a_softplus():
    target = tfd.Gamma(np.float32([2.0, 5.0]), np.float32([1.0, 2.0]))
    q = vi.gaussianization_surrogate(2, 2, 4, seed=0, constraining_bijector=tfb.Softplus())
    x, log_q = q.experimental_sample_and_log_prob(500, seed=(1, 2))
    assert (x.numpy() > 0).all()
    np.testing.assert_allclose(q.log_prob(tf.constant(x.numpy())), log_q, atol=1e-3, rtol=1e-4)
    losses = tfp.vi.fit_surrogate_posterior(
        lambda x: tf.reduce_sum(target.log_prob(x), -1), q, tf.optimizers.Adam(5e-2), 150,
        sample_size=64, seed=0)
    assert np.mean(losses[-20:]) < 0.1  # the KL, since the Gamma is normalised
    np.testing.assert_allclose(q.sample(4000, seed=(2, 2)).numpy().mean(0), [2.0, 2.5],
                               rtol=0.15)


def test_joint_distribution_target_through_the_flattening_bijector():
    jd = tfd.JointDistributionNamed(dict(
        scale=tfd.HalfNormal(1.0), mean=tfd.Normal(0.0, 1.0),
        y=lambda scale, mean: tfd.Sample(tfd.Normal(mean, scale), 3)))
    pinned = jd.experimental_pin(y=[0.5, 1.0, 1.5])
    bijector, d = vi.flattening_bijector(pinned)
    assert d == 2
    q = vi.gaussianization_surrogate(d, 2, 4, seed=0, constraining_bijector=bijector)
    sample = q.sample(7, seed=(1, 2))
    assert set(sample) == {"scale", "mean"} and (sample["scale"].numpy() > 0).all()
    losses = tfp.vi.fit_surrogate_posterior(pinned.unnormalized_log_prob, q,
                                            tf.optimizers.Adam(2e-2), 40, sample_size=16,
                                            seed=0)
    assert np.isfinite(losses).all() and losses[-10:].numpy().mean() < losses[:5].numpy().mean()


def test_batch_of_surrogates_fits_a_batch_of_targets():
    means = np.float32([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0]])
    target = tfd.MultivariateNormalDiag(means, np.float32([1.0, 0.5]))
    q = vi.gaussianization_surrogate(2, 2, 4, batch_shape=[3], seed=0)
    assert q.batch_shape == [3] and q.event_shape == [2]
    x, log_q = q.experimental_sample_and_log_prob(5, seed=(1, 2))
    assert x.shape == (5, 3, 2) and log_q.shape == (5, 3)
    np.testing.assert_allclose(q.log_prob(tf.constant(x.numpy())), log_q, atol=1e-4)
    tfp.vi.fit_surrogate_posterior(target.log_prob, q, tf.optimizers.Adam(5e-2), 120,
                                   sample_size=32, seed=0)
    np.testing.assert_allclose(q.sample(4000, seed=(3, 3)).numpy().mean(0), means, atol=0.15)


def test_forward_compiles_under_xla_with_gradients():
    q = vi.gaussianization_surrogate(2, 3, 4, seed=0)

    @tf.function(jit_compile=True)
    def step(seed):
        with tf.GradientTape() as tape:
            loss = tfp.vi.monte_carlo_variational_loss(
                lambda x: -0.5 * tf.reduce_sum(x**2, -1), q, sample_size=8, seed=seed)
        return loss, tape.gradient(loss, q.trainable_variables)

    loss, grads = step(tf.constant([1, 2]))
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads)


def test_surrogate_bijector_transports_hmc():
    # NeuTra: HMC on z with target log p(T(z)) + log|det T'(z)|.
    q = vi.gaussianization_surrogate(2, 2, 4, seed=0)
    target = tfd.MultivariateNormalDiag(np.float32([1.0, -1.0]), np.float32([1.0, 2.0]))
    kernel = tfp.mcmc.TransformedTransitionKernel(
        tfp.mcmc.HamiltonianMonteCarlo(target.log_prob, step_size=0.3, num_leapfrog_steps=3),
        q.bijector)
    state = tf.constant(np.float32([[0.5, -0.5], [1.0, 0.0]]))
    results = kernel.bootstrap_results(state)
    for i in range(3):
        state, results = kernel.one_step(state, results, seed=(i, 1))
    assert state.shape == (2, 2) and np.isfinite(state).all()
    assert np.isfinite(results.inner_results.accepted_results.target_log_prob).all()


def test_bad_arguments_are_rejected_with_a_message():
    with pytest.raises(ValueError, match="dtype"):
        vi.gaussianization_surrogate(2, dtype=tf.int32)
    with pytest.raises(ValueError, match=">= 1"):
        vi.gaussianization_surrogate(0)
    with pytest.raises(ValueError, match="L, D and K"):
        StackedGaussianizer(np.zeros([2, 3, 4]), np.zeros([2, 3, 5]), np.ones([2, 3, 4]),
                            np.ones([2, 3, 3]))
    assert all(isinstance(m, MixtureGaussianCDF) for m, _ in
               StackedGaussianizer(np.zeros([2, 3, 4]), np.zeros([2, 3, 4]), np.ones([2, 3, 4]),
                                   np.ones([2, 3, 3])).layers())


@pytest.mark.parametrize("kwargs, match", [
    (dict(loc=np.zeros(3)), r"loc must broadcast to \(2,\).*got shape \(3,\)"),
    (dict(loc=np.zeros((4, 2))), r"got shape \(4, 2\)\. For a batch .* batch_shape=\(4,\)"),
    (dict(scale_tril=np.eye(3)), r"scale_tril must broadcast to \(2, 2\)"),
    (dict(scale_tril=[[1.0, 0.9], [0.0, 1.0]]),
     r"lower triangular; entry \(0, 1\) above the diagonal is 0\.9\. .*cholesky"),
    (dict(scale_tril=[[-1.0, 0.0], [0.5, 1.0]]),
     r"diagonal must be above 1e-05 .* got -1 at \(0,\)"),
    (dict(scale_tril=np.diag([1e-6, 1.0])), r"diagonal must be above 1e-05 .* got 1e-06 at \(0,\)"),
    (dict(loc=[0.0, np.nan]), r"loc holds NaN"),
    (dict(loc=[1e39, 0.0]), r"loc holds NaN or infinity \(in float32\)"),
    (dict(loc=np.zeros((4, 3))), r"got shape \(4, 3\)\.$"),  # (no batch_shape hint: D is wrong)
])
def test_bad_affine_starts_are_clear_errors(kwargs, match):
    # They were taken: an upper-triangular scale became another matrix, a
    # negative diagonal gave NaN samples, an undeclared batch in loc failed
    # only inside tfp.vi's sample-and-log-prob.
    with pytest.raises(ValueError, match=match):
        vi.gaussianization_surrogate(2, n_layers=1, n_components=2, seed=0, **kwargs)


def test_an_affine_start_broadcasts_over_the_batch_and_keeps_its_matrix():
    chol = np.array([[1.5, 0.0], [0.6, 0.8]])
    q = vi.gaussianization_surrogate(2, n_layers=1, n_components=2, seed=0, batch_shape=(3,),
                                     loc=[1.0, -2.0], scale_tril=chol, dtype=tf.float64)
    assert q.batch_shape == (3,)
    np.testing.assert_allclose(tf.convert_to_tensor(q._scale_tril).numpy(),
                               np.broadcast_to(chol, (3, 2, 2)), rtol=1e-12, atol=1e-12)
    x, log_q = q.experimental_sample_and_log_prob(5, seed=(1, 2))
    assert x.shape == (5, 3, 2) and log_q.shape == (5, 3)


@pytest.mark.parametrize("obj", [vi.gaussianization_surrogate, StackedGaussianizer])
def test_docstring_example_runs(obj):
    blocks = [b.split("```")[0] for b in (inspect.getdoc(obj) or "").split("```python")[1:]]
    assert blocks
    for code in blocks:
        exec(compile(code, f"<docstring of {obj.__name__}>", "exec"), {})  # noqa: S102


@pytest.mark.parametrize("architecture", ["marginal", "coupling"])
def test_density_direction_flows_are_surrogates_too(architecture):
    # gaussianization_flow and a Keras model's distribution work as they are as
    # surrogate posteriors (each draw runs the root-find, with its implicit
    # gradient, so they are slower than vi.gaussianization_surrogate): every
    # variable, the Keras weights and the coupling conditioner's included, trains.
    # (A flow for marginal layers, a model's distribution for coupling ones.)
    import tfp_gauss  # noqa: PLC0415
    from tfp_gauss.keras import GaussianizationFlowModel  # noqa: PLC0415

    target = lambda x: tf.cast(_banana_log_prob(tf.cast(x, tf.float64)), tf.float32)  # noqa: E731
    if architecture == "marginal":
        q = tfp_gauss.gaussianization_flow(2, 2, 3, seed=0)
        n_vars = 4
    else:
        # one coupling layer: every variable kind, half the root-find graph to trace
        model = GaussianizationFlowModel(2, 1, 3, seed=0, architecture="coupling",
                                         conditioner_units=(8,))
        q, n_vars = model.distribution, len(model.trainable_weights)
    assert len(q.trainable_variables) == n_vars == (4 if architecture == "marginal" else 8)
    before = [v.numpy().copy() for v in q.trainable_variables]
    losses = tfp.vi.fit_surrogate_posterior(target, q, tf.optimizers.Adam(2e-2),
                                            num_steps=30, sample_size=32, seed=0)
    assert np.isfinite(losses).all() and np.mean(losses[-8:]) < np.mean(losses[:5])
    assert all(np.any(v.numpy() != b) for v, b in zip(q.trainable_variables, before))
