"""One-cycle cosine learning rate, as a Keras schedule and as a callback."""

import math

import keras
import tensorflow as tf

from tfp_gauss import _validation

__all__ = ["LearningRateLogger", "OneCycleCosine", "OneCycleCosineCallback", "one_cycle_cosine"]


def _pieces(total_steps, peak_learning_rate, pct_start, div_factor, final_div_factor):
    initial = peak_learning_rate / div_factor
    final = initial / final_div_factor
    warmup_end = int(pct_start * total_steps)
    return ((0, warmup_end, initial, peak_learning_rate),
            (warmup_end, int(total_steps), peak_learning_rate, final)), final


def one_cycle_cosine(step, total_steps, peak_learning_rate, pct_start=0.3, div_factor=25.0,
                     final_div_factor=1e4):
    """The one-cycle cosine learning rate at ``step`` (a tensor), float32.

    Cosine warm-up from ``peak / div_factor`` to ``peak`` over the first
    ``int(pct_start * total_steps)`` steps, then cosine annealing to
    ``peak / (div_factor * final_div_factor)`` at ``total_steps``; constant
    after. On a piece from ``a`` (at step ``s0``) to ``b`` (at ``s1``):

        lr = b + (a - b) (1 + cos(pi t)) / 2
           = a + (b - a) sin^2(pi t / 2)  =  b + (a - b) sin^2(pi (1 - t) / 2),

    with ``t = (step - s0) / (s1 - s0)``. The first ``sin^2`` form is used for
    ``t < 1/2`` and the second after, with ``t`` and ``1 - t`` formed from
    integers: the small term is then always the one computed, so the rate is
    accurate to float32 rounding even where ``cos`` would cancel (the start of
    the warm-up, the end of the anneal).
    This is ``optax.cosine_onecycle_schedule`` with the same arguments.
    """
    pieces, final = _pieces(total_steps, peak_learning_rate, pct_start, div_factor,
                            final_div_factor)
    step = tf.cast(step, tf.float32)
    lr = tf.fill(tf.shape(step), tf.constant(final, tf.float32))
    for start, end, a, b in reversed(pieces):
        if end <= start:
            continue  # an empty piece (e.g. int(pct_start * T) == 0)
        done = (step - float(start)) / float(end - start)
        remaining = (float(end) - step) / float(end - start)
        value = tf.where(done < 0.5,
                         a + (b - a) * tf.square(tf.sin(0.5 * math.pi * done)),
                         b + (a - b) * tf.square(tf.sin(0.5 * math.pi * remaining)))
        lr = tf.where((step >= start) & (step < end), value, lr)
    return lr


@keras.saving.register_keras_serializable(package="tfp_gauss")
class OneCycleCosine(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle cosine schedule (cosine warm-up, then cosine anneal).

    Equal to ``optax.cosine_onecycle_schedule(total_steps, peak_learning_rate,
    pct_start, div_factor, final_div_factor)``: starts at
    ``peak / div_factor``, rises along a half cosine to ``peak`` at step
    ``int(pct_start * total_steps)``, falls along a half cosine to
    ``peak / (div_factor * final_div_factor)`` at ``total_steps`` and stays
    there. Keras' ``CosineDecay`` warms up linearly, so it is not this schedule.

    Example:

    ```python
    import keras
    from tfp_gauss.keras import OneCycleCosine

    schedule = OneCycleCosine(total_steps=3000, peak_learning_rate=3e-3)
    optimizer = keras.optimizers.Adam(schedule, global_clipnorm=1.0)
    ```
    """

    def __init__(self, total_steps, peak_learning_rate, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4, name="one_cycle_cosine"):
        super().__init__()
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive; got {total_steps}.")
        if not 0.0 <= pct_start <= 1.0:
            raise ValueError(f"pct_start must be in [0, 1]; got {pct_start}.")
        if not all(_validation.is_real(v, 0, strict=True)
                   for v in (peak_learning_rate, div_factor, final_div_factor)):
            raise ValueError(
                "peak_learning_rate, div_factor and final_div_factor must be positive; got "
                f"{peak_learning_rate}, {div_factor}, {final_div_factor}.")
        self.total_steps = int(total_steps)
        self.peak_learning_rate = float(peak_learning_rate)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.name = name

    def __call__(self, step):
        return one_cycle_cosine(step, self.total_steps, self.peak_learning_rate,
                                self.pct_start, self.div_factor, self.final_div_factor)

    def get_config(self):
        return dict(total_steps=self.total_steps, peak_learning_rate=self.peak_learning_rate,
                    pct_start=self.pct_start, div_factor=self.div_factor,
                    final_div_factor=self.final_div_factor, name=self.name)


def _current_learning_rate(optimizer):
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))


class LearningRateLogger(keras.callbacks.Callback):
    """Records the optimizer's learning rate in the logs (and so in ``History``).

    Works for a constant rate, a variable and a ``LearningRateSchedule``
    (evaluated at the optimizer's current iteration).
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _current_learning_rate(self.model.optimizer)


class OneCycleCosineCallback(keras.callbacks.Callback):
    """Sets the optimizer's learning rate to the one-cycle cosine value each step.

    For users who keep a plain float learning rate on the optimizer; the
    rate at each epoch's end is recorded in the logs as ``learning_rate``.
    Same arguments and values as ``OneCycleCosine``.

    Example:

    ```python
    model.fit(x, epochs=30, steps_per_epoch=100,
              callbacks=[OneCycleCosineCallback(total_steps=3000, peak_learning_rate=3e-3)])
    ```
    """

    def __init__(self, total_steps, peak_learning_rate, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4):
        super().__init__()
        self.schedule = OneCycleCosine(total_steps, peak_learning_rate, pct_start, div_factor,
                                       final_div_factor)

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        if isinstance(optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            raise ValueError(
                "OneCycleCosineCallback sets the learning rate itself; the optimizer already "
                "has a LearningRateSchedule. Use one or the other.")
        step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        optimizer.learning_rate = float(self.schedule(step))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _current_learning_rate(self.model.optimizer)
