"""Every example runs end to end (with reduced steps) and writes its figure."""

import importlib.util
import pathlib

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
