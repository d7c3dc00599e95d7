"""An AeffSweeper set up in this process on the composed config, as Hydra sets it up, with
a launcher the test gives (one that writes records by hand: no trial trains)."""

import types
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
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
    made.hydra_context = types.SimpleNamespace(config_loader=ConfigLoaderImpl(search_path))
    made.launcher = launcher
    return made
