"""The ``tfp-gauss`` command: fit, sample and score Gaussianization flows.

    tfp-gauss fit [DATA.csv|DATA.npy] --out DIR [--overwrite] [options]
    tfp-gauss sample DIR -n N --out samples.csv|samples.npy [--seed S]
    tfp-gauss score DIR data.csv --out scores.csv|scores.npy

``fit`` with no data uses the built-in standardized two-moons. Data are
standardized (in float64) with the training statistics; the exported
SavedModel undoes that, so its densities, samples and latents are in the
data's own units. ``sample`` names its columns as the fitted CSV's header did
(``report.json``'s ``column_names``; ``x0, x1, ...`` without one).

``--out`` rules: ``fit`` never deletes a file it did not write. ``DIR`` may be
new, empty, or a previous ``tfp-gauss fit`` run (recognised by the marker
file ``.tfp-gauss-run``); any other non-empty directory, and the folder
holding the input data, needs ``--overwrite``, and even then only the files
``fit`` writes (``OUTPUT_NAMES``) are replaced. ``--out`` naming a file is an
error. Everything is written to a staging folder inside ``DIR`` (named with
the process id) and moved into place at the end, so a failed or interrupted
``fit`` leaves ``DIR`` as it was; a lock file inside ``DIR`` makes a second
``fit`` to the same ``DIR`` fail at once, and staging folders left by killed
processes are removed by the next ``fit``.

CSV input: ``--header``/``--no-header`` say whether the first row names the
columns. Without either, a first row of text cells (none a missing-value
marker such as ``NA``) is a header, an all-numeric one is data, and anything
else is an error. Rows and columns in messages are numbered from 1, the
header not counted.

Exit codes: 0 success, 2 bad input (missing, non-numeric, ragged, NaN-holding,
rank-deficient or wrongly shaped data; bad arguments; an unusable ``--out``
or model directory), 1 anything else, 128 + N when stopped by signal N.
"""

import argparse
import contextlib
import csv
import errno
import fcntl
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import sys
import tempfile
import time

import numpy as np

__all__ = ["main"]


class UsageError(Exception):
    """Bad input from the user: reported without a traceback, exit code 2."""


def _tensorflow():
    """Loads TensorFlow and tfp_gauss's Keras classes, once the arguments and data are checked.

    As the command (see ``_startup``), TensorFlow is imported quietly here,
    so that errors in the arguments and the data come without its 10 s
    import; then ``tfp_gauss.keras``, whose import registers the classes
    ``keras.models.load_model`` needs for a run's ``model.keras``. In a
    library process both are imported already.
    """
    from tfp_gauss import _startup

    if _startup.running_cli():
        _startup.quiet_tensorflow()
    import tfp_gauss.keras  # noqa: F401  (registers GaussianizationFlowModel, OneCycleCosine)


# ------------------------------------------------------------------------------ data files


# Cells read as a missing value, never as a column name, when guessing a header.
_MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "missing", "-", "?", "."})
_ROWS_NOTE = "rows and columns numbered from 1, the header not counted"


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_data(path, header=None, purpose="fitting"):
    """Reads a numeric ``[N, D]`` float64 matrix from ``.npy`` or CSV.

    ``read_table`` without the column names; see there.
    """
    return read_table(path, header=header, purpose=purpose)[0]


