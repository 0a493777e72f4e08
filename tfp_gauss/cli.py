"""The ``tfp-gauss`` command: fit, sample and score Gaussianization flows.

    tfp-gauss fit [DATA.csv|DATA.npy] --out DIR [options]
    tfp-gauss sample DIR -n N --out samples.csv [--seed S]
    tfp-gauss score DIR data.csv --out scores.csv

``fit`` with no data uses the built-in standardized two-moons. Data are
standardized with the training statistics; the exported SavedModel undoes
that, so its densities, samples and latents are in the data's own units.
A failed ``fit`` leaves an existing output directory as it was: everything is
written next to it and moved into place at the end.

Exit codes: 0 success, 2 bad input (missing, non-numeric, ragged, NaN-holding
or wrongly shaped data; bad arguments), 1 anything else.
"""

import argparse
import csv
import json
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

__all__ = ["main"]


class UsageError(Exception):
    """Bad input from the user: reported without a traceback, exit code 2."""


# ------------------------------------------------------------------------------ data files


def read_data(path):
    """Reads a numeric ``[N, D]`` matrix from ``.npy`` or CSV (optional header row)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UsageError(f"data file not found: {path}")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as err:  # noqa: BLE001  (numpy raises several kinds)
            raise UsageError(f"{path}: not a readable .npy array ({err}).") from None
        if not np.issubdtype(arr.dtype, np.number):
            raise UsageError(f"{path}: array of dtype {arr.dtype}; expected numbers.")
        return _checked(arr, path)
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(c.strip() for c in row)]
    if not rows:
        raise UsageError(f"{path}: no data rows.")
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise UsageError(
                f"{path}: ragged rows: line {i + 1} has {len(row)} fields, line 1 has {width}.")
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        rows = rows[1:]  # a header
        if not rows:
            raise UsageError(f"{path}: a header but no data rows.") from None
    values = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise UsageError(
                    f"{path}: non-numeric value {cell.strip()!r} in data row {i + 1}, "
                    f"column {j + 1}.") from None
    return _checked(values, path)


def _checked(arr, path):
    from tfp_gauss import _validation

    try:
        return _validation.check_data(arr, name=str(path), dtype=np.float32, min_rows=1)
    except ValueError as err:
        raise UsageError(str(err)) from None


def write_csv(path, array, header):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(np.asarray(array).reshape(len(array), -1).tolist())


# ------------------------------------------------------------------------------ figures


def _figures(out, history, schedule_steps, peak_lr, model, x_train, shift, scale, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfp_gauss.keras import OneCycleCosine

    y = (x_train - shift) / scale
    z = model.distribution.bijector.bijector.forward(y).numpy()
    loss = history["loss"]
    steps = np.arange(1, len(loss) + 1) * (schedule_steps // len(loss))
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    a.plot(steps, loss, lw=2, label="train")
    if "val_loss" in history:
        a.plot(steps, history["val_loss"], lw=1.5, label="validation")
    a.set(title="negative log-likelihood (standardized units)", xlabel="step", ylabel="NLL")
    a.legend()
    b.plot(OneCycleCosine(schedule_steps, peak_lr)(np.arange(schedule_steps)).numpy(),
           color="tab:purple", lw=2)
    b.set(title="learning rate (one-cycle cosine)", xlabel="step")
    c.scatter(z[:, 0], z[:, 1] if z.shape[1] > 1 else np.zeros(len(z)), s=3, alpha=0.4,
              color="tab:orange")
    c.set(title="latent z = G(x)", xlabel="$z_0$", ylabel="$z_1$")
    c.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=100)
    plt.close(fig)

    samples = shift + scale * model.sample(len(x_train), seed=seed).numpy()
    d = x_train.shape[1]
    if d == 2:
        lo, hi = np.percentile(x_train, [0.5, 99.5], axis=0)
        pad = 0.15 * (hi - lo)
        gx, gy = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], 120),
                             np.linspace(lo[1] - pad[1], hi[1] + pad[1], 120))
        grid = (np.column_stack([gx.ravel(), gy.ravel()]) - shift) / scale
        dens = np.exp(model.log_prob(grid.astype(np.float32)).numpy()).reshape(gx.shape)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
        for ax, pts, title in ((axes[0], x_train, "data"), (axes[1], samples, "samples")):
            ax.contour(gx, gy, dens, levels=12, cmap="viridis")
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.3, color="k")
            ax.set(title=f"{title} over the learned density", xlabel="$x_0$", ylabel="$x_1$")
    else:
        shown = min(d, 8)
        fig, axes = plt.subplots(1, shown, figsize=(2.6 * shown, 2.8), squeeze=False)
        for j, ax in enumerate(axes[0]):
            bins = np.histogram_bin_edges(x_train[:, j], bins=40)
            ax.hist(x_train[:, j], bins=bins, density=True, alpha=0.5, label="data")
            ax.hist(samples[:, j], bins=bins, density=True, histtype="step", lw=1.5,
                    label="samples")
            ax.set_title(f"x[{j}]")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"marginals of data vs samples (first {shown} of {d})")
    fig.tight_layout()
    fig.savefig(out / "samples.png", dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------ commands


def _versions():
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp

    from tfp_gauss import __version__

    return dict(tfp_gauss=__version__, tensorflow=tf.__version__,
                tensorflow_probability=tfp.__version__, keras=keras.__version__,
                numpy=np.__version__, python=platform.python_version())


def _fit(args):
    import tfp_gauss
    from tfp_gauss import datasets

    started = time.perf_counter()
    if args.data is None:
        x = datasets.two_moons()
        source = "built-in standardized two-moons (3000 points, noise 0.08)"
    else:
        x = read_data(args.data)
        source = str(args.data)
    if not 0.0 <= args.validation_split < 1.0:
        raise UsageError(f"--validation-split must be in [0, 1); got {args.validation_split}.")
    for name in ("layers", "components", "steps", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}.")
    if args.validation_split > 0:
        train, val = datasets.split(x, (1 - args.validation_split, args.validation_split),
                                    random_state=args.seed)
        if len(val) == 0 or len(train) == 0:
            raise UsageError(f"--validation-split {args.validation_split} leaves an empty part "
                             f"of {len(x)} rows.")
    else:
        train, val = x, None
    shift, scale = train.mean(0), train.std(0)
    if np.any(scale == 0):
        raise UsageError(f"column(s) {np.flatnonzero(scale == 0).tolist()} are constant in the "
                         "training data; drop them.")

    def std(a):
        return ((a - shift) / scale).astype(np.float32)

    out = pathlib.Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fit_started = time.perf_counter()
        model, history = tfp_gauss.fit_gaussianization_flow(
            std(train), n_layers=args.layers, n_components=args.components, steps=args.steps,
            batch_size=args.batch_size, peak_learning_rate=args.peak_lr,
            clip_norm=args.clip_norm, init=args.init,
            validation_data=None if val is None else std(val), seed=args.seed,
            verbose=args.verbose)
        fit_seconds = time.perf_counter() - fit_started
        log_det_scale = float(np.sum(np.log(scale)))
        train_nll = -float(np.mean(model.log_prob(std(train)))) + log_det_scale
        val_nll = (None if val is None
                   else -float(np.mean(model.log_prob(std(val)))) + log_det_scale)
        tfp_gauss.export_saved_model(model, str(staging / "saved_model"), shift=shift,
                                     scale=scale)
        model.save(staging / "model.keras")
        _figures(staging, history.history, args.steps, args.peak_lr, model, train, shift, scale,
                 args.seed)
        report = dict(
            data=dict(source=source, rows=len(x), columns=int(x.shape[1]),
                      train_rows=len(train), validation_rows=0 if val is None else len(val)),
            config=dict(layers=args.layers, components=args.components, steps=args.steps,
                        batch_size=args.batch_size, peak_learning_rate=args.peak_lr,
                        clip_norm=args.clip_norm, init=args.init,
                        validation_split=args.validation_split, seed=args.seed),
            standardization=dict(shift=shift.tolist(), scale=scale.tolist()),
            results=dict(train_nll=train_nll, validation_nll=val_nll,
                         nll_units="nats per row, in the data's own units"),
            history={k: [float(v) for v in vals] for k, vals in history.history.items()},
            timings=dict(fit_seconds=fit_seconds,
                         total_seconds=time.perf_counter() - started),
            versions=_versions())
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        _replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"train NLL {train_nll:.4f}" + ("" if val_nll is None else f", validation NLL "
                                          f"{val_nll:.4f}") + f" (nats per row); wrote {out}")
    return 0


def _replace_dir(staging, out):
    """Moves ``staging`` to ``out``; an existing ``out`` is swapped out, then removed."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _load(directory):
    import tensorflow as tf

    path = pathlib.Path(directory) / "saved_model"
    if not path.is_dir():
        raise UsageError(f"{directory}: no saved_model/ inside; run `tfp-gauss fit --out "
                         f"{directory}` first.")
    return tf.saved_model.load(str(path))


