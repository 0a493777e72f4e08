"""Coupling flows end to end: stacked maps, the Keras model, export, scikit-learn, the CLI.

References are independent: a numpy/scipy float64 re-implementation of the
coupling flow (``helpers.coupling_flow_log_prob_reference``), TFP's own base
draws, finite differences.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import (
    assert_gradients_match_central_differences,
    coupling_flow_gaussianize_reference,
    coupling_flow_log_prob_reference,
    flow_log_prob_reference,
)

import tfp_gauss
from tfp_gauss import cli, flows, sampling
from tfp_gauss.bijectors import householder_rotation
from tfp_gauss.keras import GaussianizationFlowModel

tfd = tfp.distributions


def _perturb(variables, scale=0.4, seed=0):
    """Random conditioner weights (its last layer starts at 0: nothing to test there)."""
    rng = np.random.default_rng(seed)
    for v in variables:
        v.assign(scale * rng.normal(size=v.shape) / np.sqrt(max(1, v.shape[-2] if len(
            v.shape) > 2 else 1)))


def _coupling_flow(dtype, n_dims=4, n_layers=3, k=4, seed=0):
    flow = tfp_gauss.gaussianization_flow(n_dims, n_layers, k, dtype=dtype, seed=seed,
                                          architecture="coupling", conditioner_units=(16, 16))
    _perturb([v for v in flow.trainable_variables if "conditioner" in v.name], seed=seed)
    return flow


@pytest.fixture(scope="module", params=[np.float32, np.float64], ids=["float32", "float64"])
def coupling_flow(request):
    return _coupling_flow(request.param)


def test_log_prob_of_every_path_matches_the_float64_reference(coupling_flow):
    dtype = coupling_flow.dtype.as_numpy_dtype
    values = flows.flow_values(coupling_flow)
    # Keras' array adapter feeds float32 (floatx): data exact in float32.
    x = (1.5 * np.random.default_rng(1).normal(size=(300, 4))).astype(np.float32).astype(dtype)
    reference = coupling_flow_log_prob_reference(values, x)
    params, coupling = flows.stacked_arguments(flows.stack_flow_values(values))
    model = GaussianizationFlowModel.from_distribution(coupling_flow)
    tol = dict(rtol=0, atol=2e-4) if dtype == np.float32 else dict(rtol=0, atol=1e-10)
    for got in (coupling_flow.log_prob(x), sampling.log_prob_stacked(x, *params, **coupling),
                model(x), model.predict(x, verbose=0), model.log_prob(x),
                model(x, training=True)):
        np.testing.assert_allclose(np.asarray(got, np.float64), reference, **tol)


@pytest.mark.parametrize("architecture", ["marginal", "coupling"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_step_log_prob_and_gradients_match_the_tfp_chain(architecture, dtype):
    # What train_step differentiates (sampling.training_log_prob: a bounded
    # while loop, or unrolled coupling layers), compiled with XLA, against
    # the float64 reference (values) and the flow's tfb.Chain (gradients).
    model = GaussianizationFlowModel(3, 3, 4, seed=0, dtype=dtype, architecture=architecture,
                                     conditioner_units=(8,))
    rng = np.random.default_rng(4)
    for w in model.trainable_weights:  # away from the zero-kernel start
        w.assign(w.numpy() + 0.3 * rng.normal(size=w.shape).astype(dtype))
    x = (1.5 * rng.normal(size=(64, 3))).astype(dtype)
    weights = model.trainable_weights

    @tf.function(jit_compile=True)
    def lean(x):
        with tf.GradientTape() as tape:
            lp = model(x, training=True)
            loss = -tf.reduce_mean(lp)
        return lp, tape.gradient(loss, weights)

    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.distribution.log_prob(x))
    chain_grads = tape.gradient(loss, weights)
    lp, grads = lean(x)
    values = flows.flow_values(model.distribution)
    reference = (coupling_flow_log_prob_reference(values, x) if architecture == "coupling"
                 else flow_log_prob_reference(values, x))
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(lp.numpy(), reference, rtol=0, atol=tol)
    for w, g, c in zip(weights, grads, chain_grads):
        np.testing.assert_allclose(tf.convert_to_tensor(g).numpy(),
                                   tf.convert_to_tensor(c).numpy(),
                                   rtol=tol * 10, atol=tol * 10, err_msg=w.path)


def test_sample_stacked_inverts_the_reference_map_of_the_base_draws(coupling_flow):
    # The draws x, pushed through the independent forward map, must give back
    # the latents TFP's base distribution draws for the seed.
    dtype = coupling_flow.dtype.as_numpy_dtype
    values = flows.flow_values(coupling_flow)
    params, coupling = flows.stacked_arguments(flows.stack_flow_values(values))
    seed = [4, 5]
    x, unconverged = sampling.sample_stacked(2000, seed, *params, return_diagnostics=True,
                                             **coupling)
    assert int(tf.reduce_sum(unconverged)) == 0
    z = tfd.Sample(tfd.Normal(dtype(0), dtype(1)), 4).sample(2000, seed=seed).numpy()
    z_back = coupling_flow_gaussianize_reference(values, x.numpy())
    np.testing.assert_allclose(z_back, z, atol=2e-3 if dtype == np.float32 else 1e-9)
    # the TFP bijector path draws the same points
    np.testing.assert_allclose(coupling_flow.sample(2000, seed=seed), x,
                               atol=1e-3 if dtype == np.float32 else 1e-9)


def test_inverse_of_non_finite_latents_gives_non_finite_rows_and_leaves_the_others(
        coupling_flow):
    # A NaN or inf latent (a bad row in a served `generate` request) must not
    # fail the batch, nor change the other rows (each row is solved alone).
    dtype = coupling_flow.dtype.as_numpy_dtype
    values = flows.stack_flow_values(flows.flow_values(coupling_flow))
    (logits, locs, raw_scales, vectors), coupling = flows.stacked_arguments(values)
    args = (logits, locs, tf.nn.softplus(raw_scales),
            householder_rotation.householder_product(vectors), coupling["masks"],
            coupling["conditioner"])
    z = np.random.default_rng(2).normal(size=(6, 4)).astype(dtype)
    clean = sampling.invert_stacked(z, *args).numpy()
    bad = z.copy()
    bad[1, 2], bad[3, 0], bad[4, 1] = np.nan, np.inf, -np.inf
    x = sampling.invert_stacked(bad, *args).numpy()
    np.testing.assert_allclose(x[[0, 2, 5]], clean[[0, 2, 5]],
                               rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert np.isfinite(clean).all() and not np.isfinite(x[[1, 3, 4]]).any()


def test_sample_gradient_matches_finite_differences_for_every_parameter_kind():
    flow = _coupling_flow(np.float64, n_dims=3, n_layers=2, k=3, seed=2)
    params, coupling = flows.stacked_arguments(flows.stack_flow_values(flows.flow_values(flow)))
    variables = [tf.Variable(p) for p in params]
    conditioner = [tf.Variable(w) for w in coupling["conditioner"]]

    def loss():
        x = sampling.sample_stacked(40, [7, 8], *variables, masks=coupling["masks"],
                                    conditioner=conditioner)
        return tf.reduce_sum(tf.sin(x) * tf.range(1.0, 4.0, dtype=tf.float64))

    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, variables + conditioner)
    assert_gradients_match_central_differences(loss, variables + conditioner, grads)


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-5), ("float64", 1e-12)])
def test_coupling_model_starts_exactly_at_the_greedy_fit(moons, dtype, atol):
    # The zero-kernel contract: the conditioner's last layer is zero, so the
    # coupling model's density is the greedy flow's.
    rbig = tfp_gauss.fit_rbig(moons.astype(dtype), n_layers=4, n_components=4, seed=0)
    model = GaussianizationFlowModel.from_distribution(rbig, architecture="coupling")
    assert model.architecture == "coupling" and len(model.trainable_weights) > 4
    np.testing.assert_allclose(model.log_prob(moons[:500]), rbig.log_prob(moons[:500]),
                               atol=atol, rtol=0)
    np.testing.assert_allclose(model(moons[:500]), rbig.log_prob(moons[:500]),
                               atol=10 * atol, rtol=0)


@pytest.fixture(scope="module")
def trained_coupling(moons):
    model, history = tfp_gauss.fit_gaussianization_flow(
        moons[:2000], n_layers=2, n_components=4, steps=300, architecture="coupling",
        conditioner_units=(16,), validation_data=moons[2000:], seed=0, verbose=0,
        scale_floor=0)  # one fit: the floor's selection is tests/test_scale_floor.py's
    return model, history


def test_fit_with_couplings_trains_the_conditioner_and_selects_on_validation(
        trained_coupling, moons):
    model, history = trained_coupling
    assert model.architecture == "coupling"
    assert history.best_val_loss < history.initial_val_loss - 0.05
    assert np.abs(model._conditioner_weights[-2].numpy()).max() > 0   # it switched on
    np.testing.assert_allclose(model.evaluate(moons[2000:], verbose=0), history.best_val_loss,
                               rtol=1e-5)


def test_coupling_model_save_load_and_saved_model_export(trained_coupling, moons, tmp_path):
    model, _ = trained_coupling
    x = moons[:200]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.architecture == "coupling" and loaded.conditioner_units == (16,)
    np.testing.assert_array_equal(loaded.log_prob(x).numpy(), model.log_prob(x).numpy())

    path = tmp_path / "sm"
    tfp_gauss.export_saved_model(model, str(path), shift=[1.0, -2.0], scale=[2.0, 0.5])
    raw = x * np.array([2.0, 0.5], np.float32) + np.array([1.0, -2.0], np.float32)
    np.save(tmp_path / "x.npy", raw)
    script = f"""
