"""The scale floor: flows whose mixture scales are ``sqrt(s^2 + f^2)``.

Every path (the TFP bijectors, the stacked maps, the Keras model's
inference and training graphs, sampling, the SavedModel, Keras save/load)
against the float64 numpy/scipy references of ``helpers``, which apply the
floor themselves; the floor of ``scale_floor_values`` against Silverman's
bandwidth computed here; and ``fit_gaussianization_flow``'s choice.
"""

import contextlib
import io

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
from helpers import (
    assert_gradients_match_central_differences,
    coupling_flow_gaussianize_reference,
    coupling_flow_log_prob_reference,
    flow_log_prob_reference,
    householder_reference,
    mixture_reference,
)

import tfp_gauss
from tfp_gauss import export, flows, sampling
from tfp_gauss.keras import GaussianizationFlowModel
from tfp_gauss.keras import _fit

tfd = tfp.distributions


def _floored_model(architecture, dtype, seed=0):
    """A model away from its start (conditioner, floor) with a random ``[L, D]`` floor."""
    model = GaussianizationFlowModel(3, 3, 4, seed=seed, dtype=dtype, architecture=architecture,
                                     conditioner_units=(8,), scale_floor=True)
    rng = np.random.default_rng(seed + 10)
    for w in model.trainable_weights:
        w.assign(w.numpy() + 0.3 * rng.normal(size=w.shape).astype(dtype))
    # Floors of the size of the scales (0.6-1.4): they change every map.
    model.set_scale_floor(rng.uniform(0.3, 1.0, size=(3, 3)))
    return model


def _reference(values, architecture, x):
    return (coupling_flow_log_prob_reference(values, x) if architecture == "coupling"
            else flow_log_prob_reference(values, x))


def _gaussianize_reference(values, architecture, x):
    if architecture == "coupling":
        return coupling_flow_gaussianize_reference(values, x)
    h = np.asarray(x, np.float64)
    for layer in values:
        scales = np.sqrt(np.asarray(layer["scales"], np.float64) ** 2
                         + np.asarray(layer["scale_floor"], np.float64)[:, None] ** 2)
        h, _ = mixture_reference(h, layer["logits"], layer["locs"], scales)
        h = h @ householder_reference(layer["vectors"]).T
    return h


@pytest.fixture(scope="module", params=[("marginal", np.float32), ("marginal", np.float64),
                                        ("coupling", np.float32), ("coupling", np.float64)],
                ids=lambda p: f"{p[0]}-{np.dtype(p[1]).name}")
def floored(request):
    architecture, dtype = request.param
    return architecture, dtype, _floored_model(architecture, dtype)


def test_every_log_prob_path_matches_the_float64_reference(floored):
    architecture, dtype, model = floored
    values = flows.flow_values(model.distribution)
    assert all("scale_floor" in v for v in values)
    # Keras' array adapter feeds float32 (floatx): data exact in float32.
    x = (1.5 * np.random.default_rng(1).normal(size=(200, 3))).astype(np.float32).astype(dtype)
    reference = _reference(values, architecture, x)
    # The floor matters: the same flow without it is far from the reference.
    unfloored = [{k: v for k, v in layer.items() if k != "scale_floor"} for layer in values]
    assert np.abs(_reference(unfloored, architecture, x) - reference).mean() > 0.1
    params, extras = flows.stacked_arguments(flows.stack_flow_values(values))
    assert "scale_floor" in extras

    @tf.function(jit_compile=True)
    def training(x):
        return model(x, training=True)

    rebuilt = flows.flow_from_stacked(*(tf.constant(p) for p in params), **extras)
    tol = dict(rtol=0, atol=2e-4) if dtype == np.float32 else dict(rtol=0, atol=1e-10)
    for got in (model.log_prob(x), model(x), model.predict(x, verbose=0), training(x),
                sampling.log_prob_stacked(x, *params, **extras), rebuilt.log_prob(x),
                GaussianizationFlowModel.from_distribution(model.distribution).log_prob(x)):
        np.testing.assert_allclose(np.asarray(got, np.float64), reference, **tol)


