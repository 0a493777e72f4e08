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

``generate`` is the mixture root-find; its implicit-function gradient is
saved with it, so gradients flow through the reloaded function.
"""

import os

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_gauss import flows

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
        # A private copy of the parameters as variables: the export does not
        # change when the source model keeps training, and holds no Keras.
        self.flow = flows.gaussianization_flow(self.n_dims, dtype=self.dtype,
                                               initial_values=values)
        d = self.n_dims
        shift = np.zeros(d) if shift is None else np.asarray(shift, np.float64).reshape(d)
        scale = np.ones(d) if scale is None else np.asarray(scale, np.float64).reshape(d)
        if not (np.isfinite(shift).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("shift must be finite and scale finite and positive; got "
                             f"shift={shift}, scale={scale}.")
        self.shift = tf.Variable(shift, dtype=self.dtype, trainable=False, name="shift")
        self.scale = tf.Variable(scale, dtype=self.dtype, trainable=False, name="scale")
        spec = tf.TensorSpec([None, d], self.dtype)
        # The two directions are traced once each; the four signatures call them
        # (tracing the mixture maths once per layer is what export time is).
        self._forward_fn = tf.function(self._forward_and_log_det, input_signature=[spec])
        self._inverse_fn = tf.function(self._inverse, input_signature=[spec])
        self.log_prob = tf.function(self._log_prob, input_signature=[spec])
        self.gaussianize = tf.function(self._gaussianize, input_signature=[spec])
        self.generate = tf.function(self._generate, input_signature=[spec])
        self.sample = tf.function(self._sample, input_signature=[
            tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int32)])

    def _forward_and_log_det(self, x):
        gaussianizer = self.flow.bijector.bijector
        y = (x - self.shift) / self.scale
        z = gaussianizer.forward(y)
        log_det = (gaussianizer.forward_log_det_jacobian(y, event_ndims=1)
                   - tf.reduce_sum(tf.math.log(self.scale)))
        return z, log_det

    def _inverse(self, z):
        return self.shift + self.scale * self.flow.bijector.bijector.inverse(z)

    def _log_prob(self, x):
        z, log_det = self._forward_fn(x)
        return {"log_prob": self.flow.distribution.log_prob(z) + log_det}

    def _gaussianize(self, x):
        return {"z": self._forward_fn(x)[0]}

    def _generate(self, z):
        return {"x": self._inverse_fn(z)}

    def _sample(self, n, seed):
        z = self.flow.distribution.sample(n, seed=seed)
        return {"x": self._inverse_fn(z)}


def export_saved_model(model_or_distribution, path, *, shift=None, scale=None):
    """Writes a TF SavedModel serving ``log_prob``, ``sample``, ``gaussianize``, ``generate``.

    Args:
      model_or_distribution: a ``GaussianizationFlowModel`` or a flow
        distribution built by tfp_gauss (``gaussianization_flow``, ``fit_rbig``).
      path: directory to write (created; must not exist or be empty).
      shift, scale: optional ``[D]`` standardization that the served density
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
    if not isinstance(dist, tfp.distributions.Distribution):
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
