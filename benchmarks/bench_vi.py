"""Variational inference and NeuTra: Gaussianization surrogate vs TFP's IAF.

Banana (issue 18): x1 ~ N(0, 1.5^2), x2 | x1 ~ N(0.4 (x1^2 - 2.25), 0.5^2),
fitted by ``tfp.vi.fit_surrogate_posterior(target.log_prob, q,
optimizer=Adam(1e-2), num_steps=600, sample_size=128, seed=0,
jit_compile=True)`` with

- ours: ``tfp_gauss.vi.gaussianization_surrogate(2, n_layers=16,
  n_components=8, seed=0)`` (sampling direction, path-derivative gradient,
  832 parameters);
- IAF: 4 x ``Invert(MaskedAutoregressiveFlow(AutoregressiveNetwork(params=2,
  hidden_units=[16, 16])))`` with permutations between (1,552 parameters,
  Keras initialisers seeded with ``keras.utils.set_random_seed(seed)``, so every
  fit starts from the same weights).

Each fit is timed (wall and process CPU time; the machine is shared, so the
CPU time is the steadier of the two) in alternating order, ``--repeats``
times; KL(q||p) is estimated from 20,000 surrogate draws and KL(p||q) from
20,000 exact target draws (both targets are normalised).

NeuTra: each fitted surrogate's bijector transports HMC
(``tfp.mcmc.TransformedTransitionKernel``, dual-averaging step size during
burn-in) on the banana and on Neal's funnel (D = 10: v ~ N(0, 3^2),
x_i | v ~ N(0, e^v)), against plain HMC with the same number of leapfrog
steps. Reported: effective sample size (``tfp.mcmc.effective_sample_size``,
across chains) per gradient evaluation after burn-in, the minimum over
coordinates and the median.

    python benchmarks/bench_vi.py [--quick] [--repeats 3]
"""

import argparse
import time

import _common
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_gauss import vi

tfb = tfp.bijectors
tfd = tfp.distributions

N_EVAL = 20000


def banana_target():
    jd = tfd.JointDistributionSequential([
        tfd.Normal(0.0, 1.5), lambda x1: tfd.Normal(0.4 * (x1**2 - 2.25), 0.5)])

    def log_prob(x):
        return jd.log_prob([x[..., 0], x[..., 1]])

    def sample(n, seed):
        return tf.stack(jd.sample(n, seed=seed), axis=-1)

    return log_prob, sample, 2


def funnel_target(dim=10):
    """Neal's funnel: v ~ N(0, 3^2), x_i | v ~ N(0, exp(v / 2)^2), coordinates [v, x]."""

    def log_prob(x):
        v = x[..., 0]
        return (tfd.Normal(0.0, 3.0).log_prob(v)
                + tf.reduce_sum(tfd.Normal(0.0, tf.exp(v / 2.0)[..., tf.newaxis])
                                .log_prob(x[..., 1:]), axis=-1))

    def sample(n, seed):
        s1, s2 = tfp.random.split_seed(seed)
        v = 3.0 * tf.random.stateless_normal([n, 1], seed=s1)
        return tf.concat([v, tf.exp(v / 2.0) * tf.random.stateless_normal([n, dim - 1],
                                                                         seed=s2)], -1)

    return log_prob, sample, dim


def iaf_surrogate(dim, seed=0, hidden_units=(16, 16), n_flows=4):
    # Keras 3 initialisers draw from Keras's own global seed generator, which
    # tf.random.set_seed does not reset: without this every IAF started from
    # different weights (and one funnel fit diverged to NaN).
    keras.utils.set_random_seed(seed)
    parts = []
    for i in range(n_flows):
        made = tfb.AutoregressiveNetwork(params=2, hidden_units=list(hidden_units),
                                         activation="relu")
        parts.append(tfb.Invert(tfb.MaskedAutoregressiveFlow(made)))
        if i < n_flows - 1:
            parts.append(tfb.Permute(list(range(dim))[::-1]))
    q = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), dim), tfb.Chain(parts))
    q.sample(1, seed=(0, 0))  # builds the Keras layers (creates the variables)
    return q


def ours_surrogate(dim, seed=0, n_layers=16, n_components=8):
    return vi.gaussianization_surrogate(dim, n_layers=n_layers, n_components=n_components,
                                        seed=seed)


SYSTEMS = {"gaussianization (ours)": ours_surrogate, "IAF (TFP)": iaf_surrogate}


def _n_params(q):
    return int(sum(np.prod(v.shape) for v in q.trainable_variables))


