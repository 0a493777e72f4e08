"""Built-in datasets: the reference notebooks' two-moons and dequantized digits."""

import numpy as np

from tfp_gauss import _validation

__all__ = ["digits", "split", "standardize", "two_moons"]


def standardize(x, reference=None):
    """``(x - mean) / std`` with the statistics of ``reference`` (default ``x``)."""
    reference = x if reference is None else reference
    return (x - reference.mean(0)) / reference.std(0)


def two_moons(n_samples=3000, noise=0.08, seed=None, dtype=np.float32, *, random_state=None):
    """Standardized two-moons, ``[n_samples, 2]`` (the reference notebooks' data).

    ``seed``: int (``None`` means ``0``); ``random_state`` is its deprecated name.
    """
    from sklearn.datasets import make_moons

    seed = _validation.renamed_seed(seed, random_state, "two_moons")
    x, _ = make_moons(n_samples=n_samples, noise=noise, random_state=0 if seed is None else seed)
    return standardize(x).astype(dtype)


def digits(seed=None, dtype=np.float32, *, random_state=None):
    """sklearn's 8x8 digits, ``[1797, 64]``, uniformly dequantized (``x + U[0, 1)``).

    Not standardized: standardize with training statistics after splitting.
    ``seed`` (the dequantization noise): int or ``np.random.Generator``,
    ``None`` means ``0``; ``random_state`` is its deprecated name.
    """
    seed = _validation.renamed_seed(seed, random_state, "digits")
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    x = x + _validation.as_rng(seed).uniform(size=x.shape)
    return x.astype(dtype)


def split(x, fractions=(0.8, 0.2), seed=None, *, random_state=None):
    """Shuffled split of the rows of ``x`` into parts with the given fractions.

    ``seed``: int or ``np.random.Generator`` (``None`` means ``0``);
    ``random_state`` is its deprecated name.
    """
    seed = _validation.renamed_seed(seed, random_state, "split")
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must sum to 1; got {fractions}.")
    perm = _validation.as_rng(seed).permutation(len(x))
    bounds = np.round(np.cumsum((0.0,) + tuple(fractions)) * len(x)).astype(int)
    return tuple(x[perm[a:b]] for a, b in zip(bounds[:-1], bounds[1:]))
