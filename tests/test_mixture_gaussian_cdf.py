"""What is special to MixtureGaussianCDF: tail accuracy, the root-find, EM."""

import functools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import stats

from helpers import mixture_reference, random_mixture, rel_err
import tfp_gauss
from tfp_gauss.bijectors import HouseholderRotation, MixtureGaussianCDF
from tfp_gauss.math import mixture_cdf, root_finding

tfb = tfp.bijectors
tfd = tfp.distributions

SEEDS = [0, 1, 2]


def _bijector(seed, dtype, d=4, k=8):
    params = random_mixture(np.random.default_rng(seed), d, k, dtype)
    return MixtureGaussianCDF(*params), params


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype,z_max,tol", [(np.float64, 30.0, 1e-9), (np.float32, 10.0, 1e-5)],
                         ids=["float64", "float32"])
def test_forward_and_log_det_match_float64_log_space_reference(seed, dtype, z_max, tol):
    b, params = _bijector(seed, dtype)
    x = (np.linspace(-150, 150, 60001)[:, None] * np.ones(4)).astype(dtype)
    z_ref, ld_ref = mixture_reference(x, *params)
    keep = np.abs(z_ref) <= z_max
    assert keep.mean() > 0.1  # the grid reaches the tails of interest
    z = b.forward(x).numpy()
    ld = b.forward_log_det_jacobian(x).numpy()
    assert rel_err(z, z_ref)[keep].max() <= tol
    assert rel_err(ld, ld_ref)[keep].max() <= tol


def test_float32_tails_finite_monotone_and_unclipped():
    b, params = _bijector(0, np.float32)
    x = (np.linspace(-1e4, 1e4, 400001)[:, None] * np.ones(4)).astype(np.float32)
    z = b.forward(x).numpy()
    ld = b.forward_log_det_jacobian(x).numpy()
    assert np.isfinite(z).all() and np.isfinite(ld).all()
    assert np.all(np.diff(z, axis=0) >= 0)
    # No plateau near |z| = 4.9 (what clipping F to [1e-6, 1 - 1e-6] gives):
    # z keeps growing, and matches the float64 reference far out.
    assert z[0].max() < -1000 and z[-1].min() > 1000
    z_ref, ld_ref = mixture_reference(x[::1000], *params)
    assert rel_err(z[::1000], z_ref).max() <= 1e-5
    assert rel_err(ld[::1000], ld_ref).max() <= 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("param_shape", [(3,), (2, 3)], ids=["trailing_K", "batch_D_K"])
def test_far_tails_where_u_squared_overflows_stay_finite(dtype, param_shape):
    # |x| from 1e19 to float32's largest value: u_k^2 overflows float32 from
    # |u| ~ 1.8e19, yet z ~ x / sigma is representable. Far out the widest
    # component decides: Phi(z) = w Phi((x - mu) / sigma) gives
    # z = (x - mu) / sigma - log(w) / z + ..., i.e. (x - mu) / sigma to every
    # digit here, and log dz/dx = -log sigma.
    logits = np.broadcast_to(np.array([0.3, -0.2, 1.0]), param_shape).astype(dtype)
    locs = np.broadcast_to(np.array([-2.0, 1.5, 0.5]), param_shape).astype(dtype)
    scales = np.broadcast_to(np.array([0.5, 2.0, 0.8]), param_shape).astype(dtype)
    big = np.finfo(np.float32).max
    x = np.array([1e19, 1e30, big, -1e19, -1e30, -big], dtype)
    if len(param_shape) == 2:
        x = np.stack([x, x[::-1]], axis=-1)  # [N, D]
    b = MixtureGaussianCDF(logits, locs, scales)
    z = b.forward(x).numpy()
    ld = b.forward_log_det_jacobian(x, event_ndims=0).numpy()
    np.testing.assert_allclose(z, (x.astype(np.float64) - 1.5) / 2.0, rtol=1e-6)
    # log(f / P) - log h(zeta) cancels two O(log |x|) terms: ~45 x eps absolute.
    np.testing.assert_allclose(ld, np.full(x.shape, -np.log(2.0)), rtol=0,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype,light,tol", [(np.float32, 1e-20, 1e-5), (np.float64, 1e-200, 1e-9)],
                         ids=["float32", "float64"])
def test_a_light_far_component_rules_the_far_tail(dtype, light, tol):
    # A wide component of tiny weight far to the right: beyond x ~ 60 it
    # carries nearly all of 1 - F and of f, which then lie far below the
    # other components' (underflowed) terms; the result must still follow the
    # float64 log-space reference.
    logits, locs, scales = random_mixture(np.random.default_rng(5), 1, 4, dtype)
    params = (np.concatenate([logits, [[np.log(light) + logits.max()]]], 1).astype(dtype),
              np.concatenate([locs, [[40.0]]], 1).astype(dtype),
              np.concatenate([scales, [[5.0]]], 1).astype(dtype))
    x = np.linspace(-60, 150, 4201)[:, None].astype(dtype)
    b = MixtureGaussianCDF(*params)
    z, ld = b.forward(x).numpy(), b.forward_log_det_jacobian(x).numpy()
    z_ref, ld_ref = mixture_reference(x, *params)
    assert np.all(np.diff(z, axis=0) > 0)
    assert rel_err(z, z_ref).max() <= tol
    assert rel_err(ld, ld_ref).max() <= tol
    # Without the light component the far tail is very different.
    z_without = MixtureGaussianCDF(*(p[:, :4] for p in params)).forward(x).numpy()
    assert np.abs(z_without - z).max() > 1.0


@pytest.mark.parametrize("dtype,negligible", [(np.float32, 1e-33), (np.float64, 1e-305)],
                         ids=["float32", "float64"])