def test_training_gradients_match_the_tfp_chain(floored):
    architecture, dtype, model = floored
    x = (1.5 * np.random.default_rng(2).normal(size=(64, 3))).astype(dtype)
    weights = model.trainable_weights

    @tf.function(jit_compile=True)
    def lean(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model(x, training=True))
        return tape.gradient(loss, weights)

    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.distribution.log_prob(x))
    chain = tape.gradient(loss, weights)
    tol = 2e-3 if dtype == np.float32 else 1e-9
    for w, g, c in zip(weights, lean(x), chain):
        np.testing.assert_allclose(tf.convert_to_tensor(g).numpy(),
                                   tf.convert_to_tensor(c).numpy(), rtol=tol, atol=tol,
                                   err_msg=w.path)


def test_sampling_inverts_the_reference_map_of_the_base_draws(floored):
    architecture, dtype, model = floored
    values = flows.flow_values(model.distribution)
    seed = [4, 5]
    x, unconverged = sampling.sample_stacked(
        1000, seed, *flows.stacked_arguments(flows.stack_flow_values(values))[0],
        return_diagnostics=True, **flows.stacked_arguments(flows.stack_flow_values(values))[1])
    assert int(tf.reduce_sum(unconverged)) == 0
    z = tfd.Sample(tfd.Normal(dtype(0), dtype(1)), 3).sample(1000, seed=seed).numpy()
    # float32 draws far in a tail are inverted less tightly: compare the bulk
    bulk = np.all(np.abs(z) < 3.5, axis=1)
    z_back = _gaussianize_reference(values, architecture, x.numpy())
    np.testing.assert_allclose(z_back[bulk], z[bulk], atol=5e-3 if dtype == np.float32 else 1e-8)
    np.testing.assert_allclose(model.sample(1000, seed=seed), x, atol=1e-6)
    np.testing.assert_allclose(model.distribution.sample(1000, seed=seed).numpy()[bulk],
                               x.numpy()[bulk], atol=1e-2 if dtype == np.float32 else 1e-8)


def test_sample_gradient_with_a_floor_matches_finite_differences():
    model = _floored_model("coupling", np.float64, seed=3)
    values = flows.flow_values(model.distribution)
    params, extras = flows.stacked_arguments(flows.stack_flow_values(values))
    variables = [tf.Variable(p) for p in params]
    conditioner = [tf.Variable(w) for w in extras["conditioner"]]

    def loss():
        x = sampling.sample_stacked(30, [7, 8], *variables, masks=extras["masks"],
                                    conditioner=conditioner, scale_floor=extras["scale_floor"])
        return tf.reduce_sum(tf.sin(x) * tf.range(1.0, 4.0, dtype=tf.float64))

    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, variables + conditioner)
    assert_gradients_match_central_differences(loss, variables + conditioner, grads,
                                               per_variable=1)


def test_export_and_keras_save_load_keep_the_floor(tmp_path):
    model = _floored_model("coupling", np.float32, seed=5)
    x = np.random.default_rng(6).normal(size=(50, 3)).astype(np.float32)
    expected = coupling_flow_log_prob_reference(flows.flow_values(model.distribution), x)
    path = str(tmp_path / "saved")
    export.export_saved_model(model, path)
    served = tf.saved_model.load(path)
    np.testing.assert_allclose(served.log_prob(tf.constant(x))["log_prob"].numpy(), expected,
                               rtol=0, atol=2e-4)
    np.testing.assert_allclose(
        served.sample(tf.constant(20), tf.constant([1, 2], tf.int32))["x"].numpy(),
        model.sample(20, seed=[1, 2]).numpy(), atol=1e-4)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.has_scale_floor
    np.testing.assert_allclose(loaded.log_prob(x).numpy(), expected, rtol=0, atol=2e-4)


