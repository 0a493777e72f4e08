"""Numerical building blocks: log-space normal functions, root finding, EM."""

from tfp_gauss.math.normal import log_ndtr_lower, ndtri_exp_lower_value
from tfp_gauss.math.root_finding import bracketed_newton, invert_increasing

__all__ = ["bracketed_newton", "invert_increasing", "log_ndtr_lower", "ndtri_exp_lower_value"]
