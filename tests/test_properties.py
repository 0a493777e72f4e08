"""Property-based tests: random mixtures and inputs, float32 and float64."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfp_gauss.bijectors import MixtureGaussianCDF

finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def mixtures(draw):
    k = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    logits = draw(hnp.arrays(np.float64, (2, k), elements=st.floats(-8, 8, **finite)))
    locs = draw(hnp.arrays(np.float64, (2, k), elements=st.floats(-50, 50, **finite)))
    log_scales = draw(hnp.arrays(np.float64, (2, k), elements=st.floats(-4, 3, **finite)))
    return dtype, MixtureGaussianCDF(logits.astype(dtype), locs.astype(dtype),
                                     np.exp(log_scales).astype(dtype))


@given(mixtures(), hnp.arrays(np.float64, (24, 2), elements=st.floats(-1e3, 1e3, **finite)))
def test_forward_finite_and_monotone(mix, x):
    dtype, b = mix
    x = np.sort(x.astype(dtype), axis=0)
    z = b.forward(x).numpy()
    ld = b.forward_log_det_jacobian(x).numpy()
    assert np.isfinite(z).all() and np.isfinite(ld).all()
    assert np.all(np.diff(z, axis=0) >= 0)


@given(mixtures(), hnp.arrays(np.float64, (24, 2), elements=st.floats(-6, 6, **finite)))
def test_round_trip_from_latent_side(mix, z):
    dtype, b = mix
    z = z.astype(dtype)
    x = b.inverse(z).numpy()
    assert np.isfinite(x).all()
    z2 = b.forward(x).numpy()
    # In float32, a sharp component can make T' huge, so the attainable z
    # accuracy is ulp(x) * T'(x); judge the round trip in x's ulps then.
    slope = np.exp(b.forward_log_det_jacobian(x).numpy().astype(np.float64))
    tol = (1e-9 if dtype == np.float64 else 2e-5) * np.maximum(1, np.abs(z))
    ulp_x = np.spacing(np.abs(x).astype(dtype)).astype(np.float64)
    assert np.all(np.abs(z2 - z) <= tol + 8 * ulp_x * slope)
