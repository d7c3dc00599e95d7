"""Optuna's sweeper (`hydra/sweeper=optuna`) as aeff runs it, and the report of a sweep by a
sweeper other than aeff's.

Hydra's Optuna sweeper stops a sweep at its first failed trial (`max_failure_rate` 0), and
a signal or its own error leaves no report. `AeffOptunaSweeper` is that sweeper with aeff's
habits: the sweep's config is checked before any trial trains (the base config, the
`interval()`s), a failed trial is one Optuna is told failed and the sweep goes on
(`max_failure_rate` 1 unless set), and however the sweep ends its report is written and one
line says how. `register` makes it the `hydra/sweeper=optuna` option where the optuna
extra is installed.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from aeff import config as aeff_config
from aeff import interrupts
from aeff.errors import AeffError, ConfigError, SweepFailed, TrialInterrupted
from aeff.records import sweep_dir as sweep_record
from aeff.records.secrets import redact
from aeff.sweeps.report import write_and_print_report

try:  # the optuna extra
    from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:
    OptunaSweeper = None

log = logging.getLogger(__name__)


def write_report(sweep_dir: Path, objective: str | None, finished: bool = True) -> dict:
    """The sweep's report files and brief report (its sweep.json returned), and, once it
    finished, a warning where the objective ranked nothing: every trial missed the target,
    so each one's time to target is the budget."""
    sweep = write_and_print_report(sweep_dir)
    ranked = sweep["num_trials"] - len(sweep["failed"])
    if finished and objective == "time_to_target" and ranked and not sweep["num_reached_target"]:
        log.warning(
            "No trial reached the target: each one's objective (time_to_target) is the "
            "budget, workload.max_allowed_runtime_sec, so the sweeper's best trial is any one "
            "of them. Lower workload.target_value, raise the budget, or optimise a final "
            "metric (objective=final.validation.loss)."
        )
    return sweep


def end_with_report(sweep_dir: Path, objective: str | None) -> None:
    """The report of a sweep that finished (`write_report`); a failed trial ends it in
    SweepFailed, which the app exits 1 with."""
    if failed := write_report(sweep_dir, objective)["failed"]:
        raise SweepFailed(failed)


def check_before_training(cfg: DictConfig, arguments: list[str]) -> None:
    """What would fail every trial, refused in one line before the first trains: no
    `objective=`, the config without the swept values (`objective=` among it), and each
    `interval()` of `hydra.sweeper.params` and the command line (bounds, a log range
    through 0, a tag)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    from aeff import search

    if not cfg.get("objective"):
        raise ConfigError(
            "hydra/sweeper=optuna optimises one number a trial: set objective=time_to_target "
            "or objective=final.<metric> (hparams_search=mnist_optuna sets it)."
        )
    aeff_config.check_trial(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    texts = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    for text in texts:
        try:
            (override,) = OverridesParser.create().parse_overrides([text])
        except Exception as error:  # Hydra's parse error: its first line says where
            raise ConfigError(f"{text}: {str(error).splitlines()[0]}") from None
        if isinstance(sweep := override.value(), IntervalSweep):
            search.interval(override.get_key_element(), sweep.start, sweep.end, sweep.tags)


if OptunaSweeper is not None:

    @dataclass
    class AeffOptunaSweeperConf(OptunaSweeperConf):
        _target_: str = "hydra_plugins.aeff_sweeper.optuna_sweeper.AeffOptunaSweeper"
        # A failed trial is Optuna's FAIL and the sweep goes on, as in aeff's sweeps.
        max_failure_rate: float = 1.0

    class AeffOptunaSweeper(OptunaSweeper):
        def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
            self.config = config
            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

        def sweep(self, arguments: list[str]) -> None:
            sweep_dir = Path(self.config.hydra.sweep.dir).absolute()
            objective = self.config.get("objective")
            try:
                check_before_training(self.config, arguments)
            except AeffError as error:
                log.error("%s", error)
                raise SweepFailed([], error) from None

            sweep_dir.mkdir(parents=True, exist_ok=True)  # `report DIR` knows it by its config
            sweep_record.write_sweep_config(sweep_dir, redact(OmegaConf.to_yaml(self.config)))

            def stopped(signum: int) -> str:  # a signal while no trial trains
                write_report(sweep_dir, objective, finished=False)
                return "the sweep's report is written."

            interrupts.forget_received()
            try:
                with interrupts.sweeping(stopped):
                    super().sweep(arguments)
            except TrialInterrupted as interrupt:
                write_report(sweep_dir, objective, finished=False)
                log.warning("Sweep %s; its report is written.", interrupt)
                raise
            except Exception as error:  # Optuna's: no trial completed, too many failed...
                failed = write_report(sweep_dir, objective, finished=False)["failed"]
                lines = str(error).strip().splitlines()
                log.debug("Optuna's error:", exc_info=True)  # shown with hydra.verbose
                log.error(
                    "Optuna's sweeper stopped: %s: %s",
                    type(error).__name__,
                    lines[0] if lines else "",
                )
                raise SweepFailed(failed) from None  # exit 1, whatever Optuna raised


def register() -> None:
    """`hydra/sweeper=optuna` runs `AeffOptunaSweeper` (after Hydra's plugin scan, which
    stores Optuna's own option)."""
    if OptunaSweeper is not None:
        from hydra.core.plugins import Plugins

        Plugins.instance().register(AeffOptunaSweeper)
        ConfigStore.instance().store(
            group="hydra/sweeper", name="optuna", node=AeffOptunaSweeperConf, provider="aeff"
        )
