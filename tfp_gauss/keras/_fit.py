"""``fit_gaussianization_flow``: the one-call maximum-likelihood trainer."""

import numbers
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfp_gauss import _validation, flows
from tfp_gauss.bijectors import householder_rotation
from tfp_gauss.keras._model import GaussianizationFlowModel
from tfp_gauss.keras._schedules import LearningRateLogger, OneCycleCosine
from tfp_gauss.math import mixture_cdf

__all__ = ["AUTO_SCALE_FLOOR", "COUPLING_MIN_ROWS", "PEAK_LEARNING_RATE", "SCALE_FLOOR_MAX_ROWS",
           "default_architecture", "default_steps", "fit_gaussianization_flow",
           "keeps_scale_floor", "scale_floor_values"]

# Training rows from which architecture="auto" chooses coupling layers, and the
# default peak learning rate of each architecture: chosen on the validation
# splits of the benchmark datasets (BENCHMARKS.md, "Candidate defaults";
# `benchmarks/bench_variants.py`).
COUPLING_MIN_ROWS = 1000
PEAK_LEARNING_RATE = {"marginal": 3e-3, "coupling": 1e-3}

# scale_floor="auto": below this many training rows, a fit with the scale floor
# AUTO_SCALE_FLOOR (in kernel bandwidths) competes with one without on the
# held-out rows; from it up, no floor (chosen on validation splits:
# benchmarks/results/variants.md, "Scale floor").
SCALE_FLOOR_MAX_ROWS = 5000
AUTO_SCALE_FLOOR = 1.3


def keeps_scale_floor(plain_log_prob, floored_log_prob):
    r"""The one-standard-error rule ``scale_floor="auto"`` chooses with: keep the floor?

    With per-row held-out log-likelihoods of the fit without a floor
    (:math:`a_i`) and with one (:math:`b_i`), :math:`d_i = a_i - b_i` over
    the :math:`n` rows, the floored (smoother) fit is kept unless the plain
    one is better by more than one standard error of the paired difference:

    .. math:: \text{keep} \iff \bar d \le s_d / \sqrt{n}

    (:math:`s_d` the sample standard deviation of :math:`d`). A fit whose
    mean is not finite loses to one whose mean is. Measured on rows neither
    training nor selection sees (``BENCHMARKS.md``, "Scale floor"), this
    picks the better of the two fits in 12 of 13 dataset-seeds, against 8 of
    13 for "the better validation mean": on a few hundred validation rows
    the means are noisy, and the plain fit's small leads there did not hold.

    Args:
      plain_log_prob, floored_log_prob: ``[n]`` log-likelihoods of the same rows.

    Returns:
      ``(keep, difference, standard_error)``: a bool, :math:`\bar d` and
      :math:`s_d / \sqrt{n}` (floats; nan when not finite).

    #### Example

    ```python
    import numpy as np
    from tfp_gauss.keras import keeps_scale_floor

    a = np.array([-1.0, -1.2, -0.9, -1.1])       # plain fit, per row
    keeps_scale_floor(a, a - 0.01)[0]          # False: plain ahead by 0.01 on every row
    keeps_scale_floor(a, a - [0.3, -0.2, 0.25, -0.25])[0]   # True: ahead by 0.025 +- 0.14
    ```
    """
    a = np.asarray(plain_log_prob, np.float64)
    b = np.asarray(floored_log_prob, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"keeps_scale_floor needs two [n] arrays of the same n >= 2; got "
                         f"shapes {a.shape} and {b.shape}.")
    a_ok, b_ok = np.isfinite(a.mean()), np.isfinite(b.mean())
    if not (a_ok and b_ok):
        return bool(b_ok), float("nan"), float("nan")
    d = a - b
    difference, standard_error = float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))
    return difference <= standard_error, difference, standard_error


