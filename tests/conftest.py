"""Shared pytest set-up: one TensorFlow process for the whole suite."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hypothesis  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs, so tf.distribute.MirroredStrategy can be exercised on a
# machine without accelerators. Must happen before TF initialises devices.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # devices already initialised by an earlier import
    pass

hypothesis.settings.register_profile(
    "ci", max_examples=30, deadline=None, derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def bimodal_sample():
    """The reference notebook's bimodal sample, [6000, 1] float64."""
    rng = np.random.default_rng(13)
    return np.concatenate([rng.normal(-2.0, 0.5, 3000),
                           rng.normal(1.5, 0.8, 3000)])[:, None]


@pytest.fixture(scope="session")
def moons():
    """Standardized two-moons (the reference notebook's data), float32 [3000, 2]."""
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples=3000, noise=0.08, random_state=0)
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)