def test_components_below_the_weight_floor_count_as_absent(dtype, negligible):
    # Relative weights below 1e-30 (float32) / 1e-300 (float64) are dropped,
    # consistently in F, 1 - F and f: the map is that of the other
    # components, finite and increasing, and the dropped logit gets no gradient.
    logits, locs, scales = random_mixture(np.random.default_rng(6), 1, 4, dtype)
    params = [tf.constant(np.concatenate([a, [[v]]], 1).astype(dtype)) for a, v in
              ((logits, np.log(negligible) + logits.max()), (locs, 40.0), (scales, 5.0))]
    x = tf.constant(np.linspace(-200, 200, 4001)[:, None].astype(dtype))
    with tf.GradientTape() as tape:
        tape.watch(params)
        z, ld = mixture_cdf.mixture_cdf_transform(x, *params)
        loss = tf.reduce_sum(z) + tf.reduce_sum(ld)
    grads = tape.gradient(loss, params)
    z_ref, ld_ref = mixture_cdf.mixture_cdf_transform(x, *(p[:, :4] for p in params))
    np.testing.assert_allclose(z.numpy(), z_ref.numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(ld.numpy(), ld_ref.numpy(), rtol=0, atol=0)
    assert np.all(np.diff(z.numpy(), axis=0) > 0) and np.isfinite(ld.numpy()).all()
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    assert grads[0].numpy()[0, 4] == 0.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype,z_max,tol", [(np.float64, 30.0, 1e-8), (np.float32, 8.0, 1e-5)],
                         ids=["float64", "float32"])
def test_round_trip_z_to_x_to_z(seed, dtype, z_max, tol):
    b, _ = _bijector(seed, dtype)
    z = (np.linspace(-z_max, z_max, 4001)[:, None] * np.ones(4)).astype(dtype)
    x = b.inverse(z).numpy()  # through numpy: no cache
    z2 = b.forward(x).numpy()
    assert rel_err(z2, z).max() <= tol
    assert np.all(np.diff(x, axis=0) > 0)


def test_newton_converges_in_few_iterations():
    b, params = _bijector(0, np.float32, d=10, k=8)
    z = tf.constant(np.random.default_rng(3).standard_normal((20000, 10)).astype(np.float32))
    logits, locs, scales = (tf.constant(p) for p in params)
    lower, upper, initial, scale = mixture_cdf.anchor_start(z, logits, locs, scales)
    iters = root_finding.bracketed_newton(
        mixture_cdf.mixture_cdf_transform, z, lower, upper, initial, (logits, locs, scales),
        x_scale=scale).num_iterations
    assert iters.numpy().mean() < 6 and iters.numpy().max() <= 20
    # The Hermite table start (used for many elements per dimension) leaves
    # most elements converged after the first step.
    lower, upper, initial, scale, options = mixture_cdf.inverse_start(z, logits, locs, scales)
    x, grid_iters, _, _, _ = root_finding.bracketed_newton(
        mixture_cdf.mixture_cdf_transform, z, lower, upper, initial, (logits, locs, scales),
        x_scale=scale, **options)
    assert grid_iters.numpy().mean() < 1.5 < iters.numpy().mean()
    assert rel_err(b.forward(x.numpy()).numpy(), z.numpy()).max() <= 1e-5


def _forced_inverse(use_grid):
    """The bijector's inverse with the start chosen by ``use_grid``, not by size."""
    start = functools.partial(mixture_cdf.inverse_start, use_grid=use_grid)

    def inverse(z, logits, locs, scales):
        return root_finding.invert_increasing(mixture_cdf.mixture_cdf_transform, z,
                                              (logits, locs, scales), start,
                                              solve_fn=mixture_cdf.mixture_cdf_value)
    return inverse


@pytest.mark.parametrize("n", [5, 4 * mixture_cdf.GRID_SIZE * 3 + 5])
@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_both_inverse_starts_forced_find_the_reference_root(n, mode):
    # Few elements per dimension take the anchor-table start by default and
    # many the Hermite-table start; here both are forced at both sizes, eagerly
    # (vectorized loop) and in a graph (streaming loop), and each root is
    # checked by the scipy reference forward.
    params = random_mixture(np.random.default_rng(1), 3, 8, np.float64)
    z = np.random.default_rng(n).normal(0.0, 3.0, (n, 3))
    roots = {}
    for use_grid in (False, True):
        inverse = _forced_inverse(use_grid)
        if mode == "graph":
            inverse = tf.function(inverse)
        roots[use_grid] = inverse(tf.constant(z), *map(tf.constant, params)).numpy()
        z_back, log_slope = mixture_reference(roots[use_grid], *params)
        # |z(x) - z| within a few ulps of x times the slope, plus rounding of z.
        tol = 1e-14 * np.maximum(1.0, np.abs(z)) + 8e-16 * np.abs(roots[use_grid]) * np.exp(
            log_slope)
        assert np.all(np.abs(z_back - z) <= tol)
    np.testing.assert_allclose(roots[True], roots[False], rtol=1e-13, atol=1e-13)


def test_inverse_of_single_rows_equals_the_batch_inverse():
    # A sample split into single rows takes the other start: same roots.
    b, _ = _bijector(1, np.float64, d=3)
    z = np.random.default_rng(0).normal(0.0, 3.0, (4 * mixture_cdf.GRID_SIZE * 3 + 5, 3))
    whole = b.inverse(z).numpy()
    rows = np.concatenate([b.inverse(z[i:i + 1]).numpy() for i in range(20)])
    np.testing.assert_allclose(rows, whole[:20], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 2e-13)],
                         ids=["float32", "float64"])
