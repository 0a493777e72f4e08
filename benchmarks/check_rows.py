"""The default fit's choices, scored on training rows no choice has seen.

For each ``bench_compare`` split (two-moons, faithful, wine and diabetes,
seeds 0-2; digits seed 0) both candidates of ``scale_floor="auto"`` are
trained explicitly, ``scale_floor=0`` and ``scale_floor=AUTO_SCALE_FLOOR``,
on the first 6/7 of the standardized training rows, with the split's
validation rows choosing each fit's step. The other 1/7 of the training rows
("check" rows) is seen by neither training nor selection, so the fits' mean
log-likelihoods there score

- rules that choose between the two candidates from their per-row validation
  log-likelihoods (the better mean; the floor unless the plain fit leads by
  more than ``c`` standard errors of the paired difference): how often each
  keeps the check-better fit, and how much it loses when it does not;
- variants of the fit (``--variant``: ``fit_gaussianization_flow`` keyword
  arguments, JSON), each with the default rule applied to its own candidates.

The test rows are not read.

    python benchmarks/check_rows.py                                   # the default
    python benchmarks/check_rows.py --variant '{"ema_momentum": null}'
    python benchmarks/check_rows.py --report-only

Each run takes ~8 min on 2 cores. Runs are appended to
``results/check_rows_runs.jsonl``; the report is ``results/check_rows.md``.
"""

import argparse
import json
import sys
import time

import _common  # (quiet TensorFlow start-up)
import _datasets
import numpy as np

import tfp_gauss
from tfp_gauss.keras import AUTO_SCALE_FLOOR, keeps_scale_floor

RUNS = _common.RESULTS / "check_rows_runs.jsonl"
PLAN = [("two-moons", [0, 1, 2]), ("faithful", [0, 1, 2]), ("wine", [0, 1, 2]),
        ("diabetes", [0, 1, 2]), ("digits", [0])]
RULES = {"better mean": None, "0.5 s.e.": 0.5, "1 s.e. (the default)": 1.0, "2 s.e.": 2.0,
         "3 s.e.": 3.0}
FLOOR = f"{AUTO_SCALE_FLOOR}"


def run(plan, variant):
    with RUNS.open("a") as out:
        for name, seeds in plan:
            for seed in seeds:
                sp = _datasets.splits(name, seed=seed)
                train, val = sp["train_std"], sp["val_std"]
                k = int(round(len(train) * 6 / 7))
                row = dict(name=name, seed=seed, variant=variant)
                for c in (0.0, AUTO_SCALE_FLOOR):
                    start = time.time()
                    model, _ = tfp_gauss.fit_gaussianization_flow(
                        train[:k], validation_data=val, seed=seed, verbose=0, scale_floor=c,
                        **variant)
                    row[f"val_{c}"] = model.log_prob(val).numpy().astype(float).tolist()
                    row[f"chk_{c}"] = model.log_prob(train[k:]).numpy().astype(float).tolist()
                    row[f"sec_{c}"] = round(time.time() - start, 1)
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(name, seed, file=sys.stderr, flush=True)


def _lead(row):
    return np.array(row["val_0.0"]) - np.array(row[f"val_{FLOOR}"])


def _chosen(row):
    """Check-row mean log-lik of the candidate the default rule keeps, and which."""
    keep = keeps_scale_floor(row["val_0.0"], row[f"val_{FLOOR}"])[0]
    return float(np.mean(row[f"chk_{FLOOR}" if keep else "chk_0.0"])), keep


def rules_table(rows):
    lines = ["| data | seed | validation rows | validation lead ± s.e. | check rows | check lead |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        d = _lead(r)
        chk = np.mean(r["chk_0.0"]) - np.mean(r[f"chk_{FLOOR}"])
        lines.append(f"| {r['name']} | {r['seed']} | {d.size} | {d.mean():+.4f} ± "
                     f"{d.std(ddof=1) / np.sqrt(d.size):.4f} | {len(r['chk_0.0'])} | {chk:+.4f} |")
    lines += ["", "| rule | keeps the check-better fit | check log-lik lost (sum over "
              "dataset-seeds) |", "|---|---:|---:|"]
    for label, c in RULES.items():
        right, lost = 0, 0.0
        for r in rows:
            d = _lead(r)
            keep = (d.mean() <= 0 if c is None
                    else d.mean() <= c * d.std(ddof=1) / np.sqrt(d.size))
            chk = {False: np.mean(r["chk_0.0"]), True: np.mean(r[f"chk_{FLOOR}"])}
            right += chk[keep] >= max(chk.values())
            lost += max(chk.values()) - chk[keep]
        lines.append(f"| {label} | {right} of {len(rows)} | {lost:.3f} |")
    return lines


def markdown(rows):
    variants = {}
    for r in rows:
        variants.setdefault(json.dumps(r.get("variant", {}), sort_keys=True), {})[
            (r["name"], r["seed"])] = r
    lines = ["### The default fit's choices, scored on held-out check rows", "",
             "`python benchmarks/check_rows.py` (see its docstring): fits trained on 6/7 of "
             "each `bench_compare` training split, the split's validation rows choosing, and "
             "scored on the other 1/7 of the training rows.", "",
             "**Choosing the scale floor** (the rows of variant "
             "`{\"ema_momentum\": null}`, measured before weight averaging was the default). Per "
             "dataset-seed, the plain fit's lead in mean validation log-likelihood ± its "
             "standard error (paired per-row difference), and in mean check-row log-likelihood "
             "(positive: the fit without a floor is better).", ""]
    lines += rules_table(list(variants.get('{"ema_momentum": null}', {}).values()))
    lines += ["", "The check rows of wine and faithful are few (18 and 27), so each of those "
              "verdicts is itself noisy, and the rules differ by one or two dataset-seeds. One "
              "standard error, the conventional rule, was not tuned on these rows (a wider "
              "margin loses less here only because wine seed 0's plain lead, 2.3 s.e., and "
              "faithful seed 0's, 2.1 s.e., fall on either side of it).", "",
             "**Variants** (check-row mean log-likelihood of the candidate the one-standard-"
             "error rule keeps, F: the floored one, P: the plain one; `{}` is the default).", ""]
    keys = list(variants)
    names = sorted({k for v in variants.values() for k in v},
                   key=lambda k: ([n for n, _ in PLAN].index(k[0]), k[1]))
    lines += ["| data | seed | " + " | ".join(f"`{k}`" for k in keys) + " |",
              "|---|---:|" + "---:|" * len(keys)]
    for name in names:
        cells = []
        for k in keys:
            r = variants[k].get(name)
            if r is None:
                cells.append("")
                continue
            value, keep = _chosen(r)
            cells.append(f"{value:.4f} {'F' if keep else 'P'}")
        lines.append(f"| {name[0]} | {name[1]} | " + " | ".join(cells) + " |")
    base = variants.get('{"ema_momentum": null}', {})
    if base:
        lines += ["", "Change against `{\"ema_momentum\": null}` (no averaging), per dataset: "
                  "mean over its seeds (wins / seeds).", ""]
        for k in keys:
            per = {}
            for key, r in variants[k].items():
                if key in base:
                    per.setdefault(key[0], []).append(_chosen(r)[0] - _chosen(base[key])[0])
            lines.append(f"- `{k}`: " + ", ".join(
                f"{n} {np.mean(v):+.3f} ({sum(x > 0 for x in v)}/{len(v)})"
                for n, v in per.items()))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="{}", help="fit_gaussianization_flow kwargs, JSON")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        run(PLAN, json.loads(args.variant))
    rows = [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]
    text = markdown(rows)
    (_common.RESULTS / "check_rows.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
