"""The stacked-layer sampler: equal to the flow's own sample, no recompilation."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability.python.internal import samplers

from tfp_gauss import flows, sampling
from tfp_gauss.bijectors import householder_rotation
from tfp_gauss.keras import GaussianizationFlowModel


@pytest.mark.parametrize("dtype,atol", [(np.float32, 2e-4), (np.float64, 1e-10)])
def test_sample_stacked_round_trips_and_matches_the_flow(dtype, atol):
    values = flows.stack_flow_values(flows.random_flow_values(3, 3, 4, seed=1, dtype=dtype))
    params = [tf.constant(values[p]) for p in flows.STACKED_PARAMETERS]
    flow = flows.flow_from_stacked(*params)
    seed = tf.constant([3, 4])
    x = sampling.sample_stacked(700, seed, *params)
    assert x.shape == (700, 3) and x.dtype == dtype
    z = samplers.normal([700, 3], seed=seed, dtype=dtype)
    np.testing.assert_allclose(flow.bijector.bijector.forward(x), z, atol=atol)
    np.testing.assert_allclose(x, flow.sample(700, seed=seed), atol=10 * atol)
    # the implicit-function gradient equals the bijector path's
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(params)
        a = tf.reduce_sum(tf.sin(sampling.sample_stacked(50, seed, *params)))
        b = tf.reduce_sum(tf.sin(flows.flow_from_stacked(*params).sample(50, seed=seed)))
    for ga, gb in zip(tape.gradient(a, params), tape.gradient(b, params)):
        np.testing.assert_allclose(ga, gb, rtol=1e-3 if dtype == np.float32 else 1e-8,
                                   atol=1e-4 if dtype == np.float32 else 1e-10)


def test_model_sample_compiles_once_for_every_n_seed_and_model():
    model = GaussianizationFlowModel(2, n_layers=2, n_components=3, seed=0)
    other = GaussianizationFlowModel(2, n_layers=5, n_components=3, seed=1)
    model.sample(5, seed=1)
    fn = sampling._SAMPLE_FNS[(tf.float32, None, False)]  # (dtype, conditioner, floor)
    traces = fn.experimental_get_tracing_count()
    kernel_traces = sampling._solve_chunk.experimental_get_tracing_count()
    for n, seed in ((5, 2), (40000, 1), (3, [1, 2])):
        assert model.sample(n, seed=seed).shape == (n, 2)
    assert other.sample(7, seed=0).shape == (7, 2)
    assert fn.experimental_get_tracing_count() == traces
    assert sampling._solve_chunk.experimental_get_tracing_count() == kernel_traces
    assert np.isfinite(model.sample(0, seed=1).numpy()).all()
    # An int seed draws the same rows every call (TFP's int seeds are stateful):
    # it is the stateless seed [s mod 2**31, s >> 31] (the CLI's [S, 0]).
    a, b = model.sample(6, seed=3).numpy(), model.sample(6, seed=3).numpy()
    assert np.array_equal(a, b) and not np.array_equal(a, model.sample(6, seed=4).numpy())
    assert np.array_equal(a, model.sample(6, seed=np.array([3, 0], np.int32)).numpy())
    big = 5 * 2**31 + 7
    assert np.array_equal(model.sample(6, seed=big).numpy(),
                          model.sample(6, seed=np.array([7, 5], np.int32)).numpy())
    # A Generator draws a stateless seed from itself: the same rows from the
    # same state, other rows as it advances or from another state.
    first = model.sample(6, seed=np.random.default_rng(5)).numpy()
    assert not np.array_equal(first, model.sample(6, seed=np.random.default_rng(6)).numpy())
    rng = np.random.default_rng(5)
    assert np.array_equal(model.sample(6, seed=rng).numpy(), first)
    assert not np.array_equal(model.sample(6, seed=rng).numpy(), first)
    assert fn.experimental_get_tracing_count() == traces


def test_capped_sampler_reports_unconverged_draws_and_validate_args_raises():
    values = flows.stack_flow_values(flows.random_flow_values(2, 3, 4, seed=2,
                                                              dtype=np.float64))
    params = [tf.constant(values[p]) for p in flows.STACKED_PARAMETERS]
    seed = tf.constant([1, 2])
    x, unconverged = sampling.sample_stacked(300, seed, *params, return_diagnostics=True)
    assert unconverged.shape == (300,) and unconverged.numpy().sum() == 0
    # One step per solve never meets the convergence test (it needs a small
    # Newton step after the first): each draw's 3 layers x 2 coordinates all
    # stop at the cap, and every draw is off the uncapped one.
    x1, unconverged1 = sampling.sample_stacked(300, seed, *params, max_iterations=1,
                                               return_diagnostics=True)
    np.testing.assert_array_equal(unconverged1.numpy(), 6)
    assert np.abs(x1.numpy() - x.numpy()).max(axis=1).min() > 1e-9
    # Three steps suffice here (measured): no draw is reported, and the draws
    # equal the default cap's to rounding.
    x3, unconverged3 = sampling.sample_stacked(300, seed, *params, max_iterations=3,
                                               return_diagnostics=True)
    assert unconverged3.numpy().sum() == 0
    np.testing.assert_allclose(x3.numpy(), x.numpy(), rtol=0, atol=1e-13)
    with pytest.raises(tf.errors.InvalidArgumentError, match="without converging in"):
        sampling.sample_stacked(300, seed, *params, max_iterations=1, validate_args=True)
    sampling.sample_stacked(300, seed, *params, validate_args=True)  # converged: no error


def test_gaussianize_stacked_equals_the_flows_forward_and_log_det():
    values = flows.stack_flow_values(flows.random_flow_values(3, 4, 5, seed=3,
                                                              dtype=np.float64))
    params = [tf.constant(values[p]) for p in flows.STACKED_PARAMETERS]
    flow = flows.flow_from_stacked(*params)
    gaussianizer = flow.bijector.bijector
    x = tf.constant(np.random.default_rng(4).normal(0.0, 3.0, (50, 3)))
    scales = tf.math.softplus(params[2])
    rotations = householder_rotation.householder_product(params[3])
    z, log_det = sampling.gaussianize_stacked(x, params[0], params[1], scales, rotations)
    np.testing.assert_allclose(z, gaussianizer.forward(x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(log_det, gaussianizer.forward_log_det_jacobian(x, event_ndims=1),
                               rtol=1e-13, atol=1e-13)


def test_predict_on_new_batch_sizes_reuses_one_graph_and_matches_the_flow():
    model = GaussianizationFlowModel(3, n_layers=2, n_components=3, seed=0,
                                     dtype="float64")
    # Keras' array adapter feeds float32 (floatx): data exact in float32.
    x = np.random.default_rng(5).normal(0.0, 2.0, (300, 3)).astype(np.float32).astype(np.float64)
    expected = model.distribution.log_prob(x).numpy()
    model.predict(x[:50], batch_size=50, verbose=0)
    fn = sampling._LOG_PROB_FNS[(tf.float64, None, False)]  # (dtype, conditioner, floor)
    traces = fn.experimental_get_tracing_count()
    for n, batch in ((300, 300), (123, 50), (7, 7)):
        np.testing.assert_allclose(model.predict(x[:n], batch_size=batch, verbose=0),
                                   expected[:n], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(model(x[:n]).numpy(), expected[:n], rtol=1e-12, atol=1e-12)
    assert fn.experimental_get_tracing_count() == traces
    # XLA (a compiled model) gives the same values.
    model.compile(jit_compile=True)
    np.testing.assert_allclose(model.predict(x, batch_size=100, verbose=0), expected,
                               rtol=1e-12, atol=1e-12)
