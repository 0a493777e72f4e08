"""The bijectors that join the shared contract test, one entry each.

A case says how to build the bijector from a dict of parameter arrays, what
inputs to feed it, and which parameter values ``validate_args`` must reject.
Adding a bijector to the library means adding one entry to ``CASES``.
"""

import dataclasses
from typing import Callable

import numpy as np

from helpers import (
    conditioner_reference,
    householder_reference,
    mixture_reference,
    random_mixture,
)
from tfp_gauss.bijectors import (
    HouseholderRotation,
    MixtureCDFCoupling,
    MixtureGaussianCDF,
    MLPConditioner,
)


@dataclasses.dataclass(frozen=True)
class Case:
    build: Callable  # build(validate_args=..., **params) -> bijector
    params: Callable  # params(dtype) -> dict of numpy arrays
    sample: Callable  # sample(dtype) -> x of shape [N, D]
    tails: Callable  # tails(dtype) -> extreme inputs that must stay finite
    event_ndims: int
    invalid: tuple  # ((param name, bad value fn(params) -> array, reason), ...)
    # reference(params, x) -> (y, log|det dy/dx| per row), float64 numpy/scipy,
    # written without tfp_gauss: the independent check of forward and log-det.
    reference: Callable
    # A linear bijector's change of measure is checked through the matrix
    # forward(I); an elementwise one's (event_ndims 0) on a 1-D grid; a
    # two-dimensional one's (``plane``) by integrating its density over a grid.
    linear: bool = False
    plane: bool = False
    # Whether the bijector is a tf.CompositeTensor (passes through tf.function
    # as a value); a coupling layer holding a conditioner module is not.
    composite: bool = True


def _mixture_params(dtype):
    logits, locs, scales = random_mixture(np.random.default_rng(1), 3, 4, dtype)
    return dict(logits=logits, locs=locs, scales=scales)


def _with(name, fn):
    def bad(params):
        value = params[name].copy()
        value.flat[0] = fn(value.flat[0])
        return value
    return bad


def _mixture_reference(params, x):
    z, log_det = mixture_reference(x, params["logits"], params["locs"], params["scales"])
    return z, log_det.sum(-1)


def _rotation_reference(params, x):
    q = householder_reference(params["vectors"])
    return x @ q.T, np.full(x.shape[0], np.linalg.slogdet(q)[1])


def _rotation_params(dtype):
    return dict(vectors=np.random.default_rng(3).standard_normal((4, 4)).astype(dtype))


# The coupling case: D = 2 (so its density can be integrated on a plane),
# K = 3, conditioning on coordinate 0, an MLP with one hidden layer of 6.
_COUPLING_DIMS = [0]


def _coupling_params(dtype):
    rng = np.random.default_rng(4)
    logits, locs, scales = random_mixture(rng, 2, 3, dtype)
    shapes = [(2, 6), (6,), (6, 2 * 3 * 3), (2 * 3 * 3,)]
    weights = [(0.3 * rng.standard_normal(s)).astype(dtype) for s in shapes]
    return dict(logits=logits, locs=locs, scales=scales, kernel_1=weights[0],
                bias_1=weights[1], kernel_2=weights[2], bias_2=weights[3])


def _coupling(logits, locs, scales, kernel_1, bias_1, kernel_2, bias_2, validate_args=False):
    net = MLPConditioner([kernel_1, bias_1, kernel_2, bias_2], _COUPLING_DIMS, n_dims=2,
                         n_components=3)
    return MixtureCDFCoupling(logits, locs, scales, net, _COUPLING_DIMS,
                              validate_args=validate_args)


def _coupling_reference(params, x):
    mask = np.array([1.0, 0.0])
    d = conditioner_reference(x, mask, [params[k] for k in (
        "kernel_1", "bias_1", "kernel_2", "bias_2")], 3)
    z, log_det = mixture_reference(
        x, params["logits"] + d[..., 0, :], params["locs"] + params["scales"] * d[..., 1, :],
        params["scales"] * np.exp(3.0 * np.tanh(d[..., 2, :] / 3.0)))
    return z, log_det.sum(-1)


CASES = {
    "HouseholderRotation": Case(
        build=HouseholderRotation,
        params=_rotation_params,
        sample=lambda dtype: (3 * np.random.default_rng(2).standard_normal((64, 4))).astype(dtype),
        tails=lambda dtype: np.array([[1e4, -1e4, 3e3, 0.0], [-1e6, 1e6, 1e5, -2e5]], dtype),
        event_ndims=1,
        invalid=(
            ("vectors", _with("vectors", lambda v: np.nan), "NaN"),
            ("vectors", lambda p: np.concatenate([np.zeros_like(p["vectors"][:1]),
                                                  p["vectors"][1:]]), "non-zero"),
        ),
        reference=_rotation_reference,
        linear=True,
    ),
    "MixtureGaussianCDF": Case(
        build=MixtureGaussianCDF,
        params=_mixture_params,
        sample=lambda dtype: (3 * np.random.default_rng(2).standard_normal((64, 3))).astype(dtype),
        tails=lambda dtype: np.array([[-1e4, -300, -40], [40, 300, 1e4]], dtype),
        event_ndims=0,
        invalid=(
            ("scales", _with("scales", lambda v: 0.0), "positive"),
            ("scales", _with("scales", lambda v: -v), "positive"),
            ("locs", _with("locs", lambda v: np.nan), "NaN"),
            ("logits", _with("logits", lambda v: np.inf), "NaN or infinity"),
        ),
        reference=_mixture_reference,
    ),
    "MixtureCDFCoupling": Case(
        build=_coupling,
        params=_coupling_params,
        sample=lambda dtype: (2 * np.random.default_rng(2).standard_normal((64, 2))).astype(dtype),
        tails=lambda dtype: np.array([[-1e4, 40], [300, -300], [40, 1e4]], dtype),
        event_ndims=1,
        invalid=(
            ("scales", _with("scales", lambda v: 0.0), "positive"),
            ("scales", _with("scales", lambda v: -v), "positive"),
            ("locs", _with("locs", lambda v: np.nan), "NaN"),
            ("logits", _with("logits", lambda v: np.inf), "NaN or infinity"),
        ),
        reference=_coupling_reference,
        plane=True,
        composite=False,
    ),
}