def fit(make, target, num_steps, seed=0):
    log_prob, _, dim = target
    q = make(dim)
    wall, cpu = time.perf_counter(), time.process_time()
    losses = tfp.vi.fit_surrogate_posterior(
        log_prob, q, optimizer=tf.optimizers.Adam(1e-2), num_steps=num_steps,
        sample_size=128, seed=seed, jit_compile=True)
    losses = losses.numpy()
    return q, losses, time.perf_counter() - wall, time.process_time() - cpu


def kls(q, target, n=N_EVAL):
    log_prob, sample, _ = target
    xq, log_q = q.experimental_sample_and_log_prob(n, seed=(1, 2))
    kl_qp = float(tf.reduce_mean(log_q - log_prob(xq)))
    xp = sample(n, seed=(3, 4))
    kl_pq = float(tf.reduce_mean(log_prob(xp) - q.log_prob(xp)))
    return kl_qp, kl_pq


def banana_fits(repeats, num_steps, n_eval):
    target = banana_target()
    runs = {name: [] for name in SYSTEMS}
    fitted = {}
    names = list(SYSTEMS)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            q, losses, wall, cpu = fit(SYSTEMS[name], target, num_steps)
            kl_qp, kl_pq = kls(q, target, n_eval)
            runs[name].append(dict(wall_s=wall, cpu_s=cpu, kl_qp=kl_qp, kl_pq=kl_pq,
                                   final_loss_mean_100=float(np.mean(losses[-100:]))))
            fitted.setdefault(name, (q, losses))
            print(f"[bench_vi] banana {name} repeat {r}: wall {wall:.1f} s, cpu {cpu:.1f} s, "
                  f"KL(q||p) {kl_qp:.4f}, KL(p||q) {kl_pq:.4f}", flush=True)
    summary = {}
    for name, rs in runs.items():
        summary[name] = dict(
            n_params=_n_params(fitted[name][0]),
            wall_s_median=float(np.median([r["wall_s"] for r in rs])),
            cpu_s_median=float(np.median([r["cpu_s"] for r in rs])),
            kl_qp=float(np.median([r["kl_qp"] for r in rs])),
            kl_pq=float(np.median([r["kl_pq"] for r in rs])),
            kl_qp_max=max(r["kl_qp"] for r in rs), kl_pq_max=max(r["kl_pq"] for r in rs),
            runs=rs)
    return summary, fitted


def ess_per_grad(samples, grad_evals, n_chains):
    ess = tfp.mcmc.effective_sample_size(samples, cross_chain_dims=1).numpy()
    per = ess / (grad_evals * n_chains)
    return float(per.min()), float(np.median(per))


def neutra(target, transports, n_chains, num_results, num_burnin, num_leapfrog, seed=0):
    log_prob, sample, dim = target
    out = {}
    init = sample(n_chains, seed=(7, seed)).numpy() * 0.5
    for name, transport in transports.items():
        wall = time.perf_counter()
        res = vi.neutra_hmc(log_prob, transport, num_results=num_results,
                            num_burnin_steps=num_burnin, current_state=init,
                            num_leapfrog_steps=num_leapfrog, seed=seed)
        wall = time.perf_counter() - wall
        samples = res["samples"]
        lo, med = ess_per_grad(samples, res["grad_evals"], n_chains)
        flat = samples.numpy().reshape(-1, dim)
        out[name] = dict(ess_per_grad_min=lo, ess_per_grad_median=med,
                         accept=float(np.mean(res["is_accepted"].numpy())),
                         step_size=float(np.mean(res["step_size"])),
                         mean_0=float(flat[:, 0].mean()), sd_0=float(flat[:, 0].std()),
                         wall_s=wall)
        print(f"[bench_vi] neutra {name}: ESS/grad min {lo:.4f} median {med:.4f}, "
              f"accept {out[name]['accept']:.2f}, wall {wall:.1f} s", flush=True)
    return out