def scale_floor_values(dist, x, factor):
    r"""The ``[L, D]`` scale floor ``factor`` kernel bandwidths wide for ``dist`` on rows ``x``.

    $$f_{l,d} = c \cdot 1.06\, N^{-1/5} \operatorname{std}(h_{l,d}),$$

    Silverman's kernel bandwidth of coordinate ``d`` of layer ``l``'s input
    ``h_l`` (the rows ``x`` pushed through the layers before ``l``; the
    marginal maps only, which is all a coupling flow is before it trains),
    times ``c = factor``.

    Args:
      dist: a flow built by tfp_gauss.
      x: ``[N, D]`` training rows.
      factor: ``c >= 0``.

    Returns:
      numpy ``[L, D]`` in ``x``'s dtype.

    #### Example

    ```python
    import tfp_gauss
    from tfp_gauss.keras import scale_floor_values

    x = tfp_gauss.datasets.two_moons()                     # [3000, 2], standardized
    flow = tfp_gauss.fit_rbig(x, n_layers=3, n_components=4, seed=0)
    floor = scale_floor_values(flow, x, 1.3)                # [3, 2], about 0.28 each
    model = tfp_gauss.keras.GaussianizationFlowModel.from_distribution(flow, scale_floor=True)
    model.set_scale_floor(floor)         # what fit_gaussianization_flow(scale_floor=1.3) does
    ```
    """
    x = np.asarray(x)
    bandwidth = 1.06 * float(x.shape[0]) ** -0.2
    h = tf.constant(x, tf.float64)
    floors = []
    for layer in flows.flow_values(dist):
        floors.append(factor * bandwidth * np.std(h.numpy(), axis=0))
        scales = np.asarray(layer["scales"], np.float64)
        if "scale_floor" in layer:
            scales = np.sqrt(scales**2 + np.asarray(layer["scale_floor"], np.float64)[:, None]**2)
        y, _ = mixture_cdf.mixture_cdf_transform(
            h, *(tf.constant(np.asarray(v, np.float64))
                 for v in (layer["logits"], layer["locs"], scales)))
        q = householder_rotation.householder_product(tf.constant(layer["vectors"], tf.float64))
        h = tf.matmul(y, q, transpose_b=True)
    return np.stack(floors).astype(x.dtype)


def default_architecture(n_rows, n_dims):
    """What ``architecture="auto"`` fits for ``n_rows`` training rows of ``n_dims`` columns.

    ``"coupling"`` from ``COUPLING_MIN_ROWS`` rows and 2 columns, else
    ``"marginal"``.

    Measured on validation splits: coupling layers beat marginal ones with
    1,258 rows or more (digits, two-moons, diamonds) and lose with 125-309
    (wine, faithful, diabetes), whose conditioners overfit within 100 steps.
    """
    return "coupling" if n_dims >= 2 and n_rows >= COUPLING_MIN_ROWS else "marginal"


def _batches(x, batch_size, seed, noise_scale=None):
    """Endless shuffled mini-batches of ``x`` (reshuffled every pass).

    With ``noise_scale`` (``[D]``), each batch gets fresh Gaussian noise of
    that standard deviation per column (stateless, from ``seed``).
    """
    n = x.shape[0]
    ds = tf.data.Dataset.from_tensor_slices(x)
    ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(min(batch_size, n), drop_remainder=True)
    if noise_scale is not None:
        scale = tf.constant(noise_scale, x.dtype)
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda b, s: b + scale * tf.random.stateless_normal(tf.shape(b), s, dtype=b.dtype))
    return ds.prefetch(tf.data.AUTOTUNE)


_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


def _steps_per_execution(callbacks, steps_per_epoch):
    """Steps per graph call: a whole epoch, or 1 if a callback has batch-level hooks.

    An epoch's steps in one call run without returning to Python between
    steps (1,000 coupling steps on two-moons took 13.1 s instead of 24.2 s,
    ``benchmarks/results/fit_speed.md``); Keras then calls batch hooks once per
    call, so a callback that overrides one keeps one call per step. Under a
    ``tf.distribute`` strategy it is 1 too: Keras 3.15's multi-step loop
    fails there ("You must feed a value for placeholder tensor", measured
    with ``MirroredStrategy`` on two logical CPUs).
    """
    if tf.distribute.has_strategy():
        return 1
    base = keras.callbacks.Callback
    for callback in callbacks or []:
        if any(getattr(type(callback), hook, None) is not getattr(base, hook)
               for hook in _BATCH_HOOKS):
            return 1
    return steps_per_epoch


class _AveragedValidation(keras.callbacks.Callback):
    """``val_loss`` of the optimizer's moving-average weights, every epoch.

    With ``use_ema`` the Keras optimizer keeps an exponential moving average
    of the trainable weights (and writes it into the model when ``fit``
    ends). At each epoch's end this puts the average into the model (what
    Keras does at the end of ``fit``), evaluates ``validation_data`` and
    records the result as ``logs["val_loss"]``, so the callbacks after it
    (the user's, ``_KeepBest``, the History and the progress bar) see the
    averaged weights and their score together; ``_RestoreRaw``, the last
    callback, then puts the raw weights back so that training continues
    from them. It replaces Keras's own validation pass (which would score
    the raw weights).
    """

    def __init__(self, validation_data):
        super().__init__()
        self.validation_data = validation_data
        self.raw = None

    def on_epoch_end(self, epoch, logs=None):
        self.raw = self.model.get_weights()
        self.model.optimizer.finalize_variable_values(self.model.trainable_variables)
        val_loss = float(self.model.evaluate(self.validation_data, verbose=0))
        if logs is not None:
            logs["val_loss"] = val_loss


