"""The generic bracketed Newton solver and its implicit gradient."""

import re

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
    x, iters, converged, _, _ = root_finding.bracketed_newton(
        _cubic, y, lower=tf.constant(-10.0, tf.float64), upper=tf.constant(10.0, tf.float64),
        initial=tf.constant(0.0, tf.float64), params=(a,))
    assert converged.numpy().all()
    np.testing.assert_allclose(x.numpy() ** 3 + 0.5 * x.numpy(), y.numpy(), rtol=1e-13, atol=1e-13)
    assert iters.numpy().max() < 40 and iters.numpy().min() >= 1


def test_bisection_safeguard_handles_a_bad_newton_landscape():
    # atan-like: Newton from far away overshoots wildly; bisection must rescue.
    def fn(x):
        return tf.atan(x), -tf.math.log1p(x * x)
    y = tf.constant(np.array([-1.4, -0.5, 0.0, 0.9, 1.45]))
    x = root_finding.bracketed_newton(
        fn, y, lower=tf.constant(-1e3, tf.float64), upper=tf.constant(1e3, tf.float64),
        initial=tf.constant(900.0, tf.float64)).x
    np.testing.assert_allclose(np.arctan(x.numpy()), y.numpy(), atol=1e-12)


def test_empty_bracket_returns_the_endpoint():
    y = tf.constant([0.3], tf.float64)
    x, iters, converged, width, _ = root_finding.bracketed_newton(
        lambda x: (x, tf.zeros_like(x)), y, lower=y, upper=y, initial=y)
    assert x.numpy()[0] == 0.3 and iters.numpy()[0] == 0
    assert converged.numpy()[0] and width.numpy()[0] == 0


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

    (x, iters, converged, width, _), (x_s, iters_s, converged_s, width_s, _) = solve()
    np.testing.assert_array_equal(x_s.numpy(), x.numpy())
    np.testing.assert_array_equal(iters_s.numpy(), iters.numpy())
    np.testing.assert_array_equal(converged_s.numpy(), converged.numpy())
    np.testing.assert_allclose(width_s.numpy(), width.numpy(), rtol=1e-13)
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
    result = streamed(y, a)
    dense = root_finding.bracketed_newton(_cubic, y, params=(a,), **kwargs)
    assert result.num_iterations.numpy().max() == 2
    for field in ("num_iterations", "converged"):
        np.testing.assert_array_equal(getattr(result, field).numpy(),
                                      getattr(dense, field).numpy())
    np.testing.assert_allclose(result.bracket_width.numpy(), dense.bracket_width.numpy(),
                               rtol=1e-13)
    empty = tf.zeros([0], tf.float64)
    result = streamed(empty, empty)
    assert result.x.shape == (0,) and result.num_iterations.shape == (0,)


def _capped_reference(y, a, lower, upper, initial, steps):
    """The safeguarded Newton iteration written out in numpy, ``steps`` steps per element.

    An independent reading of the documented rule (Newton step, bisection if
    it leaves the bracket or is not finite or exceeds half the step before
    last), used to check what a capped solve returns: its last iterate and
    bracket.
    """
    x = np.clip(np.full_like(y, initial), lower, upper)
    lo, up = np.full_like(y, lower), np.full_like(y, upper)
    prev = np.stack([up - lo, up - lo])
    for _ in range(steps):
        r = x**3 + a * x - y
        lo, up = np.where(r < 0, x, lo), np.where(r > 0, x, up)
        step = r / (3 * x**2 + a)
        newton = x - step
        ok = np.isfinite(newton) & (newton >= lo) & (newton <= up) & (np.abs(step) <= 0.5 * prev[1])
        new = np.where(ok, newton, 0.5 * (lo + up))
        prev = np.stack([np.abs(new - x), prev[0]])
        x = new
    return x, up - lo


