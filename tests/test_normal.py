"""Log-space normal CDF and inverse against scipy's float64 implementations."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from helpers import rel_err
from tfp_gauss.math import normal


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-14), (np.float32, 1e-6)])
def test_log_ndtr_pair_matches_scipy(dtype, tol):
    u = np.linspace(-38, 38, 40001).astype(dtype)
    log_cdf, log_sf, log_h, log_h_neg = (t.numpy() for t in normal.log_ndtr_pair(tf.constant(u)))
    u64 = u.astype(np.float64)
    assert rel_err(log_cdf, special.log_ndtr(u64)).max() <= tol
    assert rel_err(log_sf, special.log_ndtr(-u64)).max() <= tol
    # hazard phi/Phi, from an independent log-space formula
    log_phi = -0.5 * u64**2 - 0.5 * np.log(2 * np.pi)
    assert rel_err(log_h, log_phi - special.log_ndtr(u64)).max() <= 10 * tol
    assert rel_err(log_h_neg, log_phi - special.log_ndtr(-u64)).max() <= 10 * tol


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("dtype,tol,lowest", [(np.float64, 1e-12, -1e12), (np.float32, 5e-7, -1e10)])
def test_ndtri_exp_lower_matches_scipy_far_beyond_exp_range(dtype, tol, lowest, jit):
    y = -np.concatenate([np.linspace(np.log(2), 60, 5001),
                         np.logspace(1.8, np.log10(-lowest), 2000)]).astype(dtype)
    fn = tf.function(normal.ndtri_exp_lower, jit_compile=True) if jit else normal.ndtri_exp_lower
    t = fn(tf.constant(y)).numpy()
    ref = special.ndtri_exp(y.astype(np.float64))
    assert np.isfinite(t).all()
    assert rel_err(t, ref).max() <= tol
    assert np.all(np.diff(t) <= 0)  # y decreasing -> t non-increasing


def test_ndtri_exp_lower_gradient_is_closed_form():
    y = tf.constant(np.array([-0.7, -3.0, -50.0, -800.0, -1e5]))
    with tf.GradientTape() as tape:
        tape.watch(y)
        t = normal.ndtri_exp_lower(y)
    grad = tape.gradient(t, y).numpy()
    # dt/dy = Phi(t) / phi(t) = exp(log_ndtr(t) - log phi(t))
    t64 = t.numpy()
    expected = np.exp(special.log_ndtr(t64) + 0.5 * t64**2 + 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(grad, expected, rtol=1e-10)


def test_ndtri_exp_lower_of_minus_infinity():
    assert normal.ndtri_exp_lower(tf.constant([-np.inf])).numpy()[0] == -np.inf
