"""Greedy RBIG into the flow's own layers, and the RBIG warm start."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_gauss
from helpers import flow_log_prob_reference
from tfp_gauss import _validation, flows
from tfp_gauss.keras import GaussianizationFlowModel


# The reference notebook's recipe: all 8 layers on all rows, scales floored at
# 1e-3 std only (no held-out selection, no bandwidth floor).
REFERENCE = dict(validation_split=0, bandwidth_factor=0)


@pytest.fixture(scope="module")
def rbig_moons_and_info(moons):
    return tfp_gauss.fit_rbig(moons, n_layers=8, n_components=8, seed=0, return_info=True,
                              **REFERENCE)


@pytest.fixture(scope="module")
def rbig_moons(rbig_moons_and_info):
    return rbig_moons_and_info[0]


def test_quality_on_two_moons_and_structure(moons, rbig_moons_and_info):
    rbig_moons, info = rbig_moons_and_info
    lp = rbig_moons.log_prob(moons).numpy()
    assert lp.mean() >= -1.96  # reference notebook: -1.957
    layers = flows.flow_layers(rbig_moons)
    assert len(layers) == 8
    for mixture, rotation in layers:
        assert mixture.locs.shape == (2, 8) and rotation.vectors.shape == (2, 2)
    # Same numbers as an independent float64 evaluation of the same parameters.
    ref = flow_log_prob_reference(flows.flow_values(rbig_moons), moons[:500])
    np.testing.assert_allclose(lp[:500], ref, rtol=1e-4, atol=1e-4)
    assert len(info["total_correlation_reduction"]) == 8
    assert info["total_correlation_reduction"][0] > info["total_correlation_reduction"][-1]
    s = rbig_moons.sample(2000, seed=1).numpy()
    assert np.isfinite(s).all()
    # samples look like the data: same moments to sampling error
    np.testing.assert_allclose(s.mean(0), moons.mean(0), atol=0.1)
    np.testing.assert_allclose(s.std(0), moons.std(0), atol=0.1)


def test_rotations_are_pca_of_the_gaussianized_data(moons, rbig_moons):
    mixture, rotation = flows.flow_layers(rbig_moons)[0]
    z = mixture.forward(moons).numpy()
    y = rotation.forward(z).numpy().astype(np.float64)
    cov = np.cov(y, rowvar=False)
    assert abs(cov[0, 1]) < 1e-4 * cov[0, 0]  # decorrelated
    assert cov[0, 0] >= cov[1, 1]  # largest variance first


def test_random_rotation_tolerance_and_float64(moons):
    flow = tfp_gauss.fit_rbig(moons.astype(np.float64), n_layers=3, n_components=4,
                              rotation="random", seed=1, validation_split=0)
    assert flow.dtype == tf.float64 and len(flows.flow_layers(flow)) == 3
    # Anything but float64 computes in float32, as the docstring says.
    for dtype in (np.float16, np.int64):
        small = tfp_gauss.fit_rbig((moons[:300] * 100).astype(dtype), n_layers=1,
                                   n_components=2, seed=1, validation_split=0)
        assert small.dtype == tf.float32, dtype
    early, info = tfp_gauss.fit_rbig(moons, n_layers=30, n_components=4, tol=0.05, seed=0,
                                     validation_split=0, return_info=True)
    reductions = info.total_correlation_reduction
    assert len(reductions) < 30 and reductions[-1] < 0.05 <= min(reductions[:-1])
    with pytest.raises(ValueError, match="rotation must be"):
        tfp_gauss.fit_rbig(moons, n_layers=1, rotation="ica")


def test_float64_layers_stop_em_at_the_float32_tolerance(moons):
    # Each layer's EM stops at the same relative change in either dtype (it
    # ran float64 columns to the cap: (80, 142, 71) iterations against float32's
    # (15, 36, 22) here, 2-7x the greedy fit's time), so both dtypes take the
    # same iterations and fit the same mixtures up to float32 rounding.
    fits = {}
    for dtype in (np.float32, np.float64):
        fits[dtype] = tfp_gauss.fit_rbig(moons[:600].astype(dtype), n_layers=3, seed=0,
                                         validation_split=0, return_info=True)
    (flow32, info32), (flow64, info64) = fits[np.float32], fits[np.float64]
    assert info64.em_iterations == info32.em_iterations
    assert max(info64.em_iterations) < 200  # (the cap, max_em_iterations)
    np.testing.assert_allclose(flow64.log_prob(moons[600:900].astype(np.float64)),
                               flow32.log_prob(moons[600:900]), atol=2e-3)


def test_degenerate_data_gives_clear_errors_or_a_finite_fit(moons):
    const = moons[:200].copy()
    const[:, 1] = 3.0
    with pytest.raises(ValueError, match=r"column\(s\) \[1\].*constant"):
        tfp_gauss.fit_rbig(const)
    # Fewer distinct values than components (a binary column): a finite fit.
    coded = moons[:400].copy()
    coded[:, 1] = (coded[:, 1] > 0.3).astype(coded.dtype)
    flow = tfp_gauss.fit_rbig(coded, n_layers=3, n_components=8, seed=0, validation_split=0)
    assert np.isfinite(flow.log_prob(coded).numpy()).all()
    assert np.abs(flow.bijector.inverse(flow.bijector.forward(coded)).numpy() - coded).max() < 1e-3
    dup = np.concatenate([moons[:300]] * 3)
    with pytest.warns(tfp_gauss.TiedValuesWarning, match="repeated values"):  # every row thrice
        flow = tfp_gauss.fit_rbig(dup, n_layers=3, n_components=4, seed=0,
                                  validation_split=0)
    assert np.isfinite(flow.log_prob(dup).numpy()).all()
    with pytest.raises(ValueError, match="NaN"):
        tfp_gauss.fit_rbig(np.where(np.arange(200)[:, None] == 7, np.nan, moons[:200]))


def test_warm_start_model_equals_rbig_before_training(moons, rbig_moons):
    model = GaussianizationFlowModel.from_distribution(rbig_moons)
    diff = np.abs(model.log_prob(moons).numpy() - rbig_moons.log_prob(moons).numpy())
    assert diff.max() <= 1e-5


def test_fit_with_rbig_init_starts_at_the_rbig_fit(moons):
    x = moons[:900]  # marginal layers (`auto`); the coupling warm start: test_coupling_flow
    # (the warm start's greedy fit has free components: no tail component)
    rbig_nll = -tfp_gauss.fit_rbig(x, n_layers=2, n_components=4, seed=3, validation_split=0,
                                   tail_component=False).log_prob(x)
    _, warm = tfp_gauss.fit_gaussianization_flow(
        x, n_layers=2, n_components=4, steps=10, batch_size=900, init="rbig", seed=3,
        verbose=0, steps_per_epoch=1, peak_learning_rate=1e-5, validation_split=0)
    _, cold = tfp_gauss.fit_gaussianization_flow(
        x, n_layers=2, n_components=4, steps=10, batch_size=900, init="random", seed=3,
        verbose=0, steps_per_epoch=1, peak_learning_rate=1e-5, validation_split=0)
    # the first step's loss is the NLL at initialisation (full batch)
    np.testing.assert_allclose(warm.history["loss"][0], float(np.mean(rbig_nll)), rtol=1e-4)
    assert warm.history["loss"][0] < cold.history["loss"][0]


def test_one_seed_convention_reproducible_by_default_and_random_state_deprecated(moons):
    x = moons[:400]
    kwargs = dict(n_layers=2, n_components=3)

    def params(flow):
        return np.concatenate([np.ravel(v) for layer in flows.flow_values(flow)
                               for v in layer.values()])

    default = params(tfp_gauss.fit_rbig(x, **kwargs))
    np.testing.assert_array_equal(default, params(tfp_gauss.fit_rbig(x, **kwargs)))
    np.testing.assert_array_equal(default, params(tfp_gauss.fit_rbig(x, seed=0, **kwargs)))
    other = params(tfp_gauss.fit_rbig(x, seed=1, **kwargs))
    assert not np.array_equal(default, other)
    with pytest.warns(DeprecationWarning, match="renamed `seed`"):
        old = params(tfp_gauss.fit_rbig(x, random_state=1, **kwargs))
    np.testing.assert_array_equal(old, other)
    with pytest.raises(TypeError, match="pass `seed` only"):
        tfp_gauss.fit_rbig(x, seed=1, random_state=1, **kwargs)
    # The same convention for the trainable flow's initialisation and the data helpers.
    a, b = (flows.flow_values(tfp_gauss.gaussianization_flow(2, 2, 3)) for _ in range(2))
    np.testing.assert_array_equal(a[0]["locs"], b[0]["locs"])
    np.testing.assert_array_equal(tfp_gauss.datasets.two_moons(50),
                                  tfp_gauss.datasets.two_moons(50, seed=0))


def test_fit_info_is_returned_not_attached(moons):
    flow, info = tfp_gauss.fit_rbig(moons[:400], n_layers=6, n_components=3, seed=0,
                                    return_info=True)
    assert not hasattr(flow, "rbig_info")
    assert isinstance(info, tfp_gauss.rbig.RBIGInfo)
    assert info.best_n_layers == len(flows.flow_layers(flow)) == info["best_n_layers"]
    assert info.rotation == "pca" and len(info.validation_log_likelihood) >= info.best_n_layers
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.best_n_layers = 1


def test_flow_gaussianizer_is_the_x_to_z_map(moons):
    # log p(x) = log N(G(x); 0, I) + log|det dG/dx|, with G from the accessor.
    flow = tfp_gauss.gaussianization_flow(2, n_layers=2, n_components=3, dtype=tf.float64)
    x = moons[:20].astype(np.float64)
    g = flows.flow_gaussianizer(flow)
    z = g.forward(x).numpy()
    log_p = (-0.5 * np.sum(z**2, 1) - np.log(2 * np.pi)
             + g.forward_log_det_jacobian(x, event_ndims=1).numpy())
    np.testing.assert_allclose(log_p, flow.log_prob(x).numpy(), rtol=1e-12)
    model = tfp_gauss.keras.GaussianizationFlowModel.from_distribution(flow)
    np.testing.assert_allclose(model.gaussianizer.forward(x).numpy(), z, rtol=1e-12)
    with pytest.raises(ValueError, match="Gaussianization flow"):
        flows.flow_gaussianizer(tfp.distributions.Normal(0.0, 1.0))


def test_linearly_dependent_columns_are_a_clear_error():
    # A copy, a float32-rounded sum, a one-hot pair: the data lie on a subspace, where a
    # density on all columns is infinite (before: GaussianizationDensity scored 6.5 with
    # a copy against -4.2 without; mutual_information(x, x) gave 19.8 nats).
    from tfp_gauss.sklearn import GaussianizationDensity  # noqa: PLC0415

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    cases = [
        (lambda: tfp_gauss.fit_rbig(np.c_[x, x[:, 0]]), "fit_rbig: columns 0, 3 of x"),
        (lambda: tfp_gauss.fit_gaussianization_flow(
            np.c_[x, 3.1 * x[:, 0] + 0.7 * x[:, 1]].astype(np.float32), steps=1, verbose=0),
         "fit_gaussianization_flow: columns 0, 1, 3 of x"),
        (lambda: GaussianizationDensity(max_steps=0).fit(
            np.c_[x, x[:, 0] > 0, x[:, 0] <= 0]), "GaussianizationDensity: columns 3, 4 of X"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match + r" \(Python indices\) are linearly "
                                                     r"dependent.*Drop the redundant"):
            call()
    # thin but full rank (a residual of 1e-4 of the spread) is data, not an error
    thin = np.c_[x, x[:, 0] + 1e-4 * rng.normal(size=300)]
    assert np.linalg.matrix_rank(thin) == 4
    flow = tfp_gauss.fit_rbig(thin, n_layers=1, n_components=2, validation_split=0)
    assert np.isfinite(flow.log_prob(thin).numpy()).all()
    # ... at any width: a residual of 1e-5 passes with 64 columns (before, the threshold
    # grew with D and refused it), an exact copy does not
    wide = rng.normal(size=(2000, 63))
    assert _validation.linear_dependence(np.c_[wide, wide[:, 0] + 1e-5 * rng.normal(size=2000)]) \
        is None
    assert _validation.linear_dependence(np.c_[wide, wide[:, 5]])[0].tolist() == [5, 63]


def test_dependence_only_in_the_rows_fit_is_a_clear_error():
    # A coded column equal to another except in one row, which the held-out split sets
    # aside: before, the fit went on (per-layer held-out scores down to -1e13).
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2, 200).astype(float)
    x = np.c_[rng.normal(size=(200, 2)), b, b]
    _, val = _validation.holdout_split(x, 0.1, _validation.as_rng(0), name="t")
    row = int(np.flatnonzero((x[:, None, :] == val[None, :1, :]).all(-1))[0])
    x[row, 3] = 2.0  # the one row that makes all rows full rank, held out with seed 0
    assert _validation.linear_dependence(x) is None
    with pytest.raises(ValueError, match=r"fit_rbig: columns 2, 3 of x \(Python indices\) are "
                                         r"linearly dependent in the rows fit once the held-out "
                                         r"rows are set aside"):
        tfp_gauss.fit_rbig(x, seed=0)


def test_held_out_split_keeps_rare_values_in_the_rows_fit():
    # A column nonzero in two rows, both drawn into the held-out rows: fit_rbig said
    # "constant ... Drop them first" for a column that is not (3 of 20 seeds on
    # digits). The split now swaps such a row with a training row.
    rng = np.random.default_rng(3)
    x = np.c_[rng.normal(size=(100, 2)), np.zeros(100)]
    plain = np.random.default_rng(0).permutation(100)[:10]  # the held-out rows before
    x[plain[:2], 2] = [1.0, 2.0]
    train, val = _validation.holdout_split(x, 0.1, np.random.default_rng(0))
    assert train.shape == (90, 3) and val.shape == (10, 3)
    assert np.ptp(train, axis=0).min() > 0
    both = np.concatenate([train, val])
    np.testing.assert_array_equal(both[np.lexsort(both.T)], x[np.lexsort(x.T)])
    again = _validation.holdout_split(x, 0.1, np.random.default_rng(0))
    np.testing.assert_array_equal(again[0], train)
    flow = tfp_gauss.fit_rbig(x, n_layers=1, n_components=2, seed=0)  # (it raised)
    assert np.isfinite(flow.log_prob(x).numpy()).all()


def test_pandas_frames_are_read_as_scikit_learn_reads_them(moons):
    # np.asarray makes an object array of pandas' nullable columns (Int64,
    # Float64, boolean: what df.convert_dtypes() and read_csv(dtype_backend=
    # "numpy_nullable") give) and of a bool column beside floats; they were
    # refused as "dtype object", which the scikit-learn estimators accept.
    import pandas as pd  # noqa: PLC0415  (in the test extra)
    rows = moons[:300].astype(np.float64)
    flag = rows[:, 0] > 0
    frame = pd.DataFrame({"a": rows[:, 0], "b": rows[:, 1]}).convert_dtypes()
    frame["flag"] = flag
    assert str(frame["a"].dtype) == "Float64" and frame.to_numpy().dtype == object
    reference = np.column_stack([rows, flag.astype(np.float64)])
    np.testing.assert_array_equal(_validation.check_data(frame), reference)
    np.testing.assert_array_equal(
        _validation.check_data(frame.astype({"flag": "boolean"})), reference)
    for same in (frame.astype({"flag": object}), frame.astype({"flag": "Sparse[float64]"})):
        np.testing.assert_array_equal(_validation.check_data(same), reference)
    flow = tfp_gauss.fit_rbig(frame[["a", "b"]], n_layers=1, n_components=2, seed=0,
                              validation_split=0)
    same = tfp_gauss.fit_rbig(rows, n_layers=1, n_components=2, seed=0, validation_split=0)
    np.testing.assert_array_equal(flow.log_prob(rows), same.log_prob(rows))
    # A missing value is a NaN row, named as for numpy data; a column that is
    # not numeric is named with its dtype; a Series and one row get hints that work.
    holes = frame.astype({"flag": "Int64"})
    holes.loc[7, "flag"] = pd.NA
    with pytest.raises(ValueError, match=r"1 of 300 rows holding NaN.*columns \[2\]; first "
                                         r"rows \[7\]"):
        _validation.check_data(holes)
    for column, dtype in [(pd.Categorical(np.where(flag, "u", "v")), "category"),
                          (pd.to_datetime(np.zeros(300), unit="s"), "datetime64")]:
        with pytest.raises(ValueError, match=rf"`x` must be numeric; column 3 \('c'\) has "
                                             rf"dtype {dtype}.*Encode it as numbers"):
            tfp_gauss.fit_rbig(frame.assign(c=column))
    with pytest.raises(ValueError, match=r"got shape \(300,\)\. For a single variable, pass "
                                         r"the Series as a frame, x\.to_frame\(\)"):
        tfp_gauss.fit_rbig(frame["a"])
    with pytest.raises(ValueError, match=r"got shape \(2,\)\. For one row of the 2 columns, "
                                         r"pass x\[None, :\]"):
        GaussianizationFlowModel(2, n_layers=1, n_components=2).log_prob(rows[0])

    # Reordered validation columns were read in the wrong places (a selection on
    # the wrong variables); both fits name them
    with pytest.raises(ValueError, match=r"`validation_data` has columns \['b', 'a'\] \(the "
                                         r"same columns in another order\); x has \['a', 'b'\]"):
        tfp_gauss.fit_rbig(frame[["a", "b"]], validation_data=frame[["b", "a"]])
    with pytest.raises(ValueError, match=r"has columns \['a', 'c'\]; x has \['a', 'b'\]\. Pass"):
        tfp_gauss.fit_gaussianization_flow(frame[["a", "b"]], validation_data=frame[
            ["a", "flag"]].rename(columns={"flag": "c"}))