def read_table(path, header=None, purpose="fitting"):
    """Reads a numeric ``[N, D]`` float64 matrix, and its column names, from ``.npy`` or CSV.

    Args:
      path: the file.
      header: for CSV, ``True`` if the first row names the columns, ``False``
        if it is data, ``None`` to decide from the row itself: text cells only
        (none a missing-value marker such as ``NA``) make a header, numbers
        only make data, anything else is an error. The decision is reported
        on stderr, so no row is dropped unannounced.
      purpose: what the data are for, in error messages ("fitting", "scoring").

    Returns:
      ``(values, names)``: a float64 array (float64 so that huge or finely
      spaced values keep their precision until they are standardized) and
      the header's ``D`` column names, or ``None`` without a header.

    Raises:
      UsageError: the file is missing, a directory, unreadable, ragged,
        non-numeric, ambiguous about its header, or holds NaN/inf rows.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a directory; expected a CSV or .npy data file.")
    if not path.is_file():
        raise UsageError(f"data file not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as err:  # noqa: BLE001  (numpy raises several kinds)
            raise UsageError(f"{path}: not a readable .npy array ({err}).") from None
        if not np.issubdtype(arr.dtype, np.number):
            raise UsageError(f"{path}: array of dtype {arr.dtype}; expected numbers.")
        return _checked(arr, path, purpose), None
    with open(path, newline="", encoding="utf-8-sig") as handle:  # (Excel's BOM)
        rows = [row for row in csv.reader(handle) if row and any(c.strip() for c in row)]
    if not rows:
        raise UsageError(f"{path}: no data rows.")
    first = [c.strip() for c in rows[0]]
    if header is None:
        if all(_is_number(c) for c in first):
            header = False
            print(f"tfp-gauss: {path}: the first row is numeric, read as data (no header); "
                  "pass --header if it names the columns.", file=sys.stderr)
        elif _index_header(first):
            raise UsageError(
                f"{path}: the first row {first} starts with an empty name, as pandas' to_csv "
                "writes for its row index (unless index=False), which is not data. Write the "
                "file with index=False; if column 1 is data, give it a name (or pass --header "
                "to read the first row as names).")
        elif not any(_is_number(c) or c.lower() in _MISSING_MARKERS for c in first):
            header = True
            print(f"tfp-gauss: {path}: the first row {first} is read as a header, not data; "
                  "pass --no-header if it is data.", file=sys.stderr)
        else:
            raise UsageError(
                f"{path}: cannot tell whether the first row {first} is a header: it mixes "
                "numbers with text or missing-value markers. Pass --header if it names the "
                "columns, or --no-header if it is data.")
    width = len(rows[0])
    if header:
        rows = rows[1:]
        if not rows:
            raise UsageError(f"{path}: a header but no data rows.")
    for i, row in enumerate(rows):
        if len(row) != width:
            raise UsageError(
                f"{path}: ragged rows: data row {i + 1} has {len(row)} field(s), the first "
                f"row {width} ({_ROWS_NOTE}).")
    values = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                what = ("missing value" if cell.strip().lower() in _MISSING_MARKERS
                        else "non-numeric value")
                named = f" ({first[j]!r})" if header else ""
                raise UsageError(
                    f"{path}: {what} {cell.strip()!r} in data row {i + 1}, column {j + 1}"
                    f"{named} ({_ROWS_NOTE}); {purpose} needs numbers in every cell.") from None
    column = values[:, 0]
    whole = (len(values) > 1 and width > 1 and bool(np.all(np.isfinite(column)))
             and bool(np.all(column == np.round(column))))
    if header and _index_header(first) and whole and np.all(np.diff(column) > 0):
        raise UsageError(
            f"{path}: column 1 has no name and holds increasing whole numbers "
            f"({values[0, 0]:g}, {values[1, 0]:g}, ..., {values[-1, 0]:g}): a row index, as "
            "pandas' to_csv writes unless index=False, not data. Write the file with "
            "index=False, or remove that column (if it is data, give it a name).")
    # A saved index under a name: "Unnamed: 0" (pandas' name for the unnamed
    # index column it read, written back by another to_csv), or a named index
    # such as "id" counting the rows.
    unnamed = (header and re.fullmatch(r"Unnamed: \d+", first[0]) is not None
               and len(np.unique(column)) == len(column))
    counter = header and first[0].lower() in _INDEX_NAMES and np.all(np.diff(column) == 1)
    if whole and (unnamed or counter):
        raise UsageError(
            f"{path}: column 1 ({first[0]!r}) holds distinct whole numbers ({values[0, 0]:g}, "
            f"{values[1, 0]:g}, ..., {values[-1, 0]:g}): a row index that pandas' to_csv "
            "wrote, not data. Write the file with index=False, or remove that column (if it "
            "is data, give it another name).")
    return _checked(values, path, purpose), (first if header else None)


# First-column names of a saved row index, when the column counts the rows.
_INDEX_NAMES = ("index", "id", "row", "rowid", "row_id")


def _index_header(first):
    """Whether a first row looks like pandas' header with an index: an empty first name."""
    return len(first) > 1 and first[0] == "" and all(first[1:])


def _checked(arr, path, purpose):
    from tfp_gauss import _validation

    try:
        return _validation.check_data(arr, name=str(path), dtype=np.float64, min_rows=1,
                                      purpose=purpose, first_index=1)
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None


