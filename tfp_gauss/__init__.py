"""tfp_gauss: Gaussianization flows for TensorFlow Probability and Keras."""

from tfp_gauss._version import __version__
from tfp_gauss import bijectors, math

__all__ = ["__version__", "bijectors", "math"]
