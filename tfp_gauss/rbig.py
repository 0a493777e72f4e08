"""Greedy rotation-based iterative Gaussianization (RBIG) into the flow's own layers.

Each layer is fit once, from the data in front of it, with no gradients:

1. marginal: a ``K``-component mixture per coordinate by EM
   (``mixture_em.fit_mixture_em``, what ``MixtureGaussianCDF.from_data``
   fits), and the data pushed through that bijector's own ``forward`` (there
   is one implementation of the maths);
2. rotation: PCA of the Gaussianized data (or a random rotation), stored
   exactly as a ``HouseholderRotation`` via ``from_matrix``.

The result is the same ``TransformedDistribution`` that ``gaussianization_flow``
builds, so it can seed a trainable flow (``GaussianizationFlowModel
.from_distribution``): the RBIG warm start.

Reference: Laparra, Camps-Valls & Malo (2011), Iterative Gaussianization: from
ICA to random rotations. IEEE Trans. Neural Networks 22(4).
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from tfp_gauss import _validation, flows
from tfp_gauss.bijectors import HouseholderRotation, MixtureGaussianCDF
from tfp_gauss.math import mixture_em

__all__ = ["RBIGInfo", "fit_rbig"]

def _signed(r):
    """``r`` with its last row negated if needed so that ``det r = (-1)^D``.

    A product of ``D`` reflections has determinant ``(-1)^D``; flipping the
    sign of one output coordinate keeps a PCA/random rotation just as good
    (the next marginal layer is symmetric in it) and keeps every layer at
    ``M = D`` reflection vectors, the structure of a trainable flow.
    """
    d = r.shape[0]
    if np.sign(np.linalg.det(r)) != (-1) ** d:
        r = r.copy()
        r[-1] = -r[-1]
    return r


def _rotation_matrix(h, kind, rng):
    d = h.shape[1]
    if kind == "pca":
        cov = np.cov(h.astype(np.float64), rowvar=False).reshape(d, d)
        _, vecs = np.linalg.eigh(cov)
        r = vecs[:, ::-1].T  # rows: principal axes, largest variance first
    elif kind == "random":
        q, rr = np.linalg.qr(rng.standard_normal((d, d)))
        r = q * np.sign(np.diag(rr))  # Haar-distributed
    else:
        raise ValueError(f"rotation must be 'pca' or 'random'; got {kind!r}.")
    return _signed(r)


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def _marginal_forward(h, logits, locs, scales):
    """The layer's own ``MixtureGaussianCDF.forward``, compiled once per shape."""
    return MixtureGaussianCDF(logits, locs, scales).forward(h)


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def _marginal_forward_log_det(h, logits, locs, scales):
    """``forward(h)`` and the per-row log-det ``sum_d log T'_d(h_d)``."""
    mixture = MixtureGaussianCDF(logits, locs, scales)
    return mixture.forward(h), mixture.forward_log_det_jacobian(h, event_ndims=1)


def _std_normal_log_prob(z):
    return -0.5 * np.sum(np.square(z.astype(np.float64)), axis=1) - 0.5 * z.shape[1] * np.log(
        2.0 * np.pi)


# Silverman's rule of thumb for a Gaussian kernel's bandwidth, relative to
# the standard deviation: 1.06 N^(-1/5).
def _bandwidth_ratio(n_rows):
    return 1.06 * float(n_rows) ** -0.2


# Fewest components that get a tail component: with 2 or 3 the tail takes
# half or a third of the mixture, and the held-out scores of five splits were
# mostly lower (benchmarks/results/rbig_tails_k.md).
TAIL_MIN_COMPONENTS = 4


def _tail_kwargs(tail_component, n_components, n_rows):
    """``fit_mixture_em``'s tail settings: one column-std wide, weight >= one row's 1/N."""
    if not tail_component or n_components < TAIL_MIN_COMPONENTS:
        return {}
    return dict(tail_scale_ratio=1.0, tail_weight=1.0 / n_rows)


