"""Mixture-CDF coupling layers against marginal layers alone: validation log-likelihood.

Both flows start from the same greedy fit (``fit_rbig`` on the training rows,
depth chosen on the validation rows) and train the same number of steps with
the same optimiser (Adam, one-cycle cosine peak ``--lr``, global clip 1, batch
512, validation every 50 steps, patience 600 steps, best weights kept). The
coupling flow replaces each marginal layer ``l`` by
``MixtureCDFCoupling.from_marginal`` (conditioning on the first half of the
coordinates for even ``l``, the second half for odd ``l``; 2 x 64 GELU
conditioner, zero last layer), so at step 0 both flows are the greedy flow.
Validation only (standardized units): this is the evidence for making
couplings part of the default, not a test-set report.

Exploration options: ``--hidden 128 128`` (conditioner widths), ``--n-layers``
(most greedy layers; the depth is chosen on validation), ``--n-components``,
``--lr`` (peak), ``--steps``, ``--patience`` (validations of 50 steps without
improvement), ``--kinds`` (``marginal``, ``coupling``), ``--baselines maf gmm``
(TFP MAF as in ``bench_compare.fit_maf`` and scikit-learn GaussianMixture
selected on validation, scored on validation), ``--sample-time`` (seconds to
draw 10k rows after a compiling call). Every run is appended as one JSON line
to ``results/coupling_runs.jsonl``; ``--no-report`` leaves ``coupling.{json,md}``
alone (exploration runs), and ``--table`` rebuilds ``coupling.md``'s
exploration table from the JSON lines.

    python benchmarks/bench_coupling.py --datasets two-moons diamonds
    python benchmarks/bench_coupling.py --datasets manifold8 --kinds coupling \
        --hidden 128 128 --lr 3e-3 --no-report
    python benchmarks/bench_coupling.py --datasets diamonds --kinds --baselines maf gmm --no-report
"""

import argparse
import json
import pathlib
import pickle
import sys
import time

import _common
import _datasets
import numpy as np


RUNS = _common.RESULTS / "coupling_runs.jsonl"
CACHE = pathlib.Path("/tmp/tfp_gauss_coupling_rbig_cache")


def _log_run(record):
    with RUNS.open("a") as f:
        f.write(json.dumps(record, default=float) + "\n")


def _greedy_values(name, seed, train_x, val, n_layers, n_components, quick):
    """``(flow_values(fit_rbig(...)), seconds)``, cached on disk across processes."""
    import tfp_gauss  # noqa: PLC0415

    # (free components, as fit_gaussianization_flow's warm start; "-free" in the
    # key leaves fits cached under the old key, made with other defaults, unused)
    key = CACHE / f"{name}-{seed}-{n_layers}-{n_components}-{int(quick)}-free.pkl"
    if key.exists():
        return pickle.loads(key.read_bytes())
    start = time.perf_counter()
    rbig = tfp_gauss.fit_rbig(train_x, n_layers=n_layers, n_components=n_components,
                              validation_data=val, seed=seed, tail_component=False)
    out = (tfp_gauss.flows.flow_values(rbig), time.perf_counter() - start)
    CACHE.mkdir(parents=True, exist_ok=True)
    key.write_bytes(pickle.dumps(out))
    return out


def _flow(values, coupling, seed, hidden=(64, 64)):
    import tensorflow as tf  # noqa: PLC0415  (TF loads only when fitting)
    import tensorflow_probability as tfp  # noqa: PLC0415

    from tfp_gauss import flows  # noqa: PLC0415
    from tfp_gauss.bijectors import (  # noqa: PLC0415
        HouseholderRotation,
        MixtureCDFCoupling,
        MixtureGaussianCDF,
    )

    tfb, tfd = tfp.bijectors, tfp.distributions
    parts, variables, nets = [], [], []
    for i, layer in enumerate(values):
        logits, locs = tf.Variable(layer["logits"]), tf.Variable(layer["locs"])
        raw = tf.Variable(layer.get("raw_scales", flows.softplus_inverse(layer["scales"])))
        vectors = tf.Variable(layer["vectors"])
        variables += [logits, locs, raw, vectors]
        marginal = MixtureGaussianCDF(logits, locs, flows.softplus_scales(raw))
        n_dims = layer["locs"].shape[0]
        if coupling and n_dims > 1:
            half = n_dims // 2
            dims = list(range(half)) if i % 2 == 0 else list(range(n_dims - half, n_dims))
            marginal = MixtureCDFCoupling.from_marginal(marginal, dims, hidden_units=tuple(hidden),
                                                        seed=seed + i)
            nets.append(marginal.conditioner)
        parts += [marginal, HouseholderRotation(vectors)]
    dim = parts[0].marginal.locs.shape[0] if coupling else parts[0].locs.shape[0]
    base = tfd.Sample(tfd.Normal(tf.constant(0.0), 1.0), dim)
    dist = tfd.TransformedDistribution(base, tfb.Invert(tfb.Chain(parts[::-1])))
    return dist, variables + [v for net in nets for v in net.trainable_variables], len(parts) // 2