def _sample(args):
    import tensorflow as tf

    if args.n < 1:
        raise UsageError(f"-n must be >= 1; got {args.n}.")
    served = _load(args.dir)
    x = served.signatures["sample"](n=tf.constant(args.n, tf.int32),
                                    seed=tf.constant([args.seed, 0], tf.int32))["x"].numpy()
    write_csv(args.out, x, [f"x{j}" for j in range(x.shape[1])])
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _score(args):
    import tensorflow as tf

    served = _load(args.dir)
    spec = served.signatures["log_prob"].structured_input_signature[1]["x"]
    x = read_data(args.data)
    if x.shape[1] != spec.shape[1]:
        raise UsageError(f"{args.data}: {x.shape[1]} columns; the model was fit on "
                         f"{spec.shape[1]}.")
    lp = served.signatures["log_prob"](x=tf.constant(x, spec.dtype))["log_prob"].numpy()
    write_csv(args.out, lp[:, None], ["log_prob"])
    print(f"wrote {len(lp)} log-densities to {args.out}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfp-gauss", description="Fit, sample and score Gaussianization flows.")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a flow to data (default: built-in two-moons)")
    fit.add_argument("data", nargs="?", help="CSV (optional header) or .npy, rows = samples")
    fit.add_argument("--out", required=True, help="output directory")
    fit.add_argument("--layers", type=int, default=8)
    fit.add_argument("--components", type=int, default=8)
    fit.add_argument("--steps", type=int, default=3000)
    fit.add_argument("--batch-size", type=int, default=512)
    fit.add_argument("--peak-lr", type=float, default=3e-3)
    fit.add_argument("--clip-norm", type=float, default=1.0)
    fit.add_argument("--init", choices=("rbig", "random"), default="rbig")
    fit.add_argument("--validation-split", type=float, default=0.2)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--verbose", type=int, default=1, help="Keras verbosity (1: progress bar)")
    fit.set_defaults(func=_fit)
    sample = sub.add_parser("sample", help="draw samples from a fitted flow")
    sample.add_argument("dir")
    sample.add_argument("-n", type=int, required=True)
    sample.add_argument("--out", required=True)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=_sample)
    score = sub.add_parser("score", help="per-row log-density of data under a fitted flow")
    score.add_argument("dir")
    score.add_argument("data")
    score.add_argument("--out", required=True)
    score.set_defaults(func=_score)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return args.func(args)
    except UsageError as err:
        print(f"tfp-gauss: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
