"""Candidate defaults against the shipped one: validation log-likelihoods only.

Each run fits ``fit_gaussianization_flow(train, validation_data=val, seed=s,
**variant)`` on ``bench_compare``'s 70/10/20 split ``s`` (standardized with
the training statistics) and records the best validation mean log-likelihood,
the step it came at and the fit time. The yardsticks are scikit-learn's
GaussianMixture and KernelDensity, selected on the same validation rows. The
test rows are never read: this is where defaults are chosen, not reported.

One process per (dataset, variant) keeps runs independent; each appends a line
to ``results/variants_runs.jsonl``, and ``--report-only`` turns that file into
``results/variants.{json,md}``.

    python benchmarks/bench_variants.py --datasets two-moons --seeds 0 1 2 \
        --variant '{"n_layers": 16}'
    python benchmarks/bench_variants.py --yardsticks --datasets two-moons --seeds 0 1 2
    python benchmarks/bench_variants.py --report-only
"""

import argparse
import json
import sys
import time

import _common
import _datasets
import numpy as np

RUNS = _common.RESULTS / "variants_runs.jsonl"


def _split(name, seed, rows=None):
    data = _datasets.splits(name, seed=seed)
    return data["train_std"][:rows], data["val_std"][:rows]


def fit_variant(name, seed, variant, rows=None):
    import tfp_gauss  # noqa: PLC0415  (TF loads only when fitting)

    train, val = _split(name, seed, rows)
    start = time.perf_counter()
    model, history = tfp_gauss.fit_gaussianization_flow(
        train, validation_data=val, seed=seed, verbose=0, **variant)
    return dict(kind="flow", name=name, seed=seed, variant=variant,
                val=-float(history.best_val_loss), init=-float(history.initial_val_loss),
                best_step=int(history.best_step), layers=int(model.n_layers),
                scale_floor=getattr(history, "scale_floor", None),
                sec=round(time.perf_counter() - start, 1))


def yardsticks(name, seed, rows=None):
    from sklearn.mixture import GaussianMixture  # noqa: PLC0415
    from sklearn.neighbors import KernelDensity  # noqa: PLC0415

    train, val = _split(name, seed, rows)
    kde = max((KernelDensity(bandwidth=b).fit(train).score_samples(val).mean(), b)
              for b in np.geomspace(0.02, 1.0, 30))
    gmm = max((GaussianMixture(k, covariance_type=c, random_state=0, n_init=2).fit(train)
               .score_samples(val).mean(), k, c)
              for k in (1, 2, 4, 8, 16, 32) for c in ("full", "diag")
              if k * train.shape[1] < len(train))
    return dict(kind="yardsticks", name=name, seed=seed,
                kde=float(kde[0]), kde_bandwidth=float(kde[1]),
                gmm=float(gmm[0]), gmm_setting=f"{gmm[1]} {gmm[2]}")


def collect(rows):
    out = {}
    for row in rows:
        ds = out.setdefault(row["name"], {"yardsticks": {}, "variants": {}})
        if row["kind"] == "yardsticks":
            ds["yardsticks"][row["seed"]] = row
        else:
            key = json.dumps(row["variant"], sort_keys=True)
            ds["variants"].setdefault(key, {})[row["seed"]] = row
    return out


