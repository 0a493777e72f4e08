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

    python benchmarks/bench_coupling.py --datasets two-moons diamonds
"""

import argparse
import sys
import time

import _common
import _datasets
import numpy as np


def _flow(rbig, coupling, seed):
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
    for i, layer in enumerate(flows.flow_values(rbig)):
        logits, locs = tf.Variable(layer["logits"]), tf.Variable(layer["locs"])
        raw = tf.Variable(layer.get("raw_scales", flows.softplus_inverse(layer["scales"])))
        vectors = tf.Variable(layer["vectors"])
        variables += [logits, locs, raw, vectors]
        marginal = MixtureGaussianCDF(logits, locs, flows.softplus_scales(raw))
        n_dims = layer["locs"].shape[0]
        if coupling and n_dims > 1:
            half = n_dims // 2
            dims = list(range(half)) if i % 2 == 0 else list(range(n_dims - half, n_dims))
            marginal = MixtureCDFCoupling.from_marginal(marginal, dims, seed=seed + i)
            nets.append(marginal.conditioner)
        parts += [marginal, HouseholderRotation(vectors)]
    dim = parts[0].marginal.locs.shape[0] if coupling else parts[0].locs.shape[0]
    base = tfd.Sample(tfd.Normal(tf.constant(0.0), 1.0), dim)
    dist = tfd.TransformedDistribution(base, tfb.Invert(tfb.Chain(parts[::-1])))
    return dist, variables + [v for net in nets for v in net.trainable_variables], len(parts) // 2


def train(name, seed, coupling, steps, lr, quick=False):
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    import tfp_gauss  # noqa: PLC0415
    from tfp_gauss.keras import OneCycleCosine  # noqa: PLC0415

    data = _datasets.splits(name, seed=seed)
    train_x = data["train_std"].astype(np.float32)
    val = data["val_std"].astype(np.float32)
    if quick:
        train_x, val = train_x[:300], val[:100]
    start = time.perf_counter()
    rbig = tfp_gauss.fit_rbig(train_x, n_layers=2 if quick else 8, n_components=8,
                              validation_data=val, seed=seed)
    dist, variables, n_layers = _flow(rbig, coupling, seed)
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
    rng = np.random.default_rng(seed)
    batch = min(512, len(train_x))
    for s in range(1, steps + 1):
        step(train_x[rng.choice(len(train_x), batch, replace=False)])
        if s % 50 == 0:
            v = float(val_log_lik(val))
            if np.isfinite(v) and v > best:
                best, best_step, wait = v, s, 0
            else:
                wait += 1
            if wait >= 12:
                break
    return dict(val_log_lik=best, initial_val_log_lik=initial, best_step=best_step,
                steps_run=s, layers=n_layers, seconds=time.perf_counter() - start)


def run(names, seeds, steps, lr, quick=False):
    out = {}
    for name in names:
        out[name] = {}
        for kind in ("marginal", "coupling"):
            runs = [train(name, s, kind == "coupling", steps, lr, quick) for s in seeds]
            out[name][kind] = runs
            print(name, kind, [round(r["val_log_lik"], 4) for r in runs], file=sys.stderr,
                  flush=True)
    return dict(datasets=out, config=dict(steps=steps, lr=lr, seeds=list(seeds), quick=quick))


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", nargs="+", choices=_datasets.ALL_NAMES,
                        default=["two-moons", "diamonds"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    if args.quick:
        res = run(["two-moons"], [0], 20, args.lr, quick=True)
    else:
        res = run(args.datasets, args.seeds, args.steps, args.lr)
    return _common.report("coupling", res, markdown, write=not args.quick)


if __name__ == "__main__":
    main()
