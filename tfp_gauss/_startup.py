"""Quiet TensorFlow start-up for the ``tfp-gauss`` command.

When the running program is the command (``tfp-gauss ...`` or ``python -m
tfp_gauss.cli``), ``tfp_gauss/__init__.py`` imports nothing heavy, so
``--help`` and errors in the user's data answer at once (they took 10-13 s,
TensorFlow's import); the command calls ``quiet_tensorflow`` when it first
needs TensorFlow. A library import imports everything and leaves
TensorFlow's logging to the user.
"""

import itertools
import os
import sys
import tempfile


def running_cli():
    """Whether this process is the ``tfp-gauss`` command."""
    argv = getattr(sys, "argv", None) or [""]  # embedded interpreters may have no argv
    if os.path.basename(argv[0]) == "tfp-gauss":
        return True
    orig = list(getattr(sys, "orig_argv", ()))
    return any(a == "-m" and b == "tfp_gauss.cli" for a, b in itertools.pairwise(orig))


def quiet_tensorflow():
    """Imports TensorFlow with its C++ start-up lines (oneDNN, CUDA, absl) silenced.

    ``TF_CPP_MIN_LOG_LEVEL`` does not reach the lines absl prints before its
    own initialisation, so stderr's file descriptor is pointed at a temporary
    file while TensorFlow loads and finds its devices; if that fails, what
    was captured is printed after all.
    """
    if "tensorflow" in sys.modules:  # (imported already: quiet or not, it is done)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # noqa: PLC0415  (after stderr is redirected)

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    tf.get_logger().setLevel("ERROR")

