"""Every example runs end to end (with reduced steps) and draws the figure it promises."""

import importlib.util
import pathlib
import sys

import matplotlib.figure
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def saved_figures(monkeypatch):
    """``{file name: Figure}`` of every figure an example saves (still written)."""
    saved = {}
    original = matplotlib.figure.Figure.savefig

    def savefig(fig, fname, *args, **kwargs):
        saved[pathlib.Path(fname).name] = fig
        return original(fig, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return saved


def _labels(ax):
    return ax.get_title(), ax.get_xlabel(), ax.get_ylabel()


def test_mixture_cdf_marginal_example(tmp_path, saved_figures):
    curves = _load("mixture_cdf_marginal").main(["--steps", "40", "--out",
                                                 str(tmp_path / "fig.png")])
    for losses in curves.values():
        assert losses[-1] < losses[0] and losses[-1] <= 1.66
    loss_ax, dens_ax = saved_figures["fig.png"].axes
    assert _labels(loss_ax) == ("end-to-end maximum-likelihood training", "Adam step",
                                "negative log-likelihood")
    assert _labels(dens_ax) == ("learned marginal density", "x", "density")
    # one loss curve per start (plus the EM reference line), the data histogram
    # and one density per start
    plotted = [line.get_ydata() for line in loss_ax.get_lines()][:len(curves)]
    for ydata, losses in zip(plotted, curves.values()):
        np.testing.assert_allclose(ydata, losses)
    assert len(dens_ax.get_lines()) == len(curves) and len(dens_ax.patches) == 60


def test_nll_training_example(tmp_path, saved_figures):
    res = _load("nll_training").main(["--steps", "60", "--layers", "2", "--components", "3",
                                      "--out", str(tmp_path / "nll.png"), "--verbose", "0"])
    assert res["anatomy_match"]
    assert res["history"]["loss"][-1] < res["history"]["loss"][0]
    curve, rate, latent = saved_figures["nll.png"].axes
    assert _labels(curve) == ("NLL training curve", "step", "negative log-likelihood")
    train, held_out = curve.get_lines()
    np.testing.assert_allclose(train.get_ydata(), res["history"]["loss"])
    np.testing.assert_allclose(held_out.get_ydata(), res["history"]["val_loss"])
    assert _labels(rate)[1:] == ("step", "learning rate")
    assert len(rate.get_lines()[0].get_ydata()) == 60
    assert _labels(latent)[1:] == ("$z_0$", "$z_1$") and len(latent.collections[0].get_offsets())


def test_rbig_warm_start_example(saved_figures):
    # Run through bench_warm_start --quick (the example with 40 steps, 2 layers of
    # 3 components, figures to a temporary directory), so that this one run also
    # covers the benchmark's report (test_benchmarks.py leaves warm_start to it).
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_warm_start  # noqa: PLC0415

    res = bench_warm_start.main(["--quick"])
    assert bench_warm_start.markdown(res).startswith("### ")
    assert res["steps"] == 40 and res["curves"]["rbig"]["steps"][-1] == 40
    warm, cold = res["curves"]["rbig"]["nll"], res["curves"]["random"]["nll"]
    assert warm[0] < cold[0]  # the warm start starts where RBIG ended, far below random
    (curves,) = saved_figures["warm_start_curves.png"].axes
    assert curves.get_xscale() == "log" and curves.get_ylabel() == "training NLL"
    np.testing.assert_allclose(curves.get_lines()[0].get_ydata(), cold)
    np.testing.assert_allclose(curves.get_lines()[1].get_ydata(), warm)
    densities = saved_figures["warm_start_densities.png"].axes
    assert len(densities) == 3
    for ax, (name, value) in zip(densities, res["held_out"].items()):
        assert ax.get_title() == f"{name}\nheld-out mean log p = {value:.3f}"
        assert ax.collections  # the filled contours and the data


def test_inversion_strategies_example(tmp_path, saved_figures):
    res = _load("inversion_strategies").main(["--out", str(tmp_path / "inv.png"),
                                              "--targets", "201"])
    for start in ("anchor start", "Hermite-table start"):
        hybrid = res["iterations"]["separated modes"][f"bracketed Newton, {start}"]
        assert max(hybrid) < 50  # converges everywhere, also where plain Newton does not
    table = res["iterations"]["reference bimodal"]["bracketed Newton, Hermite-table start"]
    anchor = res["iterations"]["reference bimodal"]["bracketed Newton, anchor start"]
    assert np.mean(table) < np.mean(anchor)
    assert res["implicit_error"] < 1e-6
    *histograms, gradient = saved_figures["inv.png"].axes
    for ax, (label, methods) in zip(histograms, res["iterations"].items()):
        assert ax.get_title().startswith(f"{label}: 201 targets") and ax.get_yscale() == "log"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == list(methods)
    assert gradient.get_yscale() == "log"
    np.testing.assert_allclose(gradient.get_lines()[0].get_ydata(), res["unrolled_error"])


def test_sklearn_gaussianization_example(tmp_path, saved_figures):
    out = tmp_path / "sk.png"
    res = _load("sklearn_gaussianization").main(
        ["--n", "800", "--steps", "0", "--layers", "4", "--components", "4",
         "--out", str(out)])
    data_ax, *panels = saved_figures["sk.png"].axes
    assert data_ax.get_title() == "data (raw units)"
    assert [ax.get_title().split("\n")[0] for ax in panels] == list(res)
    flow = res["GaussianizationTransformer"]
    for marginal in ("QuantileTransformer(normal)", "PowerTransformer"):
        # Joint Gaussianization removes the dependence that marginal ones leave.
        assert flow["max_abs_corr"] < res[marginal]["max_abs_corr"] / 2
        assert flow["gaussian_total_correlation"] < res[marginal]["gaussian_total_correlation"] / 4
        assert flow["anomaly_auc"] > res[marginal]["anomaly_auc"]


def test_variational_inference_example(tmp_path, saved_figures):
    res = _load("variational_inference").main(
        ["--steps", "30", "--hmc-draws", "20", "--out", str(tmp_path / "vi.png")])
    banana, elbo, funnel, ess = saved_figures["vi.png"].axes
    assert banana.get_title().startswith("banana: KL(q||p)")
    assert elbo.get_xlabel() == "Adam step" and len(res["losses"]) == 30
    assert np.isfinite(res["kl_qp"]) and np.isfinite(res["kl_pq"])
    assert [t.get_text() for t in funnel.get_legend().get_texts()] == list(res["ess_per_grad"])
    assert ess.get_ylabel() == "ESS / grad"
    assert all(np.isfinite(v).all() for v in res["ess_per_grad"].values())


def test_information_measures_example(tmp_path, saved_figures):
    res = _load("information_measures").main(
        ["--n", "600", "--dims", "2", "4", "--reference-rows", "100000",
         "--out", str(tmp_path / "info.png")])
    for row in res["rows"]:
        assert abs(row["tc"] - row["true_tc"]) < 0.15
        assert row["tc_mapped"] == row["tc"]  # rank-based: monotone maps change nothing
    ax_h, ax_tc, ax_trace = saved_figures["info.png"].axes
    assert ax_h.get_title() == "entropy of a Gaussian" and ax_tc.get_title() == "total correlation"
    truth, estimate = ax_tc.get_lines()[:2]
    np.testing.assert_allclose(truth.get_ydata(), [r["true_tc"] for r in res["rows"]])
    np.testing.assert_allclose(estimate.get_ydata(), [r["tc"] for r in res["rows"]])
    assert ax_trace.get_title().startswith("per-layer trace")
    np.testing.assert_allclose([p.get_height() for p in ax_trace.patches], res["box"]["trace"])
    np.testing.assert_allclose(ax_trace.get_lines()[0].get_ydata()[-1], res["box"]["tc"])
