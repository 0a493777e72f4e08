"""Built-in datasets: the reference notebooks' two-moons and dequantized digits."""

import numpy as np

__all__ = ["digits", "split", "standardize", "two_moons"]


def standardize(x, reference=None):
    """``(x - mean) / std`` with the statistics of ``reference`` (default ``x``)."""
    reference = x if reference is None else reference
    return (x - reference.mean(0)) / reference.std(0)


def two_moons(n_samples=3000, noise=0.08, random_state=0, dtype=np.float32):
    """Standardized two-moons, ``[n_samples, 2]`` (the reference notebooks' data)."""
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples=n_samples, noise=noise, random_state=random_state)
    return standardize(x).astype(dtype)


def digits(random_state=0, dtype=np.float32):
    """sklearn's 8x8 digits, ``[1797, 64]``, uniformly dequantized (``x + U[0, 1)``).

    Not standardized: standardize with training statistics after splitting.
    """
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    x = x + np.random.default_rng(random_state).uniform(size=x.shape)
    return x.astype(dtype)


def split(x, fractions=(0.8, 0.2), random_state=0):
    """Shuffled split of the rows of ``x`` into parts with the given fractions."""
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must sum to 1; got {fractions}.")
    perm = np.random.default_rng(random_state).permutation(len(x))
    bounds = np.round(np.cumsum((0.0,) + tuple(fractions)) * len(x)).astype(int)
    return tuple(x[perm[a:b]] for a, b in zip(bounds[:-1], bounds[1:]))
