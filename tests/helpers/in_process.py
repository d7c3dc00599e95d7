"""Helpers for in-process trials: `python -m aeff` run in this process, a workload that
signals its own process, and a run dir's records read back."""

import contextlib
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import optax
import pandas as pd

from aeff.submissions.nesterov import Nesterov
from aeff.workloads.mnist import MnistConvWorkload, MnistWorkload


def aeff_main(monkeypatch, *args: str) -> int:
    """`python -m aeff ARGS` in this process; returns its exit status. Hydra's global state
    is cleared after it, as a new process would find it."""
    from hydra.core.global_hydra import GlobalHydra

    from aeff.cli import app

    monkeypatch.setattr(sys, "argv", ["aeff", *args])
    try:
        app.main()
        return 0
    except SystemExit as exit:
        return exit.code
    finally:
        GlobalHydra.instance().clear()


@contextlib.contextmanager
def root_logging_kept() -> Iterator[None]:
    """The root logger's handlers and level put back as they were before the block: Hydra
    adds (and closes) handlers of its own per job."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in set(root.handlers) - set(handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)


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
