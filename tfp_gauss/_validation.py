"""Checks on user data and seeds, shared by every entry point that accepts a sample."""

import numbers
import os
import sys
import warnings

import numpy as np

__all__ = ["FLOAT32_FIX", "TIED_MAX_DISTINCT_FRACTION", "TIED_MIN_TOP_SHARE",
           "TiedValuesWarning", "as_float_dtype", "as_rng", "check_data", "check_float_dtype",
           "check_full_rank", "check_int", "check_same_columns", "column_counts",
           "given_as_float32", "holdout_split",
           "linear_dependence", "renamed_seed", "resolution_limited_columns", "tied_columns",
           "tied_values_message", "warn_if_tied"]

# A column whose distinct values number at most this fraction of its rows
# holds tied values: rounded measurements, counts or categories.
TIED_MAX_DISTINCT_FRACTION = 0.5
# ... or whose most common value fills at least this share of its rows.
TIED_MIN_TOP_SHARE = 0.05


class TiedValuesWarning(UserWarning):
    """Data to fit have columns of repeated values (rounded or discrete data).

    A continuous density fit to tied values grows narrow peaks at them;
    ``tied_values_message`` says why that matters and what to do.
    """


def given_as_float32(x):
    """Whether ``x`` (before ``check_data``) already holds float32 values (its ``dtype``)."""
    dtype = getattr(x, "dtype", None)
    try:
        return np.dtype(getattr(dtype, "as_numpy_dtype", dtype)) == np.float32
    except TypeError:
        return False


def is_real(value, low, *, strict=False):
    """Whether ``value`` is a finite real number (not a bool) above ``low``.

    ``> low`` with ``strict``, else ``>= low``.
    """
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and bool(np.isfinite(value)) and (value > low if strict else value >= low))


def check_int(value, name, minimum=1):
    """``value`` as an ``int``, or a ``ValueError`` saying what was seen.

    Accepts Python and numpy integers ``>= minimum`` (and integer scalar
    tensors); a bool, a float (even ``3.0``: a size or a count is not
    silently truncated) or anything else is an error naming ``name``.
    """
    if hasattr(value, "numpy") and callable(value.numpy) and getattr(value, "shape", None) == ():
        value = value.numpy()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def check_float_dtype(dtype, name="dtype"):
    """``dtype`` as a numpy float32/float64 dtype, or a ``ValueError`` saying what was seen.

    (``None`` is an error, not numpy's float64.)
    """
    try:
        out = None if dtype is None else np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
    except TypeError:
        out = None
    if out not in (np.float32, np.float64):
        raise ValueError(f"{name} must be 'float32' or 'float64' (what tfp_gauss computes in); "
                         f"got {dtype!r}.")
    return out


