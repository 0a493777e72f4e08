"""MixtureCDFCoupling against independent references: its base marginal, finite differences."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_gauss.bijectors import MixtureCDFCoupling, MixtureGaussianCDF, mixture_cdf_conditioner

tfb, tfd = tfp.bijectors, tfp.distributions


def _base(dtype, n_dims=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return MixtureGaussianCDF(
        logits=rng.normal(size=(n_dims, k)).astype(dtype),
        locs=rng.normal(size=(n_dims, k)).astype(dtype),
        scales=np.exp(0.3 * rng.normal(size=(n_dims, k))).astype(dtype))


def _perturbed(dtype, conditioning_dims=(0, 2), seed=1):
    coupling = MixtureCDFCoupling.from_marginal(_base(dtype), conditioning_dims,
                                                hidden_units=(8,), seed=seed)
    rng = np.random.default_rng(seed)
    for v in coupling.conditioner.trainable_variables:
        v.assign(0.4 * rng.normal(size=v.shape))
    return coupling


def _numerical_jacobian(fn, x, h=1e-6):
    """Central differences of ``fn: [D] -> [D]`` at ``x`` in float64."""
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        cols.append((fn(x + e) - fn(x - e)) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-6), ("float64", 1e-13)])
def test_zero_conditioner_equals_the_base_marginal(dtype, atol):
    base = _base(dtype)
    coupling = MixtureCDFCoupling.from_marginal(base, conditioning_dims=[1, 3], seed=0)
    x = np.random.default_rng(2).normal(size=(50, 4)).astype(dtype) * 2
    np.testing.assert_allclose(coupling.forward(x), base.forward(x), atol=atol, rtol=0)
    np.testing.assert_allclose(
        coupling.forward_log_det_jacobian(x, event_ndims=1),
        tf.reduce_sum(base.forward_log_det_jacobian(x, event_ndims=0), -1), atol=atol, rtol=0)


def test_log_det_matches_finite_difference_jacobian_float64():
    coupling = _perturbed("float64")
    x = np.random.default_rng(3).normal(size=(6, 4))
    fwd = lambda v: coupling.forward(v[None])[0].numpy()  # noqa: E731
    log_det = coupling.forward_log_det_jacobian(x, event_ndims=1).numpy()
    for i in range(len(x)):
        jac = _numerical_jacobian(fwd, x[i])
        # Block triangular: the conditioning coordinates do not see the others.
        assert np.abs(jac[np.ix_([0, 2], [1, 3])]).max() < 1e-8
        assert np.abs(jac[np.ix_([1, 3], [0, 2])]).max() > 1e-3  # the conditioner acts
        np.testing.assert_allclose(log_det[i], np.linalg.slogdet(jac)[1], atol=1e-6)


@pytest.mark.parametrize("dtype, atol", [("float32", 2e-5), ("float64", 1e-11)])
def test_inverse_round_trip(dtype, atol):
    coupling = _perturbed(dtype)
    x = np.random.default_rng(4).normal(size=(200, 4)).astype(dtype) * 1.5
    y = tf.constant(coupling.forward(x).numpy())   # a fresh tensor: no bijector cache
    np.testing.assert_allclose(coupling.inverse(y), x, atol=atol, rtol=0)


def test_gradient_of_log_prob_wrt_conditioner_matches_finite_differences():
    coupling = _perturbed("float64")
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(np.float64(0), 1.0), 4),
                                       tfb.Invert(coupling))
    x = np.random.default_rng(5).normal(size=(20, 4))
    weight = coupling.conditioner.trainable_variables[-2]   # the last kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(dist.log_prob(x))
    grad = tape.gradient(loss, weight).numpy()
    base_value = weight.numpy()
    h = 1e-6
    for idx in [(0, 0), (3, 5), (7, 17)]:
        up, down = base_value.copy(), base_value.copy()
        up[idx] += h
        down[idx] -= h
        weight.assign(up)
        f_up = float(tf.reduce_mean(dist.log_prob(x)))
        weight.assign(down)
        f_down = float(tf.reduce_mean(dist.log_prob(x)))
        weight.assign(base_value)
        np.testing.assert_allclose(grad[idx], (f_up - f_down) / (2 * h), rtol=1e-5, atol=1e-8)


def test_density_integrates_to_one_in_two_dimensions():
    # A coupling flow's density is a density: its integral over a wide grid is 1.
    # tanh keeps the conditioner's offsets bounded, so the mass stays on the grid.
    base = _base("float64", n_dims=2)
    coupling = MixtureCDFCoupling(
        base.logits, base.locs, base.scales,
        mixture_cdf_conditioner(1, 1, 3, (8,), activation="tanh", seed=0, dtype="float64"), [0])
    rng = np.random.default_rng(6)
    for v in coupling.conditioner.trainable_variables:
        v.assign(0.5 * rng.normal(size=v.shape))
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(np.float64(0), 1.0), 2),
                                       tfb.Invert(coupling))
    g = np.linspace(-9, 9, 601)
    xx, yy = np.meshgrid(g, g)
    p = np.exp(dist.log_prob(np.stack([xx.ravel(), yy.ravel()], -1)).numpy())
    assert abs(p.sum() * (g[1] - g[0]) ** 2 - 1) < 1e-3


def test_compiles_with_xla_and_chains_with_tfp():
    coupling = _perturbed("float32")
    flow = tfb.Chain([tfb.Permute([3, 2, 1, 0]), coupling])
    x = np.random.default_rng(7).normal(size=(64, 4)).astype("float32")

    @tf.function(jit_compile=True)
    def both(v):
        y = flow.forward(v)
        return flow.inverse(y), flow.forward_log_det_jacobian(v, event_ndims=1)

    x_back, log_det = both(tf.constant(x))
    np.testing.assert_allclose(x_back, x, atol=2e-5)
    np.testing.assert_allclose(log_det, coupling.forward_log_det_jacobian(x, event_ndims=1),
                               atol=1e-5)


@pytest.mark.parametrize("dims", [[], [0, 0], [4], [0, 1, 2, 3]])
def test_bad_conditioning_dims_are_clear_errors(dims):
    with pytest.raises(ValueError, match="conditioning_dims"):
        MixtureCDFCoupling.from_marginal(_base("float32"), dims)


def test_a_keras_conditioner_takes_inputs_of_any_rank():
    # The Keras network takes [N, D_a]; a single point, a [3, 4] batch of
    # points and sample((3, 4)) of a distribution used to fail in Keras's
    # input check ("Expected (None, 2)").
    coupling = _perturbed("float64")
    x = np.random.default_rng(3).normal(size=(3, 5, 4))
    rows = coupling.forward(x.reshape(-1, 4)).numpy().reshape(x.shape)
    np.testing.assert_allclose(coupling.forward(x), rows, rtol=1e-12)
    np.testing.assert_allclose(coupling.forward(x[1, 2]), rows[1, 2], rtol=1e-12)
    np.testing.assert_allclose(
        coupling.forward_log_det_jacobian(x, event_ndims=1),
        coupling.forward_log_det_jacobian(x.reshape(-1, 4), event_ndims=1).numpy().reshape(3, 5),
        rtol=1e-12)
    np.testing.assert_allclose(coupling.inverse(rows), x, atol=1e-9)
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(np.float64(0), 1.0), 4),
                                       tfb.Invert(coupling))
    draws = dist.sample((3, 4), seed=(1, 2))
    assert draws.shape == (3, 4, 4) and dist.sample(seed=(1, 2)).shape == (4,)
    np.testing.assert_allclose(dist.log_prob(draws),
                               dist.log_prob(tf.reshape(draws, [-1, 4])).numpy().reshape(3, 4),
                               rtol=1e-12)


def test_the_keras_conditioners_weights_are_trainable_variables_of_the_bijector():
    # A Keras 3 network is not a tf.Module: its weights were missing from
    # trainable_variables, so a training loop over them left it untouched.
    rng = np.random.default_rng(4)
    variables = [tf.Variable(p) for p in (np.zeros((2, 3)), rng.normal(size=(2, 3)),
                                          np.ones((2, 3)))]
    coupling = MixtureCDFCoupling.from_marginal(MixtureGaussianCDF(*variables), [0],
                                                hidden_units=(8,), seed=0)
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(np.float64(0), 1.0), 2),
                                       tfb.Invert(coupling))
    conditioner = {id(v.value) for v in coupling.conditioner.trainable_variables}
    for listed in (coupling.trainable_variables, dist.trainable_variables):
        assert len(listed) == 3 + 4
        assert conditioner <= {id(v) for v in listed}
    # a plain optimizer loop over dist.trainable_variables trains the conditioner:
    # the second coordinate depends on the first, which only it can learn
    first = rng.normal(size=(400, 1))
    x = tf.constant(np.concatenate([first, first**2 + 0.1 * rng.normal(size=(400, 1))], 1))
    last = coupling.conditioner.layers[-1].kernel
    optimizer = tf.keras.optimizers.Adam(0.05)
    losses = []
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x))
        grads = tape.gradient(loss, dist.trainable_variables)
        optimizer.apply_gradients(zip(grads, dist.trainable_variables))
        losses.append(float(loss))
    assert np.abs(last.numpy()).max() > 0  # (it starts at zero)
    assert losses[-1] < losses[0] - 0.5


def test_a_conditioner_that_is_not_built_is_built_on_one_row():
    import keras  # noqa: PLC0415

    net = keras.Sequential([keras.layers.Dense(8, activation="tanh"),
                            keras.layers.Dense(2 * 3 * 3, kernel_initializer="zeros")])
    base = _base("float32")
    coupling = MixtureCDFCoupling(base.logits, base.locs, base.scales, net, [0, 3])
    assert net.built and len(coupling.trainable_variables) == 4
    x = np.random.default_rng(5).normal(size=(6, 4)).astype("float32")
    np.testing.assert_allclose(coupling.forward(x), base.forward(x), atol=1e-6)
