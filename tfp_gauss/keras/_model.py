"""The Gaussianization flow as a Keras 3 model trained on its negative log-likelihood."""

import warnings

import keras
import numpy as np
import tensorflow as tf

from tfp_gauss import _validation, flows, sampling
from tfp_gauss.math import coupling as coupling_math

__all__ = ["GaussianizationFlowModel"]


def _all_finite(loss, grads):
    checks = [tf.reduce_all(tf.math.is_finite(loss))]
    checks += [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
    return tf.reduce_all(tf.stack(checks))


class _LastFinite:
    """Copies of the weights as they were at the last step whose loss was finite.

    A step with a finite loss and finite gradients first records the current
    weights here, then applies the update. A step whose loss or gradients are
    NaN/inf applies nothing and puts the recorded weights back: the update
    that led to the non-finite loss is undone, and the model is left with the
    weights whose loss was last seen finite.
    """

    def __init__(self, variables):
        sync = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.copies = [tf.Variable(tf.zeros(v.shape, v.dtype), **sync) for v in variables]
        self.valid = tf.Variable(False, **sync)

    def record(self, variables):
        ops = [c.assign(v) for c, v in zip(self.copies, variables)]
        with tf.control_dependencies(ops):
            return self.valid.assign(True)

    def restore(self, variables):
        return tf.group([v.assign(tf.where(self.valid, c, v))
                         for c, v in zip(self.copies, variables)])


def _apply_if_finite(optimizer, loss, grads, variables, last_finite):
    """``optimizer.apply`` if loss and gradients are finite; else roll back.

    All replicas must take the same branch: under a merge-call strategy
    (MirroredStrategy) the decision is made once, in cross-replica context,
    from every replica's check; elsewhere the replicas agree through an
    all-reduce of the number of replicas that saw a non-finite value.
    Returns a boolean tensor: whether the step was applied.
    """
    tf_vars = [v.value for v in variables]  # the backing tf.Variables
    if (tf.distribute.has_strategy()
            and not tf.__internal__.distribute.strategy_supports_no_merge_call()):

        def cross_replica(distribution, loss, grads):
            checks = distribution.extended.call_for_each_replica(_all_finite, args=(loss, grads))
            finite = tf.reduce_all(tf.stack(distribution.experimental_local_results(checks)))

            def update_each(targets, sources):
                return tf.group([
                    distribution.extended.update(t, lambda t_, s_: t_.assign(s_), args=(s,),
                                                 group=True)
                    for t, s in zip(targets, sources)])

            def apply_fn():
                with tf.control_dependencies([update_each(last_finite.copies, tf_vars)]):
                    distribution.extended.update(
                        last_finite.valid, lambda t: t.assign(True), group=True)
                    distribution.extended.call_for_each_replica(
                        lambda g: optimizer.apply(g, variables), args=(grads,))
                return tf.constant(True)

            def restore_fn():
                restored = [distribution.extended.update(
                    v, lambda v_, c_, ok: v_.assign(tf.where(ok, c_, v_)),
                    args=(c, last_finite.valid), group=True)
                    for v, c in zip(tf_vars, last_finite.copies)]
                with tf.control_dependencies(restored):
                    return tf.constant(False)

            return tf.cond(finite, apply_fn, restore_fn)

        return tf.distribute.get_replica_context().merge_call(cross_replica, args=(loss, grads))

    bad = tf.cast(tf.logical_not(_all_finite(loss, grads)), tf.float32)
    if tf.distribute.has_strategy():
        bad = tf.distribute.get_replica_context().all_reduce("sum", bad)

    def apply_fn():
        with tf.control_dependencies([last_finite.record(tf_vars)]):
            optimizer.apply(grads, variables)
        return tf.constant(True)

    def restore_fn():
        with tf.control_dependencies([last_finite.restore(tf_vars)]):
            return tf.constant(False)

    return tf.cond(tf.equal(bad, 0.0), apply_fn, restore_fn)


@keras.saving.register_keras_serializable(package="tfp_gauss")
class GaussianizationFlowModel(keras.Model):
    r"""A Gaussianization flow that trains with Keras ``fit`` on its NLL.

    The model holds the flow's parameters as four Keras weights stacked over
    the layers (mixture ``logits``, ``locs`` and ``raw_scales``, with
    ``scales = softplus(raw_scales)``, all ``[L, D, K]``, and the rotations'
    ``vectors`` ``[L, M, D]``; layer ``l`` reads slice ``l``) and builds the
    TFP distribution from the live weights on every call, so every weight
    trains. With ``architecture="coupling"`` each mixture map is a
    ``MixtureCDFCoupling`` whose parameters for half of the coordinates
    depend on the other half through an MLP (its weights stacked over the
    layers too, ``tfp_gauss.math.coupling``; the last layer starts at zero, so
    a coupling model starts equal to the marginal one with the same
    mixtures):

    $$\mathrm{loss} = -\frac1N \sum_i \log p(x_i), \qquad
      \log p(x) = \log \mathcal N(G(x); 0, I) + \log|\det \partial G / \partial x|.$$

    - ``compile(optimizer=...)`` needs no loss; ``fit(x)`` takes no targets;
      ``evaluate(x)`` returns the mean NLL; ``model(x)`` is ``log p(x)``,
      shape ``[N]``.
    - ``model.distribution`` is the ``tfd.TransformedDistribution`` bound to the
      live weights; ``log_prob(x)`` and ``sample(n, seed)`` are shortcuts.
    - A training step whose loss or gradient is NaN/inf is not applied, the
      weights of the last step with a finite loss are put back, and ``fit``
      stops: the model is left with the last weights whose loss was finite.
    - ``jit_compile=True`` and ``tf.distribute`` strategies work.

    Args:
      n_dims: event size ``D``.
      n_layers: ``[marginal -> rotation]`` layers ``L``.
      n_components: mixture components ``K``.
      n_reflections: Householder vectors per rotation ``M`` (default ``D``).
      seed: int seed of the random initialisation (``None`` means ``0``).
      architecture: ``"marginal"`` or ``"coupling"`` (``flows.ARCHITECTURES``;
        coupling needs ``D >= 2``).
      conditioner_units: hidden widths of the coupling MLP.
      scale_floor: give the model a non-trainable ``[L, D]`` weight
        ``scale_floor`` (zeros until set by ``set_flow_values``): a soft
        floor under its mixture scales, ``sqrt(s^2 + floor^2)``
        (``flows.flow_from_stacked``; ``fit_gaussianization_flow`` sets it
        from the data to keep the mixtures from fitting noise).
      **kwargs: ``keras.Model`` arguments (``name``, ``dtype`` such as
        ``"float64"``).

    #### Example

    ```python
    import keras, numpy as np
    from tfp_gauss.keras import GaussianizationFlowModel, OneCycleCosine

    x = np.random.default_rng(0).normal(size=(2000, 2)).astype("float32")
    model = GaussianizationFlowModel(n_dims=2, n_layers=4, n_components=4, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(
        OneCycleCosine(200, 3e-3), global_clipnorm=1.0))
    model.fit(x, batch_size=256, epochs=2, verbose=0)
    nll = model.evaluate(x, verbose=0)           # mean negative log-likelihood
    z_samples = model.sample(10, seed=1)         # [10, 2]
    ```
    """

    def __init__(self, n_dims, n_layers=8, n_components=8, *, n_reflections=None, seed=None,
                 architecture="marginal", conditioner_units=coupling_math.DEFAULT_UNITS,
                 scale_floor=False, **kwargs):
        super().__init__(**kwargs)
        if self.compute_dtype not in ("float32", "float64"):
            raise ValueError(
                f"GaussianizationFlowModel computes in float32 or float64; got dtype policy "
                f"{self.dtype_policy.name!r} (compute dtype {self.compute_dtype}).")
        self.n_dims = _validation.check_int(n_dims, "n_dims")
        self.n_layers = _validation.check_int(n_layers, "n_layers")
        self.n_components = _validation.check_int(n_components, "n_components")
        self.n_reflections = (self.n_dims if n_reflections is None
                              else _validation.check_int(n_reflections, "n_reflections", 0))
        self.seed = seed
        self.architecture = flows.check_architecture(architecture, self.n_dims)
        self.conditioner_units = tuple(int(u) for u in conditioner_units)
        if any(u < 1 for u in self.conditioner_units):
            raise ValueError(f"conditioner_units must be >= 1; got {conditioner_units}.")
        rng = _validation.as_rng(seed)
        values = flows.random_flow_values(
            self.n_dims, self.n_layers, self.n_components, n_reflections=self.n_reflections,
            seed=rng, dtype=np.dtype(self.variable_dtype))
        init = flows.stack_flow_values(values)
        # One weight per parameter kind, stacked over the layers (see
        # `flows.flow_from_stacked`): the optimizer then updates four weights
        # per step, not four per layer.
        self._flow_weights = [
            self.add_weight(shape=init[p].shape, name=p,
                            initializer=keras.initializers.Zeros(), trainable=True)
            for p in flows.STACKED_PARAMETERS]
        self._masks, self._conditioner_weights = None, []
        if self.architecture == "coupling":
            self._masks = coupling_math.coupling_masks(self.n_dims, self.n_layers)
            start = coupling_math.initial_conditioner_weights(
                self.n_dims, self.n_components, self.n_layers, self.conditioner_units, rng=rng,
                dtype=np.dtype(self.variable_dtype))
            self._conditioner_weights = [
                self.add_weight(shape=w.shape, name=f"conditioner_{i}",
                                initializer=keras.initializers.Zeros(), trainable=True)
                for i, w in enumerate(start)]
            for w, v in zip(self._conditioner_weights, start):
                w.assign(v)
        self._scale_floor = None
        if scale_floor:
            self._scale_floor = self.add_weight(
                shape=(self.n_layers, self.n_dims), name="scale_floor",
                initializer=keras.initializers.Zeros(), trainable=False)
        self.set_flow_values(values)
        self._last_finite = _LastFinite(self._all_weights())
        self.built = True  # every weight exists already: no input-dependent build

    def _all_weights(self):
        return list(self._flow_weights) + list(self._conditioner_weights)

    @property
    def has_scale_floor(self):
        """Whether the model has a ``scale_floor`` weight (see the class docstring)."""
        return self._scale_floor is not None

    @property
    def scale_floor(self):
        """The ``[L, D]`` scale floor as a numpy array, or ``None`` (no floor weight)."""
        return None if self._scale_floor is None else self._scale_floor.numpy()

    def set_scale_floor(self, floor):
        """Sets the ``[L, D]`` scale floor (finite, ``>= 0``) of a model built with one.

        Raises:
          ValueError: the model has no floor weight, or ``floor`` has another
            shape or a negative or non-finite entry.
        """
        if self._scale_floor is None:
            raise ValueError("This model has no scale floor; build it with scale_floor=True.")
        floor = np.asarray(floor, np.float64)
        if floor.shape != tuple(self._scale_floor.shape) or not (
                np.isfinite(floor).all() and (floor >= 0).all()):
            raise ValueError(
                f"scale_floor must be finite and >= 0 with shape [L, D] = "
                f"{list(self._scale_floor.shape)}; got shape {list(floor.shape)}, min "
                f"{floor.min() if floor.size else None}.")
        self._scale_floor.assign(floor.astype(self._scale_floor.dtype))

    def _coupling_kwargs(self):
        """Keyword arguments of the stacked maps besides the four parameters.

        ``masks`` and live ``conditioner`` weights for coupling layers, and
        ``scale_floor`` when the model has one ({} for a marginal model
        without).
        """
        kwargs = {}
        if self._scale_floor is not None:
            kwargs["scale_floor"] = self._scale_floor.value
        if self.architecture != "coupling":
            return kwargs
        return dict(kwargs, masks=self._masks,
                    conditioner=[w.value for w in self._conditioner_weights])

    def set_flow_values(self, values):
        """Assigns parameter values (per-layer dicts as from ``flows.flow_values``).

        Values of a marginal flow set a coupling model's mixtures and
        rotations and leave its conditioner as it is (a fresh model's
        conditioner outputs zero: the warm start from a greedy fit). Values
        with a ``scale_floor`` need a model with one (``scale_floor=True``);
        values without one set a model's floor to 0 (the flow they describe).
        """
        if len(values) != self.n_layers:
            raise ValueError(f"Expected values for {self.n_layers} layers; got {len(values)}.")
        stacked = flows.stack_flow_values(values)  # checks the layers agree with each other
        for w, p in zip(self._flow_weights, flows.STACKED_PARAMETERS):
            if stacked[p].shape != tuple(w.shape):
                raise ValueError(
                    f"`{p}` stacked over the layers: expected shape {tuple(w.shape)} "
                    f"(this model's [L, D, K] / [L, M, D]), got {stacked[p].shape}.")
        if "conditioner" in stacked:
            if self.architecture != "coupling":
                raise ValueError("These values are a coupling flow's; this model's architecture "
                                 "is 'marginal'.")
            shapes = [tuple(w.shape) for w in self._conditioner_weights]
            if ([v.shape for v in stacked["conditioner"]] != shapes
                    or not np.array_equal(stacked["masks"], self._masks)):
                raise ValueError(
                    f"Conditioner weights of shapes {[v.shape for v in stacked['conditioner']]} "
                    f"do not fit this model's {shapes} (and its masks).")
        if "scale_floor" in stacked and self._scale_floor is None:
            raise ValueError("These values have a scale floor; build the model with "
                             "scale_floor=True to hold it.")
        for w, p in zip(self._flow_weights, flows.STACKED_PARAMETERS):
            w.assign(stacked[p].astype(w.dtype))
        if self._scale_floor is not None:
            self._scale_floor.assign(np.asarray(stacked.get(
                "scale_floor", np.zeros(self._scale_floor.shape)), self._scale_floor.dtype))
        for w, v in zip(self._conditioner_weights, stacked.get("conditioner", [])):
            w.assign(v.astype(w.dtype))

    @property
    def distribution(self):
        """The flow as a ``tfd.TransformedDistribution`` on the live weights."""
        # `.value` is the backing tf.Variable: the bijectors read it on every
        # use, so the distribution stays bound to the live weights.
        return flows.flow_from_stacked(*(w.value for w in self._flow_weights),
                                       **self._coupling_kwargs())

    @property
    def gaussianizer(self):
        """The Gaussianizer ``G`` (``x -> z``, a ``tfb.Chain``) on the live weights.

        ``gaussianizer.forward(x)`` gives the latents, ``inverse(z)`` the data
        points (``flows.flow_gaussianizer`` of ``distribution``).
        """
        return flows.flow_gaussianizer(self.distribution)

    def call(self, x, training=False):
        shape = tf.TensorShape(x.shape)
        if shape.rank is not None and (shape.rank != 2 or shape[-1] not in (None, self.n_dims)):
            hint = " (one row: x[None, :])" if shape.rank == 1 else ""
            raise ValueError(
                f"{type(self).__name__} takes rows of shape [N, {self.n_dims}] (its n_dims); "
                f"got shape {tuple(shape.as_list())}{hint}.")
        x = tf.cast(x, self.compute_dtype)
        if training:
            # The stacked maps that inference and export run too (not the
            # tfb.Chain): one implementation, and faster marginal steps
            # (benchmarks/results/fit_speed.md).
            return sampling.training_log_prob(x, *(w.value for w in self._flow_weights),
                                              **self._coupling_kwargs())
        # Inference (`predict`, `evaluate`, `model(x)`): one graph shared by
        # every batch size and model, so a new batch size does not retrace
        # the layers (`sampling.log_prob_stacked`).
        return sampling.log_prob_stacked(x, *(w.value for w in self._flow_weights),
                                         **self._coupling_kwargs())

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        del x, y, training
        log_prob = y_pred
        if sample_weight is not None:
            w = tf.cast(tf.reshape(sample_weight, [-1]), log_prob.dtype)
            nll = -tf.reduce_sum(w * log_prob) / tf.maximum(tf.reduce_sum(w), 1e-12)
        else:
            nll = -tf.reduce_mean(log_prob)
        # Keras sums gradients over replicas: scale the per-replica mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return nll / tf.cast(replicas, nll.dtype) if replicas > 1 else nll

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """``keras.Model.compile`` for a model whose loss is its mean NLL.

        The loss is ``compute_loss``'s negative log-likelihood, and there are
        no targets for a metric to compare with: ``loss``, ``loss_weights``,
        ``metrics`` and ``weighted_metrics`` other than ``None`` (or empty)
        are a ``ValueError``. Under a
        ``tf.distribute`` strategy whose replicas are several CPUs (logical
        devices of one machine), ``jit_compile=True`` becomes ``False`` with
        a warning: XLA cannot reach the replicas' variables there (GPUs and
        TPUs keep it).
        """
        for name, value in (("loss", loss), ("loss_weights", loss_weights)):
            if value is not None:
                raise ValueError(
                    f"{type(self).__name__} trains on its negative log-likelihood and takes "
                    f"no {name}; got {name}={value!r}. Compile without one.")
        for name, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if value:  # (None and empty lists pass)
                raise ValueError(
                    f"{type(self).__name__} has no targets for a metric to compare with; "
                    f"got {name}={value!r}. Its loss, the mean negative log-likelihood, is "
                    "reported as 'loss' (and 'val_loss').")
        # (the model's own strategy: the one its variables and `fit` use,
        # whether or not compile is called in its scope)
        strategy = self.distribute_strategy
        if (jit_compile is True and strategy.num_replicas_in_sync > 1
                and all("CPU" in d.upper() for d in strategy.extended.worker_devices)):
            warnings.warn(
                f"{type(self).__name__}.compile: jit_compile=True under a strategy of "
                f"{strategy.num_replicas_in_sync} CPU replicas is turned off (XLA cannot reach "
                "the replicas' variables on CPUs); the steps run as TF graphs.",
                UserWarning, stacklevel=_validation.user_stacklevel())
            jit_compile = False
        super().compile(optimizer, run_eagerly=run_eagerly,
                        steps_per_execution=steps_per_execution, jit_compile=jit_compile,
                        auto_scale_loss=auto_scale_loss)

    def compile_from_config(self, config):
        """What Keras' own does on loading (it skips models that override ``compile``)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)  # (its slots, to load into)

    def train_step(self, data):
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            log_prob = self(x, training=True)
            loss = self.compute_loss(y_pred=log_prob, sample_weight=sample_weight)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            self._loss_tracker.update_state(
                loss * tf.cast(replicas, loss.dtype), sample_weight=tf.shape(x)[0])
            scaled = self.optimizer.scale_loss(loss)
        variables = self._all_weights()
        grads = tape.gradient(scaled, variables)
        _apply_if_finite(self.optimizer, loss, grads, variables, self._last_finite)
        return self.compute_metrics(x, None, log_prob, sample_weight=sample_weight)

    # -- data checks before any step ---------------------------------------------------

    def _checked(self, x, name, purpose="fitting"):
        if x is None or isinstance(x, (tf.data.Dataset, keras.utils.PyDataset)):
            if isinstance(x, tf.data.Dataset):
                spec = x.element_spec
                spec = spec[0] if isinstance(spec, tuple) else spec
                shape = getattr(spec, "shape", None)
                if shape is not None and (shape.rank != 2 or shape[-1] not in (None, self.n_dims)):
                    raise ValueError(
                        f"`{name}` must yield batches of shape [batch, {self.n_dims}]; the "
                        f"dataset yields {shape}.")
            return x
        return _validation.check_data(x, n_dims=self.n_dims, name=name,
                                      dtype=np.dtype(self.compute_dtype), purpose=purpose,
                                      float32_fix="build the model with dtype='float64'")

    def fit(self, x=None, y=None, *args, validation_data=None, callbacks=None, **kwargs):
        """``keras.Model.fit`` on data ``x`` of shape ``[N, D]`` (no targets).

        Arrays are checked before the first step (rank 2, width ``n_dims``,
        at least one row, no NaN/inf rows: ``ValueError`` says what was seen).
        Training stops at the first non-finite loss, keeping the last finite
        weights (``keras.callbacks.TerminateOnNaN`` is added if absent). An
        array with many repeated values in a column (rounded or discrete
        data) warns (``tfp_gauss.TiedValuesWarning``); a dataset is not read
        ahead to check.
        """
        if y is not None:
            raise ValueError("GaussianizationFlowModel.fit takes no targets: pass only `x`.")
        given = x
        x = self._checked(x, "x")
        if isinstance(x, np.ndarray):  # (an array, checked; datasets pass through)
            _validation.warn_if_tied(x, "x", stacklevel=2, given=given,
                                     float32_fix="build the model with dtype='float64'")
        if validation_data is not None:
            if isinstance(validation_data, tuple):
                validation_data = validation_data[0]
            validation_data = self._checked(validation_data, "validation_data", "scoring")
        callbacks = list(callbacks or [])
        if not any(isinstance(c, keras.callbacks.TerminateOnNaN) for c in callbacks):
            callbacks.append(keras.callbacks.TerminateOnNaN())
        optimizer = getattr(self, "optimizer", None)  # (none before compile: Keras says so)
        if optimizer is not None and not optimizer.built:
            # Build the slots now: the step applies updates inside a `tf.cond`,
            # where variables cannot be created (nor lifted out under XLA).
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        return super().fit(x, None, *args, validation_data=validation_data,
                           callbacks=callbacks, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Mean negative log-likelihood of ``x`` (``[N, D]``; checked like ``fit``)."""
        return super().evaluate(self._checked(x, "x", "scoring"), y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """``log p(x)`` per row, ``[N]`` numpy (``x`` ``[N, D]``; checked like ``fit``)."""
        return super().predict(self._checked(x, "x", "scoring"), *args, **kwargs)

    # -- conveniences ------------------------------------------------------------------

    def log_prob(self, x):
        """``log p(x)`` for ``x`` of shape ``[N, D]``, as a tensor ``[N]``.

        Runs eagerly (vectorized over rows), so it equals ``dist.log_prob``
        of the flow the model was built from to the last bit; ``model(x)`` and
        ``model.predict(x)`` give the same values from a compiled graph.
        """
        return self.distribution.log_prob(self._checked(x, "x", "scoring"))

    def sample(self, n, seed=None, *, validate_args=False):
        """``n`` draws from the flow, ``[n, D]`` (runs the mixture root-find).

        Runs ``tfp_gauss.sampling.sample_stacked``: one graph per dtype for
        every ``n``, seed and model, looping over the layers, with the
        root-find in an XLA kernel compiled once per ``(D, K, dtype)`` in a
        process (about 2 s on a 2-core CPU), so no later call recompiles.
        Equal, to the root-find's tolerance, to ``distribution.sample(n, seed)``
        for a stateless seed; an int ``seed`` draws the same rows on every
        call (``sample_stacked``); gradients with respect to the weights
        follow the implicit-function rule.

        A root-find that stops at its iteration cap (100 steps; typically 1-6
        are taken) leaves that coordinate inaccurate: with ``validate_args``
        that raises ``tf.errors.InvalidArgumentError``;
        ``sampling.sample_stacked(..., return_diagnostics=True)`` counts them.
        """
        return sampling.sample_stacked(n, seed, *(w.value for w in self._flow_weights),
                                       validate_args=validate_args, **self._coupling_kwargs())

    def get_config(self):
        config = super().get_config()
        config.update(n_dims=self.n_dims, n_layers=self.n_layers,
                      n_components=self.n_components, n_reflections=self.n_reflections,
                      seed=self.seed, architecture=self.architecture,
                      conditioner_units=list(self.conditioner_units),
                      scale_floor=self.has_scale_floor)
        return config

    @classmethod
    def from_distribution(cls, dist, **kwargs):
        """A trainable model initialised from any flow of this structure.

        ``dist`` is a ``TransformedDistribution`` built by tfp_gauss
        (``gaussianization_flow``, ``fit_rbig``, another model's
        ``distribution``). Before training, ``model.log_prob`` equals
        ``dist.log_prob``.

        Args:
          dist: the flow.
          **kwargs: ``keras.Model`` arguments; the dtype defaults to the flow's.
            ``architecture="coupling"`` with a marginal flow (e.g. a greedy
            fit) gives coupling layers that start exactly at that flow; a
            coupling flow gives a coupling model with its conditioner.
        """
        values = flows.flow_values(dist)
        if any("scale_floor" in v for v in values):
            kwargs.setdefault("scale_floor", True)
        if "conditioner" in values[0]:
            kwargs.setdefault("architecture", "coupling")
            kwargs.setdefault("conditioner_units", tuple(
                w.shape[-1] for w in values[0]["conditioner"][0:-2:2]))
        shapes = {(v["locs"].shape, v["vectors"].shape) for v in values}
        if len(shapes) != 1:
            raise ValueError(
                f"All layers must share D, K and M to form a model; got shapes {sorted(shapes)}.")
        (d, k), (m, _) = next(iter(shapes))
        kwargs.setdefault("dtype", values[0]["locs"].dtype.name)
        model = cls(n_dims=d, n_layers=len(values), n_components=k, n_reflections=m, **kwargs)
        model.set_flow_values(values)
        return model
