"""`algoperf.spec` for AlgoPerf's JAX submissions where AlgoPerf is not installed.

The names a submission uses from AlgoPerf's `spec.py` (its enums, its type aliases, its
workload class), bound to aeff's: the workload a submission receives is aeff's, which
implements AlgoPerf's workload API (`aeff.spec.Workload`).
"""

from collections.abc import Callable
from typing import Any

from aeff.spec import (
    ForwardPassMode,
    LossType,
    ParameterType,
    ShapeTuple,
    Workload,
)

__all__ = [
    "ForwardPassMode",
    "Hyperparameters",
    "LossType",
    "ModelAuxiliaryState",
    "ModelInitState",
    "OptimizerState",
    "ParameterContainer",
    "ParameterKey",
    "ParameterShapeTree",
    "ParameterType",
    "ParameterTypeTree",
    "RandomState",
    "Shape",
    "ShapeTuple",
    "Steps",
    "Tensor",
    "Timing",
    "TrainingCompleteError",
    "UpdateReturn",
    "Workload",
]

# Type aliases, for the annotations of submission files.
Tensor = Any
Shape = tuple[int, ...] | ShapeTuple
ParameterKey = str
ParameterShapeTree = dict[str, Any]
ParameterContainer = dict[str, Any]
ParameterTypeTree = dict[str, Any]
RandomState = Any
OptimizerState = dict[str, Any] | tuple[Any, Any]
Hyperparameters = Any
Timing = int
Steps = int
ModelAuxiliaryState = Any
ModelInitState = tuple[ParameterContainer, ModelAuxiliaryState]
UpdateReturn = tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]
InitOptimizerFn = Callable[..., OptimizerState]
UpdateParamsFn = Callable[..., UpdateReturn]


class TrainingCompleteError(Exception):
    """Raised by a submission that has finished training before its budget."""
