"""Every benchmark runs in its --quick mode and returns what its report needs."""

import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_all  # noqa: E402


def test_every_benchmark_file_is_registered_in_run_all():
    files = {p.stem for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert {module.__name__ for module in run_all.BENCHES.values()} == files


# warm_start --quick is the run of test_examples.py::test_rbig_warm_start_example.
@pytest.mark.parametrize("name", sorted(set(run_all.BENCHES) - {"warm_start"}))
def test_quick_run_returns_what_the_report_needs(name):
    module = run_all.BENCHES[name]
    extra = ["--datasets", "two-moons"] if name == "comparison" else []
    res = module.main(["--quick"] + extra)
    # What `_common.write_result` and `run_all.write_report` consume: a JSON
    # payload with its config, from which the markdown section is built.
    assert isinstance(res, dict) and res
    json.dumps(res, default=float)
    text = module.markdown(res)
    assert text.startswith("### ") and len(text.splitlines()) >= 1
    assert any(ch.isdigit() for ch in text.split("\n", 1)[-1])  # it reports numbers


def test_autoregressive_experiment_measures_a_valid_density():
    # The experiment's MADE-masked layers keep the Jacobian triangular: their
    # log-det equals log|det J| of the autodiff Jacobian (float64, eager); a mask
    # letting an output see its own coordinate does not (the check can fail).
    bench = run_all.BENCHES["autoregressive"]
    assert bench.check_log_det() < 1e-12
    assert bench.check_log_det(strict=False) > 1e-2


def test_benchmark_report_is_built_from_committed_results(tmp_path, monkeypatch):
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    path = run_all.write_report()
    text = path.read_text()
    assert text.startswith("# tfp_gauss benchmarks")
    for name in run_all.BENCHES:
        result = run_all._common.RESULTS / f"{name}.md"
        assert result.exists(), f"benchmarks/results/{name}.md is not committed"
        assert result.read_text().splitlines()[0] in text
