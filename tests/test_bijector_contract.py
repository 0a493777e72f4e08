"""The contract every tfp_gauss bijector satisfies (see ``bijector_cases.CASES``)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import type_spec_registry  # pylint: disable=g-direct-tensorflow-import

from bijector_cases import CASES
from helpers import rel_err

DTYPES = [np.float32, np.float64]
# Round-trip tolerance (relative, floor 1): a few hundred ulps of the dtype.
RT_TOL = {np.float32: 2e-4, np.float64: 1e-9}
LD_TOL = {np.float32: 2e-3, np.float64: 1e-8}

cases = pytest.mark.parametrize("name", sorted(CASES))
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)


def _build(name, dtype, validate_args=False, variables=False):
    case = CASES[name]
    params = case.params(dtype)
    if variables:
        params = {k: tf.Variable(v, name=k) for k, v in params.items()}
    return case, case.build(validate_args=validate_args, **params), params


@cases
@dtypes
def test_round_trip_without_cache(name, dtype):
    case, b, _ = _build(name, dtype)
    x = case.sample(dtype)
    y = b.forward(x).numpy()  # through numpy: the bijector cache cannot answer
    assert y.dtype == dtype
    x2 = b.inverse(tf.constant(y)).numpy()
    assert rel_err(x2, x).max() <= RT_TOL[dtype]
    y2 = b.forward(tf.constant(x2)).numpy()
    assert rel_err(y2, y).max() <= RT_TOL[dtype]


@cases
@dtypes
def test_log_det_matches_autodiff_jacobian(name, dtype):
    case, b, _ = _build(name, dtype)
    x = tf.constant(case.sample(dtype)[:16])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = b.forward(x)
    jac = tape.batch_jacobian(y, x).numpy().astype(np.float64)  # [N, D, D]
    sign, logabsdet = np.linalg.slogdet(jac)
    assert np.all(sign != 0)
    fldj = b.forward_log_det_jacobian(x, event_ndims=1).numpy()
    assert rel_err(fldj, logabsdet).max() <= LD_TOL[dtype]
    # The inverse log-det, evaluated from y alone, is the negative.
    ildj = b.inverse_log_det_jacobian(tf.constant(y.numpy()), event_ndims=1).numpy()
    assert rel_err(ildj, -logabsdet).max() <= LD_TOL[dtype]


@cases
@dtypes
def test_tails_stay_finite(name, dtype):
    case, b, params = _build(name, dtype, variables=True)
    x = tf.constant(case.tails(dtype))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = b.forward(x)
        ld = b.forward_log_det_jacobian(x, event_ndims=case.event_ndims)
        y_back = tf.constant(y.numpy())
        tape.watch(y_back)
        x2 = b.inverse(y_back)
    assert np.isfinite(y.numpy()).all() and np.isfinite(ld.numpy()).all()
    assert np.isfinite(x2.numpy()).all()
    # ... and so are the gradients, of both directions, there.
    variables = list(params.values())
    for out, wrt in ((tf.reduce_sum(y) + tf.reduce_sum(ld), [x] + variables),
                     (tf.reduce_sum(x2), [y_back] + variables)):
        for g in tape.gradient(out, wrt, unconnected_gradients=tf.UnconnectedGradients.ZERO):
            assert np.isfinite(tf.convert_to_tensor(g).numpy()).all()


def _everything(b, x, variables):
    """Forward, inverse, both log-dets and parameter gradients in one graph."""
    with tf.GradientTape() as tape:
        y = b.forward(x)
        x2 = b.inverse(tf.stop_gradient(y) + 0.0)
        fldj = b.forward_log_det_jacobian(x, event_ndims=1)
        ildj = b.inverse_log_det_jacobian(tf.stop_gradient(y) + 0.0, event_ndims=1)
        loss = (tf.reduce_sum(tf.sin(y)) + tf.reduce_sum(tf.sin(x2)) + tf.reduce_sum(fldj)
                + tf.reduce_sum(ildj))
    return [y, x2, fldj, ildj] + tape.gradient(loss, variables)


@cases
@dtypes
def test_tf_function_and_xla_agree_with_eager(name, dtype):
    case, b, params = _build(name, dtype, variables=True)
    variables = list(params.values())
    x = tf.constant(case.sample(dtype)[:32])
    fn = lambda x: _everything(b, x, variables)  # noqa: E731  (variables captured once)
    eager = fn(x)
    graph = tf.function(fn)(x)
    xla = tf.function(fn, jit_compile=True)(x)
    tol = 1e-3 if dtype == np.float32 else 1e-9
    for e, g, c in zip(eager, graph, xla):
        assert np.isfinite(e.numpy()).all()
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=tol, atol=tol)


@cases
@dtypes
def test_saved_model_round_trip(name, dtype, tmp_path):
    case, b, params = _build(name, dtype, variables=True)
    x = case.sample(dtype)
    spec = tf.TensorSpec([None, x.shape[1]], dtype)
    module = tf.Module()
    module.bijector = b
    module.forward = tf.function(lambda x: b.forward(x), input_signature=[spec])
    module.inverse = tf.function(lambda y: b.inverse(y), input_signature=[spec])
    module.fldj = tf.function(
        lambda x: b.forward_log_det_jacobian(x, event_ndims=1), input_signature=[spec])
    tf.saved_model.save(module, str(tmp_path / "m"))
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    y = b.forward(x).numpy()
    # Graph and eager kernels may round differently: a few ulps, relative to O(1).
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loaded.forward(x).numpy(), y, **tol)
    np.testing.assert_allclose(loaded.inverse(y).numpy(), b.inverse(y).numpy(), **tol)
    np.testing.assert_allclose(loaded.fldj(x).numpy(),
                               b.forward_log_det_jacobian(x, event_ndims=1).numpy(), **tol)
    # The variables were saved, not frozen: they are restored as variables.
    restored = [v for v in vars(loaded.bijector).values() if isinstance(v, tf.Variable)]
    assert len(restored) == len(params)
    # ... and gradients flow through the reloaded inverse (custom gradient saved).
    y_t = tf.constant(y)
    with tf.GradientTape() as tape:
        tape.watch(y_t)
        x_loaded = loaded.inverse(y_t)
    with tf.GradientTape() as tape2:
        tape2.watch(y_t)
        x_mem = b.inverse(y_t)
    np.testing.assert_allclose(tape.gradient(x_loaded, y_t).numpy(),
                               tape2.gradient(x_mem, y_t).numpy(), **tol)


@cases
def test_composite_tensor_passes_through_tf_function(name):
    case, b, _ = _build(name, np.float64, variables=True)
    x = tf.constant(case.sample(np.float64)[:4])
    spec = b._type_spec  # pylint: disable=protected-access
    assert type(spec).__module__ != "tensorflow_probability.python.bijectors.bijector"
    # Registered under our own module name, so no TFP TypeSpec is replaced.
    assert type_spec_registry.get_name(type(spec)) == (
        f"tfp_gauss.bijectors.{type(b).__name__}_ACTTypeSpec")

    @tf.function
    def f(bij, x):
        return bij.forward(x)

    np.testing.assert_allclose(f(b, x).numpy(), b.forward(x).numpy())
    flat = tf.nest.flatten(b, expand_composites=True)
    rebuilt = tf.nest.pack_sequence_as(b, flat, expand_composites=True)
    np.testing.assert_allclose(rebuilt.forward(x).numpy(), b.forward(x).numpy())


def _bad_params(case, dtype):
    for pname, bad_fn, reason in case.invalid:
        params = case.params(dtype)
        yield pname, params, bad_fn(params), reason


@cases
def test_validate_args_rejects_bad_constants(name):
    case = CASES[name]
    for pname, params, bad, reason in _bad_params(case, np.float64):
        params = dict(params, **{pname: bad})
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=reason):
            b = case.build(validate_args=True, **params)
            b.forward(case.sample(np.float64))


@cases
def test_validate_args_rejects_bad_variables_on_every_call(name):
    case = CASES[name]
    x = case.sample(np.float64)
    for pname, params, bad, reason in _bad_params(case, np.float64):
        variables = {k: tf.Variable(v) for k, v in params.items()}
        b = case.build(validate_args=True, **variables)
        b.forward(x)  # valid values: no error
        variables[pname].assign(bad)
        with pytest.raises(tf.errors.InvalidArgumentError, match=reason):
            b.forward(x)
