"""Greedy RBIG into the flow's own layers, and the RBIG warm start."""

import numpy as np
import pytest
import tensorflow as tf

import tfp_gauss
from helpers import flow_log_prob_reference
from tfp_gauss import flows
from tfp_gauss.keras import GaussianizationFlowModel


# The reference notebook's recipe: all 8 layers on all rows, scales floored at
# 1e-3 std only (no held-out selection, no bandwidth floor).
REFERENCE = dict(validation_split=0, bandwidth_factor=0)


@pytest.fixture(scope="module")
def rbig_moons(moons):
    return tfp_gauss.fit_rbig(moons, n_layers=8, n_components=8, random_state=0, **REFERENCE)


def test_quality_on_two_moons_and_structure(moons, rbig_moons):
    lp = rbig_moons.log_prob(moons).numpy()
    assert lp.mean() >= -1.96  # reference notebook: -1.957
    layers = flows.flow_layers(rbig_moons)
    assert len(layers) == 8
    for mixture, rotation in layers:
        assert mixture.locs.shape == (2, 8) and rotation.vectors.shape == (2, 2)
    # Same numbers as an independent float64 evaluation of the same parameters.
    ref = flow_log_prob_reference(flows.flow_values(rbig_moons), moons[:500])
    np.testing.assert_allclose(lp[:500], ref, rtol=1e-4, atol=1e-4)
    info = rbig_moons.rbig_info
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
                              rotation="random", random_state=1, validation_split=0)
    assert flow.dtype == tf.float64 and len(flows.flow_layers(flow)) == 3
    early = tfp_gauss.fit_rbig(moons, n_layers=30, n_components=4, tol=0.05, random_state=0,
                               validation_split=0)
    reductions = early.rbig_info["total_correlation_reduction"]
    assert len(reductions) < 30 and reductions[-1] < 0.05 <= min(reductions[:-1])
    with pytest.raises(ValueError, match="rotation must be"):
        tfp_gauss.fit_rbig(moons, n_layers=1, rotation="ica")


def test_degenerate_data_gives_clear_errors_or_a_finite_fit(moons):
    const = moons[:200].copy()
    const[:, 1] = 3.0
    with pytest.raises(ValueError, match=r"column\(s\) \[1\].*constant"):
        tfp_gauss.fit_rbig(const)
    with pytest.raises(ValueError, match="distinct value"):
        tfp_gauss.fit_rbig(moons[:5], n_components=8, validation_split=0)
    dup = np.concatenate([moons[:300]] * 3)
    flow = tfp_gauss.fit_rbig(dup, n_layers=3, n_components=4, random_state=0,
                              validation_split=0)
    assert np.isfinite(flow.log_prob(dup).numpy()).all()
    with pytest.raises(ValueError, match="NaN"):
        tfp_gauss.fit_rbig(np.where(np.arange(200)[:, None] == 7, np.nan, moons[:200]))


def test_warm_start_model_equals_rbig_before_training(moons, rbig_moons):
    model = GaussianizationFlowModel.from_distribution(rbig_moons)
    diff = np.abs(model.log_prob(moons).numpy() - rbig_moons.log_prob(moons).numpy())
    assert diff.max() <= 1e-5


def test_fit_with_rbig_init_starts_at_the_rbig_fit(moons):
    x = moons[:1500]
    rbig_nll = -tfp_gauss.fit_rbig(x, n_layers=2, n_components=4, random_state=3,
                                   validation_split=0).log_prob(x)
    _, warm = tfp_gauss.fit_gaussianization_flow(
        x, n_layers=2, n_components=4, steps=10, batch_size=1500, init="rbig", seed=3,
        verbose=0, steps_per_epoch=1, peak_learning_rate=1e-5, validation_split=0)
    _, cold = tfp_gauss.fit_gaussianization_flow(
        x, n_layers=2, n_components=4, steps=10, batch_size=1500, init="random", seed=3,
        verbose=0, steps_per_epoch=1, peak_learning_rate=1e-5, validation_split=0)
    # the first step's loss is the NLL at initialisation (full batch)
    np.testing.assert_allclose(warm.history["loss"][0], float(np.mean(rbig_nll)), rtol=1e-4)
    assert warm.history["loss"][0] < cold.history["loss"][0]