def write_table(path, array, header):
    """Writes ``array`` (``[N, D]`` or ``[N]``) to ``path``: ``.npy`` if the name says so, else CSV.

    CSV: a header row of ``header``'s names, then the rows, with ``\n`` line
    ends (float32 values with their shortest float32 digits: they read back
    to the same float32). ``.npy``: the array alone, float64, in its own shape.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    single = np.asarray(array).dtype == np.float32
    array = np.asarray(array, dtype=np.float64)
    if path.suffix.lower() == ".npy":
        np.save(path, array)
        return
    rows = array.reshape(len(array), -1)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        if single:  # float32 values by their shortest float32 digits, not float64's 17
            writer.writerows([[str(v) for v in row] for row in rows.astype(np.float32)])
        else:
            writer.writerows(rows.tolist())


# ------------------------------------------------------------------------------ figures


def _figures(out, fit_history, peak_lr, model, x_train, shift, scale, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfp_gauss.keras import OneCycleCosine

    y = ((x_train - shift) / scale).astype(np.float32)
    z = model.gaussianizer.forward(y).numpy()
    history = fit_history.history
    schedule_steps = fit_history.schedule_steps
    loss = history["loss"]
    steps = np.arange(1, len(loss) + 1) * fit_history.steps_per_epoch
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    a.plot(steps, loss, lw=2, label="train")
    if "val_loss" in history:
        a.plot(steps, history["val_loss"], lw=1.5, label="validation")
    if getattr(fit_history, "best_step", None) is not None:
        a.axvline(fit_history.best_step, color="k", ls=":", lw=1,
                  label=f"kept: step {fit_history.best_step}")
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
        # Twelve levels above zero: a level at 0 would trace where the density
        # underflows float32 (far in the tails), a jagged line of no meaning.
        levels = np.linspace(0.0, dens.max(), 14)[1:-1] if dens.max() > 0 else 12
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
        for ax, pts, title in ((axes[0], x_train, "data"), (axes[1], samples, "samples")):
            ax.contour(gx, gy, dens, levels=levels, cmap="viridis")
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


def _standardization(train):
    """Float64 ``(shift, scale)`` of the training rows, or a ``UsageError``.

    Float64 because float32 overflows squaring values beyond ~1e19 and cannot
    see spreads below ~1e-7 of a column's magnitude. The checks are those a
    float32 flow needs: no constant column, every column resolvable in
    float32 (the exported model reads raw values in float32), and full rank
    (the flow is a bijection of R^D, so data on a subspace have no density).
    """
    shift = train.mean(0)
    scale = train.std(0)
    constant = np.flatnonzero(scale == 0)
    if constant.size:
        shown = ", ".join(f"{j + 1} (value {train[0, j]:g})" for j in constant[:10])
        raise UsageError(f"column(s) {shown} are constant in the training data (columns "
                         "numbered from 1); drop them.")
    magnitude = np.abs(train).max(0)
    eps32 = float(np.finfo(np.float32).eps)
    unresolved = np.flatnonzero(scale < 8 * eps32 * magnitude)
    if unresolved.size:
        j = unresolved[0]
        raise UsageError(
            f"column {j + 1} (numbered from 1) varies by only {scale[j]:.3g} (standard "
            f"deviation) at magnitude {magnitude[j]:.3g}: float32, in which the model "
            f"computes, resolves only ~{eps32:.1g} of a value's magnitude, so these values "
            "would look constant. Subtract a reference value (e.g. the column's mean) or "
            "rescale the column before fitting.")
    # Stricter than the library's check (1e-6 against 1e-10): the exported
    # model computes in float32, which cannot follow thinner data.
    from tfp_gauss import _validation

    dependent = _validation.linear_dependence(train, threshold=1e-6 * train.shape[1])
    if dependent is not None:
        involved, smallest = dependent[0] + 1, dependent[1]
        threshold = 1e-6 * train.shape[1]
        shown = ", ".join(map(str, involved[:20])) + (", ..." if len(involved) > 20 else "")
        too_few = (f" With {len(train)} training rows for {train.shape[1]} columns that is "
                   "unavoidable: more rows are needed." if len(train) <= train.shape[1] else "")
        raise UsageError(
            f"columns {shown} (numbered from 1) are linearly "
            f"dependent in the training data: the smallest eigenvalue of their "
            f"correlation matrix is {smallest:.2g}, expected above {threshold:.0e}. "
            "A flow needs data of full rank (no column a combination of others); drop "
            f"the redundant column(s).{too_few}")
    return shift, scale


def _previous_run(directory, n_columns):
    """``(model, shift, scale)`` of the run in ``directory``, to continue training it."""
    import keras

    path = pathlib.Path(directory)
    if not (path / "model.keras").is_file() or not (path / "report.json").is_file():
        raise UsageError(
            f"--init {directory}: expected 'rbig', 'random' or a directory written by "
            "`tfp-gauss fit --out DIR` (with model.keras and report.json).")
    report = json.loads((path / "report.json").read_text())
    shift = np.asarray(report["standardization"]["shift"], np.float64)
    scale = np.asarray(report["standardization"]["scale"], np.float64)
    if shift.shape != (n_columns,):
        raise UsageError(f"--init {directory}: that run's model has {shift.size} column(s); "
                         f"the data has {n_columns}.")
    return keras.models.load_model(path / "model.keras"), shift, scale


def _fit(args):
    import tfp_gauss
    from tfp_gauss import _validation, datasets

    started = time.perf_counter()
    if args.data is None:
        x = datasets.two_moons().astype(np.float64)
        source = "built-in standardized two-moons (3000 points, noise 0.08)"
        names = None
    else:
        x, names = read_table(args.data, header=args.header)
        source = str(args.data)
    if not 0.0 <= args.validation_split < 1.0:
        raise UsageError(f"--validation-split must be in [0, 1); got {args.validation_split}.")
    for name in ("layers", "components", "steps", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}.")
    if args.validation_split > 0:
        train, val = datasets.split(x, (1 - args.validation_split, args.validation_split),
                                    seed=args.seed)
        if len(val) == 0 or len(train) == 0:
            raise UsageError(
                f"--validation-split {args.validation_split} of {len(x)} data rows holds out "
                f"{len(val)} and trains on {len(train)}; both need at least one row: give more "
                f"rows, another split, or --validation-split 0 (hold out nothing).")
    else:
        train, val = x, None
    init = args.init
    if args.architecture == "coupling" and x.shape[1] < 2:
        raise UsageError("--architecture coupling needs at least 2 columns (a coupling layer "
                         f"conditions half of the columns on the other half); the data have "
                         f"{x.shape[1]}. Use --architecture marginal.")
    if init in ("rbig", "random"):
        shift, scale = _standardization(train)  # (numpy: its errors before TensorFlow loads)
        _tensorflow()
    else:
        # Continue a previous run: its model works in its own standardized
        # units, so its standardization is kept.
        _tensorflow()
        init, shift, scale = _previous_run(init, x.shape[1])
        if args.architecture not in (None, init.architecture):
            raise UsageError(
                f"--init {args.init} is a run with {init.architecture} layers; it continues "
                f"with them, so --architecture {args.architecture} does not apply (leave it out).")
    tied = _validation.tied_values_message(x, source, first_index=1)
    if tied is not None:  # said in the command's terms (the fit below does not repeat it)
        print(f"tfp-gauss: warning: {tied}", file=sys.stderr)
    verbose = args.verbose
    if verbose is None:
        # A progress bar redraws itself with \r and ANSI codes: one line per
        # epoch when the output is a file or a pipe.
        verbose = 1 if sys.stdout.isatty() else 2

    def std(a):
        return ((a - shift) / scale).astype(np.float32)

    components = args.components
    if isinstance(init, str):
        # As fit_gaussianization_flow would (there, as a Python warning): no more
        # components than the fewest values of a column; said in the command's terms.
        distinct = _validation.column_counts(std(train))[0]
        few = np.flatnonzero(distinct < components)
        if few.size and distinct.min() > 1:
            components = int(distinct.min())
            shown = ", ".join(f"{j + 1} ({distinct[j]})" for j in few[:10])
            print(f"tfp-gauss: warning: column(s) {shown} (numbered from 1; distinct values in "
                  f"brackets) have fewer distinct training values than --components "
                  f"{args.components}: every layer uses {components} components (with more, a "
                  "trained flow sharpens a peak on each value, and rows with an unseen value "
                  "score absurdly low). Dequantize such columns to keep more.", file=sys.stderr)

    with _OutputDir(args.out, data=args.data, overwrite=args.overwrite) as staging:
        fit_started = time.perf_counter()
        model, history = tfp_gauss.fit_gaussianization_flow(
            std(train), n_layers=args.layers, n_components=components, steps=args.steps,
            batch_size=args.batch_size, peak_learning_rate=args.peak_lr,
            clip_norm=args.clip_norm, init=init, noise=args.noise,
            scale_floor=args.scale_floor, ema_momentum=args.ema_momentum or None,
            validation_data=None if val is None else std(val), validation_split=0.0,
            seed=args.seed, verbose=verbose, _warn_tied=False,  # said above, in CLI terms
            **({} if args.architecture is None or not isinstance(init, str)
               else dict(architecture=args.architecture)))
        fit_seconds = time.perf_counter() - fit_started
        log_det_scale = float(np.sum(np.log(scale)))
        train_nll = -float(np.mean(model.log_prob(std(train)))) + log_det_scale
        val_nll = (None if val is None
                   else -float(np.mean(model.log_prob(std(val)))) + log_det_scale)
        tfp_gauss.export_saved_model(model, str(staging / "saved_model"), shift=shift,
                                     scale=scale)
        model.save(staging / "model.keras")
        _figures(staging, history, history.peak_learning_rate, model, train, shift, scale,
                 args.seed)
        best_step = getattr(history, "best_step", None)
        report = dict(
            data=dict(source=source, rows=len(x), columns=int(x.shape[1]), column_names=names,
                      train_rows=len(train), validation_rows=0 if val is None else len(val)),
            config=dict(layers=model.n_layers, components=model.n_components,
                        architecture=model.architecture,
                        steps=history.schedule_steps, batch_size=args.batch_size,
                        peak_learning_rate=history.peak_learning_rate, clip_norm=args.clip_norm,
                        noise=args.noise, init=args.init,
                        scale_floor=history.scale_floor, ema_momentum=history.ema_momentum,
                        scale_floor_candidates={
                            str(k): v for k, v in history.scale_floor_candidates.items()},
                        scale_floor_difference=_finite_or_none(
                            getattr(history, "scale_floor_difference", None)),
                        validation_split=args.validation_split, seed=args.seed),
            standardization=dict(shift=shift.tolist(), scale=scale.tolist()),
            results=dict(train_nll=train_nll, validation_nll=val_nll,
                         nll_units="nats per row, in the data's own units",
                         steps_run=int(model.optimizer.iterations.numpy()),
                         best_step=best_step,
                         selection=("weights of the best validation evaluation"
                                    if best_step is not None else "last weights")
                         + (" (moving average)" if history.ema_momentum is not None else "")),
            history={k: [float(v) for v in vals] for k, vals in history.history.items()},
            timings=dict(fit_seconds=fit_seconds,
                         total_seconds=time.perf_counter() - started),
            versions=_versions())
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    out = pathlib.Path(args.out).resolve()
    print(f"train NLL {train_nll:.4f}" + ("" if val_nll is None else f", validation NLL "
                                          f"{val_nll:.4f}")
          + " (nats per row in the data's units; any NLL printed above is of the "
            "standardized data)"
          + ("" if best_step is None else f", best validation at step {best_step}")
          + f"; wrote {out}")
    return 0


def _number(low, high=None, low_open=True, integer=False):
    """An argparse type: a finite number (an int if ``integer``) in the given range."""
    kind = "an integer" if integer else "a number"
    bounds = f"{'>' if low_open else '>='} {low:g}" + ("" if high is None else f" and < {high:g}")

    def parse(text):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            value = None
        ok = value is not None and (integer or np.isfinite(value))
        ok = ok and (value > low if low_open else value >= low)
        if not ok or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"expected {kind} {bounds}; got {text!r}")
        return value

    return parse


def _scale_floor(text):
    """``--scale-floor``: ``auto`` or a number >= 0."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number >= 0; got {text!r}")
    return value


