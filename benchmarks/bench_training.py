"""Training throughput of the Gaussianization flow against TFP's MaskedAutoregressiveFlow.

Two configurations at batch 512: standardized two-moons (D = 2) and sklearn
digits (D = 64, uniformly dequantized, standardized); 8 layers x 8
components. Each model is trained by the same harness (Adam with global-norm
clipping 1.0, one gradient step per batch) eagerly, in ``tf.function`` and
compiled with XLA; the peer is a stack of 4 MAF layers (with reversing
permutations) whose MADE hidden width is chosen to match our parameter count.
Both are timed in the same run, alternating: five rounds each time both
models for a window of at least 1 s after compilation; the report gives
the median samples/s and the median of the rounds' ratios. It also times,
against MAF's best full training step, two parts of ours: the forward's
special functions alone (one exp and one erfcx per component and layer,
XLA), work every training step of this implementation does, and the whole
``log_prob`` alone (XLA, no gradient or optimizer).

    python benchmarks/bench_training.py [--quick]
"""

import argparse
import sys
import time

import _common
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import tfp_gauss
from tfp_gauss import datasets
from tfp_gauss.math import normal

tfb, tfd = tfp.bijectors, tfp.distributions


def n_params(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def maf(n_dims, hidden, n_layers=4, seed=0, log_scale_bound=None):
    """TFP MaskedAutoregressiveFlow stack (MADE with two hidden layers, reversing
    permutations between layers); returns ``(distribution, trainable variables)``.

    ``log_scale_bound``: if set, each layer's log-scale ``s`` becomes
    ``b tanh(s / b)`` (identity near 0, ``|s| < b``), so that no layer can
    scale by more than ``e^b``: an unbounded MADE log-scale extrapolates
    linearly (ReLU) to rows outside the training range and can send their
    log-density to ``-1e30``."""
    bijectors, nets = [], []
    for i in range(n_layers):
        made = tfb.AutoregressiveNetwork(params=2, hidden_units=[hidden, hidden],
                                         activation="relu",
                                         kernel_initializer=tf_keras.initializers.GlorotUniform(
                                             seed=seed + i))
        made.build((None, n_dims))
        nets.append(made)
        fn = made
        if log_scale_bound is not None:
            def fn(x, made=made, b=float(log_scale_bound)):
                shift, log_scale = tf.unstack(made(x), num=2, axis=-1)
                return shift, b * tf.tanh(log_scale / b)
        bijectors.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=fn))
        if i < n_layers - 1:
            bijectors.append(tfb.Permute(list(range(n_dims))[::-1]))
    base = tfd.Sample(tfd.Normal(0.0, 1.0), n_dims)
    dist = tfd.TransformedDistribution(base, tfb.Chain(bijectors))
    variables = [v for net in nets for v in net.trainable_variables]
    return dist, variables


def matched_maf(n_dims, target_params):
    best = None
    for hidden in range(2, 1024):
        dist, variables = maf(n_dims, hidden)
        p = n_params(variables)
        if best is None or abs(p - target_params) < abs(best[2] - target_params):
            best = (dist, variables, p, hidden)
        if p > target_params:
            break
    return best


def _compiled_step(dist, variables, x, batch, mode):
    """A warmed-up training step of ``dist`` on ``x`` and its first-call time."""
    opt = tf_keras.optimizers.Adam(1e-3, global_clipnorm=1.0)
    data = tf.constant(x)

    def step(idx):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(tf.gather(data, idx)))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    if mode == "tf.function":
        step = tf.function(step)
    elif mode == "XLA":
        step = tf.function(step, jit_compile=True)
    rng = np.random.default_rng(0)
    batches = [tf.constant(rng.integers(0, len(x), batch)) for _ in range(32)]
    start = time.perf_counter()
    step(batches[0]).numpy()  # trace / compile
    compile_s = time.perf_counter() - start
    step(batches[1]).numpy()
    return step, batches, compile_s