def test_values_with_a_floor_need_a_model_with_one():
    model = _floored_model("marginal", np.float32)
    plain = GaussianizationFlowModel(3, 3, 4, seed=0)
    with pytest.raises(ValueError, match="scale_floor=True"):
        plain.set_flow_values(flows.flow_values(model.distribution))
    with pytest.raises(ValueError, match="scale_floor=True"):
        plain.set_scale_floor(np.zeros((3, 3)))
    for bad, seen in ((np.zeros((2, 3)), "got shape [2, 3]"), (-np.ones((3, 3)), "min -1.0"),
                      (np.full((3, 3), np.nan), "min nan")):
        with pytest.raises(ValueError, match=r"finite and >= 0 with shape \[L, D\] = \[3, 3\]"):
            model.set_scale_floor(bad)
        with pytest.raises(ValueError) as err:
            model.set_scale_floor(bad)
        assert seen in str(err.value)
    assert plain.scale_floor is None and model.scale_floor.shape == (3, 3)
    # a flow built from a floored flow's values keeps the floor
    floored = _floored_model("coupling", np.float64, seed=1)
    rebuilt = tfp_gauss.gaussianization_flow(
        3, 3, 4, dtype=tf.float64, architecture="coupling",
        initial_values=flows.flow_values(floored.distribution))
    x64 = np.random.default_rng(1).normal(size=(20, 3))
    np.testing.assert_allclose(rebuilt.log_prob(x64), floored.log_prob(x64), rtol=0, atol=1e-12)
    # values without a floor set a floored model's floor to 0: the same flow
    model.set_flow_values(flows.flow_values(plain.distribution))
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    np.testing.assert_allclose(model.log_prob(x), plain.log_prob(x), rtol=0, atol=1e-6)


def test_scale_floor_values_are_silverman_bandwidths_of_each_layer_input():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)) * [1.0, 3.0]
    flow = tfp_gauss.fit_rbig(x, n_layers=3, n_components=3, seed=0, validation_split=0.0)
    got = _fit.scale_floor_values(flow, x, 1.3)
    h, expected = x, []
    for layer in flows.flow_values(flow):
        expected.append(1.3 * 1.06 * 400 ** -0.2 * h.std(axis=0))
        h, _ = mixture_reference(h, layer["logits"], layer["locs"], layer["scales"])
        h = h @ householder_reference(layer["vectors"]).T
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-9)
    assert got[0, 1] == pytest.approx(3.0 * got[0, 0], rel=0.2)  # in each column's units


_PRINTED = {}