# ------------------------------------------------------------------------------ output directory

# What `fit` writes into --out: the only names it ever replaces there.
MARKER_NAME = ".tfp-gauss-run"
OUTPUT_NAMES = ("saved_model", "model.keras", "report.json", "training.png", "samples.png",
                MARKER_NAME)
_LOCK_NAME = ".tfp-gauss.lock"
_STAGING_PREFIX = ".tfp-gauss-staging-"  # + "<pid>-<random>": the pid tells if it is stale
_BACKUP_PREFIX = ".tfp-gauss-replaced-"  # + "<pid>-<random>": previous files during the swap


def _is_ours(name):
    """Names that only tfp-gauss itself creates inside --out (lock, staging, backup)."""
    return name == _LOCK_NAME or name.startswith((_STAGING_PREFIX, _BACKUP_PREFIX))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class _OutputDir:
    """Context manager writing a run into ``--out`` without touching anything else.

    Entering checks the directory (see the module docstring for the rules),
    takes its lock, removes what killed runs left, and returns an empty
    staging folder inside it. A clean exit moves each staged file over the
    file of the same name (the previous ones are kept aside until every move
    succeeded, and put back otherwise) and writes the marker; an exception
    removes the staging folder and leaves ``--out`` as it was.
    """

    def __init__(self, out, *, data=None, overwrite=False):
        self.out = pathlib.Path(out).resolve()
        self.data = None if data is None else pathlib.Path(data).resolve()
        self.overwrite = overwrite
        self.created = []  # directories this run created, innermost first
        self.lock_fd = None
        self.staging = None

    def _check(self):
        out = self.out
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is an existing file; expected a directory (new, "
                             "empty, or written by an earlier `tfp-gauss fit`).")
        if not out.is_dir() or self.overwrite:
            return
        if self.data is not None and out in self.data.parents:
            raise UsageError(
                f"--out {out} holds the input data {self.data}; pass --overwrite to write the "
                f"run there anyway (only {', '.join(OUTPUT_NAMES)} are ever replaced), or "
                "choose another directory.")
        if (out / MARKER_NAME).is_file():
            return
        foreign = sorted(p.name for p in out.iterdir() if not _is_ours(p.name))
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise UsageError(
                f"--out {out} is not empty ({len(foreign)} entries: {shown}) and is not a "
                f"tfp-gauss run (no {MARKER_NAME} marker). Choose a new or empty directory, or "
                f"pass --overwrite to write beside those files (only {', '.join(OUTPUT_NAMES)} "
                "are replaced; nothing else is touched).")

    def _lock(self):
        """Takes ``--out``'s lock (``fcntl.flock``), failing at once if another fit holds it."""
        path = self.out / _LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise UsageError(f"another tfp-gauss fit (pid {holder}) is writing to {self.out}; "
                             "wait for it to finish or choose another --out.") from None
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            # The holder removed the file between our open and flock: we locked
            # a file nobody else will see, so report the directory as busy.
            os.close(fd)
            raise UsageError(f"another tfp-gauss fit was just writing to {self.out}; retry.")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.lock_fd = fd

    def _unlock(self):
        if self.lock_fd is None:
            return
        # Unlinked while still held, so no other process can lock the old file.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.out / _LOCK_NAME)
        os.close(self.lock_fd)
        self.lock_fd = None

    def _remove_stale(self):
        """Removes staging/backup folders of processes that no longer run (e.g. kill -9)."""
        for entry in self.out.iterdir():
            for prefix in (_STAGING_PREFIX, _BACKUP_PREFIX):
                if not entry.name.startswith(prefix):
                    continue
                pid = entry.name[len(prefix):].split("-", 1)[0]
                if not pid.isdigit() or _pid_alive(int(pid)):
                    continue
                if prefix == _BACKUP_PREFIX:
                    # Killed mid-swap: files it had set aside and not yet replaced go back.
                    for item in entry.iterdir():
                        if not (self.out / item.name).exists():
                            os.replace(item, self.out / item.name)
                shutil.rmtree(entry, ignore_errors=True)

    def __enter__(self):
        self._check()
        try:
            if not self.out.is_dir():
                self.created = [p for p in (self.out, *self.out.parents) if not p.exists()]
                self.out.mkdir(parents=True)
            self._lock()
            self._remove_stale()
            self.staging = pathlib.Path(tempfile.mkdtemp(
                prefix=f"{_STAGING_PREFIX}{os.getpid()}-", dir=self.out))
        except OSError as err:
            self._abandon()
            raise UsageError(f"cannot write to --out {self.out}: {err.strerror or err}.") \
                from None
        except BaseException:
            self._abandon()
            raise
        return self.staging

    def _abandon(self):
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        self._unlock()
        for directory in self.created:
            try:
                directory.rmdir()  # only if still empty
            except OSError:
                break

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._abandon()
            return False
        try:
            (self.staging / MARKER_NAME).write_text(json.dumps(dict(
                written_by="tfp-gauss fit", files=list(OUTPUT_NAMES))) + "\n")
            self._commit()
            self.created = []  # they now hold the run
        finally:
            self._abandon()
        return False

    def _commit(self):
        backup = pathlib.Path(tempfile.mkdtemp(prefix=f"{_BACKUP_PREFIX}{os.getpid()}-",
                                               dir=self.out))
        moved = []
        try:
            for name in OUTPUT_NAMES:  # the marker last: a run is marked once complete
                source, target = self.staging / name, self.out / name
                if not source.exists():
                    continue
                if target.exists() or target.is_symlink():
                    os.replace(target, backup / name)
                os.replace(source, target)
                moved.append(name)
        except BaseException:
            for name in moved:
                target = self.out / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            for item in backup.iterdir():
                os.replace(item, self.out / item.name)
            raise
        finally:
            shutil.rmtree(backup, ignore_errors=True)


