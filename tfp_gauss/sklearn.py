r"""scikit-learn estimators: ``GaussianizationDensity`` and ``GaussianizationTransformer``.

Two thin faces of the one fitting path (``tfp_gauss.fit_gaussianization_flow``)
for code that knows scikit-learn and nothing of TensorFlow:

- ``GaussianizationDensity``: a density estimator with the API of
  ``KernelDensity`` / ``GaussianMixture`` (``fit``, ``score_samples``,
  ``score``, ``sample``).
- ``GaussianizationTransformer``: multivariate Gaussianization as a
  preprocessing step (``transform``: data -> ``z ~ N(0, I)``,
  ``inverse_transform``: ``z`` -> data).

Both standardize internally, in float64, with the training rows' mean ``m``
and standard deviation ``s`` (``mean_``, ``scale_``), fit the flow ``G`` to
``y = (x - m) / s``, and report everything in the data's own units:

$$z = G\big((x - m) / s\big), \qquad
  \log p(x) = \log\mathcal N(z; 0, I) + \log|\det \partial G/\partial y|
              - \textstyle\sum_d \log s_d .$$

Training runs in float32 (as ``fit_gaussianization_flow`` does); the fitted
parameters are then evaluated in float64, so ``score_samples``,
``transform`` and ``inverse_transform`` do not depend on how rows are
batched, and a pickled estimator (which stores the parameters as numpy
arrays, not the Keras model) gives identical results in a new process.

This module is named ``sklearn`` inside the package; it imports scikit-learn
with absolute imports (``from sklearn.base import ...``), which resolve to
the real scikit-learn.
"""

import inspect
import numbers
import warnings

import numpy as np
from sklearn.base import (BaseEstimator, ClassNamePrefixFeaturesOutMixin, DensityMixin,
                          TransformerMixin)
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

__all__ = ["GaussianizationDensity", "GaussianizationTransformer"]

# Attributes rebuilt from the stored parameters: not pickled (TF objects).
_DERIVED = ("distribution_", "_flow64", "_params64", "_coupling64")


# fit_gaussianization_flow's arguments that the estimators set from their own parameters
_OWN_ARGUMENTS = dict(
    n_layers="n_layers", n_components="n_components", steps="max_steps",
    batch_size="batch_size", peak_learning_rate="learning_rate", init="init",
    validation_data="validation_fraction", validation_split="validation_fraction",
    seed="random_state", architecture="architecture", verbose="verbose")


