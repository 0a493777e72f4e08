"""GaussianizationFlowModel, OneCycleCosine and fit_gaussianization_flow."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_gauss
from tfp_gauss.keras import (
    GaussianizationFlowModel,
    OneCycleCosine,
    OneCycleCosineCallback,
    one_cycle_cosine,
)


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


@pytest.fixture(scope="module")
def small_data(moons):
    return moons[:1024]


def test_fit_evaluate_and_every_weight_trains(small_data):
    model = GaussianizationFlowModel(2, n_layers=2, n_components=3, seed=0)
    before = _weights(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    history = model.fit(small_data, batch_size=256, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert history.history["loss"][-1] < history.history["loss"][0]
    after = _weights(model)
    assert [a.shape[0] for a in after] == [2] * 4  # four weights stacked over 2 layers
    # every layer's slice of every weight moved
    assert all((np.abs(a - b).reshape(2, -1).max(axis=1) > 0).all()
               for a, b in zip(after, before))
    nll = model.evaluate(small_data, batch_size=1024, verbose=0)
    np.testing.assert_allclose(nll, -model.log_prob(small_data).numpy().mean(), rtol=1e-5)
    np.testing.assert_allclose(model(small_data).numpy(), model.log_prob(small_data).numpy(),
                               rtol=1e-5, atol=1e-5)
    # the distribution is bound to the live weights
    dist = model.distribution
    lp0 = dist.log_prob(small_data[:5]).numpy()
    # 1000 rows: a partial last batch (232 rows) retraces the XLA step with an
    # unknown batch size (its gradient failed to compile before).
    model.fit(small_data[:1000], batch_size=256, epochs=1, verbose=0)
    assert np.abs(dist.log_prob(small_data[:5]).numpy() - lp0).max() > 0
    s = model.sample(100, seed=1)
    assert s.shape == (100, 2) and np.isfinite(s.numpy()).all()


def test_from_distribution_reproduces_log_prob():
    flow = tfp_gauss.gaussianization_flow(3, n_layers=2, n_components=4, seed=5)
    model = GaussianizationFlowModel.from_distribution(flow)
    assert (model.n_dims, model.n_layers, model.n_components, model.n_reflections) == (3, 2, 4, 3)
    x = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    np.testing.assert_allclose(model.log_prob(x).numpy(), flow.log_prob(x).numpy(),
                               rtol=1e-5, atol=1e-5)
    flow64 = tfp_gauss.gaussianization_flow(2, n_layers=1, n_components=2, seed=1,
                                            dtype=tf.float64)
    model64 = GaussianizationFlowModel.from_distribution(flow64)
    assert model64.dtype == "float64"
    x64 = x[:, :2].astype(np.float64)
    np.testing.assert_allclose(model64.log_prob(x64).numpy(), flow64.log_prob(x64).numpy(),
                               rtol=1e-12)


def test_mirrored_strategy_on_two_logical_cpus(small_data):
    cpus = tf.config.list_logical_devices("CPU")
    assert len(cpus) >= 2, "conftest configures two logical CPUs"
    strategy = tf.distribute.MirroredStrategy([d.name for d in cpus[:2]])
    with strategy.scope():
        model = GaussianizationFlowModel(2, n_layers=2, n_components=3, seed=0)
        # XLA cannot reach the replicas' variables on CPUs (a raw "Trying to
        # access resource ... located in device CPU:1 from device CPU:0"): off,
        # with a warning
        with pytest.warns(UserWarning, match=r"jit_compile=True under a strategy of 2 CPU"):
            model.compile(optimizer=keras.optimizers.Adam(1e-2, global_clipnorm=1.0),
                          jit_compile=True)
    assert model.jit_compile is False
    with strategy.scope():  # built in the scope, compiled outside it: the model's strategy
        other = GaussianizationFlowModel(2, n_layers=1, n_components=2, seed=0)
    with pytest.warns(UserWarning, match=r"jit_compile=True under a strategy of 2 CPU"):
        other.compile(optimizer="adam", jit_compile=True)
    assert other.jit_compile is False
    before = _weights(model)
    history = model.fit(small_data, batch_size=256, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.abs(a - b).max() > 0 for a, b in zip(_weights(model), before))
    # The replicated model computes the same NLL as a plain copy of its weights.
    plain = GaussianizationFlowModel(2, n_layers=2, n_components=3, seed=0)
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(model.evaluate(small_data, verbose=0),
                               -plain.log_prob(small_data).numpy().mean(), rtol=1e-5)


def test_one_call_fit_under_mirrored_strategy(small_data):
    # fit_gaussianization_flow inside a strategy's scope trains every step (one
    # step per graph call there: Keras's multi-step loop fails under the strategy).
    # XLA is turned off: on logical CPUs it cannot reach the replicas' variables.
    cpus = tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy([d.name for d in cpus[:2]])
    with strategy.scope(), pytest.warns(UserWarning, match="jit_compile=True under") as seen:
        model, history = tfp_gauss.fit_gaussianization_flow(  # (its default jit_compile=True)
            small_data, 2, 3, steps=60, seed=0, verbose=0, architecture="marginal",
            scale_floor=0)
    # the warning points at this call, not into the package
    assert [w.filename for w in seen if "jit_compile" in str(w.message)] == [__file__]
    assert model.jit_compile is False
    assert int(model.optimizer.iterations.numpy()) == 60 and model.steps_per_execution == 1
    assert np.isfinite(history.best_val_loss)
    assert history.best_val_loss < history.initial_val_loss  # it trained


def _optax_reference(step, total, peak, pct_start=0.3, div=25.0, final_div=1e4):
    """optax.cosine_onecycle_schedule, written out from its definition, float64."""
    init = peak / div
    bounds = np.array([0, int(pct_start * total), int(total)], np.float64)
    values = np.cumprod([init, div, 1.0 / (div * final_div)])
    out = np.zeros_like(step, dtype=np.float64)
    for i in range(2):
        size = bounds[i + 1] - bounds[i]
        inside = (bounds[i] <= step) & (step < bounds[i + 1])
        pct = (step - bounds[i]) / size if size else 0.0
        cosine = (values[i] - values[i + 1]) / 2 * (np.cos(np.pi * pct) + 1)
        out += inside * (values[i + 1] + cosine)
    return out + (bounds[-1] <= step) * values[-1]


@pytest.mark.parametrize("total,peak,pct", [(3000, 3e-3, 0.3), (1000, 1e-2, 0.25), (7, 1.0, 0.5),
                                            (100, 1e-3, 0.0)])
def test_one_cycle_cosine_matches_optax_definition(total, peak, pct):
    steps = np.arange(0, total + 5)
    schedule = OneCycleCosine(total, peak, pct_start=pct)
    ours = schedule(tf.constant(steps)).numpy().astype(np.float64)
    ref = _optax_reference(steps.astype(np.float64), total, peak, pct_start=pct)
    assert np.all(np.abs(ours - ref) <= 1e-6 * ref)
    # starts at peak / div_factor, or at the peak when there is no warm-up
    assert math.isclose(float(schedule(0)), peak / 25.0 if int(pct * total) else peak,
                        rel_tol=1e-6)
    # serializable
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(clone, OneCycleCosine) and clone.get_config() == schedule.get_config()
    np.testing.assert_array_equal(clone(tf.constant(steps)).numpy(), ours.astype(np.float32))


def test_callback_sets_and_records_the_learning_rate(small_data):
    model = GaussianizationFlowModel(2, n_layers=1, n_components=2, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1.0))
    callback = OneCycleCosineCallback(total_steps=8, peak_learning_rate=1e-2)
    history = model.fit(small_data, batch_size=256, epochs=2, verbose=0, callbacks=[callback])
    # 4 steps per epoch: the rate set before steps 3 and 7
    expected = one_cycle_cosine(tf.constant([3.0, 7.0]), 8, 1e-2).numpy()
    np.testing.assert_allclose(history.history["learning_rate"], expected, rtol=1e-6)


class _WeightRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_begin(self, batch, logs=None):
        self.weights.append([w.numpy().copy() for w in self.model.trainable_weights])


def test_non_finite_loss_stops_training_and_keeps_last_finite_weights(small_data):
    model = GaussianizationFlowModel(2, n_layers=1, n_components=2, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e4))  # blows up within a few steps
    recorder = _WeightRecorder()
    history = model.fit(small_data, batch_size=128, epochs=5, verbose=0, callbacks=[recorder])
    steps = len(recorder.weights)
    assert steps < 5 * 8, "training stopped at the first non-finite loss"
    assert not np.isfinite(history.history["loss"][-1])
    # recorder.weights[i] are the weights step i evaluated its loss at; the
    # last step saw a non-finite loss, the one before it a finite one.
    losses = [float(-np.mean(model.distribution.log_prob(small_data)))]  # final state
    final = [w.numpy() for w in model.trainable_weights]
    assert all(np.isfinite(w).all() for w in final)
    assert np.isfinite(losses[0])
    for ours, theirs in zip(final, recorder.weights[-2]):
        np.testing.assert_array_equal(ours, theirs)
    assert int(model.optimizer.iterations.numpy()) == steps - 1


def test_bad_data_is_rejected_before_any_step(small_data):
    model = GaussianizationFlowModel(2, n_layers=1, n_components=2, seed=0)
    model.compile(optimizer="adam")
    bad = small_data.copy()
    bad[[3, 9], 0] = np.nan
    for x, match in [(bad, r"2 of 1024 rows.*NaN"), (small_data[:, :1], r"2 columns.*\(1024, 1\)"),
                     (small_data[0], "rank 2"), (small_data[:0], "at least 1 row")]:
        with pytest.raises(ValueError, match=match):
            model.fit(x, verbose=0)
        with pytest.raises(ValueError, match=match):
            model.evaluate(x, verbose=0)
        with pytest.raises(ValueError, match=match):  # (0 rows: Keras' UnboundLocalError;
            model.predict(x, verbose=0)               # NaN rows: NaN log-densities)
        if x.ndim != 2 or x.shape[1] == 2:  # the one-call trainer takes D from x
            with pytest.raises(ValueError, match=match):
                tfp_gauss.fit_gaussianization_flow(x, steps=1, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data.*2 columns"):
        tfp_gauss.fit_gaussianization_flow(small_data, steps=1, verbose=0,
                                           validation_data=small_data[:, :1])
    assert model.optimizer.iterations.numpy() == 0
    with pytest.raises(ValueError, match="no targets"):
        model.fit(small_data, small_data, verbose=0)
    # model(x): one column was broadcast to both (silently wrong), three failed
    # inside the layer loop; a single row failed to bind.
    for x, shape in [(small_data[:10, :1], r"\(10, 1\)"), (np.zeros((10, 3), "float32"),
                                                           r"\(10, 3\)"),
                     (small_data[0], r"\(2,\) \(one row: x\[None, :\]\)")]:
        match = r"takes rows of shape \[N, 2\] \(its n_dims\); got shape " + shape
        with pytest.raises(ValueError, match=match):
            model(x)
    np.testing.assert_allclose(model.predict(small_data[:10], verbose=0),
                               model.log_prob(small_data[:10]), rtol=1e-5, atol=1e-5)


def test_compile_refuses_a_loss_and_metrics():
    """The loss is the model's NLL, and there are no targets: a loss was accepted
    and ignored, and metrics=['mae'] failed at the first step with 'None values
    not supported'."""
    model = GaussianizationFlowModel(2, n_layers=1, n_components=2, seed=0)
    with pytest.raises(ValueError, match=r"takes no loss; got loss='mse'"):
        model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match=r"takes no loss_weights; got loss_weights=\[1.0\]"):
        model.compile(optimizer="adam", loss_weights=[1.0])
    with pytest.raises(ValueError, match=r"no targets for a metric.*got metrics=\['mae'\]"):
        model.compile(optimizer="adam", metrics=["mae"])
    with pytest.raises(ValueError, match=r"got weighted_metrics=\['mae'\]"):
        model.compile(optimizer="adam", weighted_metrics=["mae"])
    model.compile("adam", None, None, [], None, False, 2)  # Keras' positional order
    assert model.steps_per_execution == 2