# ------------------------------------------------------------------------------ serving commands


def _load(directory):
    path = pathlib.Path(directory) / "saved_model"
    if not path.is_dir():
        raise UsageError(f"{directory}: no saved_model/ inside; expected a directory written "
                         "by `tfp-gauss fit --out DIR`.")
    _tensorflow()
    import absl.logging
    import tensorflow as tf

    # Loading warns once per custom-gradient function (~16 lines) that the
    # gradients are restored as saved: true and not the user's concern.
    verbosity = absl.logging.get_verbosity()
    absl.logging.set_verbosity(absl.logging.ERROR)
    try:
        served = tf.saved_model.load(str(path))
        signatures = [served.signatures[name] for name in ("log_prob", "sample")]
    except Exception as err:  # noqa: BLE001  (TF raises many kinds for a broken model)
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UsageError(f"{path} is not a readable tfp-gauss SavedModel ({type(err).__name__}: "
                         f"{first_line[:200]}); refit with `tfp-gauss fit --out {directory}`.") \
            from None
    finally:
        absl.logging.set_verbosity(verbosity)
    del signatures
    return served


def _finite_or_none(values):
    """A dict of floats for JSON: non-finite values as ``None`` (strict JSON has no NaN)."""
    if values is None:
        return None
    return {k: (float(v) if np.isfinite(v) else None) for k, v in values.items()}