def test_with_and_without_responsibilities_match_the_reference(dtype, tol):
    # mixture_cdf_transform (responsibilities on, for the gradient) and
    # mixture_cdf_value (off, the root-find's) reduce differently; both
    # follow scipy (measured 5.4e-7 / 1.2e-14).
    params = random_mixture(np.random.default_rng(9), 3, 5, dtype)
    x = np.random.default_rng(10).normal(0.0, 4.0, (200, 3)).astype(dtype)
    z_ref, ld_ref = mixture_reference(x, *params)
    for fn in (mixture_cdf.mixture_cdf_transform, mixture_cdf.mixture_cdf_value):
        z, ld = (t.numpy() for t in fn(*map(tf.constant, (x,) + params)))
        assert rel_err(z, z_ref).max() <= tol and rel_err(ld, ld_ref).max() <= tol


def test_inverse_compiles_with_unknown_sample_size():
    # As served by a SavedModel's `sample(n)`: the working-set size is dynamic.
    b, _ = _bijector(2, np.float32, d=3)
    z = np.random.default_rng(0).standard_normal((3000, 3)).astype(np.float32)
    expected = b.inverse(z).numpy()
    spec = tf.TensorSpec([None, 3], tf.float32)
    for jit in (False, True):
        inverse = tf.function(b.inverse, input_signature=[spec], jit_compile=jit)
        x = inverse(z).numpy()
        # float32 roots agree to the solver's tolerance (~eps * scale) ...
        np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
        # ... and map back to z.
        assert rel_err(b.forward(x).numpy(), z).max() <= 1e-5
        assert inverse(z[:0]).shape == (0, 3)


def _fd_gradient(f, variable, h=1e-6):
    base = variable.numpy()
    grad = np.zeros(base.shape)
    for idx in np.ndindex(*base.shape):
        for sign in (1, -1):
            shifted = base.copy()
            shifted[idx] += sign * h
            variable.assign(shifted)
            grad[idx] += sign * f().numpy() / (2 * h)
    variable.assign(base)
    return grad


def test_inverse_gradients_match_finite_differences_eager_graph_and_xla():
    rng = np.random.default_rng(4)
    variables = [tf.Variable(p) for p in random_mixture(rng, 2, 3)]
    b = MixtureGaussianCDF(*variables)
    z = tf.Variable(3.0 * rng.standard_normal((5, 2)))

    def loss():
        x = b.inverse(z)
        return tf.reduce_sum(tf.sin(x) + 0.1 * x**2)

    def grads():
        with tf.GradientTape() as tape:
            value = loss()
        return tape.gradient(value, [z] + variables)

    compiled_loss = tf.function(loss)
    finite_differences = [_fd_gradient(compiled_loss, var) for var in [z] + variables]
    for fn in (grads, tf.function(grads), tf.function(grads, jit_compile=True)):
        for g, fd in zip(fn(), finite_differences):
            assert np.abs(g.numpy() - fd).max() <= 1e-6 * max(1.0, np.abs(fd).max())


def _plain_transform(x, logits, locs, scales):
    """Linear-space float64 z and log-det via TFP's Normal: autodiff reference."""
    normal = tfp.distributions.Normal(tf.constant(0.0, tf.float64), 1.0)
    w = tf.math.softmax(logits, -1)
    u = (x[..., None] - locs) / scales
    z = normal.quantile(tf.reduce_sum(w * normal.cdf(u), -1))
    log_f = tf.math.log(tf.reduce_sum(w * normal.prob(u) / scales, -1))
    return z, log_f - normal.log_prob(z)


@pytest.mark.parametrize("param_shape", [(3, 4), (4,), (16, 8), (2, 8, 8)],
                         ids=["batch", "scalar-batch", "stacked", "stacked-layers"])
def test_analytic_gradient_matches_autodiff_of_a_plain_reference(param_shape):
    # From D K >= _STACKED_GRADIENT_MIN_PARAMS the parameter gradients are
    # reduced as one stacked tensor: the last two shapes take that path.
    stacked = np.prod(param_shape) >= mixture_cdf.STACKED_GRADIENT_MIN_PARAMS
    assert stacked == (len(param_shape) > 1 and param_shape[-2] >= 8)
    rng = np.random.default_rng(8)
    batch = param_shape[:-1]
    logits, locs, scales = (tf.constant(p.reshape(param_shape))
                            for p in random_mixture(rng, int(np.prod(batch)), param_shape[-1]))
    x_shape = (6,) + (batch or (3,))
    x = tf.constant(2.0 * rng.standard_normal(x_shape))
    gz, gl = (tf.constant(rng.standard_normal(x_shape)) for _ in range(2))
    grads = []
    for fn in (mixture_cdf.mixture_cdf_transform, _plain_transform):
        with tf.GradientTape() as tape:
            tape.watch([x, logits, locs, scales])
            z, ld = fn(x, logits, locs, scales)
            loss = tf.reduce_sum(gz * z + gl * ld)
        grads.append(tape.gradient(loss, [x, logits, locs, scales]))
        np.testing.assert_allclose(z.numpy(), _plain_transform(x, logits, locs, scales)[0].numpy(),
                                   rtol=1e-10)
    for ours, ref in zip(*grads):
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("dtype, far", [(np.float32, 20.0), (np.float64, 40.0)])
def test_a_persistent_tape_gets_finite_gradients_in_the_tails(dtype, far):
    # Eagerly the forward is a tf.function; a persistent tape differentiates
    # it through the intermediates it exports as well, with zero upstream
    # gradients, and a log of a zero in an untaken branch made those NaN:
    # dz/dx was NaN from |x| ~ 15 (float32) / 38 (float64), and one such row
    # made every parameter's gradient NaN.
    variables = [tf.Variable(np.array(p, dtype)) for p in
                 ([[0.0, -1.0, 0.5]], [[-1.0, 0.0, 2.0]], [[0.5, 1.0, 0.3]])]
    b = MixtureGaussianCDF(*variables)
    x_values = np.array([[-far], [-8.0], [0.5], [8.0], [far]], dtype)
    grads = {}
    for persistent in (False, True):
        x = tf.constant(x_values)  # (a new tensor per tape: no cached log-det)
        with tf.GradientTape(persistent=persistent) as tape:
            tape.watch(x)
            z = b.forward(x)
            ld = b.forward_log_det_jacobian(x, event_ndims=1)
            loss = tf.reduce_sum(z) + tf.reduce_sum(ld)
        grads[persistent] = [g.numpy() for g in tape.gradient(loss, [x] + variables)]
        # dz/dx = exp(log_det), checked on z alone
        x = tf.constant(x_values)
        with tf.GradientTape(persistent=persistent) as tape:
            tape.watch(x)
            z = b.forward(x)
        slope = tape.gradient(z, x).numpy()
        np.testing.assert_allclose(slope, np.exp(ld.numpy())[:, None], rtol=1e-5)
    for with_persistent, without in zip(grads[True], grads[False]):
        assert np.isfinite(with_persistent).all()
        np.testing.assert_allclose(with_persistent, without, rtol=1e-5)


