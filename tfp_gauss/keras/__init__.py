"""Keras 3 face of tfp_gauss: the trainable model, the schedule, the trainer."""

from tfp_gauss.keras._fit import (
    AUTO_SCALE_FLOOR,
    COUPLING_MIN_ROWS,
    PEAK_LEARNING_RATE,
    SCALE_FLOOR_MAX_ROWS,
    default_architecture,
    default_steps,
    fit_gaussianization_flow,
    keeps_scale_floor,
    scale_floor_values,
)
from tfp_gauss.keras._model import GaussianizationFlowModel
from tfp_gauss.keras._schedules import (
    LearningRateLogger,
    OneCycleCosine,
    OneCycleCosineCallback,
    one_cycle_cosine,
)

__all__ = ["GaussianizationFlowModel", "LearningRateLogger", "OneCycleCosine",
           "OneCycleCosineCallback", "AUTO_SCALE_FLOOR", "COUPLING_MIN_ROWS",
           "PEAK_LEARNING_RATE", "SCALE_FLOOR_MAX_ROWS", "default_architecture",
           "default_steps", "fit_gaussianization_flow", "keeps_scale_floor",
           "one_cycle_cosine", "scale_floor_values"]
