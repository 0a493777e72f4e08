"""Benchmarks run in their --quick mode (smoke test; figures are not asserted)."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_mixture_cdf_benchmark_quick():
    import bench_mixture_cdf

    res = bench_mixture_cdf.main(["--quick"])
    assert set(res["modes"]) == {"eager", "tf.function", "XLA"}
    assert res["newton_iterations"]["max"] >= 1
    assert res["round_trip"]["max_rel_error_normal_sample"] < 1e-4
