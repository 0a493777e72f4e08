"""The default fit on tables no default was chosen on (``_datasets.UNSEEN_NAMES``).

Every default of ``fit_gaussianization_flow`` (architecture rule, scale
floor, weight averaging, learning rates, sizes) was chosen on the validation
splits of ``_datasets.NAMES`` (and manifold8). This runs ``bench_compare``'s
protocol unchanged (the same models, selection on validation, test scored
once, three split seeds) on tables none of those choices saw: MASS's crabs
(200 x 5), R's quakes (1000 x 5) and scikit-learn's breast cancer table
(556 x 30). It checks that the defaults generalize; nothing is tuned on it.

    python benchmarks/check_unseen.py --datasets crabs      # one dataset per process
    python benchmarks/check_unseen.py --datasets quakes
    python benchmarks/check_unseen.py --datasets breast-cancer
    python benchmarks/check_unseen.py --report-only
    python benchmarks/check_unseen.py --datasets crabs --models "tfp_gauss RBIG"

Each dataset's result is saved under ``results/unseen_parts/`` (one dataset
per process keeps memory bounded: every fit leaves compiled functions
behind); every run rebuilds the report, ``results/unseen.{md,json}``, from
the parts present. Not run by ``run_all.py`` (~10-20 min per dataset on 2
cores).
"""

import argparse
import json

import _common
import _datasets
import bench_compare

PARTS = _common.RESULTS / "unseen_parts"


def markdown(res):
    text = bench_compare.markdown(res)
    title, rest = text.split("\n", 1)
    text = (title.replace("### Density estimation against the alternatives",
                          "### Tables no default was chosen on") + "\n" + rest)
    return text + (f"\n{res['note']}\n" if res.get("note") else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=_datasets.UNSEEN_NAMES,
                        default=list(_datasets.UNSEEN_NAMES))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--note", default="", help="a sentence for the report (how it was run)")
    parser.add_argument("--models", nargs="+", choices=list(bench_compare.MODELS),
                        help="rerun only these models, replacing their rows in the saved parts")
    args = parser.parse_args(argv)
    if args.models:
        parts = bench_compare.saved_parts(args.datasets, PARTS)
        bench_compare.update_parts(
            bench_compare.run(names=args.datasets, models=list(dict.fromkeys(args.models))),
            parts, PARTS)
    elif not args.report_only:
        bench_compare.save_parts(bench_compare.run(names=args.datasets), args.datasets, PARTS)
    merged = bench_compare.merge_parts(PARTS, _datasets.UNSEEN_NAMES)
    note = args.note
    saved = _common.RESULTS / "unseen.json"
    if not note and saved.exists():  # keep the run's description unless a new one is given
        note = json.loads(saved.read_text()).get("note", "")
    return _common.report("unseen", dict(merged, note=note), markdown, write=True)


if __name__ == "__main__":
    main()
