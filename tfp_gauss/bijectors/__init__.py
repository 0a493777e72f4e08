"""Bijectors of tfp_gauss: each is a ``tfb.Bijector``; the two marginal/rotation bijectors are
also ``CompositeTensor``s."""

from tfp_gauss.bijectors.householder_rotation import HouseholderRotation
from tfp_gauss.bijectors.mixture_cdf_coupling import (
    MixtureCDFCoupling,
    MLPConditioner,
    mixture_cdf_conditioner,
)
from tfp_gauss.bijectors.mixture_gaussian_cdf import MixtureGaussianCDF

__all__ = ["HouseholderRotation", "MLPConditioner", "MixtureCDFCoupling", "MixtureGaussianCDF",
           "mixture_cdf_conditioner"]