# Each layer's EM stops a column when its mean log-likelihood changes by less
# than EM_TOL * (1 + |loglik|), in float64 as in float32 (fit_mixture_em's
# float64 default, 1e-7, ran most columns to the iteration cap). Measured on
# validation rows (benchmarks/results/em_tolerance.md): float64 fits 1.2-9x
# faster (308 s -> 114 s over 17 dataset-seeds); validation log-likelihood
# higher on 9 of them, level on 1, lower on 7 (by 0.03-0.25: faithful's three,
# two of diabetes, one of breast cancer, digits), +0.09 nats on average, as
# the depth chosen on the held-out rows moves. (tfp_gauss.information keeps
# 1e-7, the tolerance its accuracy grid was measured with: `_em_tol`.)
EM_TOL = 1e-5


def _greedy_layers(x, val, n_layers, n_components, *, rotation, rng, patience, tol,
                   max_em_iterations, min_scale_ratio, tail_component, em_tol):
    """The greedy layer loop of ``fit_rbig`` for one scale floor; ``(layers, info)``."""
    dtype = x.dtype
    # Training and held-out rows go through each layer as one batch: one
    # compiled program per data shape (two shapes cost a second XLA compile).
    n_train = len(x)
    h = tf.constant(x if val is None else np.concatenate([x, val]))
    log_det_val = 0.0
    layers, reductions, em_iters, val_scores = [], [], [], []
    for _ in range(n_layers):
        h_np = h.numpy()[:n_train]
        fit = mixture_em.fit_mixture_em(h_np, n_components, seed=rng,
                                        max_iterations=max_em_iterations, tol=em_tol,
                                        min_scale_ratio=min_scale_ratio,
                                        **_tail_kwargs(tail_component, n_components, n_train))
        # Scales as softplus of exact raw values: the same parameterisation as
        # the trainable flow, so a warm start reproduces this fit bit for bit.
        mixture = MixtureGaussianCDF(
            fit["log_weights"], fit["locs"],
            flows.softplus_scales(tf.constant(flows.softplus_inverse(fit["scales"]))))
        params = (mixture.logits, mixture.locs, tf.convert_to_tensor(mixture.scales))
        var = h_np.astype(np.float64).var(axis=0)
        reduction = float(np.sum(0.5 * np.log(2 * np.pi * np.e * var) + fit["log_likelihood"]))
        if val is None:
            z = _marginal_forward(h, *params)
        else:
            z, log_det = _marginal_forward_log_det(h, *params)
        r = _rotation_matrix(z.numpy()[:n_train], rotation, rng)
        rot = HouseholderRotation.from_matrix(r.astype(dtype))
        h = rot.forward(z)
        layers.append((mixture, rot))
        reductions.append(reduction)
        em_iters.append(int(fit["iterations"].max()))
        if val is not None:
            log_det_val = log_det_val + log_det.numpy()[n_train:].astype(np.float64)
            score = float(np.mean(_std_normal_log_prob(h.numpy()[n_train:]) + log_det_val))
            # A non-finite held-out score is never the best.
            val_scores.append(score if np.isfinite(score) else -np.inf)
            if len(val_scores) - 1 - int(np.argmax(val_scores)) >= patience:
                break
        if tol is not None and reduction < tol:
            break
    info = dict(total_correlation_reduction=tuple(reductions), em_iterations=tuple(em_iters),
                rotation=rotation)
    if val_scores:
        best = int(np.argmax(val_scores)) + 1
        layers = layers[:best]
        info.update(validation_log_likelihood=tuple(val_scores), best_n_layers=best)
    return layers, info