def markdown(res):
    b = res["banana"]
    cfg = res["config"]
    lines = ["### Variational inference: banana (ours vs TFP IAF) and NeuTra", "",
             f"`tfp.vi.fit_surrogate_posterior(target.log_prob, q, Adam(1e-2), "
             f"num_steps={cfg['num_steps']}, sample_size=128, seed=0, jit_compile=True)`, "
             f"{cfg['repeats']} fits per surrogate in alternating order in one process "
             f"(times: medians; KLs: median fit, worst fit in brackets; "
             f"{cfg['n_eval']} draws per KL).", "",
             "| surrogate | parameters | fit wall (s) | fit CPU (s) | KL(q‖p) | KL(p‖q) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in b.items():
        lines.append(f"| {name} | {s['n_params']} | {s['wall_s_median']:.1f} | "
                     f"{s['cpu_s_median']:.1f} | {s['kl_qp']:.4f} ({s['kl_qp_max']:.4f}) | "
                     f"{s['kl_pq']:.4f} ({s['kl_pq_max']:.4f}) |")
    ours, iaf = b["gaussianization (ours)"], b["IAF (TFP)"]
    lines += ["", f"Ratio ours / IAF: wall {ours['wall_s_median'] / iaf['wall_s_median']:.2f}, "
              f"CPU {ours['cpu_s_median'] / iaf['cpu_s_median']:.2f}. Targets (issue 18): "
              "KL(q‖p) ≤ IAF + 0.01, KL(p‖q) ≤ 0.1, fit time ≤ IAF's. Before (issue 18, "
              "density-direction `gaussianization_flow(2, 4, 8)`, root-find every step): "
              "117 s, KL(q‖p) 0.107, KL(p‖q) 3.60. Before the lean path-gradient loop "
              "(one mixture evaluation per layer, three saved partials) and its traced-once "
              "graph function: ours 11.4 s wall, 6.4 s CPU against the IAF's 8.8 s, 5.9 s "
              "(ratios 1.30, 1.09).", "",
              "First fit of each in the process (repeat 0; ours runs first, so nothing of "
              "it is traced yet): " + ", ".join(
                  f"{name} {s['runs'][0]['wall_s']:.1f} s wall, {s['runs'][0]['cpu_s']:.1f} s CPU"
                  for name, s in b.items()) + ".", ""]
    for tname, table in res["neutra"].items():
        n = res["neutra_config"][tname]
        lines += [f"NeuTra on {tname}: {n['n_chains']} chains, {n['num_burnin']} burn-in + "
                  f"{n['num_results']} draws, {n['num_leapfrog']} leapfrog steps; surrogate "
                  f"fitted with {n['fit_steps']} steps (KL(q‖p): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in n["kl_qp"].items()) + ").", "",
                  "| sampler | ESS / grad (min over coords) | ESS / grad (median) | "
                  "accept | step size | mean, sd of coord 0 |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, r in table.items():
            lines.append(f"| {name} | {r['ess_per_grad_min']:.4f} | "
                         f"{r['ess_per_grad_median']:.4f} | {r['accept']:.2f} | "
                         f"{r['step_size']:.3f} | {r['mean_0']:.2f}, {r['sd_0']:.2f} |")
        lines.append("")
    lines.append("Truth for coordinate 0: banana x1 mean 0, sd 1.5; funnel v mean 0, sd 3.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    quick = args.quick
    repeats = 1 if quick else args.repeats
    num_steps = 20 if quick else 600
    n_eval = 500 if quick else N_EVAL
    banana, fitted = banana_fits(repeats, num_steps, n_eval)
    hmc = dict(n_chains=4 if quick else 16, num_results=20 if quick else 500,
               num_burnin=20 if quick else 300, num_leapfrog=4)
    neutra_res, neutra_cfg = {}, {}
    # Banana: the surrogates fitted above.
    target = banana_target()
    transports = {"plain HMC": tfb.Identity()}
    transports.update({f"NeuTra {k}": v[0].bijector for k, v in fitted.items()})
    if quick:  # the test suite's run: one chain of the shared code path (each compiles HMC)
        transports = {k: v for k, v in transports.items() if "ours" in k}
    neutra_res["banana"] = neutra(target, transports, **hmc)
    neutra_cfg["banana"] = dict(hmc, fit_steps=num_steps,
                                kl_qp={k: v["kl_qp"] for k, v in banana.items()})
    # Funnel (D = 10): fit both surrogates, then sample. The quick run (the
    # test suite's) skips it: the code path is the banana's, only slower.
    if quick:
        res = dict(config=dict(quick=quick, repeats=repeats, num_steps=num_steps, n_eval=n_eval),
                   banana=banana, neutra=neutra_res, neutra_config=neutra_cfg)
        return _common.report("vi", res, markdown, write=False)
    target = funnel_target(10)
    fit_steps = 20 if quick else 1000
    transports = {"plain HMC": tfb.Identity()}
    kl_qp = {}
    for name, make in SYSTEMS.items():
        q, _, wall, _ = fit(make, target, fit_steps)
        kl_qp[name] = kls(q, target, n_eval)[0]
        print(f"[bench_vi] funnel fit {name}: {wall:.1f} s, KL(q||p) {kl_qp[name]:.3f}",
              flush=True)
        transports[f"NeuTra {name}"] = q.bijector
    neutra_res["funnel (D=10)"] = neutra(target, transports, **hmc)
    neutra_cfg["funnel (D=10)"] = dict(hmc, fit_steps=fit_steps, kl_qp=kl_qp)
    res = dict(config=dict(quick=quick, repeats=repeats, num_steps=num_steps, n_eval=n_eval),
               banana=banana, neutra=neutra_res, neutra_config=neutra_cfg)
    return _common.report("vi", res, markdown, write=not quick)


if __name__ == "__main__":
    main()
