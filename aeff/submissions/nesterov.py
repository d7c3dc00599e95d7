"""SGD with Nesterov momentum."""

import dataclasses

import optax

from aeff.schema import require_fraction, require_learning_rate
from aeff.submissions.optax_submission import OptaxSubmission


@dataclasses.dataclass(frozen=True)
class NesterovHParams:
    lr: float = 0.1
    momentum: float = 0.9

    def __post_init__(self) -> None:
        require_learning_rate("lr", self.lr)
        require_fraction("momentum", self.momentum)


@dataclasses.dataclass(frozen=True)
class Nesterov(OptaxSubmission):
    hparams_schema = NesterovHParams

    @staticmethod
    def optimizer(hparams: NesterovHParams) -> optax.GradientTransformation:
        return optax.inject_hyperparams(optax.sgd)(
            learning_rate=hparams.lr, momentum=hparams.momentum, nesterov=True
        )