_fit = tfp_gauss.fit_gaussianization_flow


@pytest.mark.parametrize("call, match", [
    (lambda x: _fit(x, batch_size=1.5), r"batch_size must be an int >= 1; got 1\.5"),
    (lambda x: _fit(x, steps=100.0), r"steps must be an int >= 1; got 100\.0"),
    (lambda x: _fit(x, steps=0), r"steps must be an int >= 1; got 0"),
    (lambda x: _fit(x, n_layers=True), r"n_layers must be an int >= 1; got True"),
    (lambda x: _fit(x, patience=-5), r"patience must be an int >= 1; got -5"),
    (lambda x: _fit(x, dtype="float16"), r"dtype must be 'float32' or 'float64'.*'float16'"),
    (lambda x: tfp_gauss.fit_rbig(x, n_components=2.5),
     r"n_components must be an int >= 1; got 2\.5"),
    (lambda x: tfp_gauss.fit_rbig(x, max_em_iterations=-1), r"max_em_iterations must be an int"),
    (lambda x: _fit(x, dtype=None), r"dtype must be 'float32' or 'float64'.*None"),
    (lambda x: GaussianizationFlowModel(2, n_layers=2.5), r"n_layers must be an int >= 1"),
    (lambda x: GaussianizationFlowModel(2, n_reflections=-1), r"n_reflections must be an int >= 0"),
    (lambda x: GaussianizationFlowModel(2, dtype="float16"),
     r"computes in float32 or float64; got dtype policy 'float16'"),
])
def test_bad_sizes_and_dtypes_are_clear_errors_before_any_work(small_data, call, match):
    # Before: a float size was truncated or failed deep in TensorFlow ("Cannot
    # convert 1.5 to EagerTensor of dtype int64"), float16 with a KeyError.
    with pytest.raises(ValueError, match=match):
        call(small_data)