def test_second_derivatives_match_central_differences_of_the_gradient():
    # The analytic gradient is itself differentiable (nested tapes: Hessians,
    # Laplace approximations), eagerly and in a graph.
    b = MixtureGaussianCDF(np.array([[0.0, -1.0, 0.5]]), np.array([[-1.0, 0.0, 2.0]]),
                           np.array([[0.5, 1.0, 0.3]]))

    def slope(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = b.forward(tf.identity(x))
        return tape.gradient(z, x)

    def curvature(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            g = slope(x)
        return tape.gradient(g, x)

    x = tf.constant([[-2.5], [0.3], [1.7], [4.0]], tf.float64)
    step = 1e-5
    reference = ((slope(x + step) - slope(x - step)) / (2 * step)).numpy()
    for fn in (curvature, tf.function(curvature)):
        np.testing.assert_allclose(fn(x).numpy(), reference, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("param_shape", [(2, 3), (16, 8)], ids=["per-parameter", "stacked"])
def test_gradient_compiles_in_an_xla_loop_over_an_unknown_number_of_rows(param_shape):
    # A Keras step on a partial last batch traces the flow's loop over layers
    # with rows of unknown number; there, BroadcastGradientArgs of runtime
    # shapes is not a compile-time constant for XLA (it failed to compile).
    rng = np.random.default_rng(9)
    d, k = param_shape
    params = [tf.constant(p) for p in random_mixture(rng, d, k)]
    x = tf.constant(2.0 * rng.standard_normal((7, d)))
    c = tf.constant(rng.standard_normal(d))

    def loss_and_grads(fn, x):
        with tf.GradientTape() as tape:
            tape.watch([x] + params)

            def body(i, h, total):
                z, ld = fn(h, *params)
                return i + 1, h, total + tf.reduce_sum(c * z + ld)

            _, _, total = tf.while_loop(lambda i, *_: i < 1, body,
                                        (0, x, tf.constant(0.0, tf.float64)),
                                        maximum_iterations=1)
        return tape.gradient(total, [x] + params)

    compiled = tf.function(
        functools.partial(loss_and_grads, mixture_cdf.mixture_cdf_transform), jit_compile=True,
        input_signature=[tf.TensorSpec([None, d], tf.float64)])
    for ours, ref in zip(compiled(x), loss_and_grads(_plain_transform, x)):
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-9, atol=1e-11)


def test_parameter_gradients_sum_over_an_axis_another_parameter_broadcasts():
    # logits of unknown static size, 1 at run time, where locs and scales have
    # 2 and x (one column) cannot tell: the static axes must count the other
    # parameters too (a first version returned a [2, 3] gradient for logits).
    rng = np.random.default_rng(10)
    locs = tf.constant(rng.normal(size=(2, 3)))
    scales = tf.constant(np.exp(0.3 * rng.normal(size=(2, 3))))
    logits, x = tf.constant(rng.normal(size=(1, 3))), tf.constant(rng.normal(size=(5, 1)))
    c = tf.constant(rng.standard_normal(2))

    def grads(fn, x, logits):
        with tf.GradientTape() as tape:
            tape.watch([x, logits, locs, scales])
            z, ld = fn(x, logits, locs, scales)
            loss = tf.reduce_sum(c * z + ld)
        return tape.gradient(loss, [x, logits, locs, scales])

    graph = tf.function(functools.partial(grads, mixture_cdf.mixture_cdf_transform),
                        input_signature=[tf.TensorSpec([None, 1], tf.float64),
                                         tf.TensorSpec([None, 3], tf.float64)])
    for ours, ref in zip(graph(x, logits), grads(_plain_transform, x, logits)):
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-9, atol=1e-11)


def test_transformed_distribution_density_integrates_to_one_and_samples():
    b, params = _bijector(5, np.float64, d=2, k=3)
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(np.float64(0), 1), 2), tfb.Invert(b))
    g = np.linspace(-25, 25, 1201)
    xx, yy = np.meshgrid(g, g)
    grid = np.stack([xx.ravel(), yy.ravel()], -1)
    dens = np.exp(dist.log_prob(grid).numpy()).reshape(xx.shape)
    mass = np.trapezoid(np.trapezoid(dens, g, axis=1), g)
    assert abs(mass - 1.0) < 1e-6
    # Samples follow the mixture: compare each coordinate with its CDF.
    x = dist.sample(4000, seed=7).numpy()
    assert np.isfinite(x).all()
    logits, locs, scales = params
    for d in range(2):
        w = np.exp(logits[d] - logits[d].max())
        w /= w.sum()

        def cdf(v, d=d, w=w):
            return (w * stats.norm.cdf((v[:, None] - locs[d]) / scales[d])).sum(-1)

        assert stats.kstest(x[:, d], cdf).pvalue > 1e-3


