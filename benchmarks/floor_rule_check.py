"""How ``scale_floor="auto"`` should choose: scored on rows no choice has seen.

For each ``bench_compare`` split (two-moons, faithful, wine and diabetes,
seeds 0-2; digits seed 0), both candidates of the default fit are trained
explicitly, ``scale_floor=0`` and ``scale_floor=AUTO_SCALE_FLOOR``, on the
first 6/7 of the standardized training rows, with the split's validation rows
choosing each fit's step. The other 1/7 of the training rows ("check" rows)
is seen by neither training nor selection, so each fit's mean log-likelihood
there says which candidate a choice should have kept. The test rows are not
read. Each rule that decides from the per-row validation log-likelihoods
(the better mean; the floor unless the plain fit leads by more than
``c`` standard errors of the paired difference) is then scored by how often
it keeps the check-better fit, and by how much it loses when it does not.

    python benchmarks/floor_rule_check.py                 # trains (~8 min)
    python benchmarks/floor_rule_check.py --report-only   # from the runs file

Runs are appended to ``results/floor_rule_runs.jsonl``; the report is
``results/floor_rule.md``.
"""

import argparse
import json
import sys
import time

import _common  # (quiet TensorFlow start-up)
import _datasets
import numpy as np

import tfp_gauss
from tfp_gauss.keras import AUTO_SCALE_FLOOR

RUNS = _common.RESULTS / "floor_rule_runs.jsonl"
PLAN = [("two-moons", [0, 1, 2]), ("faithful", [0, 1, 2]), ("wine", [0, 1, 2]),
        ("diabetes", [0, 1, 2]), ("digits", [0])]
RULES = {"better mean": None, "0.5 s.e.": 0.5, "1 s.e. (the default)": 1.0, "2 s.e.": 2.0,
         "3 s.e.": 3.0}


def run(plan):
    with RUNS.open("a") as out:
        for name, seeds in plan:
            for seed in seeds:
                sp = _datasets.splits(name, seed=seed)
                train, val = sp["train_std"], sp["val_std"]
                k = int(round(len(train) * 6 / 7))
                row = dict(name=name, seed=seed)
                for c in (0.0, AUTO_SCALE_FLOOR):
                    start = time.time()
                    model, _ = tfp_gauss.fit_gaussianization_flow(
                        train[:k], validation_data=val, seed=seed, verbose=0, scale_floor=c)
                    row[f"val_{c}"] = model.log_prob(val).numpy().astype(float).tolist()
                    row[f"chk_{c}"] = model.log_prob(train[k:]).numpy().astype(float).tolist()
                    row[f"sec_{c}"] = round(time.time() - start, 1)
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(name, seed, file=sys.stderr, flush=True)


def markdown(rows):
    floor = f"{AUTO_SCALE_FLOOR}"
    lines = ["### Choosing the scale floor: rules scored on held-out check rows", "",
             "`python benchmarks/floor_rule_check.py` (see its docstring). Per dataset-seed: the "
             "plain fit's lead in mean validation log-likelihood ± its standard error (paired "
             "per-row difference), and in mean check-row log-likelihood (positive: the fit "
             "without a floor is better).", "",
             "| data | seed | validation rows | validation lead ± s.e. | check rows | check lead |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        d = np.array(r["val_0.0"]) - np.array(r[f"val_{floor}"])
        chk = np.mean(r["chk_0.0"]) - np.mean(r[f"chk_{floor}"])
        lines.append(f"| {r['name']} | {r['seed']} | {d.size} | {d.mean():+.4f} ± "
                     f"{d.std(ddof=1) / np.sqrt(d.size):.4f} | {len(r['chk_0.0'])} | {chk:+.4f} |")
    lines += ["", "| rule | keeps the check-better fit | check log-lik lost (sum over "
              "dataset-seeds) |", "|---|---:|---:|"]
    for label, c in RULES.items():
        right, lost = 0, 0.0
        for r in rows:
            d = np.array(r["val_0.0"]) - np.array(r[f"val_{floor}"])
            keep = (d.mean() <= 0 if c is None
                    else d.mean() <= c * d.std(ddof=1) / np.sqrt(d.size))
            chk = {False: np.mean(r["chk_0.0"]), True: np.mean(r[f"chk_{floor}"])}
            right += chk[keep] >= max(chk.values())
            lost += max(chk.values()) - chk[keep]
        lines.append(f"| {label} | {right} of {len(rows)} | {lost:.3f} |")
    lines += ["", "The check rows of wine and faithful are few (18 and 27), so each of those "
              "verdicts is itself noisy, and the rules differ by one or two dataset-seeds. One "
              "standard error, the conventional rule, was not tuned on these rows (a wider "
              "margin loses less here only because wine seed 0's plain lead, 2.3 s.e., and "
              "faithful seed 0's, 2.1 s.e., fall on either side of it)."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        run(PLAN)
    rows = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]
    text = markdown(rows)
    (_common.RESULTS / "floor_rule.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
