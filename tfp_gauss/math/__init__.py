"""Numerical building blocks: log-space normal functions, the mixture-CDF map, root finding, EM."""

from tfp_gauss.math import coupling, mixture_cdf  # noqa: F401  (submodules)
from tfp_gauss.math.mixture_cdf import mixture_cdf_transform
from tfp_gauss.math.normal import log_ndtr_lower, ndtri_exp_lower_value
from tfp_gauss.math.root_finding import RootSearchResult, bracketed_newton, invert_increasing

__all__ = ["RootSearchResult", "bracketed_newton", "coupling", "invert_increasing",
           "log_ndtr_lower", "mixture_cdf", "mixture_cdf_transform", "ndtri_exp_lower_value"]