def test_composes_with_chain_invert_and_joint_distributions():
    b, _ = _bijector(6, np.float32, d=3, k=4)
    chain = tfb.Chain([tfb.Scale(np.float32(2.0)), b, tfb.Shift(np.float32(0.5))])
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    y = chain.forward(x).numpy()
    np.testing.assert_allclose(chain.inverse(y).numpy(), x, atol=1e-4)
    np.testing.assert_allclose(tfb.Invert(b).inverse(x).numpy(), b.forward(x).numpy())
    joint = tfd.JointDistributionNamed(dict(
        x=tfd.TransformedDistribution(tfd.Sample(tfd.Normal(np.float32(0), 1), 3), tfb.Invert(b)),
        y=lambda x: tfd.Normal(tf.reduce_sum(x, -1), np.float32(1.0))))
    sample = joint.sample(50, seed=1)
    lp = joint.log_prob(sample).numpy()
    assert lp.shape == (50,) and np.isfinite(lp).all()
    assert b.experimental_batch_shape(x_event_ndims=0) == [3]


def test_flows_take_the_names_joint_distributions_give_them():
    """The flows keep TFP's default name, which a joint distribution treats as
    unset: a lambda's argument names one, and two flows sit side by side (with a
    fixed name of their own: 'Inconsistent names' and 'names must be unique')."""
    x = tfp_gauss.datasets.two_moons(300, seed=0)
    greedy = [tfp_gauss.fit_rbig(x, n_layers=2, n_components=3, seed=s) for s in (0, 1)]
    flow = tfp_gauss.gaussianization_flow(2, n_layers=2, n_components=3, seed=0)
    chained = tfd.JointDistributionSequential(
        [flow, lambda y: tfd.Independent(tfd.Normal(y, np.float32(1.0)), 1)])
    y, w = chained.sample(4, seed=(1, 2))
    expected = flow.log_prob(y) + tfd.Independent(tfd.Normal(y, np.float32(1.0)), 1).log_prob(w)
    np.testing.assert_allclose(chained.log_prob([y, w]).numpy(), expected.numpy(), rtol=1e-6)
    assert tuple(chained._flat_resolve_names()) == ("y", "x")
    pair = tfd.JointDistributionSequential(greedy)
    a, b = pair.sample(4, seed=(3, 4))
    np.testing.assert_allclose(pair.log_prob([a, b]).numpy(),
                               (greedy[0].log_prob(a) + greedy[1].log_prob(b)).numpy(), rtol=1e-6)
    # a name the user gives is kept (and then it names the component)
    named = tfp_gauss.gaussianization_flow(2, n_layers=1, n_components=2, seed=0, name="u")
    assert named.name == "u" and tfd.JointDistributionSequential(
        [named, lambda u: tfd.Independent(tfd.Normal(u, np.float32(1.0)), 1)]
    )._flat_resolve_names()[0] == "u"