def _window(step, batches, batch, sync_every, min_seconds):
    """Samples/s over one window of at least ``min_seconds``, and the last loss."""
    n, start = 0, time.perf_counter()
    while True:
        loss = step(batches[n % len(batches)])
        n += 1
        if n % sync_every == 0:
            loss.numpy()
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return batch * n / elapsed, n, float(loss)


def throughput(models, x, batch, mode, min_seconds, windows=3):
    """Training samples/s of several models on ``x``, measured in alternation.

    Each model is compiled and warmed up; then ``windows`` rounds each time
    every model for one window of at least ``min_seconds``, so a slow phase
    of a shared machine hits all of them alike. The median window rate is
    reported per model, and the median over rounds of each round's rate
    ratio to the first model.

    Args:
      models: dict name -> ``(distribution, variables)``.
    """
    steps = {name: _compiled_step(dist, variables, x, batch, mode)
             for name, (dist, variables) in models.items()}
    sync_every = 1 if mode == "eager" else 5
    rates = {name: [] for name in models}
    counts = dict.fromkeys(models, 0)
    losses = {}
    for _ in range(windows):
        for name, (step, batches, _) in steps.items():
            rate, n, losses[name] = _window(step, batches, batch, sync_every, min_seconds)
            rates[name].append(rate)
            counts[name] += n
    out = {name: dict(samples_per_s=float(np.median(rates[name])), window_rates=rates[name],
                      steps=counts[name], first_call_s=steps[name][2], final_loss=losses[name])
           for name in models}
    first = next(iter(models))
    for name in models:
        out[name]["round_ratios_to_" + first] = [
            a / b for a, b in zip(rates[first], rates[name])]
    return out


def special_function_floor(n_dims, layers, components, batch, min_seconds):
    """Samples/s of the forward's special functions alone, compiled with XLA.

    One exponential and one erfcx per component, per coordinate and layer (the
    least ``MixtureGaussianCDF`` evaluates), summed over components, with no
    backward pass, rotation or optimizer: a bound on how fast any training
    step of this flow can run on this machine.
    """
    u = tf.random.stateless_normal([batch, components, n_dims], seed=[0, 1])

    @tf.function(jit_compile=True)
    def forward_special_functions(u):
        total = tf.zeros([batch, n_dims])
        for _ in range(layers):
            terms = tf.exp(-0.5 * tf.square(u)) * normal.erfcx_nonnegative_value(tf.abs(u))
            layer_sum = tf.reduce_sum(terms, axis=1)
            total += layer_sum
            u = u + 1e-3 * layer_sum[:, tf.newaxis, :]  # the next layer depends on this one
        return total

    forward_special_functions(u).numpy()
    best = []
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while True:
            out = forward_special_functions(u)
            n += 1
            if n % 5 == 0:
                out.numpy()
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
        best.append(batch * n / elapsed)
    return float(np.median(best))


def forward_only(dist, x, batch, min_seconds):
    """Samples/s of ``dist.log_prob`` alone on batches of ``x`` (XLA, no gradient).

    Whatever else a training step adds, it evaluates this forward pass; set
    against MAF's full training step, it shows how much of the gap the
    forward alone accounts for.
    """
    data = tf.constant(x)
    log_prob = tf.function(lambda idx: tf.reduce_mean(dist.log_prob(tf.gather(data, idx))),
                           jit_compile=True)
    rng = np.random.default_rng(1)
    batches = [tf.constant(rng.integers(0, len(x), batch)) for _ in range(32)]
    log_prob(batches[0]).numpy()  # compile
    rates = [_window(log_prob, batches, batch, 5, min_seconds)[0] for _ in range(3)]
    return float(np.median(rates))


