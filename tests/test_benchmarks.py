"""Every benchmark runs in its --quick mode (smoke test; figures are not asserted)."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_all_benchmarks_quick():
    import run_all

    timings = run_all.main(["--quick"])
    assert set(timings) == {"mixture_cdf", "rbig", "training_throughput", "warm_start",
                            "comparison", "defaults", "first_call"}


def test_benchmark_report_is_built_from_committed_results(tmp_path, monkeypatch):
    import run_all

    monkeypatch.setattr(run_all, "HERE", tmp_path)
    path = run_all.write_report()
    text = path.read_text()
    assert text.startswith("# tfp_gauss benchmarks")
    for name in run_all.BENCHES:
        result = run_all._common.RESULTS / f"{name}.md"
        if result.exists():
            assert result.read_text().splitlines()[0] in text
