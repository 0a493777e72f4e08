"""tfp_gauss.information: closed-form Gaussian truths, invariances, inputs and errors.

Tolerances are about three times the largest error measured over four seeds
at these sizes (N = 2000, D = 3): entropy 0.02, TC 0.013, MI 0.019 and KL
0.042 nats for ``method="rbig"``; entropy 0.09 and KL 0.083 for ``method="flow"``.
"""

import numpy as np
import pandas as pd
import pytest

import tfp_gauss
from tfp_gauss import information

R = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]])
TRUE_H = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * R)[1]
TRUE_TC = -0.5 * np.linalg.slogdet(R)[1]
TRUE_MI = 0.5 * (np.linalg.slogdet(R[1:, 1:])[1] - np.linalg.slogdet(R)[1])  # x_0 ; x_1:


@pytest.fixture(scope="module")
def gauss():
    return np.random.default_rng(0).multivariate_normal(np.zeros(3), R, size=2000)


@pytest.fixture(scope="module")
def entropy_details(gauss):
    return information.entropy(gauss, return_details=True)


@pytest.fixture(scope="module")
def mi_details(gauss):
    return information.mutual_information(gauss[:, 0], gauss[:, 1:], return_details=True)


def test_entropy_and_total_correlation_match_the_gaussian_truth(entropy_details):
    est = entropy_details
    assert isinstance(est, information.InformationEstimate)
    assert abs(est.value - TRUE_H) < 0.06
    assert abs(est.parts["total_correlation"] - TRUE_TC) < 0.04
    assert est.method == "rbig" and est.n_rows == 2000 and est.n_layers == len(est.trace) >= 1
    assert 0 < est.standard_error < 0.2


def test_the_trace_is_the_total_correlation_removed_layer_by_layer(gauss, entropy_details):
    tc = information.total_correlation(gauss, return_details=True)
    assert tc.trace == entropy_details.trace
    np.testing.assert_allclose(sum(tc.trace), tc.value, atol=1e-9)
    # A Gaussian needs one rotation: the first layer removes nearly all of it.
    assert abs(tc.trace[0] - TRUE_TC) < 0.04 and all(abs(t) < 0.03 for t in tc.trace[1:])
    np.testing.assert_allclose(entropy_details.value,
                               entropy_details.parts["marginal_entropies"] - tc.value)


def test_a_float_by_default_and_float_of_details(gauss, entropy_details):
    value = information.entropy(gauss)
    assert type(value) is float
    assert value == entropy_details.value == float(entropy_details)


def test_total_correlation_is_invariant_to_monotone_maps_of_each_column(gauss):
    mapped = np.column_stack([np.exp(gauss[:, 0]), np.sinh(gauss[:, 1]), np.tanh(gauss[:, 2])])
    plain = information.total_correlation(gauss)
    assert information.total_correlation(mapped) == pytest.approx(plain, abs=1e-9)
    assert abs(plain - TRUE_TC) < 0.04


def test_mutual_information_between_blocks(gauss, mi_details):
    mi = mi_details
    assert abs(mi.value - TRUE_MI) < 0.06
    mapped = information.mutual_information(np.exp(gauss[:, 0]), np.sinh(gauss[:, 1:]))
    assert mapped == pytest.approx(mi.value, abs=1e-9)


def test_kl_divergence_between_gaussians(gauss):
    rng = np.random.default_rng(1)
    y = rng.multivariate_normal(np.zeros(3), R, size=2000)
    shift = np.full(3, 0.5)
    truth = 0.5 * shift @ np.linalg.solve(R, shift)
    # The default, the plug-in, averages over 200 held-out rows: four seeds
    # gave errors up to 0.083; the rbig estimate up to 0.042.
    kl = information.kl_divergence(gauss + shift, y, return_details=True)
    assert kl.method == "flow" and abs(kl.value - truth) < 0.2
    assert abs(information.kl_divergence(gauss + shift, y, method="rbig") - truth) < 0.12
    # KL(p || p) from two samples of one distribution is about zero.
    assert abs(information.kl_divergence(gauss, y)) < 0.15


def test_flow_plug_in(gauss):
    est = information.entropy(gauss, method="flow", return_details=True)
    assert est.method == "flow" and est.parts["held_out_rows"] == 200
    assert abs(est.value - TRUE_H) < 0.25 and 0 < est.standard_error < 0.3


def test_dataframe_input_equals_array_input(gauss, entropy_details, mi_details):
    frame = pd.DataFrame(gauss, columns=["a", "b", "c"])
    assert information.entropy(frame) == entropy_details.value
    assert information.mutual_information(frame["a"], frame[["b", "c"]]) == mi_details.value


def test_entropy_moves_with_the_units(gauss, entropy_details):
    scaled = information.entropy(gauss * [2.0, 1.0, 0.5] + 3.0)
    assert scaled == pytest.approx(entropy_details.value + np.log(2.0 * 0.5), abs=0.02)


def test_marginal_entropy_of_normal_columns():
    x = np.random.default_rng(3).normal(size=(5000, 2)) * [1.0, 3.0]
    truth = 0.5 * np.log(2 * np.pi * np.e) + np.log([1.0, 3.0])
    np.testing.assert_allclose(information.marginal_entropy(x), truth, atol=0.03)


