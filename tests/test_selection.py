"""Model selection on held-out data: the held-out split, early stopping, greedy depth."""

import keras
import numpy as np
import pytest
import scipy.stats
from sklearn.datasets import load_wine

import tfp_gauss
from tfp_gauss import _validation, flows
from tfp_gauss.keras import GaussianizationFlowModel


def test_holdout_split_is_reproducible_from_the_seed_and_disjoint():
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    a_train, a_val = _validation.holdout_split(x, 0.2, np.random.default_rng(7))
    b_train, b_val = _validation.holdout_split(x, 0.2, np.random.default_rng(7))
    _, c_val = _validation.holdout_split(x, 0.2, np.random.default_rng(8))
    np.testing.assert_array_equal(a_val, b_val)
    np.testing.assert_array_equal(a_train, b_train)
    assert len(a_val) == 20 and len(a_train) == 80
    assert not np.array_equal(a_val, c_val)
    # every row lands on exactly one side
    rows = np.sort(np.concatenate([a_train, a_val])[:, 0])
    np.testing.assert_array_equal(rows, x[:, 0])
    train, val = _validation.holdout_split(x, 0.0, np.random.default_rng(0))
    assert val is None and train is x


@pytest.mark.parametrize("split, match", [
    (-0.1, r"in \[0, 1\).*-0.1"), (1.0, r"in \[0, 1\).*1.0"), ("half", "a number"),
    (0.005, "leaves 0 held-out and 40 training rows")])
def test_bad_validation_split_is_a_clear_error(moons, split, match):
    x = moons[:40]
    with pytest.raises(ValueError, match=match):
        tfp_gauss.fit_gaussianization_flow(x, steps=1, verbose=0, validation_split=split)
    with pytest.raises(ValueError, match=match):
        tfp_gauss.fit_rbig(x, validation_split=split)


@pytest.fixture(scope="module")
def overfit_run(moons):
    """A small flow trained hard on 80 rows: its validation NLL rises after a minimum.

    Without the scale floor: with it (what ``scale_floor="auto"`` chooses
    here) these 80 rows are not overfit within 600 steps.
    """
    train, val = moons[:80], moons[2000:2400]
    model, history = tfp_gauss.fit_gaussianization_flow(
        train, n_layers=3, n_components=8, steps=600, peak_learning_rate=3e-2, init="random",
        validation_data=val, seed=0, verbose=0, steps_per_epoch=20, patience=10_000,
        scale_floor=0)
    return train, val, model, history


def test_early_stopping_returns_exactly_the_best_validation_weights(overfit_run):
    _, val, model, history = overfit_run
    val_loss = np.array(history.history["val_loss"])
    best = int(np.argmin(val_loss))
    # the run overfits: without selection the last weights would be worse
    assert val_loss[-1] > val_loss[best] + 0.05
    assert history.best_step == (best + 1) * 20
    assert history.best_val_loss == pytest.approx(val_loss[best], rel=1e-6)
    # the returned weights are the best ones: recompute their NLL eagerly
    nll = -float(np.mean(model.log_prob(val).numpy().astype(np.float64)))
    assert nll == pytest.approx(val_loss[best], rel=1e-5, abs=1e-5)


def test_patience_stops_training_and_selection_can_be_turned_off(moons, overfit_run):
    train, val, _, _ = overfit_run
    model, history = tfp_gauss.fit_gaussianization_flow(
        train, n_layers=3, n_components=8, steps=600, peak_learning_rate=3e-2, init="random",
        validation_data=val, seed=0, verbose=0, steps_per_epoch=20, patience=60, scale_floor=0)
    val_loss = np.array(history.history["val_loss"])
    best = int(np.argmin(val_loss))
    # three evaluations without improvement after the best one, then stop
    assert len(val_loss) == best + 1 + 3 < 30
    assert int(model.optimizer.iterations.numpy()) == len(val_loss) * 20
    model, history = tfp_gauss.fit_gaussianization_flow(
        train, n_layers=3, n_components=8, steps=100, init="random", validation_data=val,
        seed=0, verbose=0, steps_per_epoch=20, early_stopping=False)
    assert int(model.optimizer.iterations.numpy()) == 100
    assert not hasattr(history, "best_step")
    nll = -float(np.mean(model.log_prob(val).numpy().astype(np.float64)))
    assert nll == pytest.approx(history.history["val_loss"][-1], rel=1e-5, abs=1e-5)


