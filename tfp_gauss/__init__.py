"""tfp_gauss: Gaussianization flows for TensorFlow Probability and Keras.

- ``tfp_gauss.bijectors``: ``MixtureGaussianCDF`` and ``HouseholderRotation``.
- ``gaussianization_flow``: a trainable flow as a ``tfd.TransformedDistribution``.
- ``fit_rbig``: greedy RBIG into the same structure (no gradients).
- ``tfp_gauss.keras``: ``GaussianizationFlowModel`` (Keras ``fit``/``evaluate``),
  ``OneCycleCosine``; ``fit_gaussianization_flow``: the one-call trainer.
- ``export_saved_model``: a TF SavedModel serving log_prob / sample /
  gaussianize / generate without tfp_gauss.
- ``tfp_gauss.vi``: ``gaussianization_surrogate``, a variational surrogate
  (closed-form sampling, path-derivative ELBO gradient) for
  ``tfp.vi.fit_surrogate_posterior`` and NeuTra.
- ``tfp_gauss.information``: entropy, total correlation, mutual information
  and KL divergence estimated through Gaussianization.
- ``tfp_gauss.sklearn``: ``GaussianizationDensity`` and
  ``GaussianizationTransformer``, scikit-learn estimators (imported on first use).
"""

from tfp_gauss import _startup
from tfp_gauss._version import __version__
from tfp_gauss._validation import TiedValuesWarning

# What `tfp_gauss.X` imports on first use when the package is not imported
# eagerly (the `tfp-gauss` command: `--help` and a bad CSV answer at once,
# and TensorFlow loads, quietly, only when a command needs it).
_LAZY = dict(bijectors="bijectors", datasets="datasets", flows="flows", math="math",
             keras="keras", vi="vi", information="information", rbig="rbig",
             export="export", sampling="sampling", gaussianization_flow="flows",
             fit_gaussianization_flow="keras", fit_rbig="rbig",
             export_saved_model="export")

if not _startup.running_cli():  # a library import: everything, as its users expect
    from tfp_gauss import bijectors, datasets, flows, math  # noqa: F401  (math: submodule only)
    from tfp_gauss.flows import gaussianization_flow
    from tfp_gauss import keras  # noqa: F401  (submodule only, see __all__)
    from tfp_gauss.keras import fit_gaussianization_flow
    from tfp_gauss.rbig import fit_rbig
    from tfp_gauss.export import export_saved_model
    from tfp_gauss import vi  # noqa: E402  (after flows: vi imports it)
    from tfp_gauss import information  # noqa: F401  (after fit_rbig, which it uses)

# `math` and `keras` stay importable as submodules (`tfp_gauss.keras`) but are
# not exported: `from tfp_gauss import *` must not shadow the stdlib `math` or
# the `keras` package.
__all__ = ["TiedValuesWarning", "__version__", "bijectors", "datasets", "export_saved_model",
           "fit_gaussianization_flow", "fit_rbig", "flows", "gaussianization_flow",
           "information", "vi"]


def __getattr__(name):
    # `tfp_gauss.sklearn` on first use: scikit-learn is imported only when asked for.
    import importlib  # noqa: PLC0415

    if name == "sklearn":
        return importlib.import_module("tfp_gauss.sklearn")
    if name in _LAZY:  # (the command's lazy import, above)
        if name != "datasets":  # (numpy and scikit-learn only)
            _startup.quiet_tensorflow()
        module = importlib.import_module(f"tfp_gauss.{_LAZY[name]}")
        value = module if _LAZY[name] == name else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfp_gauss' has no attribute {name!r}")
