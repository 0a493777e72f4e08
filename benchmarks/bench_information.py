"""Information measures: accuracy against closed-form truths, and against kNN estimators.

Cases with exact answers, each estimated in the same run by
``tfp_gauss.information`` (``method="rbig"``, the default, and the
``method="flow"`` plug-in) and by the k-nearest-neighbour estimators people
use (``infomeasure``, pinned in setup.py's ``bench`` extra: Kozachenko-Leonenko
entropy, KSG mutual information and multi-information, kNN KL divergence;
``k = 4``):

- ``gaussian``: N(0, R), R a random correlation matrix (seeded): entropy
  ``1/2 log det(2 pi e R)``, total correlation ``-1/2 log det R``, mutual
  information between the first ``D // 2`` and the other columns, and
  ``KL(N(mu, S) || N(0, R))`` for a shifted, rescaled ``S``.
- ``monotone``: the same samples through ``exp``, ``sinh``, ``tanh`` (cycling
  over the columns): total correlation and MI are unchanged, entropy moves by
  ``sum_i E log f_i'(x_i)`` (Gauss-Hermite quadrature).
- ``uniform_box``: uniform on a randomly rotated box with sides in [0.5, 2]:
  entropy ``sum_i log a_i``.

Grid: D in {2, 5, 10, 20, 50} x N in {1,000, 5,000, 20,000} for every case
(``NOT_RUN`` would name a cell left out, and the table would show why), one
seed per cell; the acceptance case (10-D Gaussian, N = 5,000) is repeated
over 5 seeds. The whole grid takes over an hour on two shared cores, so it
can run in pieces: every cell is saved as its own file under
``results/information_parts/`` as soon as it finishes, and each run (and
``--report-only``) merges all of them into ``results/information.{json,md}``.

    python benchmarks/bench_information.py --quick          # smoke test, nothing written
    python benchmarks/bench_information.py                  # the whole grid, one process
    python benchmarks/bench_information.py --dims 20 50 --sizes 1000 --cases gaussian monotone
    python benchmarks/bench_information.py --report-only    # merge results/information_parts/

``--knn-max-rows M`` gives the kNN estimators only the first ``M`` rows of a
larger sample (their cost grows about as N^2 at high D); capped cells are
marked in the table.
"""

import argparse
import json
import os
import time

import _common
import numpy as np

from tfp_gauss import information

K_NEIGHBOURS = 4
MAPS = (("exp", np.exp), ("sinh", np.sinh), ("tanh", np.tanh))


def _random_correlation(d, rng):
    a = rng.standard_normal((d, d))
    c = a @ a.T + 0.5 * np.eye(d)
    s = np.sqrt(np.diag(c))
    return c / np.outer(s, s)


def _logdet(m):
    return float(np.linalg.slogdet(m)[1])


def _gauss_kl(mu_p, cov_p, cov_q):
    d = len(mu_p)
    inv_q = np.linalg.inv(cov_q)
    return 0.5 * float(np.trace(inv_q @ cov_p) - d + mu_p @ inv_q @ mu_p
                       + _logdet(cov_q) - _logdet(cov_p))