def test_default_fit_holds_out_a_reproducible_tenth(moons):
    x = moons[:400]
    # (one candidate per fit: the scale floor's second one holds out the same rows)
    runs = {seed: tfp_gauss.fit_gaussianization_flow(x, n_layers=2, n_components=3, steps=40,
                                                     seed=seed, verbose=0, steps_per_epoch=20,
                                                     scale_floor=0)
            for seed in (None, 0, 5)}
    for _, history in runs.values():
        assert history.validation_rows == 40
    # seed=None means 0: two runs with the same held-out rows, start and batches
    # (XLA's CPU reductions may round differently); another seed differs
    np.testing.assert_allclose(runs[None][1].history["val_loss"], runs[0][1].history["val_loss"],
                               rtol=1e-3)
    assert runs[5][1].history["val_loss"][0] != pytest.approx(runs[0][1].history["val_loss"][0],
                                                              rel=1e-3)
    # the held-out rows are the ones holdout_split draws from the seed's generator
    for seed, generator_seed in ((None, 0), (5, 5)):
        _, val = _validation.holdout_split(x, 0.1, np.random.default_rng(generator_seed))
        model, history = runs[seed]
        nll = -float(np.mean(model.log_prob(val).numpy().astype(np.float64)))
        assert nll == pytest.approx(history.best_val_loss, rel=1e-5, abs=1e-5)


def test_keras_early_stopping_callback_works_with_model_fit(overfit_run):
    train, val, _, _ = overfit_run
    model = GaussianizationFlowModel(2, n_layers=3, n_components=8, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-2))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5,
                                         restore_best_weights=True)
    history = model.fit(train, batch_size=80, epochs=300, validation_data=val, verbose=0,
                        callbacks=[stop])
    val_loss = np.array(history.history["val_loss"])
    assert len(val_loss) < 300 and val_loss[-1] > val_loss.min()
    nll = -float(np.mean(model.log_prob(val).numpy().astype(np.float64)))
    assert nll == pytest.approx(val_loss.min(), rel=1e-5, abs=1e-5)


class _BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


class _EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1


def test_an_epoch_runs_in_one_graph_call_unless_a_callback_watches_batches():
    x = tfp_gauss.datasets.two_moons()[:600]
    kwargs = dict(steps=60, init="random", validation_split=0, verbose=0, seed=0,
                  architecture="marginal")
    batches, epochs = _BatchCounter(), _EpochCounter()
    per_step, _ = tfp_gauss.fit_gaussianization_flow(x, 2, 3, callbacks=[batches], **kwargs)
    per_epoch, history = tfp_gauss.fit_gaussianization_flow(x, 2, 3, callbacks=[epochs],
                                                            **kwargs)
    # a batch-level hook sees every one of the 60 steps (one step per call) ...
    assert batches.batches == 60 and per_step.steps_per_execution == 1
    # ... otherwise an epoch (60 steps: 2 epochs of 30) is one call
    assert history.steps_per_epoch == 30 and epochs.epochs == 2
    assert per_epoch.steps_per_execution == 30
    # and the grouping changes no arithmetic: the same weights either way
    np.testing.assert_array_equal(per_epoch.log_prob(x).numpy(), per_step.log_prob(x).numpy())


# ---------------------------------------------------------------------------- greedy depth


