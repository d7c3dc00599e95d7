"""An AeffSweeper set up in this process on the composed config, as Hydra sets it up, with
a launcher the test gives (one that writes records by hand: no trial trains)."""

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import HydraContext
from omegaconf import open_dict

from aeff.cli.app import register
from hydra_plugins.aeff_sweeper.aeff_sweeper import AeffSweeper


def sweeper_on(
    sweep_dir: Path, overrides: list[str], launcher: Any, max_batch_size: int | None = None
) -> AeffSweeper:
    """A sweeper of `overrides` (the config's, not the swept ones) into `sweep_dir`."""
    register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(sweep_dir)
    made = AeffSweeper(max_batch_size=max_batch_size)
    made.config = cfg
    search_path = create_config_search_path("pkg://aeff.conf")
    made.hydra_context = HydraContext(ConfigLoaderImpl(search_path), Callbacks(cfg))
    made.launcher = launcher
    return made


class FailuresNamed(logging.Handler):
    """The run dirs aeff's sweeper names as failed or not run, read from its logger (Hydra's
    logging config closes pytest's console capture): one list per sweep that named any."""

    LINE = re.compile(r"\d+ of \d+ planned trials failed or did not run: (.*)\. Rerun them")

    def __init__(self) -> None:
        super().__init__()
        self.sweeps: list[list[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if said := self.LINE.match(record.getMessage()):
            self.sweeps.append(said.group(1).split(", "))


@contextlib.contextmanager
def failures_named() -> Iterator[FailuresNamed]:
    handler = FailuresNamed()
    logger = logging.getLogger(AeffSweeper.__module__)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
