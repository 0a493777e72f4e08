"""Every example runs end to end (with reduced steps) and writes its figure."""

import importlib.util
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mixture_cdf_marginal_example(tmp_path):
    out = tmp_path / "fig.png"
    curves = _load("mixture_cdf_marginal").main(["--steps", "40", "--out", str(out)])
    assert out.stat().st_size > 10_000
    for losses in curves.values():
        assert losses[-1] < losses[0] and losses[-1] <= 1.66


def test_nll_training_example(tmp_path):
    out = tmp_path / "nll.png"
    res = _load("nll_training").main(["--steps", "60", "--layers", "2", "--components", "3",
                                      "--out", str(out), "--verbose", "0"])
    assert res["anatomy_match"] and out.stat().st_size > 10_000
    assert res["history"]["loss"][-1] < res["history"]["loss"][0]


def test_rbig_warm_start_example(tmp_path):
    prefix = tmp_path / "ws"
    res = _load("rbig_warm_start").main(["--steps", "40", "--layers", "2", "--components", "3",
                                         "--out-prefix", str(prefix)])
    assert (tmp_path / "ws_curves.png").stat().st_size > 10_000
    assert (tmp_path / "ws_densities.png").stat().st_size > 10_000
    warm, cold = res["curves"]["rbig"]["nll"], res["curves"]["random"]["nll"]
    assert warm[0] < cold[0]  # the warm start starts where RBIG ended, far below random


def test_inversion_strategies_example(tmp_path):
    out = tmp_path / "inv.png"
    res = _load("inversion_strategies").main(["--out", str(out), "--targets", "201"])
    assert out.stat().st_size > 10_000
    for start in ("anchor start", "Hermite-table start"):
        hybrid = res["iterations"]["separated modes"][f"bracketed Newton, {start}"]
        assert max(hybrid) < 50  # converges everywhere, also where plain Newton does not
    table = res["iterations"]["reference bimodal"]["bracketed Newton, Hermite-table start"]
    anchor = res["iterations"]["reference bimodal"]["bracketed Newton, anchor start"]
    assert np.mean(table) < np.mean(anchor)
    assert res["implicit_error"] < 1e-6


def test_sklearn_gaussianization_example(tmp_path):
    out = tmp_path / "sk.png"
    res = _load("sklearn_gaussianization").main(
        ["--n", "800", "--steps", "0", "--layers", "4", "--components", "4",
         "--out", str(out)])
    assert out.stat().st_size > 10_000
    flow = res["GaussianizationTransformer"]
    for marginal in ("QuantileTransformer(normal)", "PowerTransformer"):
        # Joint Gaussianization removes the dependence that marginal ones leave.
        assert flow["max_abs_corr"] < res[marginal]["max_abs_corr"] / 2
        assert flow["gaussian_total_correlation"] < res[marginal]["gaussian_total_correlation"] / 4
        assert flow["anomaly_auc"] > res[marginal]["anomaly_auc"]
