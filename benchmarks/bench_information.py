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

Grid (two shared cores): every D in {2, 5, 10, 20, 50} at N = 5,000 and
N in {1,000, 20,000} at D = 10; the uniform box at D <= 20. One seed per cell;
the acceptance case (10-D Gaussian, N = 5,000) is repeated over 5 seeds.

    python benchmarks/bench_information.py [--quick]
"""

import argparse
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


def _knn_estimates(knn, x, a, p_sample=None, truth_keys=()):
    out = {}
    if knn is None:
        return out
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


def _one(family, d, n, seed, knn, log):
    if family == "gaussian":
        x, a, p_sample, truth = gaussian_case(d, n, seed)
    elif family == "monotone":
        (x, a, truth), p_sample = monotone_case(d, n, seed), None
    else:
        (x, truth), a, p_sample = uniform_box_case(d, n, seed), None, None
    keys = tuple(truth)
    estimates = {m: _gauss_estimates(m, x, a, p_sample, keys) for m in ("rbig", "flow")}
    estimates["knn"] = _knn_estimates(knn, x, a, p_sample, keys)
    rows = _rows(family, d, n, seed, truth, estimates)
    for r in rows:
        log(f"{family} D={d} N={n} seed={seed} {r['measure']}: truth {r['truth']:.3f} " + " ".join(
            f"{k} {r[k]['estimate']:.3f} ({r[k]['seconds']:.1f}s)"
            for k in ("rbig", "flow", "knn") if k in r))
    return rows


def run(quick=False, log=print):
    knn = _knn(required=not quick)
    if quick:
        cells = [("gaussian", 2, 500, 0), ("monotone", 2, 500, 0), ("uniform_box", 2, 500, 0)]
    else:
        cells = []
        for d in (2, 5, 10, 20, 50):
            cells += [("gaussian", d, 5000, 0), ("monotone", d, 5000, 0)]
            if d <= 20:
                cells.append(("uniform_box", d, 5000, 0))
        for n in (1000, 20000):
            cells += [("gaussian", 10, n, 0), ("monotone", 10, n, 0)]
        cells += [("gaussian", 10, 5000, s) for s in range(1, 5)]
    rows = []
    for cell in cells:
        rows += _one(*cell, knn, log)
    return dict(config=dict(k_neighbours=K_NEIGHBOURS, quick=quick, cells=[list(c) for c in cells],
                            infomeasure=None if knn is None else _version("infomeasure")),
                rows=rows)


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


def markdown(res):
    rows = res["rows"]
    lines = [
        "### Information measures: absolute error (nats) against closed-form truth",
        "",
        "`tfp_gauss.information` with `method=\"rbig\"` (default) and `method=\"flow\"` "
        f"(plug-in) against kNN estimators (infomeasure {res['config']['infomeasure']}, "
        f"k = {res['config']['k_neighbours']}: Kozachenko-Leonenko entropy, KSG MI and "
        "multi-information, kNN KL). Entropy and TC by `rbig`/`flow` come from one fit, "
        "so they share a time. Seconds per estimate on two cores shared with other jobs "
        "(load 5-8), including XLA compilation the first time a shape is met (the "
        "first estimate of a cell, usually `rbig`'s, pays it). "
        "Best error in bold. Grid: every D at N = 5,000, and N = 1,000 and 20,000 at D = 10 "
        "(the full D x N grid is too slow on two shared cores; this run took 30 minutes); "
        "the uniform box at D <= 20; one seed per row, the 10-D N = 5,000 Gaussian also "
        "with 4 more seeds (summarized below the table).",
        "",
        "| case | D | N | measure | truth | rbig | flow | kNN | s rbig | s flow | s kNN |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["seed"] != 0:
            continue
        errs = {m: r[m]["abs_error"] for m in ("rbig", "flow", "knn") if m in r}
        best = min(errs.values())
        cells = [("-" if m not in errs else f"**{errs[m]:.3f}**" if errs[m] == best
                  else f"{errs[m]:.3f}") for m in ("rbig", "flow", "knn")]
        secs = [f"{r[m]['seconds']:.1f}" if m in r else "-" for m in ("rbig", "flow", "knn")]
        lines.append(f"| {r['family']} | {r['d']} | {r['n']} | {r['measure']} | "
                     f"{r['truth']:.3f} | " + " | ".join(cells + secs) + " |")
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
        lines += ["", "Mean absolute error over the one-seed cells above; the default of each "
                  "function is the method with the smaller mean:", ""] + _summary(rows)
        lines += ["", "Gaussian and monotone cells at D >= 10 (seeds included) where the "
                  f"default has a smaller error than kNN: {_wins(rows)}."]
    return "\n".join(lines)


DEFAULTS = dict(entropy="rbig", total_correlation="rbig", mutual_information="rbig",
                kl_divergence="flow")


def _summary(rows):
    """Markdown rows: mean |error| per measure and method over the seed-0 cells."""
    lines = ["| measure | cells | rbig | flow | kNN | rbig better than flow | default |",
             "|---|---|---|---|---|---|---|"]
    for measure, default in DEFAULTS.items():
        sel = [r for r in rows if r["measure"] == measure and r["seed"] == 0 and "knn" in r]
        if not sel:
            continue
        mean = {m: np.mean([r[m]["abs_error"] for r in sel]) for m in ("rbig", "flow", "knn")}
        better = sum(r["rbig"]["abs_error"] < r["flow"]["abs_error"] for r in sel)
        lines.append(f"| {measure} | {len(sel)} | {mean['rbig']:.3f} | {mean['flow']:.3f} | "
                     f"{mean['knn']:.3f} | {better} of {len(sel)} | `{default}` |")
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    return _common.report("information", run(quick=args.quick), markdown, write=not args.quick)


if __name__ == "__main__":
    main()
