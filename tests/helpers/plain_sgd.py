"""SGD built without `optax.inject_hyperparams`: its learning rate and its static
`nesterov` never reach the optimizer state, so a trial could not train with any value
but the default. A user file: `submission_path=`."""

import dataclasses

import optax

from aeff.submissions.optax_submission import OptaxSubmission


@dataclasses.dataclass(frozen=True)
class PlainSgdHParams:
    lr: float = 0.1
    nesterov: bool = False  # a static setting: it changes no array of the state


@dataclasses.dataclass(frozen=True)
class PlainSgd(OptaxSubmission):
    hparams_schema = PlainSgdHParams

    @staticmethod
    def optimizer(hparams: PlainSgdHParams) -> optax.GradientTransformation:
        return optax.sgd(hparams.lr, momentum=0.9, nesterov=hparams.nesterov)
