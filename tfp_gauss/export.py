"""TF SavedModel export of a Gaussianization flow: serving without tfp_gauss.

The exported model has four serving signatures, each a graph of TensorFlow
ops only, so ``tf.saved_model.load`` (or TF Serving) runs it with
TensorFlow alone:

==============  ===================================  ==========================
signature       inputs                               outputs
==============  ===================================  ==========================
``log_prob``    ``x``: float ``[None, D]``           ``log_prob``: ``[None]``
``sample``      ``n``: int32 ``[]``,                 ``x``: ``[n, D]``
                ``seed``: int32 ``[2]``
``gaussianize`` ``x``: float ``[None, D]``           ``z``: ``[None, D]``
``generate``    ``z``: float ``[None, D]``           ``x``: ``[None, D]``
==============  ===================================  ==========================

Every signature runs the stacked-layer maps of ``tfp_gauss.sampling`` (a
graph loop over the layers; the root-find in one XLA kernel), so the export
traces each layer's maths once, not once per layer, and a served model
compiles the root-find once. A coupling flow's conditioner MLP is saved as
stacked weights that the same loop reads (``tfp_gauss.math.coupling``), so
it serves without Keras either. Gradients flow through the reloaded
functions: ``generate`` keeps its implicit-function gradient, and
``log_prob`` and ``gaussianize`` a gradient in ``x``
(``sampling.gaussianize_stacked_x_gradient``: a custom gradient around the
whole layer loop, saved with it; one inside the loop would be dropped).
"""

import os

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_gauss import flows, sampling
from tfp_gauss.bijectors import householder_rotation

__all__ = ["FlowModule", "export_saved_model"]


