"""The generic bracketed Newton solver and its implicit gradient."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_gauss.math import root_finding


def _cubic(x, a):
    # increasing: x^3 + a x with a > 0
    return x**3 + a * x, tf.math.log(3 * x**2 + a)


def test_solves_a_cubic_and_counts_iterations():
    y = tf.constant(np.linspace(-50, 50, 101))
    a = tf.constant(0.5, tf.float64)
    x, iters = root_finding.bracketed_newton(
        _cubic, y, lower=tf.constant(-10.0, tf.float64), upper=tf.constant(10.0, tf.float64),
        initial=tf.constant(0.0, tf.float64), params=(a,))
    np.testing.assert_allclose(x.numpy() ** 3 + 0.5 * x.numpy(), y.numpy(), rtol=1e-13, atol=1e-13)
    assert iters.numpy().max() < 40 and iters.numpy().min() >= 1


def test_bisection_safeguard_handles_a_bad_newton_landscape():
    # atan-like: Newton from far away overshoots wildly; bisection must rescue.
    def fn(x):
        return tf.atan(x), -tf.math.log1p(x * x)
    y = tf.constant(np.array([-1.4, -0.5, 0.0, 0.9, 1.45]))
    x, _ = root_finding.bracketed_newton(
        fn, y, lower=tf.constant(-1e3, tf.float64), upper=tf.constant(1e3, tf.float64),
        initial=tf.constant(900.0, tf.float64))
    np.testing.assert_allclose(np.arctan(x.numpy()), y.numpy(), atol=1e-12)


def test_empty_bracket_returns_the_endpoint():
    y = tf.constant([0.3], tf.float64)
    x, iters = root_finding.bracketed_newton(
        lambda x: (x, tf.zeros_like(x)), y, lower=y, upper=y, initial=y)
    assert x.numpy()[0] == 0.3 and iters.numpy()[0] == 0


def test_implicit_gradient_against_finite_differences():
    y = tf.constant(np.array([-3.0, 0.2, 7.0]))
    a = tf.constant(np.array([0.5, 1.0, 2.0]))

    def bracket(y, a):
        return -10.0 * tf.ones_like(y), 10.0 * tf.ones_like(y), tf.zeros_like(y), tf.ones_like(y)

    def inv(y, a):
        return root_finding.invert_increasing(_cubic, y, (a,), bracket)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([y, a])
        x = inv(y, a)
    gy = tape.gradient(x, y).numpy()
    ga = tape.gradient(x, a).numpy()
    h = 1e-6
    fd_y = (inv(y + h, a) - inv(y - h, a)).numpy() / (2 * h)
    fd_a = (inv(y, a + h) - inv(y, a - h)).numpy() / (2 * h)
    np.testing.assert_allclose(gy, fd_y, rtol=1e-6)
    np.testing.assert_allclose(ga, fd_a, rtol=1e-6)


@pytest.mark.parametrize("capacity", [1, 7, 64])
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_streaming_working_set_matches_the_vectorized_loop(capacity, jit):
    # Each element's iterates do not depend on the others, so streaming the
    # elements through a small working set gives the same roots and the same
    # iteration counts; per-element parameters come through `gather_params`.
    rng = np.random.default_rng(5)
    y = tf.constant(rng.uniform(-60, 60, (9, 11)))
    a = tf.constant(rng.uniform(0.1, 3.0, (9, 11)))
    bounds = dict(lower=tf.constant(-10.0, tf.float64), upper=tf.constant(10.0, tf.float64),
                  initial=tf.constant(5.0, tf.float64))

    @tf.function(jit_compile=jit)
    def solve():
        dense = root_finding.bracketed_newton(_cubic, y, params=(a,), **bounds)
        streamed = root_finding.bracketed_newton(
            _cubic, y, params=(a,), gather_params=lambda i: (tf.gather(tf.reshape(a, [-1]), i),),
            capacity=capacity, **bounds)
        return dense, streamed

    (x, iters), (x_s, iters_s) = solve()
    np.testing.assert_array_equal(x_s.numpy(), x.numpy())
    np.testing.assert_array_equal(iters_s.numpy(), iters.numpy())
    np.testing.assert_allclose(x.numpy() ** 3 + a.numpy() * x.numpy(), y.numpy(), rtol=1e-12)


def test_streaming_caps_iterations_per_element_and_handles_empty_input():
    # In a graph: eagerly the vectorized loop is used.
    y = tf.constant(np.linspace(-50, 50, 30))
    a = tf.fill([30], tf.constant(0.5, tf.float64))
    kwargs = dict(lower=tf.constant(-10.0, tf.float64), upper=tf.constant(10.0, tf.float64),
                  initial=tf.constant(9.0, tf.float64), max_iterations=2)
    streamed = tf.function(lambda y, a: root_finding.bracketed_newton(
        _cubic, y, params=(a,), gather_params=lambda i: (tf.gather(a, i),), capacity=4,
        **kwargs))
    _, iters = streamed(y, a)
    _, dense_iters = root_finding.bracketed_newton(_cubic, y, params=(a,), **kwargs)
    assert iters.numpy().max() == 2
    np.testing.assert_array_equal(iters.numpy(), dense_iters.numpy())
    empty = tf.zeros([0], tf.float64)
    x, iters = streamed(empty, empty)
    assert x.shape == (0,) and iters.shape == (0,)
