"""gaussianization_flow: the TFP distribution and its anatomy."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from helpers import flow_log_prob_reference
from tfp_gauss import flows, gaussianization_flow, vi

tfd = tfp.distributions


@pytest.mark.parametrize("dtype,tol", [(tf.float32, 2e-4), (tf.float64, 1e-10)])
def test_log_prob_is_base_plus_log_det_and_matches_float64_reference(moons, dtype, tol):
    flow = gaussianization_flow(2, n_layers=3, n_components=4, seed=0, dtype=dtype)
    x = moons[:200].astype(dtype.as_numpy_dtype)
    bijector = flow.bijector.bijector  # the x -> z Gaussianizer
    z = bijector.forward(x)
    base = flow.distribution.log_prob(z)
    log_det = bijector.forward_log_det_jacobian(x, event_ndims=1)
    log_prob = flow.log_prob(x).numpy()
    np.testing.assert_allclose((base + log_det).numpy(), log_prob, rtol=tol, atol=tol)
    reference = flow_log_prob_reference(flows.flow_values(flow), x)
    np.testing.assert_allclose(log_prob, reference, rtol=tol, atol=tol)


def test_structure_variables_and_gradients():
    flow = gaussianization_flow(3, n_layers=2, n_components=3, seed=1)
    assert flow.event_shape == [3] and flow.dtype == tf.float32
    # four variables stacked over the layers, in flows.STACKED_PARAMETERS order
    shapes = {v.name.split(":")[0]: tuple(v.shape) for v in flow.trainable_variables}
    assert shapes == {"logits": (2, 3, 3), "locs": (2, 3, 3), "raw_scales": (2, 3, 3),
                      "vectors": (2, 3, 3)}
    layers = flows.flow_layers(flow)
    assert [type(b).__name__ for layer in layers for b in layer] == [
        "MixtureGaussianCDF", "HouseholderRotation"] * 2
    x = tf.random.stateless_normal([64, 3], seed=[1, 2])

    @tf.function(jit_compile=True)
    def loss_and_grads():
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.log_prob(x))
        return loss, tape.gradient(loss, flow.trainable_variables)

    loss, grads = loss_and_grads()
    assert np.isfinite(loss.numpy())
    # every layer's slice of every variable gets a gradient
    assert all(g is not None and np.isfinite(g.numpy()).all()
               and (np.abs(g.numpy()).reshape(2, -1).max(axis=1) > 0).all() for g in grads)


def test_density_integrates_to_one_and_samples_are_finite():
    flow = gaussianization_flow(2, n_layers=2, n_components=3, seed=2, dtype=tf.float64)
    # spacing 0.1: the trapezoid rule on this smooth, fast-decaying density is
    # exact to rounding (4e-16 measured, as with spacing 0.05 or 0.2)
    g = np.linspace(-40, 40, 801)
    xx, yy = np.meshgrid(g, g)
    dens = np.exp(flow.log_prob(np.stack([xx.ravel(), yy.ravel()], -1)).numpy()).reshape(xx.shape)
    assert abs(np.trapezoid(np.trapezoid(dens, g, axis=1), g) - 1.0) < 1e-10
    s = tf.function(lambda: flow.sample(500, seed=3), jit_compile=True)()
    assert s.shape == (500, 2) and np.isfinite(s.numpy()).all()
    # sample_and_log_prob agrees with log_prob at the samples
    s2, lp = flow.experimental_sample_and_log_prob(50, seed=4)
    np.testing.assert_allclose(lp.numpy(), flow.log_prob(s2).numpy(), rtol=1e-8)


def test_flow_layers_rejects_other_distributions():
    with pytest.raises(ValueError, match="Gaussianization flow"):
        flows.flow_layers(tfd.Normal(0.0, 1.0))


def test_stacked_variables_round_trip_values_exactly():
    values = flows.random_flow_values(3, 3, 4, n_reflections=2, seed=5, dtype=np.float64)
    values[1]["scales"] = np.full((3, 4), 1e-3)  # softplus^{-1} far from the identity
    flow = gaussianization_flow(3, n_layers=3, n_components=4, dtype=tf.float64,
                                initial_values=values)
    stacked = flows.stack_flow_values(values)
    variables = {v.name.split(":")[0]: v.numpy() for v in flow.trainable_variables}
    for p in flows.STACKED_PARAMETERS:
        np.testing.assert_array_equal(variables[p], stacked[p])
    back = flows.flow_values(flow)
    for i, (given, got) in enumerate(zip(values, back)):
        for p in ("logits", "locs", "vectors"):
            np.testing.assert_array_equal(got[p], given[p])
        # the exact unconstrained values, and the scales softplus makes of them
        np.testing.assert_array_equal(got["raw_scales"], stacked["raw_scales"][i])
        np.testing.assert_allclose(got["scales"], given["scales"], rtol=1e-14)
    # an update of a stacked variable shows in the layer that reads its slice
    locs = next(v for v in flow.trainable_variables if v.name.startswith("locs"))
    delta = np.zeros((3, 3, 4))
    delta[1] = np.eye(3, 4)
    locs.assign_add(delta)
    moved = flows.flow_values(flow)
    np.testing.assert_array_equal(moved[1]["locs"], values[1]["locs"] + np.eye(3, 4))
    np.testing.assert_array_equal(moved[0]["locs"], values[0]["locs"])


def test_stacking_layers_of_different_shapes_is_a_clear_error():
    a = flows.random_flow_values(2, 1, 3, seed=0)
    b = flows.random_flow_values(2, 1, 4, seed=0)
    with pytest.raises(ValueError, match=r"share D, K and M.*\(2, 3\).*\(2, 4\)"):
        flows.stack_flow_values(a + b)
    with pytest.raises(ValueError, match="at least one layer"):
        flows.stack_flow_values([])


def test_flow_from_stacked_rejects_inconsistent_shapes():
    values = flows.stack_flow_values(flows.random_flow_values(2, 3, 4, seed=0))
    good = [values[p] for p in flows.STACKED_PARAMETERS]
    flows.flow_from_stacked(*good)  # builds
    for bad in ([good[0][:2]] + good[1:],                         # L differs
                good[:3] + [good[3][:, :, :1]],                    # vectors' D differs
                [good[0][0]] + good[1:]):                          # rank 2
        with pytest.raises(ValueError, match=r"\[L, D, K\].*\[L, M, D\]; got shapes"):
            flows.flow_from_stacked(*bad)


@pytest.mark.parametrize("kwargs", [dict(n_layers=0), dict(n_components=0), dict(n_dims=0),
                                    dict(n_dims=2.5), dict(n_layers=True)])
def test_empty_or_fractional_flow_sizes_are_a_clear_error(kwargs):
    args = dict(n_dims=2, n_layers=2, n_components=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=r"must be whole numbers >= 1; got"):
        gaussianization_flow(**args)
    # the variational surrogate (event_size=2.5 was a raw TypeError)
    sizes = args["n_dims"], args["n_layers"], args["n_components"]
    with pytest.raises(ValueError, match=r"event_size, n_layers, n_components must be whole "
                                         rf"numbers >= 1; got {', '.join(map(repr, sizes))}\."):
        vi.gaussianization_surrogate(*sizes)
    # integer types other than int pass, as the Keras model's check_int takes them
    assert gaussianization_flow(np.array(2), np.int64(1), np.int32(2)).event_shape == [2]
