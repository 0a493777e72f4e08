"""The scikit-learn faces: GaussianizationDensity and GaussianizationTransformer."""

import pathlib
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_moons
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from tfp_gauss.keras import GaussianizationFlowModel
from tfp_gauss.sklearn import GaussianizationDensity, GaussianizationTransformer

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The whole scikit-learn battery, with the greedy fit only (max_steps=0): a
# trained fit costs a Keras trace per check (about 1.5-3 s each, ~50 checks
# per estimator); the trained path is checked for idempotence and pickling
# below and was run through check_estimator by hand (see the issue note).
TINY = dict(n_layers=1, n_components=2, max_steps=0)
# Trained fits in tests: a few steps, without XLA (compiling the training
# step costs more than the steps themselves).
FEW_STEPS = dict(fit_kwargs=dict(jit_compile=False))


@parametrize_with_checks([GaussianizationDensity(**TINY), GaussianizationTransformer(**TINY)])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def _raw_moons(n, seed):
    return make_moons(n, noise=0.08, random_state=seed)[0] * [3.0, 0.5] + [10.0, -2.0]


def _sinh_correlated(n, seed):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n, 2)) @ np.array([[1.0, 0.8], [0.0, 0.6]])
    return np.sinh(1.5 * u) * [2.0, 0.3] + [5.0, -1.0]


@pytest.fixture(scope="module")
def trained_density():
    x = _raw_moons(600, 0)
    return GaussianizationDensity(n_layers=3, n_components=4, max_steps=60,
                                  random_state=0, **FEW_STEPS).fit(x), x


def test_score_samples_is_model_log_prob_plus_log_jacobian(trained_density):
    est, x = trained_density
    d = x.shape[1]
    assert est.n_features_in_ == d and est.n_iter_ == 60 and 0 <= est.best_step_ <= 60
    assert set(est.history_) >= {"loss", "val_loss"} and est.validation_rows_ == 60
    # Reference 1: the Keras model's own log_prob of the standardized rows
    # (float32) minus the log-Jacobian of the standardization, by hand.
    params = est.flow_parameters_
    values = [dict(logits=params["logits"][i], locs=params["locs"][i],
                   raw_scales=params["raw_scales"][i], vectors=params["vectors"][i],
                   scales=np.log1p(np.exp(params["raw_scales"][i])))
              for i in range(est.n_layers_)]
    model = GaussianizationFlowModel(d, est.n_layers_, est.n_components_)
    model.set_flow_values(values)
    mean, std = x.mean(0), x.std(0)
    y = ((x - mean) / std).astype(np.float32)
    reference = model.log_prob(y).numpy() - np.log(std).sum()
    got = est.score_samples(x)
    assert got.shape == (len(x),) and got.dtype == np.float64
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)
    # Reference 2: change of variables with a finite-difference Jacobian of
    # the map x -> z (no log-det code involved).
    z_of = est._flow64.bijector.bijector.forward
    xs, h = x[:20], 1e-6
    z = z_of((xs - mean) / std).numpy()
    jac = np.stack([(z_of((xs + h * e - mean) / std).numpy()
                     - z_of((xs - h * e - mean) / std).numpy()) / (2 * h)
                    for e in np.eye(d)], axis=-1)
    fd = (-0.5 * (z ** 2).sum(1) - 0.5 * d * np.log(2 * np.pi)
          + np.log(np.abs(np.linalg.det(jac))))
    np.testing.assert_allclose(got[:20], fd, rtol=1e-6, atol=1e-6)
    # The fitted distribution is over the data's own units.
    np.testing.assert_allclose(est.distribution_.log_prob(xs).numpy(), got[:20], rtol=1e-12)
    assert est.score(x) == pytest.approx(got.mean())


def test_sample_shape_units_and_seed(trained_density):
    est, x = trained_density
    s = est.sample(500, random_state=3)
    assert s.shape == (500, 2) and s.dtype == np.float64
    np.testing.assert_array_equal(s, est.sample(500, random_state=3))
    assert not np.array_equal(s, est.sample(500, random_state=4))
    np.testing.assert_allclose(s.mean(0), x.mean(0), atol=0.15 * x.std(0).max())
    np.testing.assert_allclose(s.std(0), x.std(0), rtol=0.15)


