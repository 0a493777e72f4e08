"""What is special to HouseholderRotation: orthogonality and from_matrix."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from helpers import householder_reference
from tfp_gauss.bijectors import HouseholderRotation


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-13), (np.float32, 1e-5)])
def test_matrix_is_orthogonal_and_log_det_zero(dtype, tol):
    v = tf.Variable(np.random.default_rng(0).standard_normal((5, 7)).astype(dtype))
    rot = HouseholderRotation(v)
    q = rot.matrix().numpy().astype(np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(7), atol=tol)
    assert np.isclose(np.linalg.det(q), (-1) ** 5)
    x = np.random.default_rng(1).standard_normal((3, 7)).astype(dtype)
    np.testing.assert_allclose(rot.forward(x).numpy(), x @ q.T, rtol=10 * tol, atol=10 * tol)
    assert rot.forward_log_det_jacobian(x, event_ndims=1).numpy() == 0.0
    assert rot.is_constant_jacobian


@pytest.mark.parametrize("d", [1, 2, 5, 16])
@pytest.mark.parametrize("det", [1, -1])
def test_from_matrix_is_exact_for_both_determinants(d, det):
    r = stats.ortho_group.rvs(d, random_state=d) if d > 1 else np.eye(1)
    if np.sign(np.linalg.det(r)) != det:
        r[0] = -r[0]
    rot = HouseholderRotation.from_matrix(r)
    assert np.abs(rot.matrix().numpy() - r).max() <= 1e-10
    m = rot.vectors.shape[0]
    assert m in (d, d - 1) and (-1) ** m == det


def test_from_matrix_special_matrices_and_padding():
    for r in (np.eye(4), -np.eye(4), np.eye(4)[[1, 0, 3, 2]], np.diag([1.0, -1.0, 1.0, -1.0])):
        rot = HouseholderRotation.from_matrix(r, n_reflections=6 if np.linalg.det(r) > 0 else 5)
        assert np.abs(rot.matrix().numpy() - r).max() <= 1e-12


def test_from_matrix_nearly_identity_is_stable():
    # A rotation by 1e-9 rad: the naive reflection vector c - e_k cancels.
    t = 1e-9
    r = np.eye(3)
    r[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    assert np.abs(HouseholderRotation.from_matrix(r).matrix().numpy() - r).max() <= 1e-15


def test_from_matrix_keeps_float32():
    r = stats.ortho_group.rvs(4, random_state=0).astype(np.float32)
    rot = HouseholderRotation.from_matrix(r)
    assert rot.dtype == tf.float32
    assert np.abs(rot.matrix().numpy() - r).max() <= 1e-5


def test_from_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        HouseholderRotation.from_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match="orthogonal.*R\\^T R - I"):
        HouseholderRotation.from_matrix(np.array([[1.0, 0.1], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="determinant"):
        HouseholderRotation.from_matrix(np.eye(3), n_reflections=3)
    with pytest.raises(ValueError, match="NaN"):
        HouseholderRotation.from_matrix(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"\[\.\.\., M, D\]"):
        HouseholderRotation(np.ones(3))


def test_gradients_compile_under_xla():
    v = tf.Variable(np.random.default_rng(0).standard_normal((3, 3)))
    rot = HouseholderRotation(v)
    x = tf.constant(np.random.default_rng(1).standard_normal((4, 3)))

    def grad():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.sin(rot.forward(x)))
        return tape.gradient(loss, v)

    np.testing.assert_allclose(tf.function(grad, jit_compile=True)().numpy(), grad().numpy(),
                               rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_reflections_is_the_identity(dtype):
    # M = 0 (n_reflections=0) takes its own branch: Q = I, x unchanged.
    rot = HouseholderRotation(np.zeros((0, 3), dtype))
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(dtype)
    np.testing.assert_array_equal(rot.matrix().numpy(), np.eye(3, dtype=dtype))
    np.testing.assert_array_equal(rot.forward(x).numpy(), x)
    np.testing.assert_array_equal(rot.inverse(x).numpy(), x)
    assert rot.forward_log_det_jacobian(x, event_ndims=1).numpy() == 0.0
    stacked = HouseholderRotation(np.zeros((2, 0, 3), dtype))  # a batch of two
    np.testing.assert_array_equal(stacked.matrix().numpy(), np.broadcast_to(np.eye(3), (2, 3, 3)))


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-14)])
def test_a_zero_vector_is_skipped_not_nan(dtype, tol):
    # Without validate_args a zero vector reflects nothing: Q is the product
    # of the other reflections (numpy reference), finite, with its gradients.
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((4, 4))
    vectors[1] = 0.0
    v = tf.Variable(vectors.astype(dtype))
    rot = HouseholderRotation(v)
    expected = householder_reference(np.delete(vectors, 1, axis=0))
    assert np.abs(rot.matrix().numpy() - expected).max() <= tol
    x = rng.standard_normal((3, 4)).astype(dtype)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(rot.forward(x)))
    assert np.isfinite(tape.gradient(loss, v).numpy()).all()


def test_from_matrix_n_vectors_is_the_deprecated_name_of_n_reflections():
    r = stats.ortho_group.rvs(3, random_state=1)
    m = 3 if np.linalg.det(r) < 0 else 2
    with pytest.warns(DeprecationWarning, match="renamed `n_reflections`"):
        old = HouseholderRotation.from_matrix(r, n_vectors=m + 2)
    new = HouseholderRotation.from_matrix(r, n_reflections=m + 2)
    np.testing.assert_array_equal(old.vectors.numpy(), new.vectors.numpy())
    assert new.vectors.shape == (m + 2, 3)