def as_float_dtype(dtype):
    """The float dtype tfp_gauss computes in for data of ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype in (np.float32, np.float64):
        return dtype
    return np.dtype(np.float32)


# How to keep float64 precision, by caller (``float32_fix`` of the messages):
# where the data were cast to float32, what would have kept them in float64.
FLOAT32_FIX = "pass the data as float64"


def _mantissa_bits(dtype):
    """Significand bits a value of ``dtype`` can carry (integers: their value bits)."""
    if np.issubdtype(dtype, np.floating):
        return np.finfo(dtype).nmant
    return np.iinfo(dtype).bits - np.issubdtype(dtype, np.signedinteger)


def _check_cast(given, arr, name, purpose, first_index, float32_fix):
    """Raises when casting ``given`` to ``arr``'s narrower dtype lost a column.

    A column finite in ``given`` but not in ``arr`` overflowed the dtype; for
    ``purpose == "fitting"``, a column that varies in ``given`` but is
    constant in ``arr`` was merged into one value by the dtype's spacing.
    """
    numbering = "numbered from 1" if first_index == 1 else "Python indices"
    dtype = arr.dtype
    fix = (f"to keep them, {float32_fix}, or centre the columns (subtract a typical value) "
           f"and scale them in float64 before they become {dtype}" if float32_fix else
           "keep them in float64, centred and scaled, where they are produced")
    with np.errstate(invalid="ignore"):
        overflow = np.flatnonzero(np.isfinite(given).all(axis=0) & ~np.isfinite(arr).all(axis=0))
    if overflow.size:
        largest = float(np.max(np.abs(given[:, overflow])))
        raise ValueError(
            f"`{name}`: column(s) {(overflow + first_index).tolist()} ({numbering}) are finite "
            f"but overflow {dtype} (largest magnitude {largest:.3g}; {dtype} holds up to "
            f"{float(np.finfo(dtype).max):.3g}); {fix}.")
    if purpose != "fitting" or len(arr) < 2:
        return
    with np.errstate(invalid="ignore"):
        merged = np.flatnonzero((np.ptp(given, axis=0) > 0) & (np.ptp(arr, axis=0) == 0))
    if merged.size:
        c = merged[0]
        magnitude = float(np.max(np.abs(given[:, c])))
        raise ValueError(
            f"`{name}`: column(s) {(merged + first_index).tolist()} ({numbering}) vary, but "
            f"are constant once cast to {dtype}: column {c + first_index}'s values span "
            f"{float(np.ptp(given[:, c])):.3g} near {magnitude:.3g}, where {dtype} numbers are "
            f"{float(np.spacing(dtype.type(magnitude))):.3g} apart; {fix}.")


def _is_pandas(x):
    """A pandas DataFrame or Series (duck-typed: pandas is not imported here)."""
    return ((type(x).__module__ + ".").startswith("pandas.")
            and type(x).__name__ in ("DataFrame", "Series"))


def _pandas_to_numpy(x, name):
    """A DataFrame's (or Series') values as a numeric array, as scikit-learn reads them.

    Numeric and boolean columns, numpy's or pandas' nullable ones (``Int64``,
    ``Float64``, ``boolean``: ``np.asarray`` makes those, or a bool column
    beside floats, an object array) and sparse ones, become one numeric
    array; a missing value becomes NaN (reported by the caller with its
    row). An object column is read as numbers if it holds numbers. Another
    column (category, string, datetime) is an error that names it.
    """
    frame = x if hasattr(x, "columns") else x.to_frame()
    numpy_dtypes = []
    for i, (column, dtype) in enumerate(frame.dtypes.items()):
        what = f"column {i} ({column!r})" if hasattr(x, "columns") else "the Series"
        kind = getattr(dtype, "kind", "O")
        if kind not in "biuf" and isinstance(dtype, np.dtype) and dtype.kind == "O":
            try:  # (Python numbers in an object column, as scikit-learn reads them)
                numpy_dtypes.append(np.asarray(frame.iloc[:, i].tolist(), np.float64).dtype)
                continue
            except (TypeError, ValueError):
                raise ValueError(
                    f"`{name}` must be numeric; {what} has dtype object and holds values "
                    f"that are not numbers. Convert or drop it.") from None
        if kind not in "biuf":
            raise ValueError(
                f"`{name}` must be numeric; {what} has dtype {dtype}. Encode it as numbers "
                f"(e.g. one column per category) or drop it.")
        numpy_dtypes.append(np.dtype(getattr(dtype, "numpy_dtype", None)
                                     or getattr(dtype, "subtype", None) or dtype))
    result = np.result_type(*numpy_dtypes) if numpy_dtypes else np.dtype(np.float64)
    if result.kind != "f" and bool(np.asarray(frame.isna()).any()):
        result = np.dtype(np.float64)  # missing values in integer or boolean columns
    try:
        return x.to_numpy(dtype=result, **({"na_value": np.nan} if result.kind == "f" else {}))
    except (TypeError, ValueError):  # (some extension types take no na_value)
        return np.asarray(x, dtype=result)


def check_same_columns(x, other, name="validation_data"):
    """``other`` names the same columns as ``x``, in order, when both are DataFrames.

    Both become plain arrays, so a reordered frame would be read column by
    column in the wrong places (held-out scores of the wrong variables).
    """
    if not (hasattr(x, "columns") and hasattr(other, "columns")
            and _is_pandas(x) and _is_pandas(other)):
        return
    ours, theirs = list(x.columns), list(other.columns)
    if ours != theirs:
        order = " (the same columns in another order)" if sorted(map(repr, ours)) == sorted(
            map(repr, theirs)) else ""
        raise ValueError(f"`{name}` has columns {theirs}{order}; x has {ours}. Pass the same "
                         f"columns in the same order (e.g. {name}[x.columns]).")


def check_data(x, *, n_dims=None, dtype=None, name="x", min_rows=1, purpose="fitting",
               first_index=0, float32_fix=FLOAT32_FIX):
    """Validates a data matrix and returns it as a float ``np.ndarray``.

    Args:
      x: array-like of shape ``[N, D]``. Tensors are accepted.
      n_dims: if given, the required width ``D``.
      dtype: float dtype of the result; by default float64 for float64 ``x``
        and float32 for anything else (float32, float16, integers, booleans).
      name: what to call the argument in error messages.
      min_rows: fewest rows accepted.
      purpose: what the data are for ("fitting", "scoring", ...), named in
        the message about NaN/inf rows.
      first_index: how rows and columns are numbered in messages: 0 (Python
        indices, the default) or 1 (data rows of a file, as the command line
        reports them). The message says which.
      float32_fix: what the caller's user can do to keep float64 precision,
        named when casting to ``dtype`` would lose a column (see Raises).

    Returns:
      ``x`` as a C-contiguous float32/float64 array of shape ``[N, D]``.

    Raises:
      TypeError: ``x`` is not array-like at all (e.g. a ``tf.data.Dataset``
        or a generator).
      ValueError: ``x`` is not numeric, not of rank 2, has the wrong width,
        fewer than ``min_rows`` rows, or rows holding NaN or infinity. The
        message says what was seen and how rows and columns are numbered.
        Also when the cast to float32 (of float64 or integer data) makes a
        finite column overflow, or, for fitting, makes a
        varying column constant (values near 1e8 that differ by less than
        float32's spacing of 8 there): the message says the cast did it.
    """
    if hasattr(x, "numpy") and callable(x.numpy):
        x = x.numpy()
    series = _is_pandas(x) and not hasattr(x, "columns")
    if _is_pandas(x):
        x = _pandas_to_numpy(x, name)
    try:
        arr = np.asarray(x)
    except ValueError as err:  # ragged nested lists
        raise ValueError(
            f"`{name}` must be a rectangular numeric array of shape [N, D]; "
            f"could not convert it: {err}") from None
    if arr.dtype == object and arr.ndim == 0:
        # numpy wraps anything it cannot read as numbers in a 0-d object array;
        # saying "dtype object" would hide that the container itself is wrong.
        hint = (" Collect a tf.data.Dataset first, e.g. "
                "np.concatenate(list(ds.as_numpy_iterator()))."
                if type(x).__name__.endswith("Dataset") else "")
        raise TypeError(
            f"`{name}` must be an array of shape [N, D] (a numpy array, tensor or "
            f"nested lists of numbers); got a {type(x).__module__}.{type(x).__qualname__}."
            f"{hint}")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == bool):
        raise ValueError(
            f"`{name}` must be numeric with shape [N, D]; got an array of "
            f"dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"`{name}` must be real; got dtype {arr.dtype}.")
    if arr.ndim != 2:
        hint = ""
        if arr.ndim == 1 and n_dims is not None and n_dims > 1:
            row = "x.to_frame().T" if series else "x[None, :]"
            hint = (f" For one row of the {n_dims} columns, pass {row}." if len(arr) == n_dims
                    else f" Rows are samples of the {n_dims} columns.")
        elif arr.ndim == 1 and series:
            hint = " For a single variable, pass the Series as a frame, x.to_frame()."
        elif arr.ndim == 1:
            hint = " For a single variable, pass x[:, None]."
        raise ValueError(
            f"`{name}` must have rank 2, shape [N, D] (rows are samples); got "
            f"shape {arr.shape}.{hint}")
    if n_dims is not None and arr.shape[1] != n_dims:
        raise ValueError(
            f"`{name}` must have {n_dims} columns (the model's n_dims); got "
            f"shape {arr.shape}.")
    if arr.shape[0] < min_rows:
        raise ValueError(
            f"`{name}` needs at least {min_rows} row(s); got shape {arr.shape}.")
    out_dtype = as_float_dtype(arr.dtype) if dtype is None else np.dtype(dtype)
    with np.errstate(over="ignore"):  # (an overflow is reported below, in words)
        given, arr = arr, np.ascontiguousarray(arr, dtype=out_dtype)
    if out_dtype == np.float32 and given.dtype != bool and (
            np.finfo(np.float32).nmant < _mantissa_bits(given.dtype)):
        _check_cast(given, arr, name, purpose, first_index, float32_fix)
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = ~finite.all(axis=1)
        bad_cols = (np.flatnonzero(~finite.all(axis=0)) + first_index).tolist()
        first = (np.flatnonzero(bad_rows)[:5] + first_index).tolist()
        numbering = "numbered from 1" if first_index == 1 else "0-based indices"
        raise ValueError(
            f"`{name}` has {int(bad_rows.sum())} of {arr.shape[0]} rows holding "
            f"NaN or infinity (columns {bad_cols}; first rows {first}; {numbering}). "
            f"Remove or impute them before {purpose}.")
    return arr


# Columns whose correlation matrix has an eigenvalue below this are linearly
# dependent to rounding: a copy, a one-hot pair, a sum of other columns (exact
# relations measured ~1e-16; a sum rounded to float32, ~1e-15). A column equal
# to another plus a residual of relative size s gives about s^2 / 2: thin but
# full-rank data pass from s ~ 2e-6 (1e-5 gives 5e-11), whatever D.
DEPENDENT_EIGENVALUE = 1e-12


def linear_dependence(x, threshold=DEPENDENT_EIGENVALUE):
    """``(columns, smallest_eigenvalue)`` of ``x [N, D]``'s dependent columns, or ``None``.

    Computed in float64 on the standardized varying columns (constant ones
    are left to their own error): the columns with weight in an eigenvector
    of the correlation matrix whose eigenvalue is below ``threshold``.
    """
    x = np.asarray(x, np.float64)
    varying = np.flatnonzero(x.std(axis=0) > 0)
    x = x[:, varying]
    n, d = x.shape
    if d < 2:
        return None
    y = (x - x.mean(axis=0)) / x.std(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh((y.T @ y) / n)
    small = eigenvalues < threshold
    if not small.any():
        return None
    loadings = np.abs(eigenvectors[:, small])
    involved = np.flatnonzero((loadings > 1e-3 * loadings.max(0)).any(axis=1))
    return varying[involved], eigenvalues[0]


def check_full_rank(x, name, *, caller, first_index=0, where=""):
    """A ``ValueError`` naming the columns of ``x`` that are linearly dependent.

    ``where`` qualifies the rows (e.g. " in the rows fit once the held-out rows
    are set aside").
    """
    found = linear_dependence(x)
    if found is None:
        return
    columns, smallest = found
    n, d = np.shape(x)
    numbering = "numbered from 1" if first_index == 1 else "Python indices"
    shown = ", ".join(map(str, columns[:20] + first_index)) + (", ..." if len(columns) > 20 else "")
    too_few = (f" With {n} rows for {d} columns that is unavoidable: more rows are needed."
               if n <= d else "")
    raise ValueError(
        f"{caller}: columns {shown} of {name} ({numbering}) are linearly dependent{where} (the "
        f"smallest eigenvalue of their correlation matrix is {smallest:.2g}): one is a "
        "combination of the others (a copy, a sum, a one-hot pair), so the data lie on a "
        "subspace, where a density on all columns is infinite. Drop the redundant "
        f"column(s).{too_few}")


def few_values_shown(distinct, n_components):
    """"column(s) 1 (2), 4 (3) (Python indices; distinct values in brackets) hold"."""
    few = np.flatnonzero(distinct < n_components)
    shown = ", ".join(f"{j} ({distinct[j]})" for j in few[:10]) + (", ..." if few.size > 10 else "")
    return f"column(s) {shown} (Python indices; distinct values in brackets) hold that many values"


def column_counts(x):
    """``(distinct, top)``: per column of ``x [N, D]``, its number of distinct values
    and how many rows hold its most common value (int arrays ``[D]``)."""
    x = np.asarray(x)
    counts = [np.unique(x[:, j], return_counts=True)[1] for j in range(x.shape[1])]
    return (np.array([c.size for c in counts], np.int64),
            np.array([c.max(initial=0) for c in counts], np.int64))


def tied_columns(x):
    """``(columns, distinct, top_share)``: the columns of ``x [N, D]`` that hold tied values.

    A column is tied when its distinct values number at most
    ``TIED_MAX_DISTINCT_FRACTION * N`` (continuous measurements repeat a
    value almost never; rounded ones, counts and categories do), or when
    one value fills at least ``TIED_MIN_TOP_SHARE`` of its rows (and 3 of
    them): a point mass, as in zero-inflated data, however continuous the
    rest. A constant column is not counted: fitting it is an error of its
    own. Returns the column indices, their distinct-value counts and the
    share of rows holding each one's most common value.
    """
    distinct, top = column_counts(x)
    n = len(x)
    tied = (distinct <= TIED_MAX_DISTINCT_FRACTION * n) | (
        (top >= TIED_MIN_TOP_SHARE * n) & (top >= 3))
    columns = np.flatnonzero(tied & (distinct > 1))
    return columns, distinct[columns], top[columns] / max(n, 1)


# What ties do to a fitted density (the default consequence in the message).
DENSITY_CONSEQUENCE = (
    "A continuous density fit to tied values grows narrow peaks at them, and held-out rows "
    "with the same ties reward the peaks, so its log-likelihoods overstate the data's density "
    "and do not compare with other models'.")


def tied_values_message(x, name="x", first_index=0, consequence=DENSITY_CONSEQUENCE,
                        float32_fix=FLOAT32_FIX):
    """What to tell a user fitting ``x`` with tied columns (``None`` when it has none).

    ``first_index`` numbers the columns as ``check_data``'s messages do (0:
    Python indices, 1: columns of a file); ``consequence`` says what the
    ties do to the result. Columns whose values sit on the dtype's own grid
    (``resolution_limited_columns``: large values cast to float32) get a
    sentence of their own: their ties may come from the storage, not the
    data; for float32 ``x`` it ends with ``float32_fix``, what the caller's
    user can do to keep float64 precision (``None``: the user's data were
    float32 already, ``given_as_float32``).
    """
    columns, distinct, top_share = tied_columns(x)
    if not columns.size:
        return None
    numbering = "numbered from 1" if first_index else "Python indices"
    message = ""
    coarse = resolution_limited_columns(x, columns)
    if coarse:
        x = np.asarray(x)
        dtype = x.dtype
        magnitude = max(float(np.max(np.abs(x[:, c]))) for c in coarse)
        step = float(np.spacing(dtype.type(magnitude)))
        listed = ", ".join(str(c + first_index) for c in coarse[:10])
        listed += f" and {len(coarse) - 10} more" if len(coarse) > 10 else ""
        if dtype == np.float32 and float32_fix:
            fix = (f"to keep the precision, {float32_fix}, or centre the columns (subtract "
                   f"a typical value) in float64 before they become float32")
        else:
            fix = (f"the data were {dtype} before tfp_gauss saw them, so keep them in float64 "
                   f"(centred: minus a typical value) where they are produced")
        message = (
            f"`{name}`: column(s) {listed} ({numbering}) may repeat values because {dtype} "
            f"cannot tell them apart: near their magnitude (up to {magnitude:.3g}) {dtype} "
            f"numbers are {step:.3g} apart, and the columns' values sit on that grid, so "
            f"their ties may come from storing them as {dtype}, not from the data; {fix}. ")
    shown = ", ".join(
        f"{c + first_index} ({d}" + (f"; {share:.0%} of rows one value)"
                                     if d > TIED_MAX_DISTINCT_FRACTION * len(x) else ")")
        for c, d, share in zip(columns[:10], distinct[:10], top_share[:10]))
    more = f" and {columns.size - 10} more" if columns.size > 10 else ""
    return message + (
        f"`{name}` has {columns.size} column(s) of repeated values among its {len(x)} rows: "
        f"{shown}{more} ({numbering}; distinct values in brackets). {consequence} "
        f"If these are rounded measurements or counts, "
        f"dequantize first: add uniform noise of one rounding step, "
        f"x + step * (U(0, 1) - 1/2) (step 1 for integers); a value that fills many rows "
        f"(a point mass, such as zeros) is better modelled apart from the rest.")


def resolution_limited_columns(x, columns=None):
    """The columns (of ``columns``; default all) of float ``x`` tied by its dtype's precision.

    Each gap between a column's sorted distinct values is measured in
    spacings of ``x``'s dtype at the larger of its two ends
    (``np.spacing``); a column qualifies when the median gap is at most 1.5
    spacings: its values fill the dtype's own grid (as large float64 values
    cast to float32 do: near 1e6, float32 numbers are 0.0625 apart), so its
    ties say little about how the data were recorded. Measured per gap, one
    large value among rounded ones does not qualify a column, and integers
    qualify only where the dtype's spacing reaches 1 (float32 from 2**23).
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        return []
    out = []
    for c in range(x.shape[1]) if columns is None else columns:
        values = np.unique(x[:, c])
        if values.size < 2:
            continue
        ends = np.maximum(np.abs(values[:-1]), np.abs(values[1:]))
        if np.median(np.diff(values) / np.spacing(ends)) <= 1.5:
            out.append(int(c))
    return out


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel():
    """``stacklevel`` for a ``warnings.warn`` in the caller: the first frame outside tfp_gauss.

    A warning raised deep in the package (``compile`` called by
    ``fit_gaussianization_flow``, say) then points at the user's line, however
    many of the package's own frames lie between.
    """
    frame, level = sys._getframe(1), 1  # (the caller: stacklevel 1 is its line)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def warn_if_tied(x, name="x", stacklevel=2, consequence=DENSITY_CONSEQUENCE,
                 float32_fix=FLOAT32_FIX, given=None):
    """Warns (``TiedValuesWarning``) when ``x`` has tied columns (``tied_columns``).

    ``stacklevel`` as for ``warnings.warn`` called by the caller of this function
    (2: the line that called the caller); ``consequence`` and ``float32_fix``
    as for ``tied_values_message``. ``given``: the user's argument before
    ``check_data`` made ``x`` of it; when it held float32 values already,
    no ``float32_fix`` is offered (``given_as_float32``).
    """
    if given is not None and given_as_float32(given):
        float32_fix = None
    message = tied_values_message(x, name, consequence=consequence, float32_fix=float32_fix)
    if message is not None:
        warnings.warn(message, TiedValuesWarning, stacklevel=stacklevel + 1)


