"""Composite-tensor registration for tfp_gauss bijectors.

TFP's ``AutoCompositeTensorBijector`` registers every subclass's ``TypeSpec``
under ``tfp.bijectors.<ClassName>``; a subclass whose name equals one of TFP's
own silently replaces TFP's spec. Ours register under ``tfp_gauss.bijectors``.
"""

import tensorflow_probability as tfp

tfb = tfp.bijectors


class CompositeBijector(tfb.Bijector, tfp.experimental.AutoCompositeTensor):
    """Base class: a ``tfb.Bijector`` that is also a ``CompositeTensor``."""


def register(cls):
    """Class decorator generating and registering the bijector's TypeSpec."""
    return tfp.experimental.auto_composite_tensor(
        cls,
        omit_kwargs=("parameters",),
        non_identifying_kwargs=("name",),
        module_name="tfp_gauss.bijectors",
    )