def test_a_list_of_numbers_is_one_column(gauss):
    # (it was refused: "must have rank 2 ... pass x[:, None]", which a list cannot do)
    column = gauss[:, 0]
    assert information.entropy(column.tolist()) == information.entropy(column[:, None])
    assert (information.mutual_information(column.tolist(), tuple(gauss[:, 1]))
            == information.mutual_information(column, gauss[:, 1]))


def test_one_column_has_no_total_correlation(gauss):
    """TC of one column is 0 by definition (it was estimated, -0.026, and the
    entropy took that error on); its entropy is the column's marginal entropy."""
    column = gauss[:, :1]
    tc = information.total_correlation(column, return_details=True)
    assert tc.value == 0.0 and tc.standard_error == 0.0 and tc.n_layers == 0
    h = information.entropy(column, return_details=True)
    assert h.value == information.marginal_entropy(column)[0]
    assert abs(h.value - 0.5 * np.log(2 * np.pi * np.e)) < 0.05 and 0 < h.standard_error < 0.05
    flow_tc = information.total_correlation(column, method="flow", return_details=True)
    assert flow_tc.value == 0.0 and flow_tc.standard_error == 0.0
    with pytest.raises(TypeError, match=r"fit_rbig takes no argument\(s\) \['bogus'\]"):
        information.entropy(column, fit_kwargs=dict(bogus=1))  # (as with two columns)
    # KL of one column: the marginal divergence, with a standard error from it
    kl = information.kl_divergence(column + 0.5, gauss[:1000, 1:2], method="rbig",
                                   return_details=True)
    assert abs(kl.value - 0.125) < 0.06 and 0 < kl.standard_error < 0.05 and kl.n_layers >= 1


def test_rows_with_nan_are_an_error(gauss):
    bad = gauss.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity.*first rows \\[5\\]"):
        information.entropy(bad)
    with pytest.raises(ValueError, match="`y` has 1 of 2000 rows holding NaN"):
        information.mutual_information(gauss[:, 0], bad[:, 1])


def test_too_few_rows_for_the_dimension_is_an_error():
    x = np.random.default_rng(0).normal(size=(150, 20))
    with pytest.raises(ValueError, match="150 rows for 20 dimension.*at least 200"):
        information.total_correlation(x)
    with pytest.raises(ValueError, match="at least 100"):
        information.entropy(x[:50, :2])


def test_other_bad_inputs(gauss):
    with pytest.raises(ValueError, match="constant"):
        information.entropy(np.column_stack([gauss, np.ones(len(gauss))]))
    with pytest.raises(ValueError, match="same number of rows"):
        information.mutual_information(gauss[:, 0], gauss[:1000, 1])
    with pytest.raises(ValueError, match="same columns"):
        information.kl_divergence(gauss, gauss[:, :2])
    with pytest.raises(ValueError, match="method must be one of"):
        information.entropy(gauss, method="knn")
    with pytest.raises(ValueError, match="rank 2"):
        information.entropy(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="leaves none"):
        information.entropy(gauss, method="flow", fit_kwargs=dict(validation_split=0))
    with pytest.raises(ValueError, match="validation_data is not accepted"):
        information.entropy(gauss, fit_kwargs=dict(validation_data=gauss))


def test_the_module_is_exported_without_rebinding_star_import_names():
    assert tfp_gauss.information is information
    namespace = {}
    exec("from tfp_gauss import *", namespace)  # noqa: S102
    assert "entropy" not in namespace and namespace["information"] is information


def test_columns_of_a_few_values_are_an_error():
    # A binary column independent of a normal one: treated as continuous it gave a mutual
    # information of ~7 nats (truth 0); it is an error that says how to dequantize.
    rng = np.random.default_rng(0)
    x, coded = rng.normal(size=1000), rng.integers(0, 2, 1000).astype(float)
    with pytest.raises(ValueError, match=r"`y`: column\(s\) 0 \(2\) .* fewer than 8 distinct "
                                         r"values.*Dequantize it"):
        information.mutual_information(x, coded)
    with pytest.raises(ValueError, match=r"`x`: column\(s\) 1 \(2\)"):
        information.total_correlation(np.c_[x, coded])
    dequantized = coded + rng.uniform(-0.5, 0.5, 1000)
    assert abs(information.mutual_information(x, dequantized)) < 0.1  # measured -0.007


def test_dependent_columns_have_infinite_information_and_are_an_error():
    # Before: mutual_information(x, x) returned 19.8 nats; then a linear or monotone
    # relation surfaced as an error from fit_rbig, which the user never called.
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    cases = [(lambda: information.mutual_information(x, 2 * x + 1),
              r"mutual_information: a combination of y's columns is one of x's \(columns 0, 1 "
              r"of \[x, y\]\)"),
             (lambda: information.total_correlation(np.c_[x, rng.normal(size=500), x]),
              r"`x`: columns 0, 2 are linearly dependent"),
             (lambda: information.mutual_information(x, np.exp(x)),
              r"information: columns 0, 1 \(of \[x, y\] for mutual_information\) are monotone "
              r"functions of one another")]
    for call, match in cases:
        with pytest.raises(ValueError, match=match + r".* \(Python indices; .*degenerate.*"
                                                     r"entropy is -inf.*\+inf"):
            call()
    # a noisy monotone relation is finite information
    assert np.isfinite(information.mutual_information(x, np.exp(x) + 0.1 * rng.normal(size=500)))
