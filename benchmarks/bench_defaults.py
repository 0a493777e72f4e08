"""The evidence behind the default fit's settings: validation log-likelihoods only.

Every choice below is made on the validation split (seed 0 of
``bench_compare``'s 70/10/20 splits); the test split is never read here.

1. ``fit_rbig``'s scale floor: held-out mean log-likelihood of the greedy fit
   (depth chosen on the same rows, at most 32 layers) for a floor of 0, 0.25,
   0.5 and 1 kernel bandwidths, and for the default, which fits all three
   and keeps the best.
2. ``fit_gaussianization_flow``'s start: best validation log-likelihood of
   the default fit from the greedy warm start and from a random start.

    python benchmarks/bench_defaults.py [--quick] [--datasets NAME ...]
"""

import argparse
import sys
import time

import _common
import _datasets

import tfp_gauss

FLOORS = (0.0, 0.25, 0.5, 1.0)


def run(quick=False, names=None):
    names = ("two-moons",) if quick else (names or _datasets.NAMES)
    out = {}
    for name in names:
        data = _datasets.splits(name, seed=0)
        train, val = data["train_std"], data["val_std"]
        if quick:
            train, val = train[:300], val[:100]
        rbig = {}
        for floor in FLOORS + ("default",):
            kwargs = {} if floor == "default" else dict(bandwidth_factor=floor)
            start = time.perf_counter()
            flow, info = tfp_gauss.fit_rbig(train, n_layers=4 if quick else 32,
                                            validation_data=val, seed=0, return_info=True,
                                            **kwargs)
            rbig[str(floor)] = dict(val_log_lik=max(info["validation_log_likelihood"]),
                                    layers=info["best_n_layers"],
                                    chosen_floor=info["bandwidth_factor"],
                                    seconds=time.perf_counter() - start)
            print(f"{name} rbig floor {floor}: {rbig[str(floor)]}", file=sys.stderr, flush=True)
        starts = {}
        for init in ("rbig", "random"):
            quick_kw = dict(n_layers=2, n_components=3, steps=60) if quick else {}
            start = time.perf_counter()
            model, history = tfp_gauss.fit_gaussianization_flow(
                train, validation_data=val, seed=0, verbose=0, init=init, **quick_kw)
            starts[init] = dict(val_log_lik=-history.best_val_loss, best_step=history.best_step,
                                layers=model.n_layers, seconds=time.perf_counter() - start)
            print(f"{name} init {init}: {starts[init]}", file=sys.stderr, flush=True)
        out[name] = dict(n_train=len(train), n_dims=train.shape[1], rbig=rbig, init=starts)
    return dict(datasets=out, quick=quick)


def markdown(res):
    lines = ["### How the defaults were chosen (validation log-likelihood, standardized units; "
             "test never read)", "",
             "Greedy RBIG, held-out mean log-likelihood by scale floor (in kernel bandwidths; "
             "depth chosen on the same rows, at most 32 layers):", "",
             "| data | N x D | " + " | ".join(f"floor {f}" for f in FLOORS)
             + " | default (best of 0.25/0.5/1) |", "|---|---|" + "---:|" * (len(FLOORS) + 1)]
    for name, ds in res["datasets"].items():
        r = ds["rbig"]
        cells = [f"{r[str(f)]['val_log_lik']:.3f} ({r[str(f)]['layers']} L)" for f in FLOORS]
        d = r["default"]
        cells.append(f"{d['val_log_lik']:.3f} (floor {d['chosen_floor']}, {d['layers']} L)")
        lines.append(f"| {name} | {ds['n_train']} x {ds['n_dims']} | " + " | ".join(cells) + " |")
    lines += ["", "Maximum-likelihood fit (all defaults) from the greedy warm start and from "
              "a random start, best validation log-likelihood (step):", "",
              "| data | warm start | random start |", "|---|---:|---:|"]
    for name, ds in res["datasets"].items():
        s = ds["init"]
        lines.append(f"| {name} | {s['rbig']['val_log_lik']:.3f} ({s['rbig']['best_step']}) | "
                     f"{s['random']['val_log_lik']:.3f} ({s['random']['best_step']}) |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", nargs="+", choices=_datasets.NAMES)
    args = parser.parse_args(argv)
    return _common.report("defaults", run(quick=args.quick, names=args.datasets), markdown,
                          write=not args.quick)


if __name__ == "__main__":
    main()