class FlowModule(tf.Module):
    """A ``tf.Module`` serving a flow, with optional fixed standardization.

    With ``shift``/``scale`` (``[D]``), the served density is that of
    ``x = shift + scale * y`` where ``y`` follows the flow:
    ``log p(x) = log p_flow((x - shift) / scale) - sum(log scale)``.
    """

    def __init__(self, dist, shift=None, scale=None, name="gaussianization_flow"):
        super().__init__(name=name)
        values = flows.flow_values(dist)
        self.dtype = tf.as_dtype(values[0]["locs"].dtype)
        self.n_dims = int(values[0]["locs"].shape[0])
        # A private copy of the parameters as variables, stacked over the
        # layers: the export does not change when the source model keeps
        # training, and holds no Keras.
        stacked = flows.stack_flow_values(values)
        self.stacked = [tf.Variable(stacked[p], dtype=self.dtype, trainable=False, name=p)
                        for p in flows.STACKED_PARAMETERS]
        # A coupling flow: its masks (constants) and conditioner weights.
        self.coupling = []
        if "conditioner" in stacked:
            self.coupling = [tf.Variable(stacked["masks"], dtype=self.dtype, trainable=False,
                                         name="masks")] + [
                tf.Variable(w, dtype=self.dtype, trainable=False, name=f"conditioner_{i}")
                for i, w in enumerate(stacked["conditioner"])]
        # A flow with a scale floor: its [L, D] floor (a constant).
        self.scale_floor = None
        if "scale_floor" in stacked:
            self.scale_floor = tf.Variable(stacked["scale_floor"], dtype=self.dtype,
                                           trainable=False, name="scale_floor")
        d = self.n_dims
        shift = np.zeros(d) if shift is None else _per_column(shift, "shift", d)
        scale = np.ones(d) if scale is None else _per_column(scale, "scale", d)
        if not (np.isfinite(shift).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("shift must be finite and scale finite and positive; got "
                             f"shift={shift}, scale={scale}.")
        self.shift = tf.Variable(shift, dtype=self.dtype, trainable=False, name="shift")
        self.scale = tf.Variable(scale, dtype=self.dtype, trainable=False, name="scale")
        spec = tf.TensorSpec([None, d], self.dtype)
        # The forward is traced once (log_prob and gaussianize call it); the
        # inverse is the stacked-layer loop (see the module docstring).
        # Without autograph: the maths is plain TF control flow already, and
        # converting its call tree was most of the tracing time.
        def function(fn, signature):
            return tf.function(fn, input_signature=signature, autograph=False)

        self._forward_fn = function(self._forward_and_log_det, [spec])
        self.log_prob = function(self._log_prob, [spec])
        self.gaussianize = function(self._gaussianize, [spec])
        self.generate = function(self._generate, [spec])
        self.sample = function(self._sample, [tf.TensorSpec([], tf.int32),
                                              tf.TensorSpec([2], tf.int32)])

    def _checked(self, x, signature, name):
        """``x`` after a check that it is ``[n, D]``: the served graphs' only shape check
        (a SavedModel signature takes a tensor of any shape, and a wrong one
        would otherwise fail deep inside the flow, or broadcast silently)."""
        # The rank is the length of the runtime shape: tf.rank would be folded
        # from the signature's [None, D]. Padded with zeros, the shape's
        # entries 1 and 2 are [D, 0] exactly for [n, D] (rank 1: [0, 0];
        # rank 3: [m, k]).
        shape = tf.shape(x)
        padded = tf.concat([shape, [0, 0]], 0)
        return _asserted(
            x, tf.logical_and(tf.reduce_all(tf.equal(padded[1:3], [self.n_dims, 0])),
                              tf.equal(tf.size(x), shape[0] * self.n_dims)),
            [f"{signature}: {name} must have shape [n, {self.n_dims}] (the flow has "
             f"{self.n_dims} columns); got shape", shape])

    def _forward_and_log_det(self, x):
        y = (x - self.shift) / self.scale
        z, log_det = sampling.gaussianize_stacked_x_gradient(y, *self._stacked_params(),
                                                             **self._coupling_kwargs())
        return z, log_det - tf.reduce_sum(tf.math.log(self.scale))

    def _floor_kwargs(self):
        if self.scale_floor is None:
            return {}
        return dict(scale_floor=tf.convert_to_tensor(self.scale_floor))

    def _coupling_kwargs(self):
        if not self.coupling:
            return self._floor_kwargs()
        return dict(masks=tf.convert_to_tensor(self.coupling[0]),
                    conditioner=[tf.convert_to_tensor(w) for w in self.coupling[1:]],
                    **self._floor_kwargs())

    def _stacked_params(self):
        """``logits, locs, scales, rotations`` stacked over the layers."""
        logits, locs, raw_scales, vectors = self.stacked
        return (tf.convert_to_tensor(logits), tf.convert_to_tensor(locs),
                tf.math.softplus(raw_scales),
                householder_rotation.householder_product(tf.convert_to_tensor(vectors)))

    def _log_prob(self, x):
        z, log_det = self._forward_fn(self._checked(x, "log_prob", "x"))
        # The flow's base, N(0, I_D).
        log_normal = -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - self.dtype.as_numpy_dtype(
            0.5 * self.n_dims * np.log(2.0 * np.pi))
        return {"log_prob": log_normal + log_det}

    def _gaussianize(self, x):
        return {"z": self._forward_fn(self._checked(x, "gaussianize", "x"))[0]}

    def _generate(self, z):
        x = sampling.invert_stacked(self._checked(z, "generate", "z"), *self._stacked_params(),
                                    **self._coupling_kwargs())
        return {"x": self.shift + self.scale * x}

    def _sample(self, n, seed):
        n = _asserted(n, n >= 0, ["sample: n must be a count >= 0 of rows to draw; got", n])
        x, _ = sampling.draw_stacked(n, seed, *self.stacked, sampling._MAX_ITERATIONS,
                                     *self.coupling, **self._floor_kwargs())
        return {"x": self.shift + self.scale * x}


def _asserted(value, condition, message):
    """``value``, computed after a runtime check of ``condition`` (an error with ``message``)."""
    check = tf.debugging.Assert(condition, message, summarize=4)
    with tf.control_dependencies([check]):
        return tf.identity(value)


def _per_column(value, name, d):
    """``value`` as ``[d]`` float64: one number for every column, or ``d`` of them."""
    value = np.asarray(value, np.float64)
    if value.size == 1:
        return np.full(d, float(value.reshape(())))
    if value.size != d:
        raise ValueError(f"{name} must be one number or {d} numbers (one per column of the "
                         f"{d}-dimensional flow); got {value.size}, shape {value.shape}.")
    return value.reshape(d)


def export_saved_model(model_or_distribution, path, *, shift=None, scale=None):
    """Writes a TF SavedModel serving ``log_prob``, ``sample``, ``gaussianize``, ``generate``.

    Args:
      model_or_distribution: a ``GaussianizationFlowModel``, a flow
        distribution built by tfp_gauss (``gaussianization_flow``,
        ``fit_rbig``), or a fitted ``tfp_gauss.sklearn`` estimator (its
        float64 flow with its own standardization: the signatures take and
        return float64, and ``log_prob`` equals its ``score_samples``).
      path: directory to write (created; must not exist or be empty).
      shift, scale: optional standardization (one number, or ``[D]``) that the served density
        undoes (see ``FlowModule``).

    Returns:
      ``path``.

    #### Example

    ```python
    import tempfile, tensorflow as tf, tfp_gauss
    flow = tfp_gauss.gaussianization_flow(2, n_layers=2, n_components=3, seed=0)
    path = tfp_gauss.export_saved_model(flow, tempfile.mkdtemp() + "/flow")
    served = tf.saved_model.load(path)                  # TensorFlow only
    lp = served.signatures["log_prob"](x=tf.zeros([4, 2]))["log_prob"]
    xs = served.signatures["sample"](n=tf.constant(5), seed=tf.constant([1, 2]))["x"]
    ```
    """
    dist = model_or_distribution
    if hasattr(dist, "flow_parameters_") and hasattr(dist, "scale_"):  # fitted sklearn estimator
        if shift is not None or scale is not None:
            raise ValueError(
                f"export_saved_model: a fitted {type(dist).__name__} exports its own "
                "standardization (mean_, scale_); do not pass shift or scale.")
        dist, shift, scale = dist._flow64, dist.mean_, dist.scale_
    elif not isinstance(dist, tfp.distributions.Distribution):
        if not hasattr(dist, "distribution"):
            fitted = (" (a tfp_gauss.sklearn estimator must be fitted first)"
                      if type(dist).__module__.startswith("tfp_gauss.sklearn") else "")
            raise TypeError(
                "export_saved_model: expected a GaussianizationFlowModel, a tfp_gauss flow "
                "distribution or a fitted tfp_gauss.sklearn estimator; got "
                f"{type(dist).__name__}{fitted}.")
        dist = dist.distribution  # a GaussianizationFlowModel
    module = FlowModule(dist, shift=shift, scale=scale)
    if os.path.isdir(path) and os.listdir(path):
        raise ValueError(f"export_saved_model: {path!r} exists and is not empty.")
    signatures = {
        "log_prob": module.log_prob.get_concrete_function(),
        "sample": module.sample.get_concrete_function(),
        "gaussianize": module.gaussianize.get_concrete_function(),
        "generate": module.generate.get_concrete_function(),
    }
    tf.saved_model.save(module, path, signatures=signatures,
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=True))
    return path