class _RestoreRaw(keras.callbacks.Callback):
    """Puts back the raw weights ``_AveragedValidation`` swapped out (the last callback)."""

    def __init__(self, averaged):
        super().__init__()
        self.averaged = averaged

    def on_epoch_end(self, epoch, logs=None):
        if self.averaged.raw is not None:
            self.model.set_weights(self.averaged.raw)
            self.averaged.raw = None


def _reset_optimizer(model):
    """Zeros every optimizer variable: moments, moving averages and the step count."""
    for v in model.optimizer.variables:
        v.assign(tf.zeros_like(v))


def _sync_averages(model):
    """Sets the optimizer's moving averages (if any) to the model's current weights.

    After ``fit_gaussianization_flow`` puts back kept weights, so that a
    later ``model.fit`` averages from them (Keras seeds the average from the
    weights only at step 0, and writes it into the model when ``fit`` ends).
    """
    optimizer = model.optimizer
    averages = getattr(optimizer, "_model_variables_moving_average", None)
    if not getattr(optimizer, "use_ema", False) or not averages:
        return
    for average, variable in zip(averages, model.trainable_variables):
        if average is not None:
            average.assign(variable)


class _KeepBest(keras.callbacks.Callback):
    """Keeps the weights of the best validation NLL, the starting weights included.

    Like ``keras.callbacks.EarlyStopping(restore_best_weights=True)``, except
    that the weights before the first step are a candidate too (scored on
    ``validation_data`` when training begins): a warm start that training
    only makes worse on held-out rows is returned unchanged. Stops after
    ``patience`` evaluations without an improvement; non-finite losses never
    count as one.
    """

    def __init__(self, validation_data, patience, steps_per_epoch):
        super().__init__()
        self.validation_data = validation_data
        self.patience = patience
        self.steps_per_epoch = steps_per_epoch

    def _consider(self, val_loss, step):
        if np.isfinite(val_loss) and val_loss < self.best_val_loss:
            self.best_val_loss, self.best_step = float(val_loss), step
            self.best_weights = self.model.get_weights()
            self.wait = 0
            return
        self.wait += 1

    def on_train_begin(self, logs=None):
        self.best_val_loss, self.best_step, self.best_weights, self.wait = np.inf, 0, None, 0
        self.initial_val_loss = float(self.model.evaluate(self.validation_data, verbose=0))
        self._consider(self.initial_val_loss, 0)

    def on_epoch_end(self, epoch, logs=None):
        self._consider(float((logs or {}).get("val_loss", np.nan)),
                       (epoch + 1) * self.steps_per_epoch)
        if self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            _sync_averages(self.model)