def train(name, seed, coupling, steps, lr, quick=False, hidden=(64, 64), n_layers=8,
          n_components=8, patience=12, sample_time=False):
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from tfp_gauss.keras import OneCycleCosine  # noqa: PLC0415

    data = _datasets.splits(name, seed=seed)
    train_x = data["train_std"].astype(np.float32)
    val = data["val_std"].astype(np.float32)
    if quick:
        train_x, val = train_x[:300], val[:100]
    values, rbig_seconds = _greedy_values(name, seed, train_x, val, 2 if quick else n_layers,
                                          n_components, quick)
    start = time.perf_counter()
    dist, variables, depth = _flow(values, coupling, seed, hidden)
    opt = keras.optimizers.Adam(OneCycleCosine(steps, lr), global_clipnorm=1.0)

    @tf.function(jit_compile=True)
    def step(batch):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(batch))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

    @tf.function(jit_compile=True)
    def val_log_lik(x):
        return tf.reduce_mean(dist.log_prob(x))

    best, best_step, wait = float(val_log_lik(val)), 0, 0
    initial = best
    best_values = [v.numpy() for v in variables]
    curve = []
    rng = np.random.default_rng(seed)
    batch = min(512, len(train_x))
    for s in range(1, steps + 1):
        step(train_x[rng.choice(len(train_x), batch, replace=False)])
        if s % 50 == 0:
            v = float(val_log_lik(val))
            curve.append(v)
            if np.isfinite(v) and v > best:
                best, best_step, wait = v, s, 0
                best_values = [w.numpy() for w in variables] if sample_time else best_values
            else:
                wait += 1
            if wait >= patience:
                break
    train_seconds = time.perf_counter() - start
    out = dict(dataset=name, seed=seed, kind="coupling" if coupling else "marginal",
               hidden=list(hidden) if coupling else None, lr=lr, steps=steps, patience=patience,
               n_layers_max=n_layers, n_components=n_components,
               val_log_lik=best, initial_val_log_lik=initial, best_step=best_step,
               steps_run=s, layers=depth, n_params=int(sum(np.prod(v.shape) for v in variables)),
               rbig_seconds=rbig_seconds, train_seconds=train_seconds,
               seconds=rbig_seconds + train_seconds,
               final_val_log_lik=curve[-1] if curve else None,
               val_curve_every_500=curve[9::10])
    if sample_time:
        for w, value in zip(variables, best_values):
            w.assign(value)
        sampler = tf.function(lambda: dist.sample(10_000, seed=1), jit_compile=True)
        sampler()
        t0 = time.perf_counter()
        np.asarray(sampler())
        out["sample_10k_seconds"] = time.perf_counter() - t0
    return out


def baseline(name, seed, which, quick=False, maf_steps=3000, maf_hidden=None, maf_patience=10):
    """Validation log-likelihood (standardized units) of bench_compare's MAF or GMM."""
    import bench_compare  # noqa: PLC0415

    data = bench_compare.load(name, seed, quick)
    cfg = dict(quick=quick, seed=seed, steps=60 if quick else maf_steps,
               patience=3 if quick else maf_patience, maf_hidden=maf_hidden,
               gmm_components=(1, 2, 4) if quick else (1, 2, 4, 8, 16, 32, 64, 128))
    fit = bench_compare.fit_maf if which == "maf" else bench_compare.fit_gmm
    res = fit(data, cfg)
    log_prob = res.pop("log_prob")
    val_ll = float(np.mean(log_prob(data["val"])))
    extra = dict(maf_steps=cfg["steps"], maf_patience=cfg["patience"]) if which == "maf" else {}
    return dict(dataset=name, seed=seed, kind=which, val_log_lik=val_ll, **extra,
                **{k: v for k, v in res.items() if k != "val_log_lik"},
                seconds=res["train_seconds"])


def run(names, seeds, steps, lr, quick=False, kinds=("marginal", "coupling"), baselines=(),
        maf_steps=3000, maf_hidden=None, maf_patience=10, **kw):
    out = {}
    for name in names:
        out[name] = {}
        for kind in kinds:
            runs = []
            for s in seeds:
                r = train(name, s, kind == "coupling", steps, lr, quick, **kw)
                runs.append(r)
                if not quick:
                    _log_run(r)
            out[name][kind] = runs
            print(name, kind, [round(r["val_log_lik"], 4) for r in runs],
                  [round(r["seconds"]) for r in runs], file=sys.stderr, flush=True)
        for which in baselines:
            runs = []
            for s in seeds:
                r = baseline(name, s, which, quick, maf_steps, maf_hidden, maf_patience)
                runs.append(r)
                if not quick:
                    _log_run(r)
            out[name][which] = runs
            print(name, which, [round(r["val_log_lik"], 4) for r in runs],
                  [round(r["seconds"]) for r in runs], file=sys.stderr, flush=True)
    return dict(datasets=out, config=dict(steps=steps, lr=lr, seeds=list(seeds), quick=quick,
                                          **{k: list(v) if isinstance(v, tuple) else v
                                             for k, v in kw.items()}))


