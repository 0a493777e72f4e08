"""Polyak averaging in fit_gaussianization_flow: the averaged weights are validated and kept."""

import keras
import numpy as np
import pytest

import tfp_gauss
from tfp_gauss import _validation
from tfp_gauss.keras import GaussianizationFlowModel, _fit

MOMENTUM = 0.9  # averages over ~10 steps: far from the raw weights within 30 steps


class _Recorder(keras.callbacks.Callback):
    """The raw weights after every step and, per epoch, the weights and logs seen."""

    def __init__(self):
        super().__init__()
        self.steps, self.epochs = [], []

    def on_train_batch_end(self, batch, logs=None):  # (forces one step per graph call)
        self.steps.append(self.model.get_weights())

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((self.model.get_weights(), dict(logs)))


def _averages(steps, momentum):
    """The moving average after each step, in float64: a_1 = w_1, a_t = m a_{t-1} + (1-m) w_t."""
    out, average = [], None
    for weights in steps:
        weights = [np.asarray(w, np.float64) for w in weights]
        average = weights if average is None else [
            momentum * a + (1 - momentum) * w for a, w in zip(average, weights)]
        out.append(average)
    return out


@pytest.fixture(scope="module")
def averaged_fit():
    x = tfp_gauss.datasets.two_moons(n_samples=400, seed=3).astype(np.float32)
    recorder = _Recorder()
    model, history = tfp_gauss.fit_gaussianization_flow(
        x, n_layers=2, n_components=3, steps=30, steps_per_epoch=5, patience=10,
        peak_learning_rate=0.03, seed=0, verbose=0, scale_floor=0, jit_compile=False,
        ema_momentum=MOMENTUM, callbacks=[recorder])
    _, val = _validation.holdout_split(x, 0.1, np.random.default_rng(0), name="t")
    return x, val, model, history, recorder


def _nll(model, weights, val):
    clone = GaussianizationFlowModel.from_config(model.get_config())
    clone.set_weights([np.asarray(w, np.float32) for w in weights])
    return -float(np.mean(clone.log_prob(val)))


def test_validation_scores_the_moving_average_the_callbacks_see(averaged_fit):
    _, val, model, history, recorder = averaged_fit
    assert history.ema_momentum == pytest.approx(MOMENTUM)
    averages = _averages(recorder.steps, MOMENTUM)
    assert len(recorder.epochs) == len(history.history["val_loss"]) >= 3
    for epoch, (weights, logs) in enumerate(recorder.epochs):
        step = 5 * (epoch + 1)
        # at the epoch's end the callbacks see the float64 moving average ...
        for w, expected in zip(weights, averages[step - 1]):
            np.testing.assert_allclose(w, expected, rtol=2e-5, atol=2e-6)
        # ... and its validation NLL
        assert logs["val_loss"] == pytest.approx(_nll(model, averages[step - 1], val), abs=2e-4)
        assert logs["val_loss"] == history.history["val_loss"][epoch]
    # the raw weights score differently: the checks above could tell them apart
    raw_nll = _nll(model, recorder.steps[9], val)
    assert abs(raw_nll - history.history["val_loss"][1]) > 1e-2


def test_training_continues_from_the_raw_weights():
    # The same 20 steps from the same (random) start with validation (the
    # averages swapped in and out every 5 steps) and without: identical raw
    # weights after every step.
    x = tfp_gauss.datasets.two_moons(n_samples=400, seed=3).astype(np.float32)
    val = tfp_gauss.datasets.two_moons(n_samples=60, seed=4).astype(np.float32)
    runs = []
    for validation in (val, None):
        recorder = _Recorder()
        tfp_gauss.fit_gaussianization_flow(
            x, n_layers=2, n_components=3, steps=20, steps_per_epoch=5, init="random",
            peak_learning_rate=0.03, seed=0, verbose=0, scale_floor=0, jit_compile=False,
            ema_momentum=MOMENTUM, callbacks=[recorder], validation_data=validation,
            validation_split=0.0, early_stopping=False)
        runs.append(recorder.steps)
    assert len(runs[0]) == len(runs[1]) == 20
    for with_val, without in zip(*runs):
        for a, b in zip(with_val, without):
            np.testing.assert_array_equal(a, b)