def fit_rbig(x, n_layers=32, n_components=8, *, rotation="pca", seed=None,
             validation_data=None, validation_split=0.1, patience=4,
             bandwidth_factor=(0.25, 0.5, 1.0), tail_component=True,
             tol=None, max_em_iterations=200, return_info=False, random_state=None,
             _warn_tied=True, _em_tol=EM_TOL):
    r"""Greedy RBIG fit of a Gaussianization flow, returned as a TFP distribution.

    For ``l = 1..L``: fit a per-coordinate Gaussian mixture to the current data
    ``h`` by EM, map ``h`` through that ``MixtureGaussianCDF``, then rotate by
    the PCA (or a random) rotation of the result. The returned flow's
    ``log_prob`` is

    $$\log p(x) = \log\mathcal N(G(x); 0, I) + \sum_l \sum_d \log T'_{l,d},$$

    exactly the structure of ``gaussianization_flow``.

    **Generalization.** Three guards keep a greedy fit from memorizing its rows:

    - *Depth chosen on held-out data.* After each layer the held-out rows
      (``validation_data``, or a ``validation_split`` of ``x`` held out
      with ``seed``) are pushed through it and their mean
      log-likelihood recorded; fitting stops ``patience`` layers after the
      best one, and the flow is cut back to the best depth. ``n_layers`` is
      then the *most* layers tried.
    - *Components no narrower than a kernel.* Each mixture component's scale
      is at least a factor ``c`` times Silverman's kernel bandwidth of its
      column, ``1.06 std N^{-1/5}``: EM cannot shrink a component onto a few
      training points, which is what sends held-out points into far tails in
      deep greedy fits (held-out log-likelihoods of -1e6 and worse). A fit is
      made for each ``c`` in ``bandwidth_factor`` and the one with the best
      held-out log-likelihood is returned: few rows favour wide floors, many
      rows narrow ones, with no rule of N alone that fits the datasets
      measured. (Choosing ``c`` per column and layer instead overfits a
      small held-out set: on 18 held-out rows of 13-D wine it scored -11 on
      them and -140 on test.)
    - *Tails as wide as the data's.* Far from the training rows a layer's
      map has the slope ``1/sigma`` of its widest component. Free EM
      components are narrower than the column (``sigma < std``), so a
      held-out point just past the training range moves further out at
      every layer, and after 20-30 layers scores -1e4 or worse, unseen by
      a small held-out set (swiss roll, 1,125 rows: test mean -42.7,
      worst row -11,321). With ``tail_component`` each column's mixture
      keeps one component exactly one standard deviation wide with weight
      at least ``1/N``: a point past the data keeps its distance in
      standard deviations, layer after layer (and, its scale being fixed,
      it does not widen the samples: a tail whose scale EM could widen
      gave two-moons samples a standard deviation of 1e6 and more). Measured on 14 held-out splits
      (``benchmarks/check_rbig_tails.py``): the swiss roll's test mean
      -2.56, worst row -21; test means better on 9 of 14 (median +0.14
      nats per row). It costs most where every free component counts:
      diamonds, 43,134 rows, 2.88 against 3.14. The tail component bounds
      the tails from below, not above: on skewed columns (breast cancer's)
      EM makes free components up to 5 standard deviations wide, they set
      the slope far out, and 19-23 layers compound it: 3-6 % of the
      samples lie past the training range by more than half its span (one
      coordinate to 50-200 standard deviations; the density puts that mass
      there, the root-find is exact). Capping free scales at the tail's
      removed them and cost 0.2-15 nats per held-out row on breast cancer,
      so it is not done; the trained flow (``fit_gaussianization_flow``)
      had 0.2 % such samples and a better held-out score.

    The defaults (``bandwidth_factor=(0.25, 0.5, 1.0)``,
    ``validation_split=0.1``, ``patience=4``) were chosen on validation
    splits of six datasets (two-moons, faithful, wine, diabetes, digits,
    diamonds; ``benchmarks/BENCHMARKS.md``).

    Early stopping by information (``tol``): a layer's marginal step removes
    the marginal negentropy of its input, which is how much it reduces the
    total correlation (multi-information) of the data; that amount is
    estimated per layer as ``sum_d [1/2 log(2 pi e var_d) + mean log f_d(h_d)]``
    (the mixture's fitted log-likelihood against a Gaussian of equal
    variance). With ``tol``, fitting also stops after the first layer whose
    reduction is below ``tol`` nats.

    Args:
      x: data ``[N, D]``, finite. The flow computes in float64 for float64
        ``x`` and in float32 for anything else (float32, float16, integers,
        booleans: float16 is too coarse for the root-finds and log-space tails).
      n_layers: maximum number of layers ``L``.
      n_components: mixture components ``K`` per coordinate.
      rotation: ``"pca"`` (default) or ``"random"`` (Haar).
      seed: int or ``np.random.Generator``: the held-out split, EM
        initialisation jitter and random rotations. ``None`` means ``0``, so
        a fit is reproducible unless a seed is asked to vary.
      validation_data: optional held-out rows ``[M, D]`` that choose the depth;
        then all of ``x`` is fit.
      validation_split: fraction of ``x``'s rows held out to choose the depth
        when ``validation_data`` is not given; ``0`` fits all ``n_layers`` on
        all rows (no selection).
      patience: layers without a held-out improvement before stopping.
      tail_component: ``True`` or ``False``. ``True``: with ``K >= 4``,
        give each layer's mixtures a *tail component* (the last of the
        ``K``): scale fixed at the column's standard deviation, weight at
        least ``1/N`` (one training row's share), location by EM. See
        "Generalization" above. With ``K`` of 2 or 3 it would take half or
        a third of the mixture (held-out scores mostly lower), so those fit
        free components. ``False`` fits ``K`` free components (the warm
        start of ``fit_gaussianization_flow``, which is trained after).
      bandwidth_factor: floor on component scales in units of the kernel
        bandwidth: a number, or candidates, one fit each, chosen on the
        held-out rows (without held-out rows, the median candidate).
        ``0`` leaves the bare EM floor of 1e-3 std.
      tol: optional information threshold in nats (see above).
      max_em_iterations: cap on EM iterations per layer (a column stops
        earlier when its mean log-likelihood changes by less than
        ``1e-5 * (1 + |loglik|)``, ``EM_TOL``, in either dtype).
      return_info: also return what the fit did (``RBIGInfo``).
      random_state: deprecated name of ``seed``.

    Returns:
      ``tfd.TransformedDistribution`` over ``N(0, I_D)`` with constant
      parameters; with ``return_info``, ``(flow, info)`` where ``info`` is
      an ``RBIGInfo``: per-layer ``total_correlation_reduction`` in nats,
      ``em_iterations``, the ``rotation`` and ``bandwidth_factor`` used, and
      with selection ``validation_log_likelihood`` per layer tried and
      ``best_n_layers``.

    Raises:
      ValueError: bad data (rank, NaN/inf rows, empty), a constant column,
        linearly dependent columns, or a bad ``validation_split`` (outside
        ``[0, 1)``, or leaving fewer than two rows on either side).

    Warns:
      TiedValuesWarning: a column of ``x`` holds repeated values (at most
        half as many distinct values as rows, or one value in at least 5 %
        of them), see ``fit_gaussianization_flow``.

    #### Example

    ```python
    import numpy as np
    import tfp_gauss
    from sklearn.datasets import make_moons

    x, _ = make_moons(3000, noise=0.08, random_state=0)
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")
    flow, info = tfp_gauss.fit_rbig(x, seed=0, return_info=True)  # depth chosen on 10 % held out
    print(info.best_n_layers, flow.log_prob(x).numpy().mean())      # 30, about -1.73
    model = tfp_gauss.keras.GaussianizationFlowModel.from_distribution(flow)
    ```
    """
    given = x
    x = _validation.check_data(x, name="x", min_rows=2)
    all_rows = x
    n_layers = _validation.check_int(n_layers, "n_layers")
    n_components = _validation.check_int(n_components, "n_components")
    patience = _validation.check_int(patience, "patience")
    max_em_iterations = _validation.check_int(max_em_iterations, "max_em_iterations", 0)
    if not isinstance(tail_component, (bool, np.bool_)):
        raise TypeError(f"tail_component must be True or False; got {tail_component!r}.")
    try:
        factors = np.asarray(bandwidth_factor, np.float64)
    except (TypeError, ValueError):
        factors = np.array([np.nan])
    if (np.size(factors) < 1 or factors.ndim > 1 or not np.all(np.isfinite(factors))
            or np.any(factors < 0)):
        raise ValueError(
            f"bandwidth_factor must be a number >= 0 or a sequence of them; got "
            f"{bandwidth_factor!r}.")
    rng = _validation.as_rng(_validation.renamed_seed(seed, random_state, "fit_rbig"))
    if validation_data is not None:
        _validation.check_same_columns(given, validation_data)
        val = _validation.check_data(validation_data, n_dims=x.shape[1], purpose="scoring",
                                     name="validation_data", dtype=x.dtype)
    else:
        x, val = _validation.holdout_split(x, validation_split, rng, name="fit_rbig")
    std = x.std(axis=0)
    constant = np.flatnonzero(std == 0)
    if constant.size and np.all(np.ptp(all_rows[:, constant], axis=0) == 0):
        raise ValueError(
            f"fit_rbig: column(s) {constant.tolist()} of x are constant (value "
            f"{x[0, constant].tolist()}); a constant has no density. Drop them first.")
    if constant.size:  # (the split keeps every varying column varying where it can)
        raise ValueError(
            f"fit_rbig: column(s) {constant.tolist()} of x vary, but not in the rows fit once "
            f"the held-out rows are set aside (value {x[0, constant].tolist()}): too few rows "
            "hold their other values. Pass validation_data, validation_split=0, or drop them.")
    _validation.check_full_rank(all_rows, "x", caller="fit_rbig")
    if x.shape[0] < all_rows.shape[0]:  # dependent in the rows fit only (cf. constant above)
        _validation.check_full_rank(x, "x", caller="fit_rbig",
                                    where=" in the rows fit once the held-out rows are set aside")
    if _warn_tied:  # (callers that warned about their own input pass False)
        _validation.warn_if_tied(all_rows, "x", given=given)
    candidates = np.atleast_1d(factors)
    if val is None:
        candidates = candidates[len(candidates) // 2:][:1]  # nothing to choose on: the median
    # Every candidate sees the same random stream, so they differ only in the floor.
    seed = int(rng.integers(2**31))
    best = None
    for factor in candidates:
        layers, info = _greedy_layers(
            x, val, n_layers, n_components, rotation=rotation,
            rng=np.random.default_rng(seed), patience=patience, tol=tol,
            max_em_iterations=max_em_iterations,
            min_scale_ratio=max(factor * _bandwidth_ratio(x.shape[0]), 1e-3),
            tail_component=tail_component, em_tol=_em_tol)
        info["bandwidth_factor"] = float(factor)
        score = max(info.get("validation_log_likelihood", (0.0,)))
        if best is None or score > best[0]:
            best = (score, layers, info)
    _, layers, info = best
    dist = flows.flow_from_layers(layers)
    return (dist, RBIGInfo(**info)) if return_info else dist


@dataclasses.dataclass(frozen=True)
class RBIGInfo:
    """What ``fit_rbig(..., return_info=True)`` did (read-only; ``info["key"]`` also works)."""

    total_correlation_reduction: tuple
    em_iterations: tuple
    rotation: str
    bandwidth_factor: float
    validation_log_likelihood: Optional[tuple] = None
    best_n_layers: Optional[int] = None

    def __getitem__(self, key):
        return getattr(self, key)