def _mean_log_derivative(name):
    """``E log f'(x)`` for ``x ~ N(0, 1)`` (probabilists' Gauss-Hermite, 200 nodes)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    weights = weights / weights.sum()
    log_cosh = np.logaddexp(nodes, -nodes) - np.log(2.0)
    f = {"exp": nodes, "sinh": log_cosh, "tanh": -2.0 * log_cosh}[name]
    return float(weights @ f)


def gaussian_case(d, n, seed):
    rng = np.random.default_rng(1000 * d + seed)
    r = _random_correlation(d, rng)
    x = rng.multivariate_normal(np.zeros(d), r, size=n)
    a = max(1, d // 2)
    truth = dict(entropy=0.5 * _logdet(2 * np.pi * np.e * r), total_correlation=-0.5 * _logdet(r),
                 mutual_information=0.5 * (_logdet(r[:a, :a]) + _logdet(r[a:, a:]) - _logdet(r)))
    # p = N(L delta, L diag(c^2) L^T) against q = N(0, R): a shift and a rescaling
    # in R's own coordinates.
    chol = np.linalg.cholesky(r)
    delta, c = 0.3 * rng.standard_normal(d), rng.uniform(0.8, 1.25, d)
    mu_p, cov_p = chol @ delta, chol @ np.diag(c**2) @ chol.T
    p_sample = rng.multivariate_normal(mu_p, cov_p, size=n)
    truth["kl_divergence"] = _gauss_kl(mu_p, cov_p, r)
    return x, a, p_sample, truth


def monotone_case(d, n, seed):
    x, a, _, truth = gaussian_case(d, n, seed)
    names = [MAPS[i % len(MAPS)][0] for i in range(d)]
    y = np.column_stack([MAPS[i % len(MAPS)][1](x[:, i]) for i in range(d)])
    truth = dict(truth, entropy=truth["entropy"] + sum(_mean_log_derivative(m) for m in names))
    truth.pop("kl_divergence")
    return y, a, truth


def uniform_box_case(d, n, seed):
    rng = np.random.default_rng(7000 + 100 * d + seed)
    sides = rng.uniform(0.5, 2.0, d)
    q, rr = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(rr))
    x = (rng.uniform(-0.5, 0.5, (n, d)) * sides) @ q.T
    return x, dict(entropy=float(np.sum(np.log(sides))))


# ----------------------------------------------------------------------------
# Estimators: name -> measure -> callable returning a float
# ----------------------------------------------------------------------------

def _knn(required=True):
    """The kNN estimators, or ``None`` without infomeasure when not ``required``."""
    try:
        import infomeasure as im  # noqa: PLC0415  (only the benchmark needs it)
    except ImportError:
        if required:
            raise ImportError("bench_information compares with infomeasure's kNN estimators: "
                              "pip install -e '.[bench]'") from None
        return None

    def mi(x, y):
        return float(im.mutual_information(x, y, approach="ksg", k=K_NEIGHBOURS, base="e"))

    return dict(
        entropy=lambda x: float(im.entropy(x, approach="metric", k=K_NEIGHBOURS, base="e")),
        total_correlation=lambda x: float(im.mutual_information(
            *[x[:, i] for i in range(x.shape[1])], approach="ksg", k=K_NEIGHBOURS, base="e")),
        mutual_information=mi,
        kl_divergence=lambda x, y: float(im.kld(x, y, approach="metric", k=K_NEIGHBOURS,
                                                base="e")))


def _timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def _gauss_estimates(method, x, a, p_sample=None, truth_keys=()):
    """``{measure: (value, seconds)}`` by tfp_gauss.information with ``method``."""
    out = {}
    if "entropy" in truth_keys or "total_correlation" in truth_keys:
        est, sec = _timed(lambda: information.entropy(x, method=method, return_details=True))
        out["entropy"] = (est.value, sec)
        if "total_correlation" in truth_keys:
            out["total_correlation"] = (est.parts["total_correlation"], sec)
    if "mutual_information" in truth_keys:
        out["mutual_information"] = _timed(
            lambda: information.mutual_information(x[:, :a], x[:, a:], method=method))
    if "kl_divergence" in truth_keys and p_sample is not None:
        out["kl_divergence"] = _timed(
            lambda: information.kl_divergence(p_sample, x, method=method))
    return out


def _knn_estimates(knn, x, a, p_sample=None, truth_keys=(), max_rows=None):
    """``{measure: (value, seconds)}`` by the kNN estimators, on at most ``max_rows`` rows."""
    out = {}
    if knn is None:
        return out
    if max_rows is not None and x.shape[0] > max_rows:
        x = x[:max_rows]
        p_sample = None if p_sample is None else p_sample[:max_rows]
    if "entropy" in truth_keys:
        out["entropy"] = _timed(knn["entropy"], x)
    if "total_correlation" in truth_keys:
        out["total_correlation"] = _timed(knn["total_correlation"], x)
    if "mutual_information" in truth_keys:
        out["mutual_information"] = _timed(knn["mutual_information"], x[:, :a], x[:, a:])
    if "kl_divergence" in truth_keys and p_sample is not None:
        out["kl_divergence"] = _timed(knn["kl_divergence"], p_sample, x)
    return out


def _rows(family, d, n, seed, truth, estimates):
    rows = []
    for measure, value in truth.items():
        row = dict(family=family, d=d, n=n, seed=seed, measure=measure, truth=value)
        for name, est in estimates.items():
            if measure in est:
                v, sec = est[measure]
                row[name] = dict(estimate=v, abs_error=abs(v - value), seconds=sec)
        rows.append(row)
    return rows


def _one(family, d, n, seed, knn, log, knn_max_rows=None):
    if family == "gaussian":
        x, a, p_sample, truth = gaussian_case(d, n, seed)
    elif family == "monotone":
        (x, a, truth), p_sample = monotone_case(d, n, seed), None
    else:
        (x, truth), a, p_sample = uniform_box_case(d, n, seed), None, None
    keys = tuple(truth)
    estimates = {m: _gauss_estimates(m, x, a, p_sample, keys) for m in ("rbig", "flow")}
    estimates["knn"] = _knn_estimates(knn, x, a, p_sample, keys, knn_max_rows)
    rows = _rows(family, d, n, seed, truth, estimates)
    knn_rows = n if knn_max_rows is None else min(n, knn_max_rows)
    for r in rows:
        if "knn" in r:
            r["knn"]["rows"] = knn_rows
        log(f"{family} D={d} N={n} seed={seed} {r['measure']}: truth {r['truth']:.3f} " + " ".join(
            f"{k} {r[k]['estimate']:.3f} ({r[k]['seconds']:.1f}s)"
            for k in ("rbig", "flow", "knn") if k in r))
    return rows


FAMILIES = ("gaussian", "monotone", "uniform_box")
DIMS = (2, 5, 10, 20, 50)
SIZES = (1000, 5000, 20000)
ACCEPTANCE_SEEDS = (1, 2, 3, 4)  # extra seeds of the 10-D Gaussian at N = 5,000
# Cells of the grid deliberately left out, with the reason shown in the table.
NOT_RUN = {}
PARTS = _common.RESULTS / "information_parts"


def grid_cells(families=FAMILIES, dims=DIMS, sizes=SIZES, seeds=(0,)):
    """The ``(family, D, N, seed)`` cells of the grid restricted to the arguments."""
    cells = [(f, d, n, s) for d in dims for f in families for n in sizes for s in seeds
             if (f, d, n) not in NOT_RUN]
    if 0 in seeds and "gaussian" in families and 10 in dims and 5000 in sizes:
        cells += [("gaussian", 10, 5000, s) for s in ACCEPTANCE_SEEDS if s not in seeds]
    return cells


def _part_path(cell):
    family, d, n, seed = cell
    return PARTS / f"{family}-d{d}-n{n}-s{seed}.json"


def run(quick=False, log=print, cells=None, knn_max_rows=None, save_parts=False):
    """Estimates every cell (default: the whole grid); with ``save_parts`` one file per cell."""
    knn = _knn(required=not quick)
    if quick:
        cells = [("gaussian", 2, 500, 0), ("monotone", 2, 500, 0), ("uniform_box", 2, 500, 0)]
    elif cells is None:
        cells = grid_cells()
    config = dict(k_neighbours=K_NEIGHBOURS, quick=quick, knn_max_rows=knn_max_rows,
                  infomeasure=None if knn is None else _version("infomeasure"))
    rows = []
    for cell in cells:
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        cell_rows = _one(*cell, knn, log, knn_max_rows)
        rows += cell_rows
        if save_parts:
            PARTS.mkdir(parents=True, exist_ok=True)
            part = dict(config=config, cell=list(cell), rows=cell_rows,
                        run=dict(seconds=time.perf_counter() - start,
                                 load_before=load_before, load_after=os.getloadavg()[0]),
                        environment=_common.environment())
            _part_path(cell).write_text(json.dumps(part, indent=2, default=float) + "\n")
    return dict(config=dict(config, cells=[list(c) for c in cells]), rows=rows)


def merge_parts():
    """All of ``results/information_parts/*.json`` as one result, in grid order."""
    parts = [json.loads(p.read_text()) for p in sorted(PARTS.glob("*.json"))]
    if not parts:
        raise SystemExit(f"no results in {PARTS}; run some cells first.")
    order = {f: i for i, f in enumerate(FAMILIES)}
    parts.sort(key=lambda p: (p["cell"][1], order[p["cell"][0]], p["cell"][2], p["cell"][3]))
    versions = sorted({str(p["config"]["infomeasure"]) for p in parts})
    dates = sorted({p["environment"]["date"] for p in parts})
    config = dict(k_neighbours=parts[0]["config"]["k_neighbours"], quick=False,
                  infomeasure=", ".join(versions), cells=[p["cell"] for p in parts],
                  dates=dates)
    runs = [dict(cell=p["cell"], date=p["environment"]["date"], **p.get("run", {}))
            for p in parts]
    env = max(parts, key=lambda p: p["environment"]["date"])["environment"]
    return dict(config=config, rows=[r for p in parts for r in p["rows"]], runs=runs,
                environment=env)


def _version(name):
    from importlib import metadata  # noqa: PLC0415

    return metadata.version(name)


def _acceptance(rows):
    """Mean |error| over seeds of the 10-D Gaussian at N = 5,000, per method."""
    sel = [r for r in rows if r["family"] == "gaussian" and r["d"] == 10 and r["n"] == 5000]
    out = {}
    for measure in ("entropy", "total_correlation"):
        mrows = [r for r in sel if r["measure"] == measure]
        if not mrows:
            continue
        truth = np.mean([r["truth"] for r in mrows])
        out[measure] = dict(seeds=len(mrows), mean_truth=float(truth), **{
            m: dict(mean_abs_error=float(np.mean([r[m]["abs_error"] for r in mrows])),
                    max_abs_error=float(np.max([r[m]["abs_error"] for r in mrows])),
                    max_relative_error=float(np.max([r[m]["abs_error"] / abs(r["truth"])
                                                     for r in mrows])))
            for m in ("rbig", "flow", "knn") if m in mrows[0]})
    return out


def _mark(r, m):
    """A dagger after kNN figures computed on fewer rows than the cell has."""
    return "\u2020" if m == "knn" and r[m].get("rows", r["n"]) < r["n"] else ""


def markdown(res):
    rows = res["rows"]
    capped = sorted({(r["d"], r["n"], r["knn"]["rows"]) for r in rows
                     if "knn" in r and r["knn"].get("rows", r["n"]) < r["n"]})
    lines = [
        "### Information measures: absolute error (nats) against closed-form truth",
        "",
        "`tfp_gauss.information` with `method=\"rbig\"` (default) and `method=\"flow\"` "
        f"(plug-in) against kNN estimators (infomeasure {res['config']['infomeasure']}, "
        f"k = {res['config']['k_neighbours']}: Kozachenko-Leonenko entropy, KSG MI and "
        "multi-information, kNN KL). Entropy and TC by `rbig`/`flow` come from one fit, "
        "so they share a time. Seconds per estimate on two cores shared with other jobs, "
        "including XLA compilation the first time a shape is met (the first estimate of a "
        "cell, usually `rbig`'s, pays it); the load average of each cell's run is in the "
        "coverage table below. Best error in bold. Grid: D in {2, 5, 10, 20, 50} x N in "
        "{1,000, 5,000, 20,000}, one seed per row, the 10-D N = 5,000 Gaussian also with 4 "
        "more seeds (summarized below the table). Cells run in separate processes "
        "(`bench_information.py --dims ... --sizes ... --cases ...`, one file per cell in "
        "`results/information_parts/`) and merged here"
        + (f", measured on {', '.join(res['config']['dates'])}" if res["config"].get("dates")
           else "") + ".",
        ""]
    if capped:
        lines += ["\u2020 kNN estimators given only the first rows of the sample (their cost "
                  "grows about as N^2 at high D): "
                  + "; ".join(f"D = {d}, N = {n}: first {m:,} rows" for d, n, m in capped)
                  + ". `rbig` and `flow` use all N rows.", ""]
    lines += [
        "| case | D | N | measure | truth | rbig | flow | kNN | s rbig | s flow | s kNN |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["seed"] != 0:
            continue
        errs = {m: r[m]["abs_error"] for m in ("rbig", "flow", "knn") if m in r}
        best = min(errs.values())
        cells = [("-" if m not in errs else f"**{errs[m]:.3f}**{_mark(r, m)}" if errs[m] == best
                  else f"{errs[m]:.3f}{_mark(r, m)}") for m in ("rbig", "flow", "knn")]
        secs = [f"{r[m]['seconds']:.1f}{_mark(r, m)}" if m in r else "-"
                for m in ("rbig", "flow", "knn")]
        lines.append(f"| {r['family']} | {r['d']} | {r['n']} | {r['measure']} | "
                     f"{r['truth']:.3f} | " + " | ".join(cells + secs) + " |")
    coverage = _coverage(res)
    lines += [""] + coverage if coverage else []
    acc = _acceptance(rows)
    if acc:
        lines += ["", "10-D Gaussian, N = 5,000 (acceptance: |error| <= 5 % of TC and <= 0.1 "
                  "nats on entropy), over seeds:", ""]
        for measure, a in acc.items():
            parts = [f"{m} mean |error| {a[m]['mean_abs_error']:.3f}, "
                     f"max {a[m]['max_abs_error']:.3f}"
                     f" ({100 * a[m]['max_relative_error']:.1f} % of truth)"
                     for m in ("rbig", "flow", "knn") if m in a]
            lines.append(f"- {measure} ({a['seeds']} seeds, mean truth {a['mean_truth']:.3f}): "
                         + "; ".join(parts))
    if all("knn" in r for r in rows):
        lines += ["", "Mean absolute error over the one-seed cells above (every D and N); "
                  "the default of each function was chosen as the method with the smaller "
                  "mean:", ""] + _summary(rows)
        wins, losses = _wins(rows), _losses(rows)
        if wins:
            lines += ["", "Gaussian and monotone cells at D >= 10 (seeds included) where the "
                      f"default has a smaller error than kNN: {wins}.", ""]
            lines += (["Cells at D >= 10 where the default does not beat kNN:", ""] + losses
                      if losses else ["No cell at D >= 10 where the default loses to kNN."])
    return "\n".join(lines)


def _coverage(res):
    """Markdown: which (case, D, N) cells were run, when and under what load; why not if not."""
    runs = {(r["cell"][0], r["cell"][1], r["cell"][2]): r for r in res.get("runs", [])
            if r["cell"][3] == 0}
    if not runs:
        return []
    lines = ["Coverage of the grid (seed 0): date, wall time of the cell (all three methods, "
             "compilation included) and the 1-minute load average before/after it; "
             "the reason where a cell was not run.", "",
             "| case | D | " + " | ".join(f"N = {n:,}" for n in SIZES) + " |",
             "|---|---|" + "---|" * len(SIZES)]
    for d in DIMS:
        for f in FAMILIES:
            cells = []
            for n in SIZES:
                r = runs.get((f, d, n))
                if r is None:
                    reason = NOT_RUN.get((f, d, n))
                    cells.append(f"not run: {reason}" if reason else "not run yet")
                elif "seconds" in r:
                    cells.append(f"{r['date']}, {r['seconds']:.0f} s, load "
                                 f"{r['load_before']:.1f}/{r['load_after']:.1f}")
                else:
                    cells.append(f"{r['date']} (earlier one-process run, no per-cell record)")
            lines.append(f"| {f} | {d} | " + " | ".join(cells) + " |")
    return lines


DEFAULTS = dict(entropy="rbig", total_correlation="rbig", mutual_information="rbig",
                kl_divergence="flow")


def _summary(rows):
    """Markdown rows: mean |error| per measure and method over the seed-0 cells."""
    lines = ["| measure | cells | rbig | flow | kNN | rbig better than flow | smaller mean "
             "| default |", "|---|---|---|---|---|---|---|---|"]
    for measure, default in DEFAULTS.items():
        sel = [r for r in rows if r["measure"] == measure and r["seed"] == 0 and "knn" in r]
        if not sel:
            continue
        mean = {m: np.mean([r[m]["abs_error"] for r in sel]) for m in ("rbig", "flow", "knn")}
        better = sum(r["rbig"]["abs_error"] < r["flow"]["abs_error"] for r in sel)
        lines.append(f"| {measure} | {len(sel)} | {mean['rbig']:.3f} | {mean['flow']:.3f} | "
                     f"{mean['knn']:.3f} | {better} of {len(sel)} | "
                     f"`{min(('rbig', 'flow'), key=mean.get)}` | `{default}` |")
    return lines


def _wins(rows):
    out = []
    for measure, default in DEFAULTS.items():
        sel = [r for r in rows if r["d"] >= 10 and r["measure"] == measure and "knn" in r
               and r["family"] != "uniform_box"]
        if not sel:
            continue
        won = sum(r[default]["abs_error"] < r["knn"]["abs_error"] for r in sel)
        out.append(f"{measure} (`{default}`) {won} of {len(sel)}")
    return ", ".join(out)


def _losses(rows):
    """Markdown bullets: Gaussian/monotone cells at D >= 10 where the default is not better."""
    out = []
    for r in rows:
        default = DEFAULTS[r["measure"]]
        if (r["d"] >= 10 and r["family"] != "uniform_box" and "knn" in r
                and r[default]["abs_error"] >= r["knn"]["abs_error"]):
            out.append(f"- {r['family']} D = {r['d']} N = {r['n']} seed {r['seed']} "
                       f"{r['measure']}: truth {r['truth']:.3f}, `{default}` error "
                       f"{r[default]['abs_error']:.3f}, kNN error {r['knn']['abs_error']:.3f}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny cells, nothing written")
    parser.add_argument("--cases", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--dims", nargs="+", type=int, default=list(DIMS))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="seed 0 (default) also adds the acceptance seeds of the 10-D "
                             "Gaussian at N = 5,000")
    parser.add_argument("--knn-max-rows", type=int, default=None,
                        help="give the kNN estimators at most this many rows")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild information.{json,md} from results/information_parts/")
    args = parser.parse_args(argv)
    if args.report_only:
        return _common.report("information", merge_parts(), markdown, write=True)
    if args.quick:
        return _common.report("information", run(quick=True), markdown, write=False)
    cells = grid_cells(tuple(args.cases), tuple(args.dims), tuple(args.sizes), tuple(args.seeds))
    run(cells=cells, knn_max_rows=args.knn_max_rows, save_parts=True,
        log=lambda m: print(m, flush=True))
    # Each cell is saved as it finishes; the report is the merge of every part so far.
    return _common.report("information", merge_parts(), markdown, write=True)


if __name__ == "__main__":
    main()
