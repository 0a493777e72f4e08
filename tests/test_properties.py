"""Property-based tests: random mixtures and inputs, float32 and float64."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers import householder_reference, mixture_reference, rel_err
from tfp_gauss.bijectors import HouseholderRotation, MixtureGaussianCDF

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


# ------------------------------------------------ shapes, dtypes, both bijectors

batch_shapes = st.sampled_from([(), (2,), (2, 1)])


@st.composite
def mixture_with_input(draw):
    """A mixture with parameters ``batch + [D, K]`` (or ``[K]``) and x ``[N, *batch, D]``."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    batch = draw(batch_shapes)
    member_shape = batch + (draw(st.integers(1, 3)),) if draw(st.booleans()) or batch else ()
    shape = member_shape + (draw(st.integers(1, 4)),)
    logits = draw(hnp.arrays(np.float64, shape, elements=st.floats(-5, 5, **finite)))
    locs = draw(hnp.arrays(np.float64, shape, elements=st.floats(-10, 10, **finite)))
    log_scales = draw(hnp.arrays(np.float64, shape, elements=st.floats(-2, 2, **finite)))
    x_shape = (draw(st.integers(1, 5)),) + (member_shape or (1,))
    x = draw(hnp.arrays(np.float64, x_shape, elements=st.floats(-20, 20, **finite)))
    params = tuple(p.astype(dtype) for p in (logits, locs, np.exp(log_scales)))
    return dtype, params, x.astype(dtype)


@given(mixture_with_input())
@settings(max_examples=15)
def test_mixture_any_shape_matches_the_reference_and_inverts(case):
    # Measured over 200 random examples: 1.2e-6 (float32), 1.2e-10 (float64;
    # the worst draws, typically 1e-14).
    dtype, params, x = case
    b = MixtureGaussianCDF(*params)
    z, ld = b.forward(x).numpy(), b.forward_log_det_jacobian(x).numpy()
    z_ref, ld_ref = mixture_reference(x, *params)
    assert z.shape == z_ref.shape and z.dtype == dtype
    tol = 2e-5 if dtype == np.float32 else 1e-9
    assert rel_err(z, z_ref).max() <= tol and rel_err(ld, ld_ref).max() <= tol
    z_back = b.forward(b.inverse(z).numpy()).numpy()
    x_back = b.inverse(z).numpy()
    ulp_x = np.spacing(np.abs(x_back).astype(dtype)).astype(np.float64)
    slope = np.exp(b.forward_log_det_jacobian(x_back).numpy().astype(np.float64))
    assert np.all(np.abs(z_back - z) <= tol * np.maximum(1, np.abs(z)) + 8 * ulp_x * slope)


@st.composite
def rotation_with_input(draw):
    """Vectors ``batch + [M, D]`` (M may be 0) and x ``[N, *batch, D]``."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    batch = draw(batch_shapes)
    m, d = draw(st.integers(0, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    vectors = rng.standard_normal(batch + (m, d))
    x = 3.0 * rng.standard_normal((draw(st.integers(1, 5)),) + batch + (d,))
    return dtype, vectors.astype(dtype), x.astype(dtype)


@given(rotation_with_input())
@settings(max_examples=15)
def test_rotation_any_shape_matches_the_reference_and_inverts(case):
    # Measured over 200 random examples: 2.6e-6 (float32), 4.8e-15 (float64).
    dtype, vectors, x = case
    rot = HouseholderRotation(vectors)
    q = np.empty(vectors.shape[:-2] + (x.shape[-1],) * 2)
    for index in np.ndindex(*vectors.shape[:-2]):
        q[index] = householder_reference(vectors[index])
    y_ref = np.einsum("...ij,...j->...i", q, x.astype(np.float64))
    y = rot.forward(x).numpy()
    tol = 3e-5 if dtype == np.float32 else 1e-13
    assert y.shape == y_ref.shape and y.dtype == dtype
    assert rel_err(y, y_ref).max() <= tol
    assert rel_err(rot.inverse(y).numpy(), x).max() <= tol
    assert np.all(rot.forward_log_det_jacobian(x, event_ndims=1).numpy() == 0)