def markdown(res):
    lines = ["### Candidate defaults (best validation log-likelihood per split seed, "
             "standardized units; test never read)", "",
             "Each row changes only the arguments shown from the default of its time; "
             "`{\"architecture\": \"marginal\"}` rows were recorded when marginal layers "
             "with peak learning rate 3e-3 were the default (`{}`). Produced by "
             "`python benchmarks/bench_variants.py` (see its docstring).", "",
             "**The architecture rule** (`fit_gaussianization_flow(architecture=\"auto\")`): "
             "coupling layers beat marginal ones on validation with 1,258 training rows or more "
             "(digits +0.19, two-moons +0.014 mean of 3 seeds, diamonds +0.16 at peak 1e-3) and "
             "lose with 125-309 (diabetes -0.34 mean, faithful -0.03; wine mixed), where the "
             "conditioners overfit within 50-350 steps. So `auto` fits coupling layers from "
             "1,000 training rows (and 2 columns), marginal ones below. At peak 3e-3 the "
             "coupling fit of diamonds was unstable (5.79, stopped at step 3,268); at 1e-3 it "
             "reached 6.06 and is no worse on two-moons or digits: 1e-3 is the coupling "
             "default.", "",
             "**Training noise** (`noise=c`: Gaussian noise of `c` times each column's standard "
             "deviation added to every training batch; rows whose variant has no explicit "
             "`architecture` before this session were relabelled with the one `auto` chose). "
             "Mean over seeds, change against the default: two-moons +0.017 at 0.02-0.05 "
             "(-1.626 vs -1.643; with batch 256 and 0.03, -1.623, still short of the "
             "GaussianMixture's -1.620), -0.039 at 0.1; wine +0.08 / +0.20 / +0.63 at "
             "0.05 / 0.1 / 0.2; digits +0.27 at 0.05 and -0.63 at 0.1 (one seed); faithful "
             "-0.02 at 0.05-0.1; diabetes -0.62 to -0.68 (its binary `sex` column: "
             "training never improves on the greedy start); at 0.03 manifold8 +0.10 (2.657 vs "
             "2.559, GaussianMixture 2.849) and diamonds -2.15 (3.913 vs 6.062: its columns "
             "are nearly functions of each other, and noise blurs that thin ridge). No single level helps every "
             "dataset, so `noise` is an argument, off by default.", "",
             "**Mixture components** (session 6): on two-moons K = 2 / 3 / 4 / 8 / 16 "
             "components per coupling layer give -1.644 / -1.623 / -1.627 / -1.643 / -1.661 "
             "(with K = 4 and noise 0.03, -1.621: level with the GaussianMixture, not above it). "
             "K = 4 on every dataset (`{\"n_components\": 4}`) helps wine (+0.10) and diabetes "
             "(+0.23) and hurts faithful (-0.06), digits (-0.70), manifold8 (-0.03) and "
             "diamonds (-1.77), and the greedy start's validation score picks the better K on "
             "only 9 of 15 dataset-seeds, so the default stays K = 8.", "",
             "**Scale floor** (session 7; `scale_floor`: every mixture scale `s` of layer "
             "`l`, coordinate `d`, used as `sqrt(s^2 + f^2)`, after a coupling's shift). "
             "Measured first with an experimental patch (one absolute floor `f` on every "
             "layer of the standardized data): two-moons, mean of seeds 0-2, f = 0.05 / 0.1 "
             "/ 0.2 / 0.3 / 0.45 / 0.7 give -1.646 / -1.630 / -1.624 / **-1.608** / -1.616 / "
             "-1.632 (default -1.643, GaussianMixture -1.620); flooring only the base scales "
             "(a coupling may shrink them by e^-3) -1.618. Because the validation rows also "
             "pick the best step, variants were re-scored on 300 of the 2,100 training rows "
             "held out from training and selection: default -1.647, f = 0.3 -1.616, f = 0.45 "
             "-1.620, base scales only -1.633, noise 0.05 -1.627, f = 0.3 with noise 0.05 "
             "-1.612, f = 0.3 with 16 layers -1.611; GaussianMixture -1.598, the true density "
             "-1.568. One floor of 1.3 kernel bandwidths (`1.3 * 1.06 N^-1/5` per column: "
             "0.30 on two-moons) for every dataset helps two-moons (+0.035), wine (+0.26) and "
             "diabetes (+0.08) and hurts faithful (-0.03), manifold8 (-0.02), diamonds (4.20 "
             "vs 6.06) and digits (-48.8 vs -38.7: near-discrete pixel columns need narrow "
             "components). So `scale_floor=\"auto\"` (the default) trains a fit with 1.3 "
             "bandwidths (each layer input's own) and one without when there are fewer than "
             "5,000 training rows, and chooses on the held-out rows; the rows "
             "`{\"scale_floor\": \"auto\"}` below are that default under session 7's rule, "
             "the better validation mean (it rejected the floor on faithful and digits). "
             "Session 9, the one-standard-error rule (`keeps_scale_floor`): keep the floor unless "
             "the plain fit's validation log-likelihood is higher by more than one standard "
             "error of the paired per-row difference. Measured (`check_rows.py`, `results/check_rows.md`) with both candidates trained on "
             "6/7 of each training split and scored on the remaining 1/7 (\"check\" rows, seen "
             "by neither training nor selection; bench_compare's splits, seeds 0-2, digits seed "
             "0): the floored fit is better on the check rows in 11 of 13 dataset-seeds "
             "(two-moons +0.023 / +0.014 / +0.029, wine +0.040 / +0.022 / +0.045, diabetes "
             "+0.36 / +0.28 / +0.10, faithful -0.010 / +0.000 / +0.005, digits -9.3); the "
             "better validation mean picks the check-better fit in 8 of 13, one s.e. in 12 of "
             "13 (two s.e. too; three s.e. errs on faithful seed 0), never worse than the mean "
             "rule. On test (`bench_compare.py --datasets wine faithful`) it then keeps the "
             "floor on every faithful seed (-4.139 +- 0.085 against -4.238 +- 0.145) and on "
             "wine seed 2 (-19.288 against -20.213); the other datasets' choices cannot "
             "change (the rule keeps the floor wherever the mean rule did; digits' plain fit "
             "leads by 8.9 +- 0.4). Session 8: smaller floors on manifold8 (0.5 and 0.25 "
             "bandwidths, rows below) change nothing there (within 0.02 of the default on each "
             "seed; `bench_autoregressive.py`'s coupling runs give the default's seeds 1-2): its "
             "deficit to the GaussianMixture is not spiky mixtures. Marginal layers with the "
             "default floor selection on two-moons (`{\"architecture\": \"marginal\"}`): "
             "-1.646 mean against the coupling default's -1.615, in 7-11 s of fitting against "
             "~31 s: the coupling layers' cost buys 0.03 nats per row here. Session 12: "
             "training only the floored candidate when its *start* (the greedy fit with the "
             "floor, before any step) already scores better on the held-out rows would halve "
             "the small-data fit's time, but the start predicts the opposite of the end: on "
             "bench_compare's splits (two-moons, faithful and wine, seeds 0-2) the plain start "
             "leads on validation by +0.58 to +0.81 nats (two-moons), +0.83 to +1.23 "
             "(faithful) and +0.35 to +4.37 (wine), yet the floor is kept on all 9 after "
             "training (two-moons by 0.020-0.043 nats; each candidate's `initial_val_loss` "
             "and per-row start log-likelihoods recorded around the default call). Both "
             "candidates keep training.", "",
             "**Weight averaging** (session 9; `ema_momentum`: the optimizer's exponential "
             "moving average of the weights, Keras `use_ema`, is what is validated, kept and "
             "returned). Session 6 measured it on validation before the scale floor existed "
             "(two-moons, 0.99: -1.652 against -1.643) and dropped it. With the floor and the "
             "one-standard-error rule, scored on check rows (`check_rows.py`; the chosen "
             "candidate's check mean log-likelihood, change against no averaging, per seed): "
             "0.99 gives two-moons +0.020 / +0.010 / +0.008, digits +0.133, diabetes +0.047 / "
             "+0.008 / -0.000, wine -0.059 / +0.327 / -0.047 and faithful -0.088 / -0.010 / "
             "+0.005 (18 and 27 check rows: each within 2.3 standard errors of the paired "
             "per-row difference; over all 13 dataset-seeds, Stouffer's z = +2.3); 0.998 (an "
             "average over ~500 steps, longer than most fits' best step) loses on wine, "
             "diabetes, faithful and digits. On validation (one seed; large splits, no floor "
             "candidates; rows `{\"ema_momentum\": 0.99}` below) 0.99 gives diamonds 6.126 against "
             "6.126 and manifold8 2.568 against 2.559-2.561. So `ema_momentum=0.99` is the default; `None` turns it off.", ""]
    for name, ds in res.items():
        seeds = sorted({int(s) for v in ds["variants"].values() for s in v}
                       | {int(s) for s in ds["yardsticks"]})
        lines += [f"**{name}**", "", "| variant | " + " | ".join(f"seed {s}" for s in seeds)
                  + " |", "|---|" + "---:|" * len(seeds)]
        for key, runs in ds["variants"].items():
            cells = []
            for s in seeds:
                r = runs.get(s) or runs.get(str(s))
                cells.append("" if r is None else
                             f"{r['val']:.3f} (step {r['best_step']}, {r['layers']} L)")
            lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
        for model in ("gmm", "kde"):
            cells = []
            for s in seeds:
                r = ds["yardsticks"].get(s) or ds["yardsticks"].get(str(s))
                cells.append("" if r is None else f"{r[model]:.3f}")
            label = "GaussianMixture" if model == "gmm" else "KernelDensity"
            lines.append(f"| {label} (selected on validation) | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=_datasets.ALL_NAMES,
                        default=["two-moons"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--variant", default="{}", help="fit_gaussianization_flow kwargs, JSON")
    parser.add_argument("--yardsticks", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny fit on 300 rows; nothing is recorded")
    args = parser.parse_args(argv)
    if args.quick:
        tiny = dict(n_layers=2, n_components=3, steps=60)
        return collect([fit_variant("two-moons", 0, tiny, rows=300),
                        yardsticks("two-moons", 0, rows=300)])
    if not args.report_only:
        variant = json.loads(args.variant)
        RUNS.parent.mkdir(exist_ok=True)
        for name in args.datasets:
            for seed in args.seeds:
                row = (yardsticks(name, seed) if args.yardsticks
                       else fit_variant(name, seed, variant))
                print(json.dumps(row), file=sys.stderr, flush=True)
                with RUNS.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    res = collect([json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()])
    _common.write_result("variants", dict(datasets=res, environment=_common.environment()),
                         markdown(res))
    return res


if __name__ == "__main__":
    main()