def holdout_split(x, fraction, rng, *, name="fit"):
    """Shuffled ``(train, held_out)`` rows of ``x``; ``held_out`` is ``None`` for ``0``.

    The held-out rows are the first ``round(fraction * N)`` of a permutation
    drawn from ``rng`` (a ``np.random.Generator``), so the split is
    reproducible from the seed that made ``rng``; except that a column that
    varies in ``x`` is kept varying in the training rows (a held-out row with
    its other value trades places with a training row), where it can be.

    Raises:
      ValueError: ``fraction`` is not a number in ``[0, 1)``, or leaves fewer
        than two rows on either side.
    """
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: validation_split must be a number in [0, 1); got {fraction!r}.") from None
    if not 0.0 <= fraction < 1.0:
        raise ValueError(
            f"{name}: validation_split must be in [0, 1) (the fraction of rows held out to "
            f"choose the fit); got {fraction}.")
    if fraction == 0.0:
        return x, None
    n = x.shape[0]
    n_val = int(round(fraction * n))
    if n_val < 2 or n - n_val < 2:
        raise ValueError(
            f"{name}: validation_split={fraction} of {n} rows leaves {n_val} held-out and "
            f"{n - n_val} training rows; both need at least 2. Pass more rows, a larger "
            "split, validation data of your own, or validation_split=0 to skip selection.")
    perm = rng.permutation(n)
    held, kept = perm[:n_val], perm[n_val:]
    # A column with a rare value (a pixel nonzero in two rows of digits) can
    # lose every such row to the held-out side and be constant in the rows fit
    # (3 of 20 seeds on digits). Such a row is swapped with a training row
    # whose absence leaves every column varying; the split stays a function
    # of the seed.
    varies = np.ptp(x, axis=0) > 0
    for _ in range(x.shape[1]):
        keep_varying = np.ptp(x[kept], axis=0) > 0
        flat = np.flatnonzero(varies & ~keep_varying)
        if not flat.size:
            break
        c = flat[0]
        i = int(np.flatnonzero(x[held, c] != x[kept[0], c])[0])
        for j in range(len(kept)):
            if np.all(np.ptp(x[np.delete(kept, j)][:, keep_varying], axis=0) > 0):
                break
        else:
            break  # (no such training row: the caller reports the constant column)
        held[i], kept[j] = kept[j], held[i]
    return x[np.sort(kept)], x[np.sort(held)]


