"""Polyak averaging in fit_gaussianization_flow: the averaged weights are validated and kept."""

import keras
import numpy as np
import pytest

import tfp_gauss
from tfp_gauss import _validation
from tfp_gauss.keras import GaussianizationFlowModel

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


def test_validation_scores_the_moving_average_and_training_continues_from_raw(averaged_fit):
    _, val, model, history, recorder = averaged_fit
    assert history.ema_momentum == pytest.approx(MOMENTUM)
    averages = _averages(recorder.steps, MOMENTUM)
    assert len(recorder.epochs) == len(history.history["val_loss"]) >= 3
    for epoch, (weights, logs) in enumerate(recorder.epochs):
        step = 5 * (epoch + 1)
        # the callbacks see the raw weights (training goes on from them) ...
        for w, raw in zip(weights, recorder.steps[step - 1]):
            np.testing.assert_array_equal(w, raw)
        # ... and a val_loss that is the NLL of the float64 moving average
        assert logs["val_loss"] == pytest.approx(_nll(model, averages[step - 1], val), abs=2e-4)
        assert logs["val_loss"] == history.history["val_loss"][epoch]
    # the raw weights score differently: the check above could tell them apart
    raw_nll = _nll(model, recorder.steps[9], val)
    assert abs(raw_nll - history.history["val_loss"][1]) > 1e-2


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