def _sample(args):
    from tfp_gauss import _validation

    if args.n < 1:
        raise UsageError(f"-n must be >= 1; got {args.n}.")
    served = _load(args.dir)
    import tensorflow as tf

    seed = tf.constant(_validation.stateless_seed(args.seed), tf.int32)  # as model.sample(seed=S)
    x = served.signatures["sample"](n=tf.constant(args.n, tf.int32), seed=seed)["x"].numpy()
    write_table(args.out, x, _column_names(args.dir, x.shape[1]))
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _fitted_column_names(directory):
    """The fitted CSV's header (``report.json``'s ``column_names``), or ``None``."""
    report = pathlib.Path(directory) / "report.json"
    if not report.is_file():
        return None
    try:
        names = json.loads(report.read_text()).get("data", {}).get("column_names")
    except (ValueError, AttributeError):
        return None
    return [str(n) for n in names] if isinstance(names, list) and names else None


def _shown(names, limit=8):
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"


def _column_names(directory, n_columns):
    """The fitted data's column names (``report.json``), or ``x0, x1, ...`` without them."""
    names = _fitted_column_names(directory)
    if not names or len(names) != n_columns:
        names = [f"x{j}" for j in range(n_columns)]
    return names


def _score(args):
    x, names = read_table(args.data, header=args.header, purpose="scoring")
    served = _load(args.dir)
    import tensorflow as tf

    spec = served.signatures["log_prob"].structured_input_signature[1]["x"]
    if x.shape[1] != spec.shape[1]:
        raise UsageError(f"{args.data}: {x.shape[1]} columns; the model was fit on "
                         f"{spec.shape[1]}.")
    fitted = _fitted_column_names(args.dir)
    if names is not None and fitted is not None and list(names) != list(fitted):
        # Columns are scored by position: another order (or other columns) under
        # a header would give wrong log-densities without an error.
        moved = ("the same columns in another order" if sorted(names) == sorted(fitted)
                 else "other column names")
        first = next(j for j, (a, b) in enumerate(zip(names, fitted)) if a != b)
        raise UsageError(
            f"{args.data}: its header names {_shown(names)}, but the model was fit on "
            f"{_shown(fitted)} ({moved}, report.json; first difference: column {first + 1}, "
            f"{names[first]!r} where the fit had {fitted[first]!r}). Columns are scored by "
            "position: put them in the fitted order under the fitted names.")
    with np.errstate(over="ignore"):  # beyond float32's range: scored in float64 below
        x_served = x.astype(spec.dtype.as_numpy_dtype)
    lp = served.signatures["log_prob"](x=tf.constant(x_served))["log_prob"].numpy()
    lp = lp.astype(np.float64)
    far = ~np.isfinite(lp)
    if far.any():
        # Rows far out have log-densities below float32's range (~ -z^2/2 with
        # |z| > 2.6e19); the same flow in float64 gives their finite value.
        lp[far] = _log_prob_float64(pathlib.Path(args.dir), x[far])
        rows = ", ".join(str(i + 1) for i in np.flatnonzero(far)[:10])
        print(f"tfp-gauss: {int(far.sum())} row(s) lie beyond float32's range (data rows "
              f"{rows}{', ...' if far.sum() > 10 else ''}; numbered from 1); scored in float64.",
              file=sys.stderr)
    write_table(args.out, lp, ["log_prob"])
    print(f"wrote {len(lp)} log-densities to {args.out}")
    return 0