def markdown(res):
    c = res["config"]
    lines = ["### Coupling layers against marginal layers (best validation log-likelihood, "
             "standardized units; test never read)", "",
             f"Same greedy start, {c['steps']} steps at most, peak learning rate {c['lr']}, "
             f"split seeds {c['seeds']}; `python benchmarks/bench_coupling.py`.", "",
             "| data | marginal layers | coupling layers | fit s (marginal / coupling) |",
             "|---|---:|---:|---:|"]
    for name, ds in res["datasets"].items():
        m, cp = ds["marginal"], ds["coupling"]
        fmt = lambda runs: ", ".join(  # noqa: E731
            f"{r['val_log_lik']:.3f} (step {r['best_step']})" for r in runs)
        secs = (f"{np.mean([r['seconds'] for r in m]):.0f} / "
                f"{np.mean([r['seconds'] for r in cp]):.0f}")
        lines.append(f"| {name} | {fmt(m)} | {fmt(cp)} | {secs} |")
    return "\n".join(lines)


def exploration_table(path=RUNS):
    """Markdown table of every run in ``coupling_runs.jsonl`` (validation, standardized units)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = ["| data | model | hidden | lr | steps (max) | patience | layers | best step / run | "
             "val log-lik | fit s | 10k samples s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["kind"], -r["val_log_lik"])):
        sample = r.get("sample_10k_seconds", r.get("sample_seconds"))
        if r["kind"] in ("marginal", "coupling"):
            lines.append(
                f"| {r['dataset']} | {r['kind']} | {'x'.join(map(str, r['hidden'] or [])) or '-'} "
                f"| {r['lr']:g} | {r['steps']} | {r['patience'] * 50} | {r['layers']} | "
                f"{r['best_step']} / "
                f"{r['steps_run']} | {r['val_log_lik']:.3f} | {r['seconds']:.0f} | "
                f"{'-' if sample is None else f'{sample:.2f}'} |")
        else:
            steps = r.get("maf_steps", "-")
            pat = r["maf_patience"] * 50 if "maf_patience" in r else "-"
            if r["kind"] == "maf" and "maf_steps" not in r:
                steps, pat = 3000, 500
            lines.append(f"| {r['dataset']} | {r['kind'].upper()} ({r.get('chosen', '')}) | - | "
                         f"{'0.001' if r['kind'] == 'maf' else '-'} | {steps} | {pat} | - | - | "
                         f"{r['val_log_lik']:.3f} | {r['seconds']:.0f} | "
                         f"{'-' if sample is None else f'{sample:.2f}'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", nargs="+", choices=_datasets.ALL_NAMES,
                        default=["two-moons", "diamonds"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", nargs="+", type=int, default=[64, 64])
    parser.add_argument("--n-layers", type=int, default=8)
    parser.add_argument("--n-components", type=int, default=8)
    parser.add_argument("--patience", type=int, default=12)
    parser.add_argument("--kinds", nargs="*", choices=("marginal", "coupling"),
                        default=["marginal", "coupling"])
    parser.add_argument("--baselines", nargs="*", choices=("maf", "gmm"), default=[])
    parser.add_argument("--maf-steps", type=int, default=3000)
    parser.add_argument("--maf-hidden", nargs="+", type=int, default=None,
                        help="MAF widths to choose from (default: bench_compare's)")
    parser.add_argument("--maf-patience", type=int, default=10)
    parser.add_argument("--sample-time", action="store_true")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--table", action="store_true",
                        help="print the exploration table from results/coupling_runs.jsonl")
    args = parser.parse_args(argv)
    if args.table:
        print(exploration_table())
        return None
    kw = dict(hidden=tuple(args.hidden), n_layers=args.n_layers, n_components=args.n_components,
              patience=args.patience, sample_time=args.sample_time)
    if args.quick:
        res = run(["two-moons"], [0], 20, args.lr, quick=True, baselines=args.baselines, **kw)
    else:
        res = run(args.datasets, args.seeds, args.steps, args.lr, kinds=args.kinds,
                  baselines=args.baselines, maf_steps=args.maf_steps, maf_hidden=args.maf_hidden,
                  maf_patience=args.maf_patience, **kw)
    if args.no_report or not set(args.kinds) >= {"marginal", "coupling"}:
        return res
    return _common.report("coupling", res, markdown, write=not args.quick)


if __name__ == "__main__":
    main()