def test_sample_sizes_are_checked_and_integer_tensors_accepted():
    model = GaussianizationFlowModel(2, n_layers=1, n_components=2, seed=0)
    for n, match in [(-1, r"n must be an int >= 0; got -1"), (2.7, r"got 2\.7")]:
        with pytest.raises(ValueError, match=match):
            model.sample(n, seed=1)  # (-1 was an opaque graph error, 2.7 drew 2 rows)
    assert model.sample(0, seed=1).shape == (0, 2)
    np.testing.assert_array_equal(model.sample(tf.constant(3), seed=[1, 2]),
                                  model.sample(np.int64(3), seed=[1, 2]))  # stateless seed


def test_fit_gaussianization_flow_one_call(small_data):
    model, history = tfp_gauss.fit_gaussianization_flow(
        small_data[:768], n_layers=2, n_components=3, steps=60, batch_size=128, seed=0,
        validation_data=small_data[768:], verbose=0, steps_per_epoch=20)
    assert set(history.history) == {"loss", "val_loss", "learning_rate"}
    assert len(history.history["loss"]) == 3
    assert int(model.optimizer.iterations.numpy()) == 60
    assert history.history["loss"][-1] < history.history["loss"][0]
    np.testing.assert_allclose(history.history["learning_rate"],
                               one_cycle_cosine(tf.constant([20, 40, 60]), 60, 3e-3).numpy(),
                               rtol=1e-6)