@pytest.fixture(scope="module")
def wine_splits():
    """The wine table (178 x 13): few rows for its dimension, where greedy fits collapse."""
    x = load_wine().data
    rng = np.random.default_rng(0)
    x = x + 1e-3 * x.std(0) * rng.standard_normal(x.shape)  # values repeat on a grid
    perm = rng.permutation(len(x))
    train, test = x[perm[:128]], x[perm[128:]]
    mean, std = train.mean(0), train.std(0)
    return (train - mean) / std, (test - mean) / std


def test_greedy_depth_is_chosen_on_held_out_rows(moons):
    train, val = moons[:1500], moons[1500:2000]
    flow, info = tfp_gauss.fit_rbig(train, n_layers=40, n_components=4, validation_data=val,
                                    seed=0, return_info=True)
    scores = np.array(info["validation_log_likelihood"])
    assert info["best_n_layers"] == int(np.argmax(scores)) + 1 == len(flows.flow_layers(flow))
    # stopped `patience` layers after the best, not at the cap
    assert len(scores) == info["best_n_layers"] + 4 or len(scores) == 40
    # the incremental held-out scores agree with the returned flow's own log_prob
    assert float(np.mean(flow.log_prob(val).numpy())) == pytest.approx(scores.max(), abs=1e-4)


def test_deep_greedy_fit_of_few_rows_stays_sane(wine_splits):
    train, test = wine_splits
    gaussian = scipy.stats.multivariate_normal(train.mean(0), np.cov(train, rowvar=False))
    reference = gaussian.logpdf(test).mean()  # a full-covariance Gaussian, fit by ML
    flow = tfp_gauss.fit_rbig(train, n_layers=32, n_components=8, seed=0)
    held_out = float(np.mean(flow.log_prob(test).numpy()))
    # the old behaviour (all 32 layers, scales free to collapse, narrow tails) is absurd
    # on the same rows; the tail component alone keeps it to -143 (measured)
    old = dict(n_layers=32, n_components=8, seed=0, validation_split=0, bandwidth_factor=0)
    absurd = tfp_gauss.fit_rbig(train, tail_component=False, **old).log_prob(test).numpy()
    assert float(np.mean(absurd)) < -1e3
    assert float(np.mean(tfp_gauss.fit_rbig(train, **old).log_prob(test).numpy())) > -1e3
    assert held_out > reference - 5.0, (held_out, reference)


def test_continuing_training_takes_a_fresh_schedule(moons):
    x = moons[:512]
    model, _ = tfp_gauss.fit_gaussianization_flow(
        x, n_layers=2, n_components=3, steps=40, seed=0, verbose=0, validation_split=0)
    before = model.log_prob(x).numpy()
    # the one-cycle schedule is spent: Keras' own fit barely moves the weights
    model.fit(x, batch_size=512, epochs=20, verbose=0)
    spent = model.log_prob(x).numpy()
    assert np.abs(spent - before).max() < 1e-4
    resumed, history = tfp_gauss.fit_gaussianization_flow(
        x, steps=200, seed=0, verbose=0, validation_split=0, init=model)
    assert resumed is not model and resumed.n_layers == 2 and resumed.n_components == 3
    np.testing.assert_array_equal(model.log_prob(x).numpy(), spent)  # left unchanged
    # the first step starts from the given weights, then training goes on
    assert history.history["loss"][0] == pytest.approx(-spent.mean(), abs=0.05)
    assert -resumed.log_prob(x).numpy().mean() < -spent.mean() - 0.01  # 0.04 measured
    with pytest.raises(ValueError, match="init must be"):
        tfp_gauss.fit_gaussianization_flow(x, steps=1, verbose=0, init="greedy")
    # the flow's shape is the function's own: a different one in rbig_kwargs would
    # leave the trained K (and the tied-values warning's K) other than asked
    for arg in ("n_components", "n_layers"):
        with pytest.raises(ValueError, match=f"rbig_kwargs sets {arg}=5 but the fit's {arg}"):
            tfp_gauss.fit_gaussianization_flow(x, steps=1, verbose=0, n_components=3,
                                               n_layers=2, rbig_kwargs={arg: 5})