def run(quick=False):
    configs = {"two-moons (D=2)": datasets.two_moons()}
    if not quick:
        configs["digits (D=64)"] = datasets.standardize(
            datasets.digits(dtype=np.float64)).astype(np.float32)
    batch = 512
    layers = 2 if quick else 8  # and as many components
    results = {}
    for name, x in configs.items():
        d = x.shape[1]
        if quick:
            x = x[:256]
        flow = tfp_gauss.gaussianization_flow(d, layers, layers, seed=0)
        ours_params = n_params(flow.trainable_variables)
        peer, peer_vars, peer_params, hidden = matched_maf(d, ours_params)
        min_seconds = 0.01 if quick else 1.0
        rows = {}
        for mode in ("eager", "tf.function", "XLA"):
            res = throughput({"tfp_gauss": (flow, flow.trainable_variables),
                              "maf": (peer, peer_vars)}, x, batch, mode, min_seconds,
                             windows=1 if quick else 5)
            ratios = res["maf"].pop("round_ratios_to_tfp_gauss")
            res["tfp_gauss"].pop("round_ratios_to_tfp_gauss")
            rows[mode] = dict(tfp_gauss=res["tfp_gauss"], maf=res["maf"],
                              round_ratios=ratios, ratio=float(np.median(ratios)))
            print(f"{name} {mode}: ours {res['tfp_gauss']['samples_per_s']:.0f}/s, MAF "
                  f"{res['maf']['samples_per_s']:.0f}/s", file=sys.stderr)
        best_ours = max(r["tfp_gauss"]["samples_per_s"] for r in rows.values())
        best_maf = max(r["maf"]["samples_per_s"] for r in rows.values())
        floor = special_function_floor(d, layers, layers, batch, min_seconds)
        forward = forward_only(flow, x, batch, min_seconds)
        results[name] = dict(n_dims=d, batch=batch, tfp_gauss_params=ours_params,
                             maf_params=peer_params, maf_hidden_units=hidden,
                             maf_layers=4, modes=rows,
                             best_ratio=best_ours / best_maf,
                             special_function_floor=dict(
                                 samples_per_s=floor, ratio_to_best_maf=floor / best_maf),
                             forward_only=dict(
                                 samples_per_s=forward, ratio_to_best_maf=forward / best_maf))
    return dict(config=dict(batch=batch, layers=layers, components=layers, quick=quick,
                            window_seconds=min_seconds), results=results,
                target=dict(ratio_vs_maf_min=1.0))


def markdown(res):
    lines = ["### Training throughput vs TFP MaskedAutoregressiveFlow (batch 512, samples/s)", "",
             "| data | mode | tfp_gauss | MAF | ratio |", "|---|---|---:|---:|---:|"]
    for name, r in res["results"].items():
        for mode, row in r["modes"].items():
            lines.append(f"| {name} | {mode} | {row['tfp_gauss']['samples_per_s']:,.0f} | "
                         f"{row['maf']['samples_per_s']:,.0f} | {row['ratio']:.2f}x |")
    lines.append("")
    for name, r in res["results"].items():
        floor = r["special_function_floor"]
        lines.append(f"- {name}: {r['tfp_gauss_params']:,} parameters "
                     f"({res['config']['layers']} layers x {res['config']['components']} components) "
                     f"vs MAF {r['maf_params']:,} (4 MADE layers, hidden {r['maf_hidden_units']}); "
                     f"best-mode ratio {r['best_ratio']:.2f}x "
                     f"({'meets' if r['best_ratio'] >= 1.0 else 'below'} the 1.0x target). "
                     f"The forward's special functions alone (one exp and one erfcx per "
                     f"component, no backward) run at {floor['samples_per_s']:,.0f} samples/s, "
                     f"{floor['ratio_to_best_maf']:.2f}x MAF's best full training step; "
                     f"tfp_gauss's `log_prob` alone (XLA, no gradient or optimizer) runs at "
                     f"{r['forward_only']['samples_per_s']:,.0f} samples/s, "
                     f"{r['forward_only']['ratio_to_best_maf']:.2f}x.")
    window = res["config"].get("window_seconds", 1.0)
    lines += ["", "Each ratio is the median over rounds that time both models one window "
              f"(>= {window:g} s) after the other, so a slow phase of the machine hits both."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    return _common.report("training_throughput", run(quick=args.quick), markdown,
                          write=not args.quick)


if __name__ == "__main__":
    main()
