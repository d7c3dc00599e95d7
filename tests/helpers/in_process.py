"""Helpers for in-process trials: a workload that signals its own process, and a run
dir's records read back."""

import dataclasses
import json
import signal
from pathlib import Path

import optax
import pandas as pd

from aeff.submissions.nesterov import Nesterov
from aeff.workloads.mnist import MnistConvWorkload, MnistWorkload


class Signalled:
    """A workload that sends this process SIGTERM once, at evaluation number
    `SIGNAL["at_eval"]`."""

    def has_reached_goal(self, metrics):
        SIGNAL["evals"] += 1
        if SIGNAL["evals"] == SIGNAL["at_eval"]:
            signal.raise_signal(signal.SIGTERM)
        return super().has_reached_goal(metrics)


@dataclasses.dataclass(frozen=True)
class SignalledMnist(Signalled, MnistWorkload):
    pass


@dataclasses.dataclass(frozen=True)
class SignalledConv(Signalled, MnistConvWorkload):
    pass


SIGNAL = {"evals": 0, "at_eval": None}


def rows(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv")


def metadata(run_dir: Path) -> dict:
    return json.loads((run_dir / "metadata.json").read_text())


@dataclasses.dataclass(frozen=True)
class MomentumOrNot(Nesterov):
    """SGD whose state has a momentum trace only when `momentum` is not 0."""

    @staticmethod
    def optimizer(hparams):
        return optax.inject_hyperparams(optax.sgd)(
            learning_rate=hparams.lr, momentum=hparams.momentum or None
        )