def _log_prob_float64(directory, x):
    """Log-densities of ``x`` under the fitted flow rebuilt in float64.

    From ``model.keras`` and the float64 standardization in ``report.json``,
    both written by ``fit``; used only for rows whose float32 value overflows.
    """
    _tensorflow()
    import keras
    import tensorflow as tf

    from tfp_gauss import flows

    try:
        report = json.loads((directory / "report.json").read_text())
        shift = np.asarray(report["standardization"]["shift"], np.float64)
        scale = np.asarray(report["standardization"]["scale"], np.float64)
        model = keras.models.load_model(directory / "model.keras")
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise UsageError(
            f"{len(x)} row(s) have log-densities beyond float32's range; scoring them in "
            f"float64 needs {directory}/report.json and model.keras as `tfp-gauss fit` wrote "
            f"them ({type(err).__name__}: {err}).") from None
    def as64(v):
        return [np.asarray(w, np.float64) for w in v] if isinstance(v, list) else np.asarray(
            v, np.float64)

    values = [{k: as64(v) for k, v in layer.items()}
              for layer in flows.flow_values(model.distribution)]
    dist = flows.gaussianization_flow(shift.size, dtype=tf.float64, initial_values=values,
                                      architecture=model.architecture)
    return dist.log_prob((x - shift) / scale).numpy() - np.sum(np.log(scale))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfp-gauss", description="Fit, sample and score Gaussianization flows.")
    sub = parser.add_subparsers(dest="command", required=True)
    header_help = ("whether the CSV's first row names the columns (default: a row of text "
                   "cells is a header, a numeric row is data, anything else is an error)")
    fit = sub.add_parser("fit", help="fit a flow to data (default: built-in two-moons)")
    fit.add_argument("data", nargs="?", help="CSV or .npy, rows = samples")
    fit.add_argument("--out", required=True,
                     help="output directory: new, empty, or an earlier `tfp-gauss fit` run")
    fit.add_argument("--overwrite", action="store_true",
                     help="also write into a non-empty directory that is not a tfp-gauss run, "
                          "or that holds the input; only the files fit writes are replaced")
    fit.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                     help=header_help)
    fit.add_argument("--layers", type=int, default=8,
                     help="most layers; the greedy warm start may keep fewer (default 8)")
    fit.add_argument("--components", type=int, default=8,
                     help="mixture components per coordinate and layer (default 8)")
    fit.add_argument("--steps", type=int, default=None,
                     help="most training steps (default: 100 passes over the data, "
                     "3000-10000); training stops earlier once the validation NLL stops "
                     "improving")
    fit.add_argument("--batch-size", type=int, default=512, help="rows per step (default 512)")
    fit.add_argument("--peak-lr", type=_number(0), default=None,
                     help="peak learning rate (default: 3e-3 for marginal layers, 1e-3 for "
                     "coupling layers)")
    fit.add_argument("--clip-norm", type=_number(0, low_open=False), default=1.0,
                     help="global gradient-norm clip (0: none; default 1.0)")
    fit.add_argument("--noise", type=_number(0, low_open=False), default=0.0,
                     help="training-noise regularization: Gaussian noise of this fraction of "
                     "each column's standard deviation added to every training batch (helps "
                     "small continuous data, e.g. 0.05; hurts discrete columns; default 0)")
    fit.add_argument("--scale-floor", type=_scale_floor, default="auto",
                     help="soft floor under the mixture scales, in kernel bandwidths (0: none); "
                     "auto (default): with under 5000 training rows, fits with and without "
                     "a floor compete on the held-out rows")
    fit.add_argument("--ema-momentum", type=_number(0, 1, low_open=False), default=0.99,
                     help="Polyak averaging: the moving average of the weights (this momentum) "
                     "is what is validated, kept and saved (0: off; default 0.99)")
    fit.add_argument("--init", default="rbig",
                     help="rbig (greedy warm start), random, or a previous run's DIR to "
                     "continue training it with a fresh learning-rate schedule")
    fit.add_argument("--validation-split", type=float, default=0.1,
                     help="fraction of rows held out (drawn with --seed) to choose the fit "
                     "(0: none; default 0.1)")
    fit.add_argument("--architecture", choices=("marginal", "coupling"), default=None,
                     help="marginal: mixture CDF maps of each coordinate alone; coupling: "
                     "half of the coordinates' mixture parameters depend on the other half "
                     "(an MLP); for strongly dependent columns (default: coupling from 1,000 "
                     "training rows, marginal below; with --init DIR, that run's)")
    fit.add_argument("--seed", type=_number(0, low_open=False, integer=True), default=0,
                     help="seed of the split, the initialisation and the batches (default 0)")
    fit.add_argument("--verbose", type=int, default=None,
                     help="Keras verbosity (default: 1, a progress bar, on a terminal; "
                          "2, one line per epoch, otherwise)")
    fit.set_defaults(func=_fit)
    sample = sub.add_parser("sample", help="draw samples from a fitted flow")
    out_help = ("file to write: .npy for a NumPy array, anything else CSV with a header "
                "row")
    sample.add_argument("dir", help="a directory written by `tfp-gauss fit --out DIR`")
    sample.add_argument("-n", type=int, required=True, help="number of samples")
    sample.add_argument("--out", required=True,
                        help=out_help + " (the fitted CSV's column names, or x0, x1, ...)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    sample.set_defaults(func=_sample)
    score = sub.add_parser("score", help="per-row log-density of data under a fitted flow")
    score.add_argument("dir", help="a directory written by `tfp-gauss fit --out DIR`")
    score.add_argument("data", help="CSV or .npy with the fitted columns, in the fitted order")
    score.add_argument("--out", required=True,
                       help=out_help + " (log_prob: one log-density per row, in the data's "
                       "units)")
    score.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                       help=header_help)
    score.set_defaults(func=_score)
    return parser


class _Stopped(BaseException):
    """A termination signal, raised so that every ``finally``/``except`` cleanup runs."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise _Stopped(signum)


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM, SIGINT and SIGHUP raise ``_Stopped`` (the default SIGTERM kills without cleanup)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {sig: signal.signal(sig, _raise_stopped)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        with _stop_on_signals():
            return args.func(args)
    except UsageError as err:
        print(f"tfp-gauss: error: {err}", file=sys.stderr)
        return 2
    except _Stopped as stop:
        print(f"tfp-gauss: stopped by {signal.Signals(stop.signum).name}; partial output "
              "removed.", file=sys.stderr)
        return 128 + stop.signum


if __name__ == "__main__":
    sys.exit(main())