@pytest.fixture(scope="module")
def small_fit():
    x = tfp_gauss.datasets.two_moons(n_samples=400, seed=1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        fit = tfp_gauss.fit_gaussianization_flow(x, n_layers=2, n_components=3, steps=100,
                                                 seed=0, verbose=2)
    _PRINTED["small_fit"] = printed.getvalue()
    return x, fit


def test_auto_floor_trains_both_fits_and_returns_the_chosen_one(small_fit):
    x, (model, history) = small_fit
    # the progress says which fit is which (each restarts at epoch 1)
    printed = _PRINTED["small_fit"]
    first = printed.index("fit 1 of 2 (scale floor 0.0 kernel bandwidths)")
    second = printed.index(f"fit 2 of 2 (scale floor {_fit.AUTO_SCALE_FLOOR} kernel")
    assert first < printed.index("Epoch 1/") < second < printed.rindex("Epoch 1/")
    candidates = history.scale_floor_candidates
    assert sorted(candidates) == [0.0, _fit.AUTO_SCALE_FLOOR]
    assert history.best_val_loss == pytest.approx(candidates[history.scale_floor])
    # one model served both fits; it holds the winner's floor (zeros for "none")
    if history.scale_floor == 0:
        np.testing.assert_array_equal(model.scale_floor, 0.0)
    else:
        assert (model.scale_floor > 0).all()
    assert int(model.optimizer.iterations.numpy()) == history.steps_run
    # the held-out rows (the seed's 10 %) score what the history says
    _, val = tfp_gauss._validation.holdout_split(x, 0.1, np.random.default_rng(0), name="t")
    assert -float(np.mean(model(val))) == pytest.approx(history.best_val_loss, abs=1e-4)


def test_each_candidate_trains_as_a_fit_of_its_own_would(small_fit):
    # The second candidate reuses the first's model and compiled step, reset
    # to the start (weights, optimizer moments, schedule): it must score what
    # a separate fit with that floor scores.
    # And the choice between them is the one-standard-error rule on the
    # held-out rows, recomputed here from the separate fits with scipy's
    # paired t statistic (t = mean(d) / s.e.(d); the floor stays unless t > 1).
    x, (_, history) = small_fit
    _, val = tfp_gauss._validation.holdout_split(x, 0.1, np.random.default_rng(0), name="t")
    rows = {}
    for factor, val_nll in history.scale_floor_candidates.items():
        alone_model, alone = tfp_gauss.fit_gaussianization_flow(
            x, n_layers=2, n_components=3, steps=100, seed=0, verbose=0, scale_floor=factor)
        assert alone.best_val_loss == pytest.approx(val_nll, rel=1e-3), factor
        rows[factor] = alone_model.log_prob(val).numpy().astype(np.float64)
    plain, floored = rows[0.0], rows[_fit.AUTO_SCALE_FLOOR]
    t = scipy.stats.ttest_rel(plain, floored).statistic
    assert abs(t - 1.0) > 0.05, "too close to call: change the fixture's seed"
    assert history.scale_floor == (0.0 if t > 1.0 else _fit.AUTO_SCALE_FLOOR)
    d = plain - floored
    assert history.scale_floor_difference["mean"] == pytest.approx(d.mean(), abs=2e-3)
    assert history.scale_floor_difference["standard_error"] == pytest.approx(
        d.std(ddof=1) / np.sqrt(d.size), rel=0.05)


def test_one_standard_error_rule_against_the_paired_t_statistic():
    rng = np.random.default_rng(0)
    for shift in (-0.2, 0.0, 0.05, 0.1, 0.2, 0.5):
        plain = rng.normal(-1.5, 0.5, size=40)
        floored = plain - shift + rng.normal(0, 0.3, size=40)
        keep, difference, standard_error = _fit.keeps_scale_floor(plain, floored)
        t = scipy.stats.ttest_rel(plain, floored).statistic
        assert keep == (t <= 1.0), shift
        assert difference / standard_error == pytest.approx(t, rel=1e-12)
    # a lead of one row in three does not beat its own noise; a steady lead does
    plain = np.array([-1.0, -1.2, -0.9, -1.1])
    assert _fit.keeps_scale_floor(plain, plain - [0.3, -0.2, 0.25, -0.25])[0]
    assert not _fit.keeps_scale_floor(plain, plain - 0.01)[0]
    # a fit whose held-out log-likelihood is not finite loses
    assert not _fit.keeps_scale_floor(plain, np.array([-1.0, -np.inf, -1.0, -1.0]))[0]
    assert _fit.keeps_scale_floor(np.array([-1.0, np.nan, -1.0, -1.0]), plain)[0]
    with pytest.raises(ValueError, match=r"same n >= 2; got shapes \(4,\) and \(3,\)"):
        _fit.keeps_scale_floor(plain, plain[:3])


def test_no_floor_without_held_out_rows_or_with_many_rows(monkeypatch):
    x = tfp_gauss.datasets.two_moons(n_samples=300, seed=2)
    kwargs = dict(n_layers=1, n_components=2, steps=20, seed=0, verbose=0, jit_compile=False)
    _, history = tfp_gauss.fit_gaussianization_flow(x, validation_split=0.0, **kwargs)
    assert history.scale_floor_candidates.keys() == {0.0}
    _, history = tfp_gauss.fit_gaussianization_flow(x, early_stopping=False, **kwargs)
    assert history.scale_floor_candidates.keys() == {0.0}  # nothing selects without it
    monkeypatch.setattr(_fit, "SCALE_FLOOR_MAX_ROWS", 200)
    model, history = tfp_gauss.fit_gaussianization_flow(x, **kwargs)
    assert history.scale_floor_candidates.keys() == {0.0} and not model.has_scale_floor
    model, history = tfp_gauss.fit_gaussianization_flow(x, scale_floor=0.5, **kwargs)
    assert history.scale_floor == 0.5 and model.has_scale_floor


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "wide", True, None])
def test_bad_scale_floor_is_a_clear_error(bad):
    x = tfp_gauss.datasets.two_moons(n_samples=100, seed=0)
    with pytest.raises(ValueError, match="scale_floor must be 'auto' or a finite number"):
        tfp_gauss.fit_gaussianization_flow(x, scale_floor=bad, verbose=0)