class _GaussianizationEstimator(BaseEstimator):
    """What the density estimator and the transformer share: fit and the fitted flow."""

    def __init__(self, n_layers=8, n_components=8, max_steps=None, init="rbig",
                 validation_fraction=0.1, learning_rate=None, batch_size=512,
                 random_state=None, verbose=0, fit_kwargs=None, architecture="auto"):
        self.n_layers = n_layers
        self.n_components = n_components
        self.max_steps = max_steps
        self.init = init
        self.validation_fraction = validation_fraction
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose
        self.fit_kwargs = fit_kwargs
        self.architecture = architecture

    # -- fitting -----------------------------------------------------------------------

    def _check_params(self):
        name = type(self).__name__
        from tfp_gauss import _validation  # noqa: PLC0415  (as in fit)

        for p in ("n_layers", "n_components", "batch_size"):
            _validation.check_int(getattr(self, p), f"{name}: {p}")
        if self.max_steps is not None and (
                not isinstance(self.max_steps, numbers.Integral) or isinstance(self.max_steps, bool)
                or self.max_steps < 0):
            raise ValueError(
                f"{name}: max_steps must be None (the default length), 0 (greedy fit only) "
                f"or an int >= 1; got {self.max_steps!r}.")
        if self.learning_rate is not None and not _validation.is_real(
                self.learning_rate, 0, strict=True):
            raise ValueError(f"{name}: learning_rate must be None (the default peak) or a "
                             f"finite number > 0; got {self.learning_rate!r}.")
        if self.architecture not in ("auto", "marginal", "coupling"):
            raise ValueError(f"{name}: architecture must be 'auto', 'marginal' or 'coupling'; "
                             f"got {self.architecture!r}.")
        if self.init not in ("rbig", "random"):
            raise ValueError(f"{name}: init must be 'rbig' or 'random'; got {self.init!r}.")
        if self.max_steps == 0 and self.init != "rbig":
            raise ValueError(
                f"{name}: max_steps=0 keeps the greedy fit untrained, which needs "
                f"init='rbig'; got init={self.init!r}.")
        try:
            fraction = float(self.validation_fraction)
        except (TypeError, ValueError):
            fraction = np.nan
        if not 0.0 <= fraction < 1.0:
            raise ValueError(
                f"{name}: validation_fraction must be a number in [0, 1); got "
                f"{self.validation_fraction!r}.")
        if self.fit_kwargs is not None and not isinstance(self.fit_kwargs, dict):
            raise ValueError(f"{name}: fit_kwargs must be a dict or None; got "
                             f"{type(self.fit_kwargs).__name__}.")
        fit_kwargs = self.fit_kwargs or {}
        from tfp_gauss.keras import fit_gaussianization_flow  # noqa: PLC0415  (TF loads)

        accepted = {k for k in inspect.signature(fit_gaussianization_flow).parameters
                    if k != "x" and not k.startswith("_")} - set(_OWN_ARGUMENTS)
        unknown = sorted(k for k in fit_kwargs if k not in accepted and k not in _OWN_ARGUMENTS)
        if unknown:
            raise ValueError(
                f"{name}: fit_kwargs has {unknown}, which fit_gaussianization_flow does not "
                f"take from fit_kwargs; it takes {sorted(accepted)}.")
        own = {k: v for k, v in _OWN_ARGUMENTS.items() if k in fit_kwargs}
        if own:
            raise ValueError(
                f"{name}: fit_kwargs sets {sorted(own)}, which the estimator sets itself; use "
                f"its own parameters ({', '.join(sorted(set(own.values())))}) instead.")
        rbig_kwargs = fit_kwargs.get("rbig_kwargs") or {}
        for arg in ("n_layers", "n_components"):
            if arg in rbig_kwargs and rbig_kwargs[arg] != getattr(self, arg):
                raise ValueError(
                    f"{name}: fit_kwargs['rbig_kwargs'] sets {arg}={rbig_kwargs[arg]!r} but the "
                    f"estimator's {arg} is {getattr(self, arg)!r}; set the estimator's "
                    f"{arg}={rbig_kwargs[arg]!r} instead.")
        return fraction

    def _rbig_kwargs(self):
        """``fit_kwargs["rbig_kwargs"]`` without the estimator's own (checked) parameters."""
        rbig_kwargs = (self.fit_kwargs or {}).get("rbig_kwargs") or {}
        return {k: v for k, v in rbig_kwargs.items() if k not in ("n_layers", "n_components")}

    def fit(self, X, y=None):
        """Fits the flow to ``X`` (``[n_samples, n_features]``); ``y`` is ignored.

        There is no ``sample_weight`` (unlike ``KernelDensity``): every row
        counts once; repeat rows to weight them.

        Standardizes ``X`` in float64 with its mean and standard deviation,
        holds out ``validation_fraction`` of the rows (drawn with
        ``random_state``) and calls ``tfp_gauss.fit_gaussianization_flow``
        on the rest with those rows as ``validation_data``: the greedy warm
        start chooses its depth on them and the best-validation weights are
        kept. With fewer than 2 rows on either side of the split, nothing is
        held out (no selection: all ``n_layers``, the last weights).
        ``max_steps=0`` returns the greedy (RBIG) fit untrained.

        Returns:
          self.

        Raises:
          ValueError: what ``validate_data`` rejects (NaN/inf, complex, 1-D,
            fewer than 2 rows), a constant column, linearly dependent
            columns, or a bad parameter.
        """
        from tfp_gauss import _validation, flows  # noqa: PLC0415  (TF loads on first fit)
        from tfp_gauss.keras import fit_gaussianization_flow  # noqa: PLC0415
        from tfp_gauss.rbig import fit_rbig  # noqa: PLC0415

        fraction = self._check_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        x64 = np.asarray(X, dtype=np.float64)
        mean, scale = x64.mean(axis=0), x64.std(axis=0)
        constant = np.flatnonzero(~(scale > 1e-12 * np.maximum(1.0, np.abs(mean))))
        if constant.size:
            raise ValueError(
                f"{type(self).__name__}: column(s) {constant.tolist()} of X are constant "
                f"(values {x64[0, constant].tolist()}); a constant has no density. Drop "
                "them first (e.g. sklearn.feature_selection.VarianceThreshold).")
        _validation.check_full_rank(x64, "X", caller=type(self).__name__)
        # At the user's call of `fit` (the transformer's `fit` calls this one).
        level = 2 if type(self).fit is _GaussianizationEstimator.fit else 3
        _validation.warn_if_tied(x64, "X", stacklevel=level)
        y64 = (x64 - mean) / scale
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        rng = np.random.default_rng(seed)
        n = y64.shape[0]
        n_val = int(round(fraction * n))
        if fraction > 0 and n - n_val < 2:
            raise ValueError(
                f"{type(self).__name__}: validation_fraction={self.validation_fraction} of {n} "
                f"rows leaves {n - n_val} training row(s); at least 2 are needed. Pass a "
                "smaller validation_fraction (0 fits every row without selection).")
        if fraction > 0 and n_val < 2 <= n - 4:
            # Trained or deepened with nothing held out, a flow fits a dozen rows
            # exactly (held-out mean log-likelihood -2e4 on 12 Gaussian rows, the
            # truth -2.8); two held-out rows at least choose when to stop.
            warnings.warn(
                f"{type(self).__name__}: validation_fraction={self.validation_fraction} of "
                f"{n} rows holds out {n_val}; 2 rows are held out instead to choose the fit "
                "(with fewer, nothing would stop it from fitting the training rows exactly). "
                "So few rows support only a rough density.", UserWarning, stacklevel=level)
            fraction = 2.0 / n
            n_val = 2
        if fraction > 0 and n_val >= 2 and n - n_val >= 2:
            train, val = _validation.holdout_split(y64, fraction, rng, name=type(self).__name__)
            val = val.astype(np.float32)
        else:  # too few rows to select on: fit all of them, no selection
            if fraction > 0:
                warnings.warn(
                    f"{type(self).__name__}: {n} rows are too few to hold any out: the fit is "
                    "not chosen on held-out rows and fits these rows exactly (held-out "
                    "log-likelihoods can be absurdly low).", UserWarning, stacklevel=level)
            train, val = y64, None
        train = train.astype(np.float32)
        # The greedy fit gives a column with fewer distinct values than K a mixture
        # over its values (fit_mixture_em; the other columns keep all K); training
        # uses no more components than the fewest values of a column (measured:
        # keras._fit._fewest_values_components), said in a warning.
        n_components = self.n_components
        distinct = _validation.column_counts(train)[0]
        fewest = int(distinct.min())
        if self.max_steps != 0 and 1 < fewest < n_components:
            warnings.warn(
                f"{type(self).__name__}: {_validation.few_values_shown(distinct, n_components)} "
                f"in the training rows of X, fewer than n_components={n_components}: the trained "
                f"flow uses {fewest} "
                "components in every layer (with more, it sharpens a peak on each value and "
                "held-out rows with an unseen value score absurdly low); n_components_ says "
                "so. Dequantize such columns to keep more, or use max_steps=0 (the greedy "
                "fit keeps n_components for the other columns).",
                _validation.TiedValuesWarning, stacklevel=level)
            n_components = fewest

        if self.max_steps == 0:
            kwargs = dict(n_layers=self.n_layers, n_components=n_components, seed=rng,
                          validation_data=val, validation_split=0.0, _warn_tied=False)
            kwargs.update(self._rbig_kwargs())  # as the warm start's
            dist = fit_rbig(train, **kwargs)
            values = flows.flow_values(dist)
            history, n_iter, best_step = {}, 0, 0
        else:
            kwargs = dict(verbose=self.verbose)
            kwargs.update(self.fit_kwargs or {})
            if "rbig_kwargs" in kwargs:  # (n_components may have been lowered for tied columns)
                kwargs["rbig_kwargs"] = self._rbig_kwargs()
            model, hist = fit_gaussianization_flow(
                train, n_layers=self.n_layers, n_components=n_components,
                steps=self.max_steps, batch_size=self.batch_size,
                peak_learning_rate=self.learning_rate, init=self.init,
                validation_data=val, seed=seed, validation_split=0.0, _warn_tied=False,
                architecture="marginal" if x64.shape[1] == 1 else self.architecture, **kwargs)
            values = flows.flow_values(model.distribution)
            history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
            n_iter = len(hist.epoch) * hist.steps_per_epoch
            best_step = int(getattr(hist, "best_step", n_iter))
        self.mean_, self.scale_ = mean, scale
        self.flow_parameters_ = flows.stack_flow_values(values)
        self.n_layers_ = len(values)
        self.n_components_ = int(self.flow_parameters_["locs"].shape[-1])  # (as fitted)
        self.history_ = history
        self.n_iter_ = n_iter
        self.best_step_ = best_step
        self.validation_rows_ = 0 if val is None else len(val)
        self._build()
        return self

    def _build(self):
        """The float64 flow and distribution from ``flow_parameters_`` and the standardization."""
        import tensorflow as tf  # noqa: PLC0415
        import tensorflow_probability as tfp  # noqa: PLC0415

        from tfp_gauss import flows  # noqa: PLC0415

        tfb, tfd = tfp.bijectors, tfp.distributions
        params, coupling = flows.stacked_arguments(self.flow_parameters_)
        self._params64 = [tf.constant(p, tf.float64) for p in params]
        self._coupling64 = {}
        if "conditioner" in coupling:
            self._coupling64 = dict(masks=coupling["masks"], conditioner=[
                tf.constant(w, tf.float64) for w in coupling["conditioner"]])
        if "scale_floor" in coupling:
            self._coupling64["scale_floor"] = tf.constant(coupling["scale_floor"], tf.float64)
        self._flow64 = flows.flow_from_stacked(*self._params64, **self._coupling64)
        self.distribution_ = tfd.TransformedDistribution(
            self._flow64,
            tfb.Chain([tfb.Shift(tf.constant(self.mean_, tf.float64)),
                       tfb.Scale(tf.constant(self.scale_, tf.float64))]),
            name="gaussianization_density")

    # -- pickling: parameters as numpy arrays, the TF objects rebuilt on load -----------

    def __getstate__(self):
        state = dict(super().__getstate__())
        for key in _DERIVED:
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "flow_parameters_" in self.__dict__:
            self._build()

    # -- shared evaluation -------------------------------------------------------------

    def _standardized(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return (np.asarray(X, np.float64) - self.mean_) / self.scale_

    def _sample(self, n_samples, random_state):
        from tfp_gauss import _validation, sampling  # noqa: PLC0415

        check_is_fitted(self)
        n_samples = _validation.check_int(n_samples, "n_samples")
        seed = check_random_state(random_state).randint(0, 2**31 - 1, size=2).astype(np.int32)
        y = sampling.sample_stacked(n_samples, seed, *self._params64,
                                    **self._coupling64).numpy()
        return self.mean_ + self.scale_ * y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A fit is a deterministic function of (X, random_state): stated
        # explicitly, so the idempotence and invariance checks run.
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


_PARAMS_DOC = r"""
    Args:
      n_layers: most ``[mixture marginal -> rotation]`` layers ``L`` (the
        greedy warm start may choose fewer on the held-out rows).
      n_components: mixture components ``K`` per coordinate. A column with
        fewer distinct values: the greedy fit (``max_steps=0``) gives it a
        mixture over its values and keeps ``K`` for the others; a trained
        fit uses that many components in every layer (with a warning;
        ``n_components_``).
      max_steps: most optimizer steps; ``None``: ``fit_gaussianization_flow``'s
        default (100 passes over the data within 3,000-10,000 steps);
        ``0``: the greedy RBIG fit, untrained (a few seconds; ``fit_rbig``'s
        defaults, with its tail component when ``K >= 4``, and
        ``fit_kwargs["rbig_kwargs"]``; the trained fit's warm start has free
        components).
      init: ``"rbig"`` (greedy warm start) or ``"random"``.
      validation_fraction: fraction of rows held out (drawn with
        ``random_state``) to choose the depth and the best step, in
        ``[0, 1)``; ``0``: no selection. When it would hold out fewer than
        2 rows, 2 are held out (if 4 remain; a warning says so), and with
        fewer than 6 rows none (no selection, a warning); one that leaves
        fewer than 2 training rows is an error.
      learning_rate: peak of the one-cycle cosine learning rate (``None``:
        ``fit_gaussianization_flow``'s default for the architecture).
      batch_size: rows per step.
      random_state: int, ``np.random.RandomState`` or ``None``: the split,
        initialisation and batch order.
      verbose: Keras verbosity during ``fit``.
      fit_kwargs: extra arguments for ``tfp_gauss.fit_gaussianization_flow``
        (e.g. ``dict(patience=300, noise=0.05)``); not the ones the
        estimator's own parameters set (``steps``, ``seed``, ``verbose``... :
        a ``ValueError`` names the parameter to use; a name the function does
        not take is a ``ValueError`` too), and ``rbig_kwargs`` may repeat
        ``n_layers`` and ``n_components`` but not change them.
      architecture: ``"auto"`` (coupling layers from 1,000 training rows,
        marginal ones below), ``"marginal"`` or ``"coupling"``
        (``fit_gaussianization_flow``'s argument; one-column data and
        ``max_steps=0`` always give marginal layers).

    Attributes:
      n_features_in_: ``D``.
      feature_names_in_: column names, when ``X`` was a DataFrame with string names.
      mean_, scale_: ``[D]``, the float64 standardization.
      distribution_: the fitted ``tfd.TransformedDistribution`` over the
        data's own units (float64): the flow of ``y`` pushed through
        ``x = mean_ + scale_ * y``.
      flow_parameters_: dict of numpy arrays ``logits``, ``locs``,
        ``raw_scales`` ``[L, D, K]`` and ``vectors`` ``[L, M, D]`` (what
        ``tfp_gauss.flows.flow_from_stacked`` takes), and for coupling
        layers ``masks`` ``[L, D]`` and ``conditioner`` (a list of stacked
        MLP weights; ``flows.stack_flow_values``).
      n_layers_, n_components_: the flow's ``L`` and ``K``.
      n_iter_: optimizer steps run (0 for ``max_steps=0``).
      best_step_: the step whose weights were kept.
      history_: the Keras history as a dict of lists (``loss``, ``val_loss``,
        ``learning_rate``; NLLs of the standardized data, one record per 50
        steps); empty for ``max_steps=0``.
      validation_rows_: rows held out (0: no selection).
"""


class GaussianizationDensity(DensityMixin, _GaussianizationEstimator):
    __doc__ = r"""Density estimation with a Gaussianization flow, the scikit-learn way.

    The API of ``KernelDensity``/``GaussianMixture``: ``fit(X)``,
    ``score_samples(X)`` (``log p(x)`` per row, in ``X``'s own units),
    ``score(X)`` (the *mean* log-likelihood, as ``GaussianMixture``: higher
    is better, comparable across folds of different sizes, so
    ``GridSearchCV`` and ``cross_val_score`` select by held-out
    log-likelihood) and ``sample(n_samples, random_state)`` (an array, as
    ``KernelDensity``; ``GaussianMixture`` returns ``(X, labels)``).

    ``X`` is standardized internally (float64, training mean and standard
    deviation), so raw units work; densities are corrected by the Jacobian:

    $$\log p(x) = \log\mathcal N(G(y); 0, I) + \log|\det \partial G/\partial y|
                  - \sum_d \log s_d, \qquad y = (x - m)/s .$$

    Fitting is ``tfp_gauss.fit_gaussianization_flow`` on ``y``: greedy RBIG
    warm start with its depth chosen on the held-out rows, then maximum
    likelihood keeping the best-validation weights.
    """ + _PARAMS_DOC + r"""
    #### Example

    ```python
    from sklearn.datasets import make_moons
    from tfp_gauss.sklearn import GaussianizationDensity

    X = make_moons(400, noise=0.08, random_state=0)[0] * [3, 0.5] + [10, -2]   # raw units
    density = GaussianizationDensity(n_layers=4, n_components=4, max_steps=0,
                                     random_state=0).fit(X)   # 0: greedy fit only
    log_p = density.score_samples(X[:5])        # [5], log-density in X's units
    print(density.score(X))                     # mean log-likelihood
    new = density.sample(3, random_state=0)     # [3, 2]
    ```
    """

    def score_samples(self, X):
        """Log-density of each row of ``X`` (``[n_samples, D]`` -> ``[n_samples]``, float64)."""
        y = self._standardized(X)
        return self._flow64.log_prob(y).numpy() - np.sum(np.log(self.scale_))

    def score(self, X, y=None):
        """Mean log-likelihood of the rows of ``X`` (higher is better); ``y`` is ignored.

        The mean, as ``GaussianMixture.score``; ``KernelDensity.score`` is the
        sum over the rows (compare ``score_samples(X).sum()`` with it).
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """``n_samples`` draws, ``[n_samples, D]`` float64 (runs the mixture root-find).

        The same ``random_state`` (an int) gives the same draws, also after
        pickling: the TensorFlow stateless seed is drawn from it.
        """
        return self._sample(n_samples, random_state)


class GaussianizationTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                                 _GaussianizationEstimator):
    __doc__ = r"""Multivariate Gaussianization as a scikit-learn transformer.

    ``transform`` maps data to ``z = G((x - m)/s)``, jointly standard normal
    under the fitted flow (not just marginally, as
    ``QuantileTransformer(output_distribution="normal")`` or
    ``PowerTransformer`` make it); ``inverse_transform`` maps ``z`` back,
    ``x = m + s G^{-1}(z)``, by the flow's exact root-find. Output is float64
    ``[n_samples, D]``; ``get_feature_names_out()`` gives
    ``gaussianizationtransformer0`` .. ``gaussianizationtransformer{D-1}``
    (scikit-learn's class-name prefix convention).

    ``X`` is standardized internally (float64, training statistics); fitting
    is ``tfp_gauss.fit_gaussianization_flow`` on the standardized rows, with
    ``validation_fraction`` of them held out to choose the fit.
    """ + _PARAMS_DOC + r"""
    #### Example

    ```python
    import numpy as np
    from tfp_gauss.sklearn import GaussianizationTransformer

    rng = np.random.default_rng(0)
    u = rng.normal(size=(500, 2)) @ [[1.0, 0.8], [0.0, 0.6]]
    X = np.sinh(1.5 * u)                                   # correlated, heavy-tailed
    gauss = GaussianizationTransformer(n_layers=4, n_components=4, max_steps=0,
                                       random_state=0)         # 0: the greedy fit only
    Z = gauss.fit_transform(X)                             # [500, 2], ~ N(0, I)
    X_back = gauss.inverse_transform(Z)                    # ~ X
    print(np.corrcoef(Z.T)[0, 1], np.abs(X_back - X).max())
    ```
    """

    def fit(self, X, y=None):
        super().fit(X, y)
        self._n_features_out = self.n_features_in_
        return self

    fit.__doc__ = _GaussianizationEstimator.fit.__doc__

    def _gaussianizer(self):
        from tfp_gauss import flows  # noqa: PLC0415  (TF loads on first use)

        return flows.flow_gaussianizer(self._flow64)

    def transform(self, X):
        """``z = G((x - m)/s)``: ``[n_samples, D]`` -> ``[n_samples, D]`` float64."""
        y = self._standardized(X)
        return self._gaussianizer().forward(y).numpy()

    def inverse_transform(self, X):
        """``x = m + s G^{-1}(z)`` (the mixture root-find): ``[n_samples, D]`` float64."""
        check_is_fitted(self)
        # check_array, not validate_data: z's columns are not the input's names.
        z = check_array(X, dtype=[np.float64, np.float32])
        if z.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {z.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input.")
        y = self._gaussianizer().inverse(np.asarray(z, np.float64)).numpy()
        return self.mean_ + self.scale_ * y