@pytest.mark.parametrize("mode", ["eager", "streaming-graph", "streaming-xla"])
def test_capped_iterations_are_reported_not_hidden(mode):
    # With max_iterations=7 (the uncapped solve takes 6-15 steps) some
    # elements stop at the cap: they are marked not converged, with the last iterate and
    # bracket of the iteration written out independently in numpy; the
    # others converge and are marked so.
    y = np.linspace(-60, 60, 25)
    a = 0.5
    kwargs = dict(lower=-10.0, upper=10.0, initial=9.0, max_iterations=7)
    yt, at = tf.constant(y), tf.fill([25], tf.constant(a, tf.float64))
    if mode == "eager":
        result = root_finding.bracketed_newton(_cubic, yt, params=(at,), **kwargs)
    else:
        result = tf.function(lambda y, a: root_finding.bracketed_newton(
            _cubic, y, params=(a,), gather_params=lambda i: (tf.gather(a, i),), capacity=4,
            **kwargs), jit_compile=mode.endswith("xla"))(yt, at)
    full = root_finding.bracketed_newton(_cubic, yt, params=(at,), lower=-10.0, upper=10.0,
                                         initial=9.0)
    converged = result.converged.numpy()
    # Converged exactly where the uncapped solve needed at most 7 steps.
    np.testing.assert_array_equal(converged, full.num_iterations.numpy() <= 7)
    assert 0 < converged.sum() < 25
    x_ref, width_ref = _capped_reference(y, a, -10.0, 10.0, 9.0, 7)
    stuck = ~converged
    assert np.all(result.num_iterations.numpy()[stuck] == 7)
    np.testing.assert_allclose(result.x.numpy()[stuck], x_ref[stuck], rtol=1e-14)
    np.testing.assert_allclose(result.bracket_width.numpy()[stuck], width_ref[stuck],
                               rtol=1e-14)
    # The root lies in the reported bracket, which is wider than the tolerance.
    root = np.array([np.roots([1, 0, a, -v]).real[np.abs(np.roots([1, 0, a, -v]).imag)
                                                  < 1e-9][0] for v in y])
    assert np.all(np.abs(result.x.numpy() - root)[stuck] <= result.bracket_width.numpy()[stuck])
    assert np.all(result.bracket_width.numpy()[stuck] > 1e-6)


def _bracket(y, a):
    return -10.0 * tf.ones_like(y), 10.0 * tf.ones_like(y), 9.0 * tf.ones_like(y), tf.ones_like(y)


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_validate_makes_a_capped_element_an_error_saying_which(mode):
    # From the start 9, the uncapped solve takes 4, 9, 4 and 8 steps.
    y = tf.constant([700.0, 5.0, 600.0, -60.0], tf.float64)
    a = tf.constant(0.5, tf.float64)

    def inverse(y, a):
        return root_finding.invert_increasing(_cubic, y, (a,), _bracket, max_iterations=5,
                                              validate=True, what="cubic")

    fn = inverse if mode == "eager" else tf.function(inverse)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        fn(y, a)
    # Graph assertions print their pieces in brackets; eagerly it is one sentence.
    message = " ".join(re.sub(r"[\[\]]", " ", str(info.value)).split())
    assert "cubic: did not converge for 2 of 4 elements" in message
    assert "first is at flat index 1 with target 5" in message
    width = float(re.search(r"bracket width ([-+0-9.e]*[0-9])", message).group(1))
    residual = float(re.search(r"residual fn\(x\) - y ([-+0-9.e]*[0-9])", message).group(1))
    assert 0 < width < 20 and residual != 0
    assert "Raise max_iterations" in message
    # Enough iterations: no error, the root.
    x = root_finding.invert_increasing(_cubic, y, (a,), _bracket, validate=True)
    np.testing.assert_allclose(x.numpy() ** 3 + 0.5 * x.numpy(), y.numpy(), rtol=1e-12)


def test_validate_under_xla_gives_nan_for_a_capped_element():
    # XLA compiles assertions away: the capped elements are NaN instead.
    y = tf.constant([700.0, 5.0, 600.0, -60.0], tf.float64)
    a = tf.constant(0.5, tf.float64)
    x = tf.function(lambda y, a: root_finding.invert_increasing(
        _cubic, y, (a,), _bracket, max_iterations=5, validate=True), jit_compile=True)(y, a)
    np.testing.assert_array_equal(np.isnan(x.numpy()), [False, True, False, True])