def test_multi_step_graph_calls_give_the_same_fit(averaged_fit):
    # Without a per-step hook the 5 steps of an epoch run in one graph call.
    x, _, model, history, _ = averaged_fit
    multi, multi_history = tfp_gauss.fit_gaussianization_flow(
        x, n_layers=2, n_components=3, steps=30, steps_per_epoch=5, patience=10,
        peak_learning_rate=0.03, seed=0, verbose=0, scale_floor=0, jit_compile=False,
        ema_momentum=MOMENTUM)
    assert multi_history.best_step == history.best_step
    for a, b in zip(multi.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("floor_wins", [True, False])
def test_a_later_fit_averages_from_the_kept_weights(monkeypatch, floor_wins):
    # After the fit the optimizer's averages are the kept weights (whichever
    # candidate won), so continuing with model.fit starts from them: were the
    # averages left at zero (or at the last step's), Keras would write them
    # into the model when that fit ends.
    monkeypatch.setattr(_fit, "keeps_scale_floor", lambda a, b: (floor_wins, 0.0, 0.0))
    x = tfp_gauss.datasets.two_moons(n_samples=100, seed=3).astype(np.float32)
    model, history = tfp_gauss.fit_gaussianization_flow(   # 90 rows: it overfits early
        x, n_layers=2, n_components=6, steps=300, steps_per_epoch=5, patience=20, seed=0,
        verbose=0, jit_compile=False, peak_learning_rate=0.1)
    assert history.scale_floor == (_fit.AUTO_SCALE_FLOOR if floor_wins else 0.0)
    assert history.best_step < history.steps_run  # the kept weights are not the last step's
    for average, weight in zip(model.optimizer._model_variables_moving_average,
                               model.trainable_variables):
        np.testing.assert_array_equal(average.numpy(), weight.numpy())
    before = model.evaluate(x, verbose=0)
    kept = model.get_weights()
    model.fit(x, epochs=1, steps_per_epoch=2, batch_size=64, verbose=0)
    assert abs(model.evaluate(x, verbose=0) - before) < 0.05
    for a, b in zip(model.get_weights(), kept):
        np.testing.assert_allclose(a, b, atol=0.05)


def test_the_kept_weights_are_the_best_evaluations_average(averaged_fit):
    _, val, model, history, recorder = averaged_fit
    averages = _averages(recorder.steps, MOMENTUM)
    best = history.best_step
    assert best > 0 and best % 5 == 0
    assert history.best_val_loss == pytest.approx(min(history.history["val_loss"]))
    for w, expected in zip(model.get_weights(), averages[best - 1]):
        np.testing.assert_allclose(w, expected, rtol=2e-5, atol=2e-6)
    assert -float(np.mean(model.log_prob(val))) == pytest.approx(history.best_val_loss, abs=1e-4)


def test_without_averaging_the_raw_weights_are_kept():
    x = tfp_gauss.datasets.two_moons(n_samples=400, seed=3).astype(np.float32)
    recorder = _Recorder()
    model, history = tfp_gauss.fit_gaussianization_flow(
        x, n_layers=2, n_components=3, steps=20, steps_per_epoch=5, seed=0, verbose=0,
        scale_floor=0, jit_compile=False, ema_momentum=None, early_stopping=False,
        validation_split=0.0, peak_learning_rate=0.03, callbacks=[recorder])
    assert history.ema_momentum is None
    for w, raw in zip(model.get_weights(), recorder.steps[-1]):
        np.testing.assert_array_equal(w, raw)


@pytest.mark.parametrize("bad", [1.0, -0.1, "high", True])
def test_bad_ema_momentum_is_a_clear_error(bad):
    x = tfp_gauss.datasets.two_moons(n_samples=100, seed=0)
    with pytest.raises(ValueError, match=r"ema_momentum must be None .* in \[0, 1\); got"):
        tfp_gauss.fit_gaussianization_flow(x, ema_momentum=bad, verbose=0)


@pytest.mark.parametrize("arg, bad", [("peak_learning_rate", float("nan")),
                                      ("peak_learning_rate", -1e-3), ("peak_learning_rate", "x"),
                                      ("clip_norm", -1.0), ("clip_norm", float("inf"))])
def test_bad_learning_rate_or_clip_norm_is_a_clear_error(arg, bad):
    # Before: a NaN peak trained nothing ("Invalid loss") and returned the warm start;
    # a negative clip norm was accepted.
    x = tfp_gauss.datasets.two_moons(n_samples=100, seed=0)
    with pytest.raises(ValueError, match=rf"{arg} must be None .* or a finite number >=? ?0; got"):
        tfp_gauss.fit_gaussianization_flow(x, verbose=0, **{arg: bad})
