"""A learnable, exactly orthogonal rotation: a product of Householder reflections."""

import warnings

import numpy as np
import tensorflow as tf
from tensorflow_probability.python.internal import (
    dtype_util,
    parameter_properties,
    tensor_util,
)

from tfp_gauss.bijectors import _composite

__all__ = ["HouseholderRotation", "householder_product"]


def householder_product(vectors):
    """``Q = H_1 H_2 ... H_M`` for reflections ``H_i = I - 2 v_i v_i^T / |v_i|^2``.

    Formed in one shot by the compact WY ("UT transform") representation
    ``Q = I - V T V^T`` with ``V = [v_1 ... v_M]`` and ``T^{-1} = S``, the upper
    triangle of ``V^T V`` with its diagonal halved (Joffrain, Low,
    Quintana-Orti, van de Geijn & Van Zee (2006), "Accumulating Householder
    transformations, revisited", ACM TOMS 32(2)). That is one Gram matrix, one
    triangular solve and one matrix product, instead of ``M`` dependent
    rank-one updates: a handful of kernels whatever ``M``, which matters
    inside a training step.

    Args:
      vectors: float tensor ``[..., M, D]``.

    Returns:
      ``Q`` of shape ``[..., D, D]``, orthogonal to rounding. A zero vector
      contributes the identity (rather than NaN); ``validate_args`` rejects it.
    """
    vectors = tf.convert_to_tensor(vectors)
    dtype = vectors.dtype.as_numpy_dtype
    d = tf.shape(vectors)[-1]
    eye = tf.eye(d, dtype=vectors.dtype)
    if tf.TensorShape(vectors.shape)[-2] == 0:
        return tf.broadcast_to(eye, tf.concat([tf.shape(vectors)[:-2], [d, d]], 0))
    gram = tf.matmul(vectors, vectors, transpose_b=True)  # [..., M, M], v_i . v_j
    half_norms = 0.5 * tf.linalg.diag_part(gram)
    # A zero vector gets a tiny pivot; its row of T V^T is then exactly 0.
    tiny = dtype(np.finfo(dtype).tiny)
    s = tf.linalg.set_diag(tf.linalg.band_part(gram, 0, -1), tf.maximum(half_norms, tiny))
    t_vt = tf.linalg.triangular_solve(s, vectors, lower=False)  # T V^T, [..., M, D]
    return eye - tf.matmul(vectors, t_vt, transpose_a=True)


