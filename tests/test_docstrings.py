"""The runnable examples in the public docstrings run (doctest-style)."""

import inspect

import pytest

import tfp_gauss
from tfp_gauss import information
from tfp_gauss.bijectors import (HouseholderRotation, MixtureCDFCoupling, MixtureGaussianCDF,
                                 mixture_cdf_conditioner)
from tfp_gauss.keras import GaussianizationFlowModel, OneCycleCosine
from tfp_gauss.math import root_finding
from tfp_gauss.sklearn import GaussianizationDensity, GaussianizationTransformer

PUBLIC = {
    "MixtureGaussianCDF": MixtureGaussianCDF,
    "MixtureGaussianCDF.from_data": MixtureGaussianCDF.from_data,
    "MixtureGaussianCDF.inverse_diagnostics": MixtureGaussianCDF.inverse_diagnostics,
    "math.root_finding.bracketed_newton": root_finding.bracketed_newton,
    "sampling.sample_stacked": tfp_gauss.sampling.sample_stacked,
    "sampling.gaussianize_stacked_x_gradient": tfp_gauss.sampling.gaussianize_stacked_x_gradient,
    "HouseholderRotation": HouseholderRotation,
    "MixtureCDFCoupling": MixtureCDFCoupling,
    "mixture_cdf_conditioner": mixture_cdf_conditioner,
    "gaussianization_flow": tfp_gauss.gaussianization_flow,
    "fit_rbig": tfp_gauss.fit_rbig,
    "GaussianizationFlowModel": GaussianizationFlowModel,
    "OneCycleCosine": OneCycleCosine,
    "fit_gaussianization_flow": tfp_gauss.fit_gaussianization_flow,
    "keras.scale_floor_values": tfp_gauss.keras.scale_floor_values,
    "keras.keeps_scale_floor": tfp_gauss.keras.keeps_scale_floor,
    "export_saved_model": tfp_gauss.export_saved_model,
    "flows.flow_from_stacked": tfp_gauss.flows.flow_from_stacked,
    "flows.flow_gaussianizer": tfp_gauss.flows.flow_gaussianizer,
    "sklearn.GaussianizationDensity": GaussianizationDensity,
    "sklearn.GaussianizationTransformer": GaussianizationTransformer,
    "information.entropy": information.entropy,
    "information.total_correlation": information.total_correlation,
    "information.mutual_information": information.mutual_information,
    "information.kl_divergence": information.kl_divergence,
    "information.marginal_entropy": information.marginal_entropy,
}


def _examples(obj):
    doc = inspect.getdoc(obj) or ""
    return [block.split("```")[0] for block in doc.split("```python")[1:]]


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_docstring_example_runs(name):
    blocks = _examples(PUBLIC[name])
    assert blocks, f"{name} has no runnable example in its docstring"
    namespace = {}  # each example imports what it uses
    for code in blocks:
        exec(compile(code, f"<docstring of {name}>", "exec"), namespace)  # noqa: S102