def test_validate_args_rejects_non_finite_inputs():
    b = MixtureGaussianCDF([[0.0, 0.0]], [[-1.0, 1.0]], [[1.0, 1.0]], validate_args=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinity"):
        b.forward(np.array([[np.nan]], np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinity"):
        b.inverse(np.array([[np.inf]], np.float32))


def test_input_of_unknown_rank_is_a_clear_error():
    """A tf.function whose input_signature has no rank: the kernel needs static
    ranks (it failed with 'Cannot infer argument num from shape <unknown>')."""
    b = MixtureGaussianCDF([[0.0, 0.0]] * 2, [[-1.0, 1.0]] * 2, [[1.0, 1.0]] * 2)
    for spec in (tf.TensorSpec(None, tf.float32), tf.TensorSpec([None, 2], tf.float32)):
        f = tf.function(b.forward, input_signature=[spec])
        if spec.shape.rank is None:
            with pytest.raises(ValueError, match=r"known rank.*got shapes <unknown>, \(2, 2\)"):
                f(np.zeros((3, 2), np.float32))
        else:
            np.testing.assert_allclose(f(np.ones((3, 2), np.float32)).numpy(),
                                       b.forward(np.ones((3, 2), np.float32)).numpy())


@pytest.mark.parametrize("architecture", ["marginal", "coupling"])
def test_an_input_of_the_wrong_width_is_a_clear_error(architecture, moons):
    """TFP-level flows: a width other than D failed deep in a kernel ('Incompatible
    shapes: [4,1,3] vs. [8,2]', a MatMul), and a coupling flow dropped extra
    columns silently (a log-prob per row). Width 1 broadcasts where TFP does."""
    flow = tfp_gauss.gaussianization_flow(2, n_layers=2, n_components=3, seed=0,
                                          architecture=architecture)
    first = "MixtureCDFCoupling" if architecture == "coupling" else "The mixture CDF"
    for call in (flow.log_prob, tf.function(flow.log_prob)):
        with pytest.raises(ValueError, match=rf"{first} .*got an input of shape \(4, 3\), "
                                             "whose last axis must be 2"):
            call(np.zeros((4, 3), np.float32))
        assert call(moons[:4]).shape == (4,)
    rows = np.zeros((4, 1), np.float32)
    if architecture == "marginal":  # (a product of per-coordinate maps broadcasts, as in TFP)
        np.testing.assert_allclose(flow.log_prob(rows).numpy(),
                                   flow.log_prob(np.zeros((4, 2), np.float32)).numpy())
    else:
        with pytest.raises(ValueError, match=r"acts on 2 coordinates; got an input of shape "
                                             r"\(4, 1\)"):
            flow.log_prob(rows)
    # the bijectors alone, both directions
    b = MixtureGaussianCDF(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 3)))
    for call in (b.forward, b.inverse):
        with pytest.raises(ValueError, match=r"parameters for 2 coordinates \(locs of shape "
                                             r"\(2, 3\).*got an input of shape \(5, 3\)"):
            call(np.zeros((5, 3)))
    rotation = HouseholderRotation(np.eye(2)[:1])
    for call in (rotation.forward, rotation.inverse):
        with pytest.raises(ValueError, match=r"rotates 2 coordinates; got an input of shape "
                                             r"\(5, 3\)"):
            call(np.zeros((5, 3)))


def test_mismatched_component_axes_are_rejected():
    with pytest.raises(ValueError, match="component axis K"):
        MixtureGaussianCDF(np.zeros((2, 3)), np.zeros((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="scalar"):
        MixtureGaussianCDF(0.0, 0.0, 1.0)
    # the axes before K broadcast (a shared row of logits), or construction fails
    shared = MixtureGaussianCDF(np.zeros((1, 2)), [[0.0, 1.0], [2.0, 3.0]], np.ones((2, 2)))
    second = stats.norm.ppf(0.5 * stats.norm.cdf(-2.0) + 0.5 * stats.norm.cdf(-3.0))
    np.testing.assert_allclose(shared.forward(np.zeros((1, 2))).numpy()[0, 1], second, rtol=1e-5)
    with pytest.raises(ValueError, match=r"broadcast together; got logits \(2,\), locs \(3,\)"):
        MixtureGaussianCDF(np.zeros((2, 3)), np.zeros((3, 3)), np.ones((2, 3)))


# ----------------------------------------------------------------------------- from_data


def _nll(b, x):
    z = b.forward(x).numpy()
    ld = b.forward_log_det_jacobian(x).numpy()
    return -np.mean(np.sum(stats.norm.logpdf(z) + ld, axis=-1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_data_fits_the_reference_bimodal_sample(bimodal_sample, dtype):
    x = bimodal_sample.astype(dtype)
    b = MixtureGaussianCDF.from_data(x, n_components=6)
    assert b.dtype == dtype and b.locs.shape == (1, 6)
    assert _nll(b, x) <= 1.66


def test_from_data_matches_sklearn_em_on_every_column():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    x = np.column_stack([rng.standard_t(3, 4000), rng.exponential(size=4000),
                         np.concatenate([rng.normal(-3, 1, 2000), rng.normal(3, 0.3, 2000)])])
    b = MixtureGaussianCDF.from_data(x, n_components=4)
    ours = -_nll(b, x)
    theirs = sum(GaussianMixture(4, n_init=3, random_state=0, tol=1e-6, max_iter=1000)
                 .fit(x[:, [d]]).score(x[:, [d]]) for d in range(3))
    # EM finds a local optimum; ours must be at least as good as sklearn's best of 3.
    assert ours >= theirs - 2e-3


def test_from_data_errors_say_what_was_seen():
    x = np.random.default_rng(0).normal(size=(100, 3))
    x[[5, 17], 1] = np.nan
    x[40, 2] = np.inf
    with pytest.raises(ValueError, match=r"3 of 100 rows.*columns \[1, 2\]"):
        MixtureGaussianCDF.from_data(x)
    with pytest.raises(ValueError, match=r"rank 2.*\(100,\).*x\[:, None\]"):
        MixtureGaussianCDF.from_data(np.zeros(100))
    few = np.random.default_rng(0).normal(size=(50, 2))
    few[:, 1] = np.arange(50) % 3
    with pytest.warns(tfp_gauss.TiedValuesWarning):  # 3 values, 4 components: fitted
        coded = MixtureGaussianCDF.from_data(few, n_components=4)
    assert sorted(set(np.round(coded.locs.numpy()[1], 6))) == [0.0, 1.0, 2.0]
    few[:, 1] = 7.0
    with pytest.raises(ValueError, match=r"constant column\(s\) \[1\] \(value\(s\) \[7.0\]\)"):
        MixtureGaussianCDF.from_data(few, n_components=4)
    with pytest.raises(ValueError, match="numeric"):
        MixtureGaussianCDF.from_data(np.array([["a", "b"]]))


def test_from_data_is_reproducible_and_handles_duplicates():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(300, 1)), np.full((300, 1), 0.25)])
    a = MixtureGaussianCDF.from_data(x, n_components=5, seed=3)
    b = MixtureGaussianCDF.from_data(x, n_components=5, seed=3)
    np.testing.assert_array_equal(a.locs.numpy(), b.locs.numpy())
    assert np.all(a.scales.numpy() > 0) and np.isfinite(_nll(a, x))


@pytest.mark.parametrize("dtype", [np.float16, tf.bfloat16])
def test_unsupported_dtype_is_a_clear_error_at_construction(dtype):
    params = [tf.cast(tf.constant(v), dtype) for v in ([[0.0, 0.0]], [[-1.0, 1.0]], [[1.0, 1.0]])]
    with pytest.raises(TypeError, match="float32 and float64.*got (float16|bfloat16)"):
        MixtureGaussianCDF(*params)


@pytest.mark.parametrize("dtype,cap", [(np.float32, 2), (np.float64, 3)])
def test_capped_inverse_is_reported_and_an_error_under_validate_args(dtype, cap):
    # A cap of 2 (float32) / 3 (float64) steps: about a third of the roots
    # need more (measured: 1-4 / 2-5 steps uncapped), so the inverse is inaccurate
    # there; `inverse_diagnostics` says which (checked against the scipy
    # reference forward of the returned x), and validate_args makes it an error.
    params = random_mixture(np.random.default_rng(2), 3, 5, dtype)
    z = np.random.default_rng(3).normal(0.0, 2.0, (40, 3)).astype(dtype)
    capped = MixtureGaussianCDF(*params, max_iterations=cap)
    result = capped.inverse_diagnostics(z)
    converged = result.converged.numpy()
    assert 0 < converged.sum() < converged.size
    assert np.all(result.num_iterations.numpy() <= cap)
    z_back, _ = mixture_reference(result.x.numpy(), *params)
    error = np.abs(z_back - z)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    # Converged roots are accurate; among the others some are far off (a
    # capped element may also happen to be close: the test it failed needs
    # one more small Newton step).
    assert error[converged].max() <= tol < error[~converged].max()
    # Converged exactly where the uncapped solve took at most `cap` steps.
    full = MixtureGaussianCDF(*params).inverse_diagnostics(z)
    np.testing.assert_array_equal(converged, full.num_iterations.numpy() <= cap)
    # The reported bracket holds the true root (solved with the default cap).
    root = MixtureGaussianCDF(*params).inverse(z).numpy()
    assert np.all(np.abs(result.x.numpy() - root) <= result.bracket_width.numpy() * (1 + 1e-6))
    # Without validate_args the inverse returns those same iterates.
    np.testing.assert_array_equal(capped.inverse(z).numpy(), result.x.numpy())
    strict = MixtureGaussianCDF(*params, max_iterations=cap, validate_args=True)
    for inverse in (strict.inverse, tf.function(strict.inverse)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="did not converge for"):
            inverse(z)
    # Under XLA the assertion compiles away; the capped elements are NaN. XLA's
    # fused float arithmetic may round differently from TF's kernels (it does on
    # some CPUs), so an element at the edge of the test can converge under one
    # and not the other: the NaNs are where XLA's own solve stopped at the cap,
    # and that differs from the graph's in at most a couple of the 120 elements;
    # the XLA roots it kept are accurate.
    x_xla = tf.function(strict.inverse, jit_compile=True)(z).numpy()
    converged_xla = tf.function(capped.inverse_diagnostics,
                                jit_compile=True)(z).converged.numpy()
    np.testing.assert_array_equal(np.isnan(x_xla), ~converged_xla)
    assert np.sum(converged_xla != converged) <= 2 and np.sum(~converged_xla) >= 3
    z_back_xla, _ = mixture_reference(np.where(converged_xla, x_xla, 0), *params)
    assert np.abs(z_back_xla - z)[converged_xla].max() <= tol
    # With the default cap every element converges and nothing is raised.
    good = MixtureGaussianCDF(*params, validate_args=True)
    assert good.inverse_diagnostics(z).converged.numpy().all()
    np.testing.assert_allclose(good.inverse(z).numpy(), root, rtol=0, atol=0)
    with pytest.raises(ValueError, match="max_iterations"):
        MixtureGaussianCDF(*params, max_iterations=0)


def test_kernel_takes_a_batch_of_parameters_one_set_per_row():
    # What a coupling layer's conditioner gives: parameters [N, D, K], one
    # mixture per element. The map, its gradient and the inverse (starts and
    # root-find) broadcast over them; checked against the scipy reference
    # row by row and the autodiff of the plain reference.
    rng = np.random.default_rng(11)
    n, d, k = 7, 3, 4
    logits, locs, scales = (p.reshape(n, d, k) for p in random_mixture(rng, n * d, k))
    x = 2.0 * rng.standard_normal((n, d))
    z, ld = (t.numpy() for t in mixture_cdf.mixture_cdf_transform(
        *map(tf.constant, (x, logits, locs, scales))))
    z_ref, ld_ref = mixture_reference(x, logits, locs, scales)
    assert rel_err(z, z_ref).max() <= 1e-12 and rel_err(ld, ld_ref).max() <= 1e-12
    params = [tf.constant(p) for p in (logits, locs, scales)]
    xt = tf.constant(x)
    grads = []
    for fn in (mixture_cdf.mixture_cdf_transform, _plain_transform):
        with tf.GradientTape() as tape:
            tape.watch([xt] + params)
            zz, ll = fn(xt, *params)
            loss = tf.reduce_sum(tf.sin(zz) + 0.3 * ll)
        grads.append(tape.gradient(loss, [xt] + params))
    for ours, ref in zip(*grads):
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-9, atol=1e-11)
    x_back = MixtureGaussianCDF(*params).inverse(tf.constant(z_ref)).numpy()
    np.testing.assert_allclose(x_back, x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eager_inverse_of_many_elements_runs_the_compiled_kernel(monkeypatch, dtype):
    # From KERNEL_MIN_ELEMENTS elements an eager inverse of [D, K] maps runs the
    # stacked sampler's XLA kernel (lowered here, to keep the test small): roots
    # of the float64 reference map, the implicit gradients, any leading shape;
    # validate_args and batch-shaped parameters keep the graph solve.
    from tfp_gauss.bijectors import mixture_gaussian_cdf as module  # noqa: PLC0415

    monkeypatch.setattr(module, "KERNEL_MIN_ELEMENTS", 1000)
    calls = []
    real = module._kernel_solver
    monkeypatch.setattr(module, "_kernel_solver", lambda cap: calls.append(cap) or real(cap))
    rng = np.random.default_rng(31)
    params = [p.astype(dtype) for p in random_mixture(rng, 3, 4)]
    b = MixtureGaussianCDF(*(tf.Variable(p) for p in params))
    tol = 1e-10 if dtype == np.float64 else 2e-5
    for shape in [(400, 3), (2, 200, 3)]:
        z = tf.constant(rng.normal(0.0, 2.0, shape).astype(dtype))
        with tf.GradientTape() as tape:
            tape.watch(z)
            x = b.inverse(z)
            loss = tf.reduce_sum(tf.sin(x))
        dz, *dparams = tape.gradient(loss, [z] + list(b.trainable_variables))
        assert x.shape == shape and x.dtype == dtype
        z_back, log_slope = mixture_reference(x.numpy().astype(np.float64), *params)
        assert np.abs(z_back - z.numpy()).max() <= tol * 4
        # dx/dz = 1/T'(x), so d loss/dz = cos(x) / T'(x)
        np.testing.assert_allclose(dz.numpy(), np.cos(x.numpy()) * np.exp(-log_slope),
                                   rtol=tol * 10, atol=tol)
        assert all(np.isfinite(g.numpy()).all() for g in dparams)
    assert calls == [100, 100]
    # the locations' gradient against central differences of the float64 reference root
    z = rng.normal(0.0, 2.0, (400, 3))
    with tf.GradientTape() as tape:
        x = b.inverse(tf.constant(z.astype(dtype)))
        loss = tf.reduce_sum(tf.sin(x))
    dlocs = tape.gradient(loss, b.locs).numpy()

    def root_loss(locs):
        roots = tf.function(MixtureGaussianCDF(params[0], locs, params[2]).inverse)(
            tf.constant(z.astype(dtype)))
        return np.sin(roots.numpy().astype(np.float64)).sum()

    h = 1e-6 if dtype == np.float64 else 1e-2
    for d, k in [(0, 1), (2, 3)]:
        up, down = params[1].copy(), params[1].copy()
        up[d, k] += h
        down[d, k] -= h
        fd = (root_loss(up) - root_loss(down)) / (2 * h)
        assert abs(dlocs[d, k] - fd) <= (1e-6 if dtype == np.float64 else 2e-2) * max(1, abs(fd))
    assert len(calls) == 3
    # validate_args keeps the graph solve (it reports non-convergence), as do
    # parameters with a batch shape, a cap below the default (the kernel's table
    # would be solved with it), fewer than 4 * GRID_SIZE rows per coordinate, and
    # a NaN parameter (whose roots the graph solve gives as NaN; the kernel gave
    # finite ones)
    MixtureGaussianCDF(*params, validate_args=True).inverse(z.astype(dtype))
    batched = MixtureGaussianCDF(*(np.stack([p, p]) for p in params))
    batched.inverse(rng.normal(size=(400, 2, 3)).astype(dtype))
    MixtureGaussianCDF(*params, max_iterations=5).inverse(z.astype(dtype))
    MixtureGaussianCDF(*(np.tile(p, [4, 1]) for p in params)).inverse(
        rng.normal(size=(200, 12)).astype(dtype))
    broken = params[1].copy()
    broken[0, 0] = np.nan
    x = MixtureGaussianCDF(params[0], broken, params[2]).inverse(z.astype(dtype)).numpy()
    assert np.isnan(x[:, 0]).all() and np.isfinite(x[:, 1:]).all()
    assert len(calls) == 3
    # Non-finite targets, by the kernel and by the graph solve (whose table
    # start once gathered at the int32 cast of NaN: an InvalidArgumentError)
    bad = z.astype(dtype)
    bad[:3, 1] = [np.nan, np.inf, -np.inf]
    for threshold in (1000, 10**12):
        monkeypatch.setattr(module, "KERNEL_MIN_ELEMENTS", threshold)
        x = b.inverse(tf.constant(bad)).numpy()
        assert np.isnan(x[0, 1]) and x[1, 1] == np.inf and x[2, 1] == -np.inf
        rest = np.ones(bad.shape, bool)
        rest[:3, 1] = False
        z_back, _ = mixture_reference(x.astype(np.float64), *params)
        assert np.abs(z_back - bad)[rest].max() <= tol * 4
    assert len(calls) == 4


def test_eager_inverse_of_a_batch_is_one_graph_solve_traced_once_per_rank():
    # Eagerly a batch's root-find runs as a cached graph function (one Python
    # dispatch per call, not one per op per Newton step): the same roots as a
    # tf.function of the same call, bit for bit, and every batch size of a rank
    # and bijectors whose parameters have the same shapes (a flow's layers)
    # share one trace. A few elements are solved in a graph of their own, from
    # the anchors' start as in a tf.function (op by op, a 30-layer flow's
    # sample(5) took 1.9 s per call).
    rng = np.random.default_rng(21)
    first, second = (MixtureGaussianCDF(*random_mixture(rng, 3, 4)) for _ in range(2))
    z = rng.normal(0.0, 2.0, (300, 3))
    x = first.inverse(z).numpy()
    np.testing.assert_array_equal(x, tf.function(first.inverse)(tf.constant(z)).numpy())
    z_back, _ = mixture_reference(x, *(p.numpy() for p in first._params()))
    assert np.abs(z_back - z).max() <= 1e-10
    before = root_finding._graph_solver.cache_info()
    x2 = second.inverse(rng.normal(0.0, 2.0, (500, 3))).numpy()
    after = root_finding._graph_solver.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    assert np.isfinite(x2).all()
    few = rng.normal(0.0, 2.0, (5, 3))
    x_few = first.inverse(few).numpy()
    # at most the anchors' solver is new (an earlier test may have made it)
    misses = root_finding._graph_solver.cache_info().misses
    assert misses <= after.misses + 1
    np.testing.assert_array_equal(x_few, tf.function(first.inverse)(tf.constant(few)).numpy())
    # (another size, the same trace; the working set may round an ulp apart)
    np.testing.assert_allclose(first.inverse(few[:2]).numpy(), x_few[:2], rtol=1e-14)
    assert root_finding._graph_solver.cache_info().misses == misses
    z_back, _ = mixture_reference(x_few, *(p.numpy() for p in first._params()))
    assert np.abs(z_back - few).max() <= 1e-10
    # The gradient is still the implicit-function one, through the graph solve.
    zt = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        xt = first.inverse(zt)
    dx_dz = tape.gradient(xt, zt).numpy()
    _, log_slope = mixture_reference(xt.numpy(), *(p.numpy() for p in first._params()))
    np.testing.assert_allclose(dx_dz, np.exp(-log_slope), rtol=1e-9)
    # One trace served the three batch sizes, both bijectors and the taped call.
    solver = root_finding._graph_solver(mixture_cdf.grid_inverse_start,
                                        mixture_cdf.mixture_cdf_value, 100, (2, tf.float64),
                                        (((3, 4), tf.float64),) * 3)
    assert solver.experimental_get_tracing_count() == 1
    few_solver = root_finding._graph_solver(mixture_cdf.anchor_inverse_start,
                                            mixture_cdf.mixture_cdf_value, 100, (2, tf.float64),
                                            (((3, 4), tf.float64),) * 3)
    assert few_solver.experimental_get_tracing_count() == 1
