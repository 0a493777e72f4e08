"""RBIG warm start vs random start: steps to match, held-out log-likelihoods.

Runs ``examples/rbig_warm_start.py`` (two-moons, 80/20 split, 8 layers x 8
components, 3000 steps of 512, one-cycle cosine peak 3e-3, clip 1.0) and
records: the number of steps the warm-started flow needs to reach the
random-init flow's final training NLL (target <= 300), and the held-out mean
log-likelihood of RBIG, the random-init flow and the warm-started flow
(target: warm start best). Figures go to ``benchmarks/results/``.

    python benchmarks/bench_warm_start.py [--quick]
"""

import argparse
import importlib.util
import pathlib

import _common

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _example():
    spec = importlib.util.spec_from_file_location(
        "rbig_warm_start", ROOT / "examples" / "rbig_warm_start.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown(res):
    h, t = res["held_out"], res["train"]
    lines = ["### RBIG warm start (two-moons, 80/20 split, 8 layers x 8 components)", "",
             f"The warm-started flow reaches the random-init flow's final training NLL "
             f"({res['random_final_train_nll']:.4f} after {res['steps']} steps) after "
             f"**{res['steps_to_match']} steps** (target <= 300). Greedy RBIG fit: "
             f"{res['rbig_seconds']:.2f} s.", "",
             "| model | train mean log p | held-out mean log p |", "|---|---:|---:|"]
    for name in h:
        lines.append(f"| {name} | {t[name]:.4f} | {h[name]:.4f} |")
    best = max(h, key=h.get)
    lines += ["", f"Best held-out: {best}.", "",
              "![warm vs random](results/warm_start_curves.png)",
              "![densities](results/warm_start_densities.png)"]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    prefix = _common.RESULTS / "warm_start"
    steps = 40 if args.quick else 3000
    if args.quick:
        import tempfile
        prefix = pathlib.Path(tempfile.mkdtemp()) / "warm_start"
    res = _example().main(["--steps", str(steps), "--out-prefix", str(prefix)]
                          + (["--layers", "2", "--components", "3"] if args.quick else []))
    res["steps"] = steps
    return _common.report("warm_start", res, markdown, write=not args.quick)


if __name__ == "__main__":
    main()