def test_pickle_in_a_new_process_is_identical(trained_density, tmp_path):
    est, x = trained_density
    tr = GaussianizationTransformer(n_layers=2, n_components=3, max_steps=0,
                                    random_state=1).fit(x)
    path = tmp_path / "est.pkl"
    path.write_bytes(pickle.dumps((est, tr)))
    np.save(tmp_path / "x.npy", x[:50])
    script = textwrap.dedent(f"""
        import pickle, numpy as np
        est, tr = pickle.loads(open({str(path)!r}, "rb").read())
        x = np.load({str(tmp_path / "x.npy")!r})
        np.savez({str(tmp_path / "out.npz")!r}, score=est.score_samples(x),
                 sample=est.sample(7, random_state=11), z=tr.transform(x),
                 back=tr.inverse_transform(tr.transform(x)))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT,
                   env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["score"], est.score_samples(x[:50]))
    np.testing.assert_array_equal(out["sample"], est.sample(7, random_state=11))
    np.testing.assert_array_equal(out["z"], tr.transform(x[:50]))
    np.testing.assert_array_equal(out["back"], tr.inverse_transform(tr.transform(x[:50])))


def test_trained_fit_is_reproducible_and_clones(trained_density):
    est, x = trained_density
    again = clone(est).fit(x)  # a fresh clone: the same random_state, the same fit
    np.testing.assert_array_equal(again.score_samples(x), est.score_samples(x))
    assert again.best_step_ == est.best_step_ and again.history_ == est.history_


def test_transformer_gaussianizes_held_out_rows_and_inverts():
    x_train, x_test = _sinh_correlated(3000, 0), _sinh_correlated(2000, 1)
    tr = GaussianizationTransformer(n_layers=8, n_components=6, max_steps=0,
                                    random_state=0).fit(x_train)
    z = tr.transform(x_test)
    n = len(z)
    # N(0, I) to sampling error: the mean's standard error is 1/sqrt(n), a
    # covariance entry's about sqrt(2/n); allow 4 of them.
    np.testing.assert_allclose(z.mean(0), 0.0, atol=4 / np.sqrt(n))
    np.testing.assert_allclose(np.cov(z.T), np.eye(2), atol=4 * np.sqrt(2 / n))
    assert abs(np.corrcoef(x_test.T)[0, 1]) > 0.5  # the input was strongly dependent
    back = tr.inverse_transform(z)
    np.testing.assert_allclose(back, x_test, rtol=1e-5, atol=1e-5 * np.abs(x_test).max())
    assert tr.get_feature_names_out().tolist() == [
        "gaussianizationtransformer0", "gaussianizationtransformer1"]


def test_grid_search_in_raw_units_picks_the_deeper_flow():
    # The greedy fit (max_steps=0), whose depth is chosen on each training
    # fold's own held-out rows; the trained path is the same code after it.
    x = _raw_moons(800, 2)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("density", GaussianizationDensity(n_components=4, max_steps=0,
                                                        random_state=0))])
    search = GridSearchCV(pipe, {"density__n_layers": [1, 4]}, cv=2, refit=False).fit(x)
    scores = dict(zip(search.cv_results_["param_density__n_layers"],
                      search.cv_results_["mean_test_score"]))
    assert search.best_params_ == {"density__n_layers": 4}
    # Meaningful: one layer is a product of marginals (no dependence between
    # the two coordinates); the moons' dependence is worth far more than noise.
    assert scores[4] - scores[1] > 0.3, scores
    folds = cross_val_score(GaussianizationDensity(n_layers=4, n_components=4, max_steps=0,
                                                   random_state=0), x, cv=2)
    assert folds.shape == (2,) and np.all(np.isfinite(folds))


def test_greedy_fit_takes_rbig_kwargs():
    """``max_steps=0`` is ``fit_rbig`` with its defaults (the tail component from
    K = 4) unless ``fit_kwargs["rbig_kwargs"]`` says otherwise, as for the warm start."""
    x = _raw_moons(400, 3)
    kwargs = dict(n_layers=2, n_components=4, max_steps=0, random_state=0)
    tail = GaussianizationDensity(**kwargs).fit(x)
    free = GaussianizationDensity(**kwargs, fit_kwargs={"rbig_kwargs": {
        "tail_component": False}}).fit(x)
    none = GaussianizationDensity(**kwargs, fit_kwargs={"rbig_kwargs": None}).fit(x)
    assert not np.allclose(tail.score_samples(x), free.score_samples(x))
    np.testing.assert_array_equal(tail.score_samples(x), none.score_samples(x))
    # What the estimator sets itself is set there, as for fit_gaussianization_flow's
    # rbig_kwargs: a repeat of the same value is allowed, another value is an error
    same = GaussianizationDensity(**kwargs, fit_kwargs={"rbig_kwargs": {"n_layers": 2}}).fit(x)
    np.testing.assert_array_equal(same.score_samples(x), tail.score_samples(x))
    with pytest.raises(ValueError, match=r"fit_kwargs\['rbig_kwargs'\] sets n_layers=1 but the "
                                         r"estimator's n_layers is 2; set the estimator's"):
        GaussianizationDensity(**kwargs, fit_kwargs={"rbig_kwargs": {"n_layers": 1}}).fit(x)
    with pytest.raises(ValueError, match=r"fit_kwargs sets \['seed', 'steps'\], which the "
                                         r"estimator sets itself; use its own parameters "
                                         r"\(max_steps, random_state\)"):
        GaussianizationDensity(fit_kwargs={"steps": 5, "seed": 0}).fit(x)
    with pytest.raises(ValueError, match=r"fit_kwargs sets \['verbose'\].*\(verbose\)"):
        GaussianizationDensity(fit_kwargs={"verbose": 1}).fit(x)
    # A key fit_gaussianization_flow lacks (a typo) or keeps private is named, with what is
    # taken (it was a TypeError from inside the fit, or for "_warn_tied", "multiple values")
    for key in ("patiance", "_warn_tied"):
        with pytest.raises(ValueError, match=rf"fit_kwargs has \['{key}'\], which "
                                             r"fit_gaussianization_flow does not take.*'patience'"):
            GaussianizationDensity(fit_kwargs={key: 5}).fit(x)


def test_tiny_discrete_and_constant_data():
    rng = np.random.default_rng(0)
    tiny = rng.normal(size=(10, 2))
    # 10 % of a dozen rows is one: two are held out to choose the fit (with none,
    # the trained flow fitted 12 Gaussian rows exactly: held-out mean log-likelihood
    # -473 after 200 steps, -2e4 after the default length; the truth is -2.84)
    with pytest.warns(UserWarning, match=r"validation_fraction=0.1 of 10 rows holds out 1; 2 "
                                         r"rows are held out instead"):
        est = GaussianizationDensity(n_layers=2, n_components=4, max_steps=0).fit(tiny)
    assert est.validation_rows_ == 2
    with pytest.warns(UserWarning, match="validation_fraction=0.1 of 12 rows"):
        est = GaussianizationDensity(max_steps=300, random_state=0).fit(
            np.random.default_rng(12).normal(size=(12, 2)))
    truth = -np.log(2 * np.pi) - 1.0  # mean log-density of N(0, I) in 2-D
    assert truth - 2.0 < est.score(rng.normal(size=(2000, 2))) < truth + 0.5
    with pytest.warns(UserWarning, match="5 rows are too few to hold any out"):
        est = GaussianizationDensity(n_layers=2, n_components=4, max_steps=0).fit(tiny[:5])
    assert est.validation_rows_ == 0 and est.n_layers_ == 2  # no selection
    with pytest.raises(ValueError, match=r"validation_fraction=0.95 of 10 rows leaves 0 "
                                         r"training row\(s\); at least 2 are needed"):
        GaussianizationDensity(max_steps=0, validation_fraction=0.95).fit(tiny)
    discrete = rng.integers(0, 3, size=(40, 2)).astype(float)
    est = GaussianizationDensity(n_layers=2, n_components=8, max_steps=0).fit(discrete)
    assert est.n_components_ == 8 and np.isfinite(est.score_samples(discrete)).all()
    # One coded column does not lower K for the others: the continuous column's first
    # mixture has 8 distinct locations, the binary one's 2 besides its tail component.
    mixed = np.c_[rng.normal(size=200), rng.integers(0, 2, 200)]
    est = GaussianizationDensity(n_layers=1, n_components=8, max_steps=0).fit(mixed)
    locs = est.flow_parameters_["locs"][0]
    assert [len(np.unique(np.round(row[:-1], 6))) for row in locs] == [7, 2], locs
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] of X are constant"):
        GaussianizationDensity(max_steps=0).fit(np.c_[tiny[:, 0], np.ones(10)])


def test_bad_input_gets_sklearn_errors():
    est = GaussianizationDensity(n_layers=1, n_components=2, max_steps=0)
    x = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(NotFittedError):
        est.score_samples(x)
    est.fit(x)
    with pytest.raises(ValueError, match="X has 3 features"):
        est.score_samples(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        est.score_samples(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.fit(x[:, 0])
    for bad in (-1, True, 2.5):
        with pytest.raises(ValueError, match=f"max_steps must be None.*got {bad!r}"):
            GaussianizationDensity(max_steps=bad).fit(x)
    for bad in ("x", -1.0, float("nan")):  # before: a TypeError on "x", the schedule's names
        with pytest.raises(ValueError, match=f"learning_rate must be None.*got {bad!r}"):
            GaussianizationDensity(learning_rate=bad).fit(x)


def test_dataframe_names_and_pandas_output():
    import pandas as pd  # in the test extra
    df = pd.DataFrame(_sinh_correlated(200, 3), columns=["a", "b"])
    tr = GaussianizationTransformer(n_layers=2, n_components=3, max_steps=0,
                                    random_state=0).set_output(transform="pandas")
    z = tr.fit_transform(df)
    assert tr.feature_names_in_.tolist() == ["a", "b"]
    assert list(z.columns) == ["gaussianizationtransformer0", "gaussianizationtransformer1"]
    np.testing.assert_allclose(tr.inverse_transform(z), df.to_numpy(), rtol=1e-6, atol=1e-6)


def test_fitted_estimator_exports_a_saved_model(tmp_path):
    import tensorflow as tf  # noqa: PLC0415

    import tfp_gauss  # noqa: PLC0415

    x = _sinh_correlated(300, 3) * [2.0, 0.5] + [10.0, -3.0]  # data units, not standardized
    est = GaussianizationDensity(n_layers=2, n_components=4, max_steps=0, random_state=0).fit(x)
    unfitted = "got GaussianizationDensity \\(a tfp_gauss.sklearn estimator must be fitted first"
    with pytest.raises(TypeError, match=unfitted):
        tfp_gauss.export_saved_model(GaussianizationDensity(), str(tmp_path / "unfitted"))
    with pytest.raises(ValueError, match="exports its own standardization"):
        tfp_gauss.export_saved_model(est, str(tmp_path / "s"), shift=np.zeros(2))
    served = tf.saved_model.load(tfp_gauss.export_saved_model(est, str(tmp_path / "est")))
    lp = served.signatures["log_prob"](x=tf.constant(x[:50]))["log_prob"].numpy()
    np.testing.assert_allclose(lp, est.score_samples(x[:50]), rtol=1e-10, atol=1e-9)
    # the transformer's z, fitted with the same settings, is the served Gaussianization
    gauss = GaussianizationTransformer(n_layers=2, n_components=4, max_steps=0,
                                       random_state=0).fit(x)
    z = served.signatures["gaussianize"](x=tf.constant(x[:50]))["z"].numpy()
    np.testing.assert_allclose(z, gauss.transform(x[:50]), rtol=1e-8, atol=1e-8)
    back = served.signatures["generate"](z=tf.constant(z))["x"].numpy()
    np.testing.assert_allclose(back, x[:50], rtol=1e-8, atol=1e-8)
