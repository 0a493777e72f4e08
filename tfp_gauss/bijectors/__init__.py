"""Bijectors of tfp_gauss: each is a ``tfb.Bijector`` and a ``CompositeTensor``."""

from tfp_gauss.bijectors.householder_rotation import HouseholderRotation
from tfp_gauss.bijectors.mixture_gaussian_cdf import MixtureGaussianCDF

__all__ = ["HouseholderRotation", "MixtureGaussianCDF"]