@_composite.register
class HouseholderRotation(_composite.CompositeBijector):
    r"""Orthogonal map `x -> Q x` with `Q` a product of Householder reflections.

    With vectors $v_1, \dots, v_M \in \mathbb{R}^D$ (shape `[M, D]`),

    $$Q = H_1 H_2 \cdots H_M, \qquad H_i = I - 2\,\frac{v_i v_i^\top}{\|v_i\|^2},$$

    and `forward(x) = Q x` for `x` of shape `[..., D]` (a batch of rows `X` maps
    to `X Q^T`). Every `H_i` is a reflection, so `Q` is orthogonal for any
    vectors, exactly up to rounding and with no constraint to maintain while
    training: $\log|\det Q| = 0$ (`is_constant_jacobian=True`) and the inverse is
    `Q^T`. `det Q = (-1)^M`. With `M >= D - 1` every orthogonal matrix of that
    determinant is reachable (Cartan–Dieudonné); `from_matrix` constructs the
    vectors for a given one. Gradients with respect to the vectors compile
    under XLA (no `expm`, no Gram–Schmidt, no `slogdet`).

    #### Example

    ```python
    import numpy as np
    import tensorflow as tf
    from tfp_gauss.bijectors import HouseholderRotation

    rot = HouseholderRotation(tf.Variable(np.random.randn(3, 3)))   # M = D = 3
    x = np.random.randn(5, 3)
    y = rot.forward(x)                    # == x @ Q^T
    np.testing.assert_allclose(rot.inverse(y), x, atol=1e-12)
    rot.forward_log_det_jacobian(x, event_ndims=1)                  # 0.
    ```

    References:
      Tomczak & Welling (2016), Improving Variational Auto-Encoders using
      Householder Flow. arXiv:1611.09630.
    """

    def __init__(self, vectors, validate_args=False, name="householder_rotation"):
        """Builds the rotation.

        Args:
          vectors: float tensor or variable ``[..., M, D]`` (static ``M``).
          validate_args: check (once for tensors, on every call for variables)
            that every vector is finite and non-zero.
          name: name scope of the ops.

        Raises:
          ValueError: ``vectors`` has rank below 2 or an unknown ``M``.
        """
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([vectors], dtype_hint=tf.float32)
            self._vectors = tensor_util.convert_nonref_to_tensor(
                vectors, dtype=dtype, name="vectors")
            shape = tf.TensorShape(self._vectors.shape)
            if shape.rank is not None and shape.rank < 2:
                raise ValueError(
                    "`vectors` must have shape [..., M, D] (one reflection vector per row); "
                    f"got shape {shape}.")
            super().__init__(
                forward_min_event_ndims=1,
                is_constant_jacobian=True,
                validate_args=validate_args,
                parameters=parameters,
                dtype=dtype,
                name=name)

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(vectors=parameter_properties.ParameterProperties(
            event_ndims=2,
            default_constraining_bijector_fn=parameter_properties.BIJECTOR_NOT_IMPLEMENTED))

    @property
    def vectors(self):
        """Reflection vectors, ``[..., M, D]``."""
        return self._vectors

    def matrix(self):
        """The orthogonal matrix ``Q``, ``[..., D, D]``."""
        return householder_product(tf.convert_to_tensor(self._vectors))

    def _apply(self, x, transpose):
        width, n_dims = tf.TensorShape(x.shape)[-1:], tf.TensorShape(self._vectors.shape)[-1:]
        if (width.rank == 1 and n_dims.rank == 1 and None not in (width[0], n_dims[0])
                and width[0] != n_dims[0]):
            raise ValueError(
                f"{type(self).__name__} ({self.name}) rotates {n_dims[0]} coordinates; got an "
                f"input of shape {tf.TensorShape(x.shape)}, whose last axis must be "
                f"{n_dims[0]}.")
        q = self.matrix()
        if tf.TensorShape(q.shape).rank == 2:
            # One rotation for every row: a single [N, D] x [D, D] product
            # (matvec would broadcast Q into N separate matrix-vector products).
            flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
            out = tf.matmul(flat, q, transpose_b=not transpose)
            return tf.reshape(out, tf.shape(x))
        return tf.linalg.matvec(q, x, transpose_a=transpose)

    def _forward(self, x):
        return self._apply(x, transpose=False)

    def _inverse(self, y):
        return self._apply(y, transpose=True)

    def _forward_log_det_jacobian(self, x):
        # |det Q| = 1 for an orthogonal Q.
        return tf.zeros([], dtype=self.dtype)

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args or is_init == tensor_util.is_ref(self._vectors):
            return []
        v = tf.convert_to_tensor(self._vectors)
        assertions = [
            tf.debugging.assert_all_finite(
                v, "HouseholderRotation: `vectors` holds NaN or infinity."),
            tf.debugging.assert_positive(
                tf.reduce_sum(tf.square(v), axis=-1),
                message="HouseholderRotation: every reflection vector must be non-zero "
                        "(a zero vector defines no reflection)."),
        ]
        # Eagerly the checks have run (and raised) already; their results are
        # eager tensors, which a later graph (tf.function) cannot depend on.
        return [] if tf.executing_eagerly() else assertions

    @classmethod
    def from_matrix(cls, matrix, n_reflections=None, validate_args=False,
                    name="householder_rotation", *, n_vectors=None):
        """Exact Householder representation of an orthogonal matrix.

        Column by column, a reflection maps the current column ``c`` to ``e_k``
        (Golub & Van Loan's ``house``, with the cancellation-free formula
        ``c_k - |c| = -|c_{>k}|^2 / (c_k + |c|)``), so ``R = H_1 ... H_r`` with
        ``r <= D`` reflections and ``det R = (-1)^r``. Pairs of equal
        reflections (which cancel) pad the count to ``n_reflections``.

        Args:
          matrix: orthogonal ``[D, D]`` array (numpy or tensor), float32/64.
          n_reflections: number of reflections (vectors) ``M`` wanted; must
            have the parity of the determinant, ``(-1)^M = det R``. Default:
            ``D`` if ``det R = (-1)^D``, else ``D - 1``.
          validate_args, name: passed to the constructor.
          n_vectors: deprecated name of ``n_reflections``.

        Returns:
          A ``HouseholderRotation`` whose ``matrix()`` equals ``matrix`` to
          rounding (float64: ~1e-15), with vectors in ``matrix``'s dtype.

        Raises:
          ValueError: ``matrix`` is not square, not orthogonal (``|R^T R - I|``
            above ``1e-4`` in float32 or ``1e-8`` in float64), not finite, or
            ``n_reflections`` is too small or of the wrong parity.
        """
        if n_vectors is not None:
            if n_reflections is not None:
                raise TypeError("from_matrix: pass `n_reflections` only (`n_vectors` is its "
                                "deprecated name).")
            warnings.warn("HouseholderRotation.from_matrix: `n_vectors` is renamed "
                          "`n_reflections`; `n_vectors` will be removed.", DeprecationWarning,
                          stacklevel=2)
            n_reflections = n_vectors
        r = np.asarray(matrix.numpy() if hasattr(matrix, "numpy") else matrix)
        dtype = r.dtype if r.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        if r.ndim != 2 or r.shape[0] != r.shape[1]:
            raise ValueError(f"from_matrix needs a square [D, D] matrix; got shape {r.shape}.")
        if not np.isfinite(r).all():
            raise ValueError("from_matrix: the matrix holds NaN or infinity.")
        d = r.shape[0]
        a = r.astype(np.float64)
        err = np.abs(a.T @ a - np.eye(d)).max() if d else 0.0
        tol = 1e-4 if dtype == np.float32 else 1e-8
        if err > tol:
            raise ValueError(
                f"from_matrix needs an orthogonal matrix; max |R^T R - I| is {err:.3g} "
                f"(tolerance {tol:g} for {np.dtype(dtype).name}).")
        vectors = []
        work = a.copy()
        for k in range(d):
            c = work[k:, k]
            sigma = float(c[1:] @ c[1:])
            mu = np.sqrt(c[0] ** 2 + sigma)
            if sigma == 0.0 and c[0] >= 0:
                continue  # already e_k
            v = np.zeros(d)
            v[k:] = c
            v[k] = c[0] - mu if c[0] <= 0 else -sigma / (c[0] + mu)
            vectors.append(v)
            # Apply H = I - 2 v v^T / |v|^2 from the left to the working matrix.
            work -= np.outer(2.0 * v / (v @ v), v @ work)
        # work is now the identity, and R = H_1 ... H_r (each H_i symmetric).
        r_count = len(vectors)
        if n_reflections is None:
            n_reflections = d if (d - r_count) % 2 == 0 else max(d - 1, r_count)
        n_reflections = int(n_reflections)
        if n_reflections < r_count or (n_reflections - r_count) % 2:
            det = (-1) ** r_count
            raise ValueError(
                f"from_matrix: this matrix (det {det:+d}) needs {r_count} reflections, or "
                f"that number plus a multiple of 2; n_reflections={n_reflections} is not "
                "possible. "
                "A product of M reflections has determinant (-1)^M.")
        pad = np.zeros(d)
        pad[0] = 1.0
        vectors += [pad] * (n_reflections - r_count)
        vectors = np.array(vectors, dtype=dtype).reshape(n_reflections, d)
        return cls(vectors, validate_args=validate_args, name=name)