def test_tail_component_keeps_deep_greedy_tails_sane():
    """Points just past the training range: without the tail component 28 stacked
    layers compound their narrow components' slopes into log-densities of
    -1e4..-1e7; with it (the default) they stay within tens of nats of a
    Gaussian fit's, and the samples stay in the data's range (a tail component
    whose scale EM may widen sends them to 1e6 standard deviations instead)."""
    rng = np.random.default_rng(0)
    first = rng.random(200) < 0.35
    x = np.where(first[:, None], rng.normal([-1.2, -1.0], [0.3, 0.4], (200, 2)),
                 rng.normal([0.7, 0.6], [0.35, 0.35], (200, 2)))
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    lo, hi = x.min(0), x.max(0)
    probe = np.array([hi + 0.05, lo - 0.05, [hi[0] + 0.5, 0.0]], np.float32)
    # reference: a Gaussian fit to the rows (independent of the flow) at the probes
    gaussian = scipy.stats.multivariate_normal(x.mean(0), np.cov(x, rowvar=False))
    kwargs = dict(n_layers=28, seed=0, validation_split=0, bandwidth_factor=0.25)
    exploded = tfp_gauss.fit_rbig(x, tail_component=False, **kwargs).log_prob(probe).numpy()
    flow = tfp_gauss.fit_rbig(x, **kwargs)
    sane = flow.log_prob(probe).numpy()
    assert exploded.min() < -1e3
    # A point past the data pays about log N per layer at most (measured 48.7
    # below the Gaussian fit after 28 layers), where narrow tails compound.
    assert (sane > gaussian.logpdf(probe) - 60.0).all(), (sane, gaussian.logpdf(probe))
    draws = flow.sample(20000, seed=[1, 2]).numpy()
    assert np.abs(draws).max() < 3 * np.abs(x).max(), np.abs(draws).max()
    np.testing.assert_allclose(draws.std(0), x.std(0), rtol=0.1)
    # the tail component's scale is the column's standard deviation, fixed; its
    # weight is at least the floor asked for
    fit = tfp_gauss.math.mixture_em.fit_mixture_em(x, 4, tail_scale_ratio=1.0, tail_weight=0.3)
    np.testing.assert_allclose(fit["scales"][:, -1], x.std(0), rtol=1e-6)
    assert (fit["scales"][:, :-1] < x.std(0)[:, None]).all()
    assert (np.exp(fit["log_weights"][:, -1]) >= 0.3 * (1 - 1e-6)).all()
    np.testing.assert_allclose(np.exp(fit["log_weights"]).sum(-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="tail_weight needs a tail component"):
        tfp_gauss.math.mixture_em.fit_mixture_em(x, 4, tail_weight=0.1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("floor", [0.2, 0.01])
def test_tail_weight_floor_is_the_constrained_maximum_likelihood(dtype, floor):
    """EM with a floor on the tail component's weight reaches the maximum of the
    likelihood subject to it, found independently by scipy over every free
    parameter: two components' locations and scales, the tail's location and
    all three weights with the tail's >= the floor (its scale fixed at the
    column's standard deviation). At 0.2 the floor binds; at 0.01 it does not."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-1.0, 0.3, 300), rng.normal(1.0, 0.4, 300),
                        rng.normal(0.0, 2.5, 30)])[:, None]
    std = float(x.std())
    fit = tfp_gauss.math.mixture_em.fit_mixture_em(
        x.astype(dtype), 3, tail_scale_ratio=1.0, tail_weight=floor, max_iterations=5000,
        tol=1e-14 if dtype == np.float64 else 1e-7)
    w = np.exp(fit["log_weights"][0].astype(np.float64))

    def nll(p):
        mu0, mu1, mu2, ls0, ls1, a, b = p
        tail = floor + (1 - floor) * scipy.special.expit(b)  # in [floor, 1)
        share = scipy.special.expit(a)  # first component's share of the rest
        weights = np.array([share * (1 - tail), (1 - share) * (1 - tail), tail])
        comps = scipy.stats.norm.logpdf(x, [mu0, mu1, mu2], [np.exp(ls0), np.exp(ls1), std])
        return -np.mean(scipy.special.logsumexp(comps + np.log(weights), axis=1))

    best = scipy.optimize.minimize(nll, [-0.8, 0.8, 0.0, np.log(0.5), np.log(0.5), 0.0, -1.0],
                                   method="Nelder-Mead",
                                   options=dict(xatol=1e-10, fatol=1e-13, maxiter=60000))
    tol = 1e-6 if dtype == np.float64 else 2e-4
    assert fit["log_likelihood"][0] == pytest.approx(-best.fun, abs=tol)
    tail = floor + (1 - floor) * scipy.special.expit(best.x[-1])
    assert w[-1] == pytest.approx(tail, abs=100 * tol)
    assert (w[-1] == pytest.approx(floor, rel=1e-5)) == (floor == 0.2)  # binds at 0.2 only


def test_fit_rbig_layers_carry_the_tail_component():
    """Every layer of a default ``fit_rbig`` keeps a last component whose scale is the
    standard deviation of the layer's training input and whose weight is >= 1/N."""
    x = tfp_gauss.datasets.two_moons()[:600]
    flow = tfp_gauss.fit_rbig(x, n_layers=3, seed=0, validation_split=0)
    h = x.astype(np.float64)
    for layer in tfp_gauss.flows.flow_layers(flow):
        mixture, rotation = layer
        scales = mixture.scales.numpy() if hasattr(mixture.scales, "numpy") else np.asarray(
            mixture.scales)
        np.testing.assert_allclose(scales[:, -1], h.std(0), rtol=1e-5)
        weights = np.exp(_log_softmax(mixture.logits))
        assert (weights[:, -1] >= (1 - 1e-5) / len(x)).all()
        h = rotation.forward(mixture.forward(h.astype(np.float32))).numpy().astype(np.float64)
    # fewer than 4 components: free components only (the tail would take half or
    # a third of the mixture), and one component works
    kwargs = dict(n_layers=2, n_components=3, seed=0)
    np.testing.assert_array_equal(
        tfp_gauss.fit_rbig(x, **kwargs).log_prob(x).numpy(),
        tfp_gauss.fit_rbig(x, tail_component=False, **kwargs).log_prob(x).numpy())
    assert tfp_gauss.fit_rbig(x, n_layers=2, n_components=1, seed=0).log_prob(x).shape == (600,)
    with pytest.raises(TypeError, match="tail_component must be True or False; got 'no'"):
        tfp_gauss.fit_rbig(x, tail_component="no")
    with pytest.raises(ValueError, match="bandwidth_factor must be a number >= 0"):
        tfp_gauss.fit_rbig(x, bandwidth_factor="auto")
    mixture_em = tfp_gauss.math.mixture_em
    with pytest.raises(ValueError, match=r"tail_weight must be in \[0, 1\)"):
        mixture_em.fit_mixture_em(x, 3, tail_scale_ratio=1.0, tail_weight=1.0)
    with pytest.raises(TypeError, match="tail_weight must be a number"):
        mixture_em.fit_mixture_em(x, 3, tail_scale_ratio=1.0, tail_weight=None)
    for bad in (0.0, "x", float("nan")):
        with pytest.raises(ValueError, match="tail_scale_ratio must be a finite number > 0"):
            mixture_em.fit_mixture_em(x, 3, tail_scale_ratio=bad)


def _log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    return logits - scipy.special.logsumexp(logits, axis=-1, keepdims=True)


def test_training_noise_has_the_asked_scale_and_is_reproducible():
    from tfp_gauss.keras._fit import _batches  # noqa: PLC0415

    x = np.random.default_rng(3).normal(size=(500, 2)).astype(np.float32) * [1.0, 4.0]
    scale = np.array([0.05, 0.2], np.float32)

    def take(noise, seed, n=60):
        return np.stack([b.numpy() for b in _batches(x, 250, seed, noise).take(n)])

    clean, noisy = take(None, 5), take(scale, 5)
    # same shuffling with and without noise: the difference is the noise alone
    eps = (noisy - clean).reshape(-1, 2).astype(np.float64)
    n = len(eps)
    assert np.all(np.abs(eps.mean(axis=0)) < 5 * scale / np.sqrt(n)), eps.mean(axis=0)
    # sample std within 5 standard errors of the asked scale (se ~ scale / sqrt(2n))
    np.testing.assert_allclose(eps.std(axis=0), scale, rtol=5 / np.sqrt(2 * n))
    assert abs(np.corrcoef(eps.T)[0, 1]) < 5 / np.sqrt(n)
    np.testing.assert_array_equal(noisy, take(scale, 5))        # reproducible from the seed
    assert not np.allclose(noisy, take(scale, 6))


@pytest.mark.parametrize("noise", [-0.1, float("nan"), float("inf"), "0.1", [0.1]])
def test_bad_noise_is_a_clear_error(moons, noise):
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        tfp_gauss.fit_gaussianization_flow(moons[:100], steps=1, verbose=0, noise=noise)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_em_on_a_column_with_fewer_values_than_components(dtype):
    # A coded column (values 0, 1, 2; counts 150, 42, 8) and a continuous one, K = 8:
    # the MLE over point masses under a scale floor puts the mass of each value, in
    # proportion to its count, on components centred there at the floor (the rare
    # value, 4 % of rows, lies past the last quantile start, 15/16).
    rng = np.random.default_rng(3)
    coded = np.repeat([0.0, 1.0, 2.0], [150, 42, 8])
    x = np.stack([rng.permutation(coded), rng.normal(size=200)], axis=1).astype(dtype)
    fit = tfp_gauss.math.mixture_em.fit_mixture_em(x, 8, seed=0, min_scale_ratio=0.01)
    weights, locs, scales = np.exp(fit["log_weights"][0]), fit["locs"][0], fit["scales"][0]
    tol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(np.sort(np.unique(locs)), [0.0, 1.0, 2.0], atol=tol)
    for value, count in zip([0.0, 1.0, 2.0], [150, 42, 8]):
        assert abs(weights[np.abs(locs - value) < 0.5].sum() - count / 200) < tol
    np.testing.assert_allclose(scales, 0.01 * coded.std(), rtol=1e-5)
    # the log-likelihood against the closed form sum_v p_v log(p_v N(0; 0, s))
    p = np.array([150, 42, 8]) / 200
    closed = np.sum(p * np.log(p)) - np.log(0.01 * coded.std()) - 0.5 * np.log(2 * np.pi)
    assert abs(fit["log_likelihood"][0] - closed) < 1e-4
    assert np.isfinite(fit["log_weights"][1]).all() and len(np.unique(fit["locs"][1])) == 8
    # With a tail component (the last, at one standard deviation) every value, the rare
    # top one included, still starts and ends on a component of its own at the floor.
    tail = tfp_gauss.math.mixture_em.fit_mixture_em(x, 8, seed=0, min_scale_ratio=0.01,
                                                    tail_scale_ratio=1.0, tail_weight=1 / 200)
    locs, scales = tail["locs"][0], tail["scales"][0]
    for value in (0.0, 1.0, 2.0):
        assert np.any((np.abs(locs[:-1] - value) < tol) & (scales[:-1] < 0.011 * coded.std()))
    assert abs(scales[-1] - coded.std()) < 1e-5 * coded.std()
    with pytest.raises(ValueError, match=r"constant column\(s\) \[0\] \(value\(s\) \[1.5\]\)"):
        tfp_gauss.math.mixture_em.fit_mixture_em(np.stack([np.full(50, 1.5), x[:50, 1]], 1), 2)