def as_rng(seed):
    """The ``np.random.Generator`` of a library ``seed`` argument.

    The one seed convention of tfp_gauss: ``seed`` is an int or a
    ``np.random.Generator`` (used as is), and ``None`` means ``0``, so a
    result is reproducible unless a seed is asked to vary. (The
    scikit-learn estimators keep scikit-learn's ``random_state``.)
    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(0 if seed is None else seed)


def stateless_seed(seed):
    """A sampling ``seed`` with an int made the stateless seed ``[s mod 2**31, s >> 31]``.

    TFP treats an int seed as stateful (every call draws anew); tfp_gauss's
    sampling draws the same rows for the same int (``s`` taken mod
    ``2**62``; ``[s, 0]`` below ``2**31``, as ``tfp-gauss sample --seed``).
    A ``np.random.Generator`` gives a stateless seed drawn from it (so it
    advances, and the next call draws other rows, as numpy's own draws do).
    Anything else (a stateless int32 ``[2]`` seed, ``None`` for fresh
    draws) passes through to ``tfp.random.sanitize_seed``.
    """
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        s = int(seed) % 2**62
        return np.array([s & (2**31 - 1), s >> 31], np.int32)
    if isinstance(seed, np.random.Generator):
        return seed.integers(0, 2**31, size=2).astype(np.int32)
    return seed


def renamed_seed(seed, random_state, where):
    """``seed``, or the deprecated ``random_state`` it replaced (with a warning)."""
    if random_state is None:
        return seed
    if seed is not None:
        raise TypeError(f"{where}: pass `seed` only (`random_state` is its deprecated name); "
                        f"got seed={seed!r} and random_state={random_state!r}.")
    warnings.warn(f"{where}: `random_state` is renamed `seed`; `random_state` will be removed.",
                  DeprecationWarning, stacklevel=3)
    return random_state
