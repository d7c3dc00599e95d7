"""Adam with no bounds on its hyperparameters, so that a trial can diverge for real
(lr=1e37 overflows the logits at the second step). A user file: `submission_path=`."""

import dataclasses

from aeff.submissions.adam import Adam, AdamHParams


@dataclasses.dataclass(frozen=True)
class WildAdamHParams(AdamHParams):
    def __post_init__(self) -> None:
        pass  # any value, the absurd ones included


@dataclasses.dataclass(frozen=True)
class WildAdam(Adam):
    hparams_schema = WildAdamHParams