def default_steps(n_rows, batch_size=512):
    """The default training length: 100 passes over the data, within [3000, 10000] steps.

    Measured on the benchmark datasets: with 125 to 2,100 training rows
    (wine, faithful, diabetes, digits, two-moons) the best validation step
    comes before step 3,000; with 37,700 rows (diamonds) the validation NLL
    still improves at step 3,000.
    """
    return int(min(10_000, max(3_000, -(-100 * n_rows // batch_size))))


def _fewest_values_components(x, n_components):
    """``K``, lowered (with a warning) to the fewest distinct values of a column of ``x``.

    Trained flows with more components than a column has values sharpen a
    peak on each value, and held-out rows with a value the training rows lack
    fall far into their tails. Measured (scikit-learn's estimator, 3 splits
    each): on ggplot2's mpg, ``K = 8`` kept per column scored -1.9 / -21.2 /
    4.4 (one held-out row at -1,183) against 4.3 / 2.4 / 1.1 with ``K``
    lowered to 2; Boston and mtcars were also lower, diabetes and airquality
    higher. The greedy fit alone keeps ``K`` per column (``fit_mixture_em``).
    """
    distinct = _validation.column_counts(x)[0]
    fewest = int(distinct.min())
    if 1 < fewest < n_components:
        warnings.warn(
            f"fit_gaussianization_flow: {_validation.few_values_shown(distinct, n_components)} "
            f"in the training rows, fewer than n_components={n_components}: every layer uses "
            f"{fewest} components "
            "(a trained flow with more sharpens a peak on each value, and held-out rows "
            "with an unseen value score absurdly low). Dequantize such columns "
            "(x + step * (U(0, 1) - 1/2)) to keep more components.",
            _validation.TiedValuesWarning, stacklevel=3)
        return fewest
    return n_components


def fit_gaussianization_flow(x, n_layers=8, n_components=8, steps=None, batch_size=512,
                             peak_learning_rate=None, clip_norm=1.0, init="rbig",
                             validation_data=None, seed=None, verbose=1, *,
                             validation_split=0.1, early_stopping=True, patience=600,
                             steps_per_epoch=50, jit_compile=True, dtype="float32",
                             callbacks=None, rbig_kwargs=None, architecture="auto",
                             conditioner_units=None, noise=0.0, scale_floor="auto",
                             ema_momentum=0.99, _warn_tied=True):
    """Fits a Gaussianization flow to ``x`` by maximum likelihood with Keras.

    Adam with a one-cycle cosine learning rate (``OneCycleCosine``: warm-up to
    ``peak_learning_rate`` over the first 30 % of ``steps``, then anneal) and
    global-norm gradient clipping at ``clip_norm`` (Keras ``global_clipnorm``,
    i.e. ``optax.clip_by_global_norm``), on shuffled mini-batches, keeping an
    exponential moving average of the weights (Polyak averaging,
    ``ema_momentum``): the averaged weights are the ones validated, kept and
    returned.

    **Model selection on held-out data (the default).** The validation
    negative log-likelihood is evaluated every ``steps_per_epoch`` steps;
    the weights of the best evaluation are kept, training stops once
    ``patience`` steps pass without an improvement, and the returned model
    holds the best weights (``early_stopping=False`` trains all ``steps`` and
    returns the last weights). The held-out rows are ``validation_data`` if
    given, else a ``validation_split`` of ``x``'s rows drawn with ``seed``
    (reproducible) and not trained on. The greedy warm start
    (``init="rbig"``) chooses its depth on the same rows.

    Args:
      x: data ``[N, D]``, finite.
      n_layers, n_components: flow size (with ``init="rbig"``, ``n_layers``
        is the most layers: the greedy fit may choose fewer). A new flow
        uses no more components than the fewest distinct values of a
        column of ``x`` (with a ``TiedValuesWarning``): a trained flow with
        more sharpens a peak on each value.
      steps: most optimizer steps (the learning-rate schedule's length);
        default ``default_steps(N)``: 100 passes over the training rows,
        within [3000, 10000].
      batch_size: rows per step (capped at the training rows).
      peak_learning_rate: the schedule's peak; default
        ``PEAK_LEARNING_RATE[architecture]`` (3e-3 for marginal layers, 1e-3
        for coupling layers, whose conditioners overfit or destabilize at
        3e-3).
      clip_norm: global gradient-norm clip (``None`` or ``0`` to disable).
      init: ``"rbig"`` to warm-start from a greedy RBIG fit of the training
        rows (``tfp_gauss.fit_rbig`` with free components,
        ``tail_component=False``, unless ``rbig_kwargs`` says otherwise),
        ``"random"``, or a trained
        ``GaussianizationFlowModel`` (or flow distribution) to continue
        training: its weights are copied into a new model that trains with
        a fresh optimizer and learning-rate schedule (a model whose one-cycle
        schedule has run out learns nothing from ``model.fit``); the given
        model is not changed. ``n_layers`` and ``n_components`` are then
        taken from it.
      validation_data: optional held-out rows ``[M, D]``.
      seed: int seed for the held-out split, initialisation and batch order
        (``None`` means ``0``: the fit is reproducible unless asked to vary).
      verbose: Keras verbosity (1: progress bar; 2: one line per epoch, for
        logs written to a file); ``>= 1`` also prints what was held out,
        which fit starts (with two scale-floor candidates each restarts at
        epoch 1) and the best step.
      validation_split: fraction of ``x`` held out when ``validation_data``
        is not given, in ``[0, 1)``; ``0`` holds out nothing (and then
        nothing is selected: the last weights are returned).
      early_stopping: keep the best-validation weights and stop after
        ``patience`` steps without improvement.
      patience: steps without a validation improvement before stopping.
      steps_per_epoch: steps between validation evaluations and History
        records; lowered to the nearest divisor of ``steps``.
      jit_compile: compile the training step with XLA.
      dtype: ``"float32"`` or ``"float64"``.
      callbacks: extra Keras callbacks (when ``scale_floor="auto"`` trains
        two fits, they see both). The steps between two validation
        evaluations run in one graph call (Keras ``steps_per_execution =
        steps_per_epoch``) unless one of them overrides a batch-level hook
        (``on_train_batch_end``...): then every step is a call of its own
        and the hooks see every step. With weight averaging (the default)
        the model holds the averaged weights while the epoch-end hooks run,
        matching the ``val_loss`` they are given; training continues from
        the raw weights.
      rbig_kwargs: extra arguments for ``fit_rbig`` when ``init="rbig"``
        (``n_layers`` and ``n_components`` are this function's own: a
        different value there is an error).
      architecture: ``"auto"`` (default), ``"marginal"`` or ``"coupling"``
        (``flows.ARCHITECTURES``): with coupling layers each mixture map's
        parameters for half of the coordinates are shifted by an MLP of the
        other half; the greedy warm start then seeds the mixtures and the
        MLP starts at zero, so training starts from the greedy flow exactly.
        ``"auto"`` is ``default_architecture(training rows, D)``: coupling
        layers from 1,000 training rows and 2 columns, marginal ones below.
        Taken from ``init`` when it is a model or flow.
      conditioner_units: the coupling MLP's hidden widths (default
        ``tfp_gauss.math.coupling.DEFAULT_UNITS``).
      noise: training-noise regularization, ``>= 0``: every training batch
        gets fresh Gaussian noise ``x + noise * s * eps`` (``s`` the
        training rows' per-column standard deviation, ``eps ~ N(0, I)``), so
        the flow fits the data smoothed by a Gaussian kernel of relative
        width ``noise`` (the validation rows are never perturbed). Off by
        default: on validation it helps continuous data (two-moons 2,100
        rows: +0.017 nats at ``0.02``-``0.05``; wine: +0.63 at ``0.2``) and
        hurts data with discrete columns (diabetes, whose ``sex`` column is
        binary: -0.6 at ``0.05``), columns that are nearly functions of each
        other (diamonds: -2.15 at ``0.03``) and faithful (-0.02); see
        ``benchmarks/results/variants.md``.
      scale_floor: a soft floor under every mixture scale, in kernel
        bandwidths: layer ``l``'s maps use ``sqrt(s^2 + f_{l,d}^2)`` with
        ``f_{l,d} = c * 1.06 N^{-1/5} std(h_{l,d})`` (``scale_floor_values``:
        Silverman's bandwidth of the layer's input coordinate at the start
        of training), so no component, before or after a coupling's shift,
        is narrower than a kernel and the density cannot grow spikes and
        streaks on few rows. A number ``c >= 0`` (``0``: no floor), or
        ``"auto"`` (default): with fewer than ``SCALE_FLOOR_MAX_ROWS``
        training rows and held-out rows to choose on (and selection on, not
        ``early_stopping=False``; not when continuing ``init``), a fit with
        ``c = AUTO_SCALE_FLOOR`` and one without are both trained (twice
        the training time) and the floored one is returned unless the
        other's held-out log-likelihood is higher by more than one standard
        error of the per-row difference (``keeps_scale_floor``); otherwise
        no floor. On validation (``benchmarks/results/
        variants.md``) the floor gains +0.03 nats on two-moons (2,100 rows)
        and helps wine and diabetes, and it ruins digits (64 near-discrete
        pixel columns) and the large correlated tables, where the held-out
        rows reject it.

      ema_momentum: Polyak averaging of the weights: the optimizer keeps
        ``w_avg <- m w_avg + (1 - m) w`` after every step (Keras
        ``use_ema``; ``m = ema_momentum``, an average over about
        ``1 / (1 - m)`` steps), and the averaged weights are the ones
        validated, kept and returned (without validation rows, the last
        average). ``None`` turns it off. The default ``0.99`` was chosen on
        rows neither training nor selection saw (``BENCHMARKS.md``,
        "Weight averaging"): two-moons +0.008 to +0.020 nats per row (3 of
        3 seeds), digits +0.13, diabetes +0.02, mixed on the tiny faithful
        and wine splits; 0.998 was worse. On the test splits afterwards:
        digits +0.09, diamonds +0.07, wine +0.13, two-moons +0.002.

    Returns:
      ``(model, history)``: the trained ``GaussianizationFlowModel`` and the
      Keras ``History`` (``loss``, ``learning_rate``, ``val_loss``), one
      record per ``steps_per_epoch`` steps; its attributes
      ``steps_per_epoch``, ``schedule_steps``, ``validation_rows``,
      ``architecture`` and ``peak_learning_rate`` say how it was run. With
      selection, the history also has ``best_step`` and ``best_val_loss``
      attributes (the step whose weights the model holds and its validation
      NLL), and ``scale_floor`` (the ``c`` used) with
      ``scale_floor_candidates`` (``{c: best validation NLL}`` of every
      fit trained), ``steps_run`` and, when two were trained,
      ``scale_floor_difference`` (``{"mean", "standard_error"}`` of the
      plain fit's per-row lead in held-out log-likelihood). After a selection the model has a
      scale-floor weight (zeros when the fit without a floor won).

    Raises:
      ValueError: bad data (shape, NaN/inf rows, empty; float64 columns
        that the cast to ``dtype="float32"`` would make infinite, or constant,
        as values near 1e8 that differ by less than 8 are; linearly dependent
        columns), a bad ``validation_split`` or other argument, before any
        training step.

    Warns:
      TiedValuesWarning: a column of ``x`` holds repeated values (at most
        half as many distinct values as rows, or one value in at least 5 %
        of them: rounded measurements, counts, categories, point masses),
        which a continuous density fits with narrow peaks; the message says
        how to dequantize.

    #### Example

    ```python
    import tfp_gauss

    x = tfp_gauss.datasets.two_moons()
    model, history = tfp_gauss.fit_gaussianization_flow(
        x, n_layers=2, n_components=4, steps=100, verbose=0)   # 10 % held out
    print(history.best_step, history.best_val_loss, model.evaluate(x, verbose=0))
    ```
    """
    dtype = _validation.check_float_dtype(dtype).name  # "float32" or "float64"
    if isinstance(init, str):  # (a model or flow given as init brings its own sizes)
        n_layers = _validation.check_int(n_layers, "n_layers")
        n_components = _validation.check_int(n_components, "n_components")
    steps = None if steps is None else _validation.check_int(steps, "steps")
    batch_size = _validation.check_int(batch_size, "batch_size")
    steps_per_epoch = _validation.check_int(steps_per_epoch, "steps_per_epoch")
    patience = _validation.check_int(patience, "patience")
    given = x
    x = _validation.check_data(x, name="x", dtype=np.dtype(dtype),
                               float32_fix="pass dtype='float64'")
    _validation.check_full_rank(x, "x", caller="fit_gaussianization_flow")
    n_dims = x.shape[1]
    if architecture != "auto":
        flows.check_architecture(architecture, n_dims)
    if not _validation.is_real(noise, 0):
        raise ValueError(f"noise must be a finite number >= 0 (a fraction of each column's "
                         f"standard deviation); got {noise!r}.")
    for arg, value, strict, none in (
            ("peak_learning_rate", peak_learning_rate, True, "None (the default peak)"),
            ("clip_norm", clip_norm, False, "None or 0 (no clipping)")):
        if value is not None and not _validation.is_real(value, 0, strict=strict):
            raise ValueError(f"{arg} must be {none} or a finite number {'>' if strict else '>='} "
                             f"0; got {value!r}.")
    if ema_momentum is not None and not (
            isinstance(ema_momentum, numbers.Real) and not isinstance(ema_momentum, bool)
            and 0 <= ema_momentum < 1):
        raise ValueError(f"ema_momentum must be None (no weight averaging) or a number in "
                         f"[0, 1); got {ema_momentum!r}.")
    if not (isinstance(scale_floor, str) and scale_floor == "auto") and not (
            _validation.is_real(scale_floor, 0)):
        raise ValueError(f"scale_floor must be 'auto' or a finite number >= 0 (kernel "
                         f"bandwidths); got {scale_floor!r}.")
    for arg, value in (("n_components", n_components), ("n_layers", n_layers)):
        if arg in (rbig_kwargs or {}) and rbig_kwargs[arg] != value:
            # (the warm start fixes the trained flow's shape; two values would
            # leave the trained flow's K, and its warnings, other than asked)
            raise ValueError(
                f"rbig_kwargs sets {arg}={rbig_kwargs[arg]!r} but the fit's {arg} is "
                f"{value!r}: the warm start and the trained flow share it, so set "
                f"{arg}={rbig_kwargs[arg]!r} itself, not in rbig_kwargs.")
    if isinstance(init, GaussianizationFlowModel):
        init = init.distribution
    start_from = None if isinstance(init, str) else init
    if start_from is None and init not in ("random", "rbig"):
        raise ValueError(
            "init must be 'random', 'rbig', a GaussianizationFlowModel or a flow built by "
            f"tfp_gauss (to continue training it); got {init!r}.")
    if _warn_tied:  # (callers that warned about their own input pass False)
        _validation.warn_if_tied(x, "x", float32_fix="pass dtype='float64'", given=given)
    rng = _validation.as_rng(seed)
    if validation_data is not None:
        _validation.check_same_columns(given, validation_data)
        validation_data = _validation.check_data(
            validation_data, n_dims=n_dims, name="validation_data", dtype=np.dtype(dtype),
            purpose="scoring", float32_fix="pass dtype='float64'")
    else:
        x, validation_data = _validation.holdout_split(
            x, validation_split, rng, name="fit_gaussianization_flow")
    if steps is None:
        steps = default_steps(len(x), batch_size)
    if start_from is not None:
        architecture = ("coupling" if "conditioner" in flows.flow_values(start_from)[0]
                        else "marginal")
    elif architecture == "auto":
        architecture = default_architecture(len(x), n_dims)
    arch = dict(architecture=architecture)
    if conditioner_units is not None:
        arch["conditioner_units"] = tuple(conditioner_units)
    if peak_learning_rate is None:
        peak_learning_rate = PEAK_LEARNING_RATE[architecture]
    if verbose and validation_data is not None:
        print(f"fit_gaussianization_flow: {architecture} layers, training on {len(x)} rows; "
              f"{len(validation_data)} held-out rows choose the fit.")
    if start_from is None:
        n_components = _fewest_values_components(x, n_components)
    if start_from is not None:
        start = start_from
        if flows.flow_values(start)[0]["locs"].shape[0] != n_dims:
            raise ValueError(f"init is a flow of {flows.flow_values(start)[0]['locs'].shape[0]} "
                             f"dimensions; x has {n_dims}.")
    elif init == "random":
        start = GaussianizationFlowModel(n_dims, n_layers, n_components, seed=seed, dtype=dtype,
                                         **arch).distribution
    else:
        from tfp_gauss.rbig import fit_rbig  # noqa: PLC0415  (rbig builds on this module)

        # Free components (no tail component): the warm start these defaults
        # were measured with; training reshapes the tails anyway.
        kwargs = dict(n_layers=n_layers, n_components=n_components, seed=rng,
                      validation_data=validation_data, validation_split=0.0,
                      tail_component=False, _warn_tied=False)  # tied: said already, of all x
        # (n_layers and n_components: this function's own, checked equal above;
        # n_components may have been lowered since)
        kwargs.update({k: v for k, v in (rbig_kwargs or {}).items()
                       if k not in ("n_layers", "n_components")})
        start = fit_rbig(x, **kwargs)
    if scale_floor != "auto":
        factors = [float(scale_floor)]
    elif (start_from is None and validation_data is not None and early_stopping
          and len(x) < SCALE_FLOOR_MAX_ROWS):
        factors = [0.0, AUTO_SCALE_FLOOR]
    else:
        factors = [0.0]
    batch_seed = int(rng.integers(2**31))
    if start_from is not None and factors == [0.0]:
        model = GaussianizationFlowModel.from_distribution(start, seed=seed, dtype=dtype)
    else:
        # With several candidates, one model (with a floor weight, zero for
        # "no floor") and one compiled training step serve them all: the
        # floor is a variable the step reads, so only the first fit compiles.
        model = GaussianizationFlowModel.from_distribution(
            start, seed=seed, dtype=dtype, scale_floor=len(factors) > 1 or factors[0] > 0,
            **({} if start_from is not None else arch))
    start_weights = model.get_weights()
    fits, rows = {}, {}
    for k, factor in enumerate(factors):
        if verbose and len(factors) > 1:  # (each fit's progress starts at epoch 1)
            print(f"fit_gaussianization_flow: fit {k + 1} of {len(factors)} (scale floor "
                  f"{factor} kernel bandwidths), from the same start.")
        if fits:  # back to the start, with a fresh optimizer state and schedule
            model.set_weights(start_weights)
            _reset_optimizer(model)
            model._last_finite.valid.assign(False)  # nothing to roll back to yet
        if model.has_scale_floor:
            model.set_scale_floor(scale_floor_values(start, x, factor) if factor > 0
                                  else np.zeros([model.n_layers, model.n_dims]))
        history = _train(model, x, validation_data, steps=steps, batch_size=batch_size,
                         peak_learning_rate=peak_learning_rate, clip_norm=clip_norm,
                         jit_compile=jit_compile, steps_per_epoch=steps_per_epoch,
                         early_stopping=early_stopping, patience=patience, noise=noise,
                         callbacks=callbacks, verbose=verbose, batch_seed=batch_seed,
                         compile=not fits, ema_momentum=ema_momentum)
        history.architecture = architecture
        history.scale_floor = factor
        history.steps_run = int(model.optimizer.iterations.numpy())
        fits[factor] = (getattr(history, "best_val_loss", np.nan), model.get_weights(), history)
        if len(factors) > 1:  # per-row held-out log-likelihoods at the kept weights
            rows[factor] = model.log_prob(validation_data).numpy()
    best, lead = factors[0], None
    if len(factors) > 1:
        # scale_floor="auto": the floor unless the plain fit is better by more
        # than one standard error (`keeps_scale_floor`).
        keep, difference, standard_error = keeps_scale_floor(rows[0.0], rows[factors[-1]])
        best = factors[-1] if keep else 0.0
        lead = dict(mean=difference, standard_error=standard_error)
    _, weights, history = fits[best]
    if lead is not None:
        history.scale_floor_difference = lead
    if best != factors[-1]:
        # The winner's weights and step count; the optimizer's moments were
        # the last fit's, so they restart (a later model.fit continues the
        # winner's schedule from its step).
        model.set_weights(weights)
        _reset_optimizer(model)
        model.optimizer.iterations.assign(history.steps_run)
        _sync_averages(model)  # the moving average restarts at the kept weights
    history.scale_floor_candidates = {f: float(v) for f, (v, _, _) in fits.items()}
    if verbose and len(fits) > 1:
        print(f"fit_gaussianization_flow: scale floor {best} kernel bandwidths chosen on the "
              f"held-out rows (validation NLL by floor: {history.scale_floor_candidates}; "
              f"the plain fit's lead {difference:.4f} +- {standard_error:.4f} nats per row, "
              f"the floor kept unless it exceeds one standard error).")
    return model, history


def _train(model, x, validation_data, *, steps, batch_size, peak_learning_rate, clip_norm,
           jit_compile, steps_per_epoch, early_stopping, patience, noise, callbacks, verbose,
           batch_seed, compile=True, ema_momentum=None):
    """One Keras training run of ``model`` (``fit_gaussianization_flow``'s); the History.

    ``compile=False`` reuses the model's optimizer and compiled step (the
    caller has reset their state).
    """
    steps_per_epoch = min(steps_per_epoch, steps)
    while steps % steps_per_epoch:
        steps_per_epoch -= 1
    if compile:
        schedule = OneCycleCosine(steps, peak_learning_rate)
        optimizer = keras.optimizers.Adam(
            schedule, global_clipnorm=clip_norm, use_ema=ema_momentum is not None,
            ema_momentum=0.99 if ema_momentum is None else ema_momentum)
        model.compile(optimizer=optimizer, jit_compile=jit_compile,
                      steps_per_execution=_steps_per_execution(callbacks, steps_per_epoch))
    epochs = steps // steps_per_epoch
    val_ds = (None if validation_data is None else
              tf.data.Dataset.from_tensor_slices(validation_data).batch(4096))
    # With weight averaging the averaged weights are validated (first, so the
    # user's callbacks see their val_loss), not the raw ones Keras would score.
    averaged = (_AveragedValidation(val_ds)
                if model.optimizer.use_ema and validation_data is not None else None)
    callbacks = ([LearningRateLogger()] + ([averaged] if averaged else [])
                 + list(callbacks or []))
    stop = None
    if early_stopping and validation_data is not None:
        stop = _KeepBest(val_ds, patience=max(1, -(-patience // steps_per_epoch)),
                         steps_per_epoch=steps_per_epoch)
        callbacks.append(stop)
    if averaged:
        callbacks.append(_RestoreRaw(averaged))
    noise_scale = noise * x.std(axis=0) if noise else None
    history = model.fit(
        _batches(x, batch_size, batch_seed, noise_scale), epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=None if averaged else val_ds, callbacks=callbacks, verbose=verbose,
        shuffle=False)  # the dataset is shuffled already
    history.validation_rows = 0 if validation_data is None else len(validation_data)
    history.noise = float(noise)
    history.peak_learning_rate = peak_learning_rate
    history.ema_momentum = model.optimizer.ema_momentum if model.optimizer.use_ema else None
    history.steps_per_epoch = steps_per_epoch
    history.schedule_steps = steps
    if stop is not None and stop.best_weights is not None:
        history.best_step = stop.best_step
        history.best_val_loss = stop.best_val_loss
        history.initial_val_loss = stop.initial_val_loss
        if verbose:
            print(f"fit_gaussianization_flow: kept the weights of step {history.best_step} "
                  f"(validation NLL {history.best_val_loss:.4f}).")
    return history
