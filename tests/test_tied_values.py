"""Fitting data with repeated values (rounded, counts, categories) warns once, clearly."""

import json
import warnings

import numpy as np
import pytest

import tfp_gauss
from tfp_gauss import _validation, cli


def _tied_data(n=400, seed=0):
    """Columns with known distinct counts: 10, n, n / 2 (tied) and n / 2 + 1 (not tied)."""
    rng = np.random.default_rng(seed)
    half = rng.permutation(np.repeat(rng.normal(size=n // 2), 2))         # n/2 values, twice each
    values = rng.normal(size=n // 2 + 1)
    almost = rng.permutation(np.r_[values, values[:n // 2 - 1]])           # n/2 + 1 values
    return np.c_[rng.integers(0, 10, n), rng.normal(size=n), half, almost]


def test_tied_columns_are_those_with_at_most_half_as_many_distinct_values_as_rows():
    x = _tied_data()
    counts = [len(set(col.tolist())) for col in x.T]  # counted independently of np.unique
    assert counts == [10, 400, 200, 201]
    columns, distinct, _ = _validation.tied_columns(x)
    assert columns.tolist() == [0, 2] and distinct.tolist() == [10, 200]
    assert _validation.tied_values_message(x[:, [1, 3]]) is None
    # a constant column is an error of its own, not a warning
    assert _validation.tied_columns(np.c_[np.ones(400), x])[0].tolist() == [1, 3]
    # a point mass among continuous values: 20 (5 %) zeros are tied, 19 are not
    rng = np.random.default_rng(1)
    inflated = np.c_[np.r_[np.zeros(20), rng.normal(size=380)],
                     np.r_[np.zeros(19), rng.normal(size=381)]]
    columns, distinct, share = _validation.tied_columns(inflated)
    assert columns.tolist() == [0] and distinct.tolist() == [381] and share.tolist() == [0.05]
    assert "0 (381; 5% of rows one value)" in _validation.tied_values_message(inflated)


def _tied_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fn(*args, **kwargs)  # the caller's line a warning should point at (_CALL_LINE)
    return [w for w in seen if issubclass(w.category, tfp_gauss.TiedValuesWarning)]


_CALL_LINE = next(i + 1 for i, line in enumerate(open(__file__).read().splitlines())
                  if line.strip().startswith("fn(*args, **kwargs)  # the caller's line"))


@pytest.mark.parametrize("fit", ["fit_rbig", "fit_gaussianization_flow"])
def test_fitting_tied_data_warns_once_and_continuous_data_not_at_all(fit, moons):
    kwargs = (dict(n_layers=1, n_components=2, seed=0) if fit == "fit_rbig" else
              dict(n_layers=1, n_components=2, steps=2, seed=0, verbose=0,
                   architecture="marginal", scale_floor=0, jit_compile=False))
    fn = getattr(tfp_gauss, fit)
    seen = _tied_warnings(fn, _tied_data().astype(np.float32), **kwargs)
    # once: fit_gaussianization_flow's own greedy start does not repeat it
    assert len(seen) == 1
    message = str(seen[0].message)
    assert ("`x` has 2 column(s) of repeated values among its 400 rows: 0 (10), 2 (200) "
            "(Python indices; distinct values in brackets)") in message
    assert "dequantize first" in message
    assert seen[0].filename == __file__  # it points at the caller's line
    assert _tied_warnings(fn, moons[:400], **kwargs) == []


def test_cli_says_it_in_its_own_terms(tmp_path, capsys, monkeypatch):
    data = tmp_path / "counts.csv"
    np.savetxt(data, _tied_data(), delimiter=",", header="a,b,c,d", comments="")
    calls = []

    def fit_stub(x, _warn_tied=True, **kwargs):  # stop at the fit: no training needed
        calls.append(_warn_tied)
        raise RuntimeError("stop at the fit")

    monkeypatch.setattr(tfp_gauss, "fit_gaussianization_flow", fit_stub)
    with pytest.raises(RuntimeError, match="stop at the fit"):
        cli.main(["fit", str(data), "--out", str(tmp_path / "run"), "--steps", "5",
                  "--layers", "1", "--components", "2", "--verbose", "0",
                  "--validation-split", "0"])
    err = capsys.readouterr().err
    assert (f"tfp-gauss: warning: `{data}` has 2 column(s) of repeated values among its 400 "
            "rows: 1 (10), 3 (200) (numbered from 1;") in err
    # ... and the library's own warning (Python indices) is not given as well
    assert calls == [False]


def test_estimators_and_information_name_the_users_own_input():
    from tfp_gauss import information
    from tfp_gauss.sklearn import GaussianizationDensity, GaussianizationTransformer

    x = _tied_data()
    for estimator in (GaussianizationDensity, GaussianizationTransformer):
        seen = _tied_warnings(estimator(max_steps=0, n_layers=1, n_components=2,
                                        random_state=0).fit, x)
        assert len(seen) == 1 and seen[0].filename == __file__
        assert "`X` has 2 column(s) of repeated values among its 400 rows: 0 (10), 2 (200)" in str(
            seen[0].message)  # all of X, not the rows left after the held-out split
    # information: once per tied input, under its own name, with what ties do to entropy
    continuous = np.random.default_rng(3).normal(size=(400, 2))
    seen = _tied_warnings(information.mutual_information, continuous, x[:, :2],
                          fit_kwargs=dict(n_layers=2))
    assert len(seen) == 1 and seen[0].filename == __file__
    message = str(seen[0].message)
    assert "`y` has 1 column(s) of repeated values among its 400 rows: 0 (10)" in message
    assert "no differential entropy" in message


def test_plain_keras_fit_and_from_data_warn_about_arrays():
    from tfp_gauss.bijectors import MixtureGaussianCDF
    from tfp_gauss.keras import GaussianizationFlowModel

    x = _tied_data().astype(np.float32)
    seen = _tied_warnings(MixtureGaussianCDF.from_data, x, n_components=2, max_iterations=5)
    assert len(seen) == 1 and (seen[0].filename, seen[0].lineno) == (__file__, _CALL_LINE)
    assert "`x` has 2 column(s) of repeated values among its 400 rows: 0 (10), 2 (200)" in str(
        seen[0].message)
    assert _tied_warnings(MixtureGaussianCDF.from_data, x[:, [1, 3]], n_components=2,
                          max_iterations=5) == []
    model = GaussianizationFlowModel(4, n_layers=1, n_components=2, seed=0)
    model.compile(optimizer="adam", jit_compile=False)
    seen = _tied_warnings(model.fit, x, batch_size=400, epochs=1, verbose=0)
    assert len(seen) == 1 and (seen[0].filename, seen[0].lineno) == (__file__, _CALL_LINE)
    assert "0 (10), 2 (200)" in str(seen[0].message)
    # continuous columns, and a dataset (not read ahead), do not warn
    assert _tied_warnings(model.fit, x[:, [1, 3, 1, 3]], batch_size=400, epochs=1,
                          verbose=0) == []
    import tensorflow as tf  # noqa: PLC0415

    dataset = tf.data.Dataset.from_tensor_slices(x).batch(400)
    assert _tied_warnings(model.fit, dataset, epochs=1, verbose=0) == []


def test_ties_made_by_the_float32_cast_are_named_as_such():
    # Continuous float64 values near 1e6 (spread 1) are distinct; float32 spaces
    # its numbers 2**-4 = 0.0625 apart there, so the cast ties them (~100 values).
    rng = np.random.default_rng(0)
    x64 = 1e6 + rng.normal(size=(3000, 2))
    assert _validation.tied_values_message(x64) is None
    x32 = x64.astype(np.float32)
    assert np.unique(x32[:, 0]).size < 200
    assert _validation.resolution_limited_columns(x32) == [0, 1]
    message = _validation.tied_values_message(x32, float32_fix="do this")
    assert message.startswith("`x`: column(s) 0, 1 (Python indices) may repeat values because "
                              "float32 cannot tell them apart")
    assert "float32 numbers are 0.0625 apart" in message and "do this, or centre" in message
    # Rounded data (a 0.5 grid), the same with one value of 1e7 (where float32
    # numbers are 1 apart, but not where the rounded values are), and a point
    # mass among continuous float32 values keep the dequantization advice only.
    rounded = (np.round(rng.normal(size=(3000, 1)) * 2) / 2).astype(np.float32)
    outlier = rounded.copy()
    outlier[0] = 1e7
    inflated = np.r_[np.zeros(5000), rng.normal(size=45_000)][:, None].astype(np.float32)
    for x in (rounded, outlier, inflated):
        assert _validation.resolution_limited_columns(x) == []
        message = _validation.tied_values_message(x)
        assert "dequantize first" in message and "cannot tell them apart" not in message
    # Integers: float32 holds them exactly below 2**24; near 5e6 its spacing is 0.5
    # (not the grid), near 1e8 it is 8 (it merges them). float64 data on float64's
    # own grid get no float32 advice.
    counts = np.round(5e6 + 100 * rng.normal(size=(3000, 1))).astype(np.float32)
    assert _validation.resolution_limited_columns(counts) == []
    big = np.round(1e8 + 100 * rng.normal(size=(3000, 1)))
    assert _validation.resolution_limited_columns(big.astype(np.float32)) == [0]
    assert _validation.resolution_limited_columns(big) == []
    grid64 = (1.0 + np.spacing(1.0) * rng.integers(0, 50, size=(3000, 1)))
    assert _validation.resolution_limited_columns(grid64) == [0]
    message = _validation.tied_values_message(grid64)
    assert "the data were float64 before tfp_gauss saw them" in message
    # Each entry point says what its own user can do (the one-call fit: an
    # impossible split then stops it before any training).
    with pytest.warns(tfp_gauss.TiedValuesWarning, match="pass dtype='float64', or centre"):
        with pytest.raises(ValueError, match="validation_split"):
            tfp_gauss.fit_gaussianization_flow(x64, validation_split=0.9999, verbose=0)
    with pytest.warns(tfp_gauss.TiedValuesWarning, match="pass the data as float64, or centre"):
        tfp_gauss.fit_rbig(big.astype(np.int64), n_layers=1, n_components=2,
                           validation_split=0)  # (integers become float32)
    # Data that were float32 before any call: no fix of the call's own.
    with pytest.warns(tfp_gauss.TiedValuesWarning, match="the data were float32 before"):
        with pytest.raises(ValueError, match="validation_split"):
            tfp_gauss.fit_gaussianization_flow(x32, validation_split=0.9999, verbose=0)
    model = tfp_gauss.keras.GaussianizationFlowModel(2, n_layers=1, n_components=2)
    with pytest.warns(tfp_gauss.TiedValuesWarning, match="build the model with dtype='float64'"):
        with pytest.raises(ValueError, match=r"must call `compile\(\)`"):  # (no step runs)
            model.fit(x64, verbose=0)


def test_columns_lost_in_the_float32_cast_are_clear_errors():
    # Spread ~0.5 near 1e8, where float32 numbers are 8 apart: the cast makes column 0
    # one value (column 1, spread ~100, still varies). Before, the fit failed in EM
    # with "have only 1 distinct value(s) ... drop constant columns".
    rng = np.random.default_rng(0)
    x64 = 1e8 + rng.normal(size=(300, 2)) * [0.5, 100.0]
    assert np.ptp(x64[:, 0]) > 2 and np.ptp(x64[:, 0].astype(np.float32)) == 0
    constant = (r"`x`: column\(s\) \[0\] \(Python indices\) vary, but are constant once cast "
                r"to float32: column 0's values span \d\.\d+ near 1e\+08, where float32 numbers "
                r"are 8 apart; to keep them, ")
    with pytest.raises(ValueError, match=constant + "pass dtype='float64', or centre"):
        tfp_gauss.fit_gaussianization_flow(x64, verbose=0)
    model = tfp_gauss.keras.GaussianizationFlowModel(2, n_layers=1, n_components=2)
    with pytest.raises(ValueError, match=constant + "build the model with dtype='float64'"):
        model.fit(x64, verbose=0)
    # Integers become float32 in fit_rbig: 1e8 + {0, 1, 2} is one float32 value.
    counts = 10**8 + rng.integers(0, 3, size=(300, 2)) * np.array([1, 1000])
    with pytest.raises(ValueError, match=r"column\(s\) \[0\].*pass the data as float64"):
        tfp_gauss.fit_rbig(counts, n_layers=1, n_components=2, validation_split=0)
    # Kept: float64 itself, and scoring (a few rows may share a float32 value).
    assert np.array_equal(_validation.check_data(x64, dtype=np.float64), x64)
    scored = _validation.check_data(x64[:3], dtype=np.float32, purpose="scoring")
    assert scored.dtype == np.float32 and np.ptp(scored[:, 0]) == 0
    # Finite values beyond float32's range: an overflow, not "NaN or infinity" rows.
    huge = np.array([[1e39, 0.0], [2.0, 1.0], [3.0, 5.0]])
    overflow = (r"`x`: column\(s\) \[0\] \(Python indices\) are finite but overflow float32 "
                r"\(largest magnitude 1e\+39; float32 holds up to 3.4e\+38\)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # (NumPy's "overflow in cast" too)
        with pytest.raises(ValueError, match=overflow):
            tfp_gauss.fit_gaussianization_flow(huge, verbose=0)
    with pytest.raises(ValueError, match=overflow):
        model.log_prob(huge)
    with pytest.raises(ValueError, match="NaN or infinity"):  # infinite already: as before
        model.log_prob(np.array([[np.inf, 0.0]]))


def test_trained_fits_use_no_more_components_than_a_column_has_values(tmp_path, capsys):
    # The greedy fit keeps K for the other columns; a trained flow with more components
    # than a column has values sharpens a peak on each (mpg: a held-out row at -1,183).
    from tfp_gauss.sklearn import GaussianizationDensity  # noqa: PLC0415

    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(size=300), rng.integers(0, 3, 300)]
    with pytest.warns(tfp_gauss.TiedValuesWarning,
                      match=r"column\(s\) 1 \(3\) \(Python indices; distinct values in brackets\) "
                            "hold that many values in the training rows, fewer than "
                            "n_components=8: every layer uses 3"):
        model, _ = tfp_gauss.fit_gaussianization_flow(x, steps=5, verbose=0, _warn_tied=False)
    assert model.n_components == 3
    # n_components repeated in rbig_kwargs: the lowered K still holds (it wrote 8 back)
    with pytest.warns(tfp_gauss.TiedValuesWarning, match="every layer uses 3"):
        model, _ = tfp_gauss.fit_gaussianization_flow(
            x, steps=5, verbose=0, _warn_tied=False, rbig_kwargs={"n_components": 8})
    assert model.n_components == 3
    with pytest.warns(tfp_gauss.TiedValuesWarning, match="the trained flow uses 3 components"):
        est = GaussianizationDensity(max_steps=5, random_state=0).fit(x)
    assert est.n_components_ == 3
    # ... and through the estimator (it raised a mismatch of 8 against the lowered 3)
    with pytest.warns(tfp_gauss.TiedValuesWarning, match="the trained flow uses 3 components"):
        est = GaussianizationDensity(max_steps=5, random_state=0, fit_kwargs={
            "rbig_kwargs": {"n_components": 8}}).fit(x)
    assert est.n_components_ == 3
    assert GaussianizationDensity(max_steps=0, random_state=0).fit(x).n_components_ == 8
    path = tmp_path / "coded.csv"
    path.write_text("a,b\n" + "\n".join(f"{a!r},{b:g}" for a, b in x.tolist()) + "\n")
    assert cli.main(["fit", str(path), "--out", str(tmp_path / "run"), "--steps", "5",
                     "--layers", "1"]) == 0
    err = capsys.readouterr().err
    assert ("column(s) 2 (3) (numbered from 1; distinct values in brackets) have fewer distinct "
            "training values than --components 8: every layer uses 3 components") in err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["config"]["components"] == 3