import sys, numpy as np, tensorflow as tf
m = tf.saved_model.load({str(path)!r})
x = np.load({str(tmp_path / 'x.npy')!r})
lp = m.signatures["log_prob"](x=tf.constant(x))["log_prob"].numpy()
z = m.signatures["gaussianize"](x=tf.constant(x))["z"]
back = m.signatures["generate"](z=z)["x"].numpy()
s = m.signatures["sample"](n=tf.constant(300), seed=tf.constant([1, 2]))["x"].numpy()
xt = tf.constant(x[:20])
with tf.GradientTape(persistent=True) as tape:
    tape.watch(xt)
    lp_t = m.signatures["log_prob"](x=xt)["log_prob"]
    z_t = m.signatures["gaussianize"](x=xt)["z"]
g_lp, g_z = tape.gradient(lp_t, xt).numpy(), tape.gradient(z_t, xt).numpy()
np.savez({str(tmp_path / 'out.npz')!r}, lp=lp, back=back, s=s, g_lp=g_lp, g_z=g_z)
assert "tfp_gauss" not in sys.modules and "tensorflow_probability" not in sys.modules
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    out = np.load(tmp_path / "out.npz")
    values = flows.flow_values(model.distribution)
    expected = coupling_flow_log_prob_reference(values, x) - np.log(2.0 * 0.5)
    np.testing.assert_allclose(out["lp"], expected, atol=2e-4, rtol=0)
    np.testing.assert_allclose(out["back"], raw, atol=1e-3)
    drawn = model.sample(300, seed=[1, 2]).numpy() * [2.0, 0.5] + [1.0, -2.0]
    np.testing.assert_allclose(out["s"], drawn, atol=1e-4)
    # the reloaded log_prob and gaussianize are differentiable in x (they raised
    # "... is out of scope"): against the TFP flow's own gradient, in raw units
    rows = tf.constant(x[:20])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(rows)
        lp = model.distribution.log_prob(rows)
        z = flows.flow_gaussianizer(model.distribution).forward(rows)
    units = np.array([2.0, 0.5])
    np.testing.assert_allclose(out["g_lp"], tape.gradient(lp, rows).numpy() / units,
                               rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(out["g_z"], tape.gradient(z, rows).numpy() / units,
                               rtol=1e-3, atol=1e-4)


def test_sklearn_density_with_couplings(moons):
    from tfp_gauss.sklearn import GaussianizationDensity

    est = GaussianizationDensity(n_layers=2, n_components=3, max_steps=100,
                                 architecture="coupling", random_state=0,
                                 fit_kwargs=dict(conditioner_units=(8,)))
    est.fit(moons[:800] * 3.0 + 1.0)
    assert "conditioner" in est.flow_parameters_
    values = flows.flow_values(est._flow64)
    x = moons[800:900] * 3.0 + 1.0
    expected = (coupling_flow_log_prob_reference(values, (x - est.mean_) / est.scale_)
                - np.sum(np.log(est.scale_)))
    np.testing.assert_allclose(est.score_samples(x), expected, atol=1e-9)
    assert est.sample(5, random_state=0).shape == (5, 2)
    with pytest.raises(ValueError, match="architecture"):
        GaussianizationDensity(architecture="autoregressive").fit(moons[:100])


def test_bad_architectures_are_clear_errors(moons):
    with pytest.raises(ValueError, match="architecture must be one of"):
        tfp_gauss.gaussianization_flow(2, 2, 3, architecture="maf")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        GaussianizationFlowModel(1, 2, 3, architecture="coupling")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        tfp_gauss.fit_gaussianization_flow(moons[:100, :1], architecture="coupling", verbose=0)
    marginal = GaussianizationFlowModel(2, 2, 3)
    coupled = flows.flow_values(_coupling_flow(np.float32, n_dims=2, n_layers=2, k=3))
    with pytest.raises(ValueError, match="coupling flow"):
        marginal.set_flow_values(coupled)


def test_cli_refuses_couplings_of_one_column(tmp_path, capsys):
    # (`tfp-gauss fit` of the built-in data fits coupling layers by default and
    # records it: `test_export_cli.py`'s run, read by its report test.)
    one_column = tmp_path / "one.csv"
    one_column.write_text("\n".join(str(v) for v in np.linspace(0, 1, 50)) + "\n")
    assert cli.main(["fit", str(one_column), "--out", str(tmp_path / "r2"),
                     "--architecture", "coupling"]) == 2
    assert "needs at least 2 columns" in capsys.readouterr().err


def test_auto_architecture_follows_the_training_rows(moons):
    from tfp_gauss.keras import COUPLING_MIN_ROWS, PEAK_LEARNING_RATE, default_architecture

    assert default_architecture(COUPLING_MIN_ROWS, 2) == "coupling"
    assert default_architecture(COUPLING_MIN_ROWS - 1, 2) == "marginal"
    assert default_architecture(10**6, 1) == "marginal"
    kwargs = dict(n_layers=1, n_components=2, steps=2, steps_per_epoch=1, verbose=0,
                  validation_split=0.0, jit_compile=False)
    small, h_small = tfp_gauss.fit_gaussianization_flow(moons[:999], **kwargs)
    large, h_large = tfp_gauss.fit_gaussianization_flow(moons[:1000], **kwargs)
    assert (small.architecture, large.architecture) == ("marginal", "coupling")
    assert h_large.architecture == "coupling"
    assert h_small.peak_learning_rate == PEAK_LEARNING_RATE["marginal"] == 3e-3
    assert h_large.peak_learning_rate == PEAK_LEARNING_RATE["coupling"] == 1e-3
    # continuing a fit keeps its architecture, whatever the rows
    more, h_more = tfp_gauss.fit_gaussianization_flow(moons[:100], init=large, **kwargs)
    assert more.architecture == h_more.architecture == "coupling"