def test_legacy_keras_environment_keeps_working(tmp_path):
    """With TF_USE_LEGACY_KERAS=1 the model stays Keras 3 and tf_keras optimizers
    train the TFP-level flow (what the README says)."""
    import os
    import subprocess
    import sys

    script = """
import numpy as np, tensorflow as tf, keras, tfp_gauss
assert tf.keras.__name__.startswith("tf_keras")
x = tfp_gauss.datasets.two_moons()[:256]
m = tfp_gauss.keras.GaussianizationFlowModel(2, 1, 2, seed=0)
m.compile(optimizer=keras.optimizers.Adam(1e-2))
h = m.fit(x, batch_size=128, epochs=2, verbose=0)
assert h.history["loss"][1] < h.history["loss"][0]
flow = tfp_gauss.gaussianization_flow(2, 1, 2, seed=0)
opt = tf.keras.optimizers.Adam(1e-2)
with tf.GradientTape() as t:
    loss = -tf.reduce_mean(flow.log_prob(x))
opt.apply_gradients(zip(t.gradient(loss, flow.trainable_variables), flow.trainable_variables))
assert float(-tf.reduce_mean(flow.log_prob(x))) < float(loss)
"""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)


def test_set_flow_values_rejects_other_shapes_and_keeps_the_weights():
    model = GaussianizationFlowModel(2, n_layers=2, n_components=3, seed=0)
    before = _weights(model)
    other = tfp_gauss.flows.random_flow_values(2, 2, 4, seed=1)  # K = 4, not 3
    with pytest.raises(ValueError, match=r"`logits` stacked over the layers: expected shape "
                                         r"\(2, 2, 3\).*got \(2, 2, 4\)"):
        model.set_flow_values(other)
    with pytest.raises(ValueError, match="share D, K and M"):
        model.set_flow_values([other[0], tfp_gauss.flows.random_flow_values(2, 1, 3)[0]])
    with pytest.raises(ValueError, match="Expected values for 2 layers; got 1"):
        model.set_flow_values(other[:1])
    for a, b in zip(_weights(model), before):
        np.testing.assert_array_equal(a, b)
