"""Adam, with AlgoPerf's `one_minus_beta_1` parametrisation."""

import dataclasses

import optax

from aeff.schema import require_fraction, require_learning_rate, require_positive_finite
from aeff.submissions.optax_submission import OptaxSubmission


@dataclasses.dataclass(frozen=True)
class AdamHParams:
    lr: float = 1.2e-3
    one_minus_beta_1: float = 0.1
    beta_2: float = 0.999
    epsilon: float = 1e-8

    def __post_init__(self) -> None:
        require_learning_rate("lr", self.lr)
        require_positive_finite("epsilon", self.epsilon)
        require_fraction("beta_2", self.beta_2)
        require_positive_finite("one_minus_beta_1", self.one_minus_beta_1)
        require_fraction("one_minus_beta_1", self.one_minus_beta_1)


@dataclasses.dataclass(frozen=True)
class Adam(OptaxSubmission):
    hparams_schema = AdamHParams

    @staticmethod
    def optimizer(hparams: AdamHParams) -> optax.GradientTransformation:
        return optax.inject_hyperparams(optax.adam)(
            learning_rate=hparams.lr,
            b1=1.0 - hparams.one_minus_beta_1,
            b2=hparams.beta_2,
            eps=hparams.epsilon,
        )
