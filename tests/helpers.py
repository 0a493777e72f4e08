"""Independent float64 references (scipy) used across the tests."""

import numpy as np
from scipy import special, stats


def mixture_reference(x, logits, locs, scales):
    """Float64 log-space ``z = Phi^{-1}(F(x))`` and ``log dz/dx`` via scipy.

    ``log F`` and ``log(1 - F)`` are log-sum-exps of ``stats.norm.logcdf`` and
    ``logsf``, ``z`` is ``ndtri_exp`` of the smaller, and the log-det is
    ``log f(x) - log phi(z)`` with ``stats.norm.logpdf``: nothing of
    tfp_gauss's erfcx-based code or of its gradients.
    """
    x = np.asarray(x, np.float64)
    logits, locs, scales = (np.asarray(a, np.float64) for a in (logits, locs, scales))
    u = (x[..., None] - locs) / scales
    log_w = logits - special.logsumexp(logits, axis=-1, keepdims=True)
    log_cdf = special.logsumexp(log_w + stats.norm.logcdf(u), axis=-1)
    log_sf = special.logsumexp(log_w + stats.norm.logsf(u), axis=-1)
    z = np.where(log_cdf < log_sf, special.ndtri_exp(log_cdf), -special.ndtri_exp(log_sf))
    log_f = special.logsumexp(log_w + stats.norm.logpdf(u) - np.log(scales), axis=-1)
    return z, log_f - stats.norm.logpdf(z)


def rel_err(a, b):
    """Elementwise relative error with a floor of 1 on the denominator."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.abs(a - b) / np.maximum(1.0, np.abs(b))


def random_mixture(rng, d, k, dtype=np.float64, spread=2.0):
    """Random ``[d, k]`` mixture parameters with scales spread over ~e^{+-1.4}."""
    logits = rng.normal(size=(d, k))
    locs = spread * rng.normal(size=(d, k))
    scales = np.exp(0.7 * rng.normal(size=(d, k)))
    return logits.astype(dtype), locs.astype(dtype), scales.astype(dtype)


def householder_reference(vectors):
    """Float64 ``Q = H_1 ... H_M`` from reflection vectors ``[M, D]`` (numpy)."""
    vectors = np.asarray(vectors, np.float64)
    q = np.eye(vectors.shape[1])
    for v in vectors:
        q = q @ (np.eye(len(v)) - 2.0 * np.outer(v, v) / (v @ v))
    return q


def floored(scales, layer):
    """``sqrt(scales^2 + floor^2)`` with the layer's ``scale_floor`` ``[D]`` (if it has one)."""
    scales = np.asarray(scales, np.float64)
    if "scale_floor" not in layer:
        return scales
    floor = np.asarray(layer["scale_floor"], np.float64)
    return np.sqrt(scales**2 + floor[:, None] ** 2)


def flow_log_prob_reference(values, x):
    """Float64 log p(x) of a flow from its per-layer parameter values (numpy/scipy).

    ``values``: list of dicts with logits, locs, scales ([D, K]) and vectors
    ([M, D]) in x -> z order (and ``scale_floor`` [D]: the maps then use
    ``sqrt(scales^2 + scale_floor^2)``).
    """
    h = np.asarray(x, np.float64)
    log_det = np.zeros(h.shape[0])
    for layer in values:
        h, ld = mixture_reference(h, layer["logits"], layer["locs"],
                                  floored(layer["scales"], layer))
        log_det += ld.sum(-1)
        h = h @ householder_reference(layer["vectors"]).T
    return -0.5 * np.sum(h**2, -1) - 0.5 * h.shape[1] * np.log(2 * np.pi) + log_det


def conditioner_reference(h, mask, weights, n_components, bound=3.0):
    """Float64 coupling parameters' offsets ``[N, D, 3, K]`` (numpy; exact GELU via erf)."""
    out = np.where(np.asarray(mask) > 0, np.asarray(h, np.float64), 0.0)
    weights = [np.asarray(w, np.float64) for w in weights]
    n_dense = len(weights) // 2
    for i in range(n_dense):
        out = out @ weights[2 * i] + weights[2 * i + 1]
        if i < n_dense - 1:
            out = 0.5 * out * (1.0 + special.erf(out / np.sqrt(2.0)))
    out = out.reshape(out.shape[0], -1, 3, n_components)
    return out * (1.0 - np.asarray(mask, np.float64))[:, None, None]


def coupling_flow_log_prob_reference(values, x, bound=3.0):
    """Float64 log p(x) of a coupling flow from ``flows.flow_values`` (numpy/scipy).

    Layer ``l``: offsets ``d = MLP(h * mask)`` (zero on the conditioning
    coordinates), parameters ``logits + d_l``, ``locs + scales d_mu``,
    ``scales exp(B tanh(d_s / B))`` per row (then ``sqrt(s^2 + floor^2)``
    with a ``scale_floor``), the mixture map of ``mixture_reference``, then
    the rotation.
    """
    h = np.asarray(x, np.float64)
    log_det = np.zeros(h.shape[0])
    for layer in values:
        logits, locs, scales = (np.asarray(layer[k], np.float64)
                                for k in ("logits", "locs", "scales"))
        d = conditioner_reference(h, layer["mask"], layer["conditioner"], locs.shape[-1], bound)
        params = (logits + d[..., 0, :], locs + scales * d[..., 1, :],
                  floored(scales * np.exp(bound * np.tanh(d[..., 2, :] / bound)), layer))
        h, ld = mixture_reference(h, *params)
        log_det += ld.sum(-1)
        h = h @ householder_reference(layer["vectors"]).T
    return -0.5 * np.sum(h**2, -1) - 0.5 * h.shape[1] * np.log(2 * np.pi) + log_det


def coupling_flow_gaussianize_reference(values, x, bound=3.0):
    """Float64 ``z = G(x)`` of a coupling flow (the map of ``coupling_flow_log_prob_reference``)."""
    h = np.asarray(x, np.float64)
    for layer in values:
        logits, locs, scales = (np.asarray(layer[k], np.float64)
                                for k in ("logits", "locs", "scales"))
        d = conditioner_reference(h, layer["mask"], layer["conditioner"], locs.shape[-1], bound)
        h, _ = mixture_reference(
            h, logits + d[..., 0, :], locs + scales * d[..., 1, :],
            floored(scales * np.exp(bound * np.tanh(d[..., 2, :] / bound)), layer))
        h = h @ householder_reference(layer["vectors"]).T
    return h


def assert_gradients_match_central_differences(loss, variables, grads, *, per_variable=2,
                                                h=1e-6, seed=3, rtol=1e-5, atol=1e-7):
    """``grads`` of ``loss()`` against central differences at random entries of each variable."""
    rng = np.random.default_rng(seed)
    for var, grad in zip(variables, grads):
        for _ in range(per_variable):
            idx = tuple(rng.integers(0, s) for s in var.shape)
            base = var.numpy()
            up, down = base.copy(), base.copy()
            up[idx] += h
            down[idx] -= h
            var.assign(up)
            f_up = float(loss())
            var.assign(down)
            f_down = float(loss())
            var.assign(base)
            np.testing.assert_allclose(np.asarray(grad)[idx], (f_up - f_down) / (2 * h),
                                       rtol=rtol, atol=atol, err_msg=var.name)
