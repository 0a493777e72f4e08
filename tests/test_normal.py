"""Log-space normal CDF and inverse against scipy's float64 implementations."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from helpers import rel_err
from tfp_gauss.math import normal


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-14), (np.float32, 1e-6)])
def test_log_ndtr_lower_matches_scipy(dtype, tol):
    t = -np.linspace(0, 38, 20001).astype(dtype)
    log_cdf, log_h = (v.numpy() for v in normal.log_ndtr_lower(tf.constant(t)))
    t64 = t.astype(np.float64)
    assert rel_err(log_cdf, special.log_ndtr(t64)).max() <= tol
    # hazard phi/Phi, from an independent log-space formula
    log_phi = -0.5 * t64**2 - 0.5 * np.log(2 * np.pi)
    assert rel_err(log_h, log_phi - special.log_ndtr(t64)).max() <= 10 * tol


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("dtype,tol,lowest",
                         [(np.float64, 1e-12, -1e12), (np.float32, 5e-7, -1e10)])
def test_ndtri_exp_lower_matches_scipy_far_beyond_exp_range(dtype, tol, lowest, jit):
    y = -np.concatenate([np.linspace(np.log(2), 60, 5001),
                         np.logspace(1.8, np.log10(-lowest), 2000)]).astype(dtype)

    def fn(y):
        return normal.ndtri_exp_lower_value(y, return_log_hazard=True)

    t, log_h = (v.numpy() for v in (tf.function(fn, jit_compile=True) if jit else fn)(
        tf.constant(y)))
    ref = special.ndtri_exp(y.astype(np.float64))
    assert np.isfinite(t).all()
    assert rel_err(t, ref).max() <= tol
    assert np.all(np.diff(t) <= 0)  # y decreasing -> t non-increasing
    # the log hazard at the root, log phi(t) - log Phi(t) = log phi(t) - y (a
    # difference of two numbers of size |y|: judged relative to |y|)
    y64 = y.astype(np.float64)
    log_h_ref = -0.5 * ref**2 - 0.5 * np.log(2 * np.pi) - y64
    assert np.all(np.abs(log_h - log_h_ref) <= 10 * tol * np.maximum(1.0, np.abs(y64)))


def test_ndtri_exp_lower_of_minus_infinity():
    t, log_h = normal.ndtri_exp_lower_value(tf.constant([-np.inf]), return_log_hazard=True)
    assert t.numpy()[0] == -np.inf and log_h.numpy()[0] == np.inf
