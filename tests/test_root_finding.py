"""The generic bracketed Newton solver and its implicit gradient."""

import numpy as np
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
