"""The Hydra app (`python -m aeff`, `aeff`): a thin adapter around `aeff.trial`.

It reads Hydra's state once per job (run dir, overrides, job number) and passes it
on; it decides how the process ends, with the statuses of `aeff.errors`.
"""

import dataclasses
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from aeff import errors
from aeff.config import TrialConfig, unique_suffix
from aeff.errors import AeffError, TrialInterrupted
from aeff.logging.packages import redact
from aeff.logging.run_dir import RunDir
from aeff.trial import failure_record, train_and_evaluate
from hydra_plugins.aeff_sweeper import aeff_sweeper

log = logging.getLogger(__name__)


def register() -> None:
    """Make the schema, resolver and sweeper known to Hydra; call before composing."""
    # Hydra's plugin scan cannot list modules of an editable install; register directly.
    Plugins.instance().register(aeff_sweeper.AeffSweeper)
    ConfigStore.instance().store(name="aeff_schema", node=TrialConfig)
    OmegaConf.register_new_resolver(
        "aeff.unique_suffix", unique_suffix, use_cache=True, replace=True
    )


def compose_config(overrides: list[str]) -> DictConfig:
    """The config `python -m aeff OVERRIDES` would run, for scripts and benchmarks."""
    from hydra import compose, initialize_config_module

    register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


class RunDirCallback(Callback):
    """Claims a single run's dir before Hydra writes into it, so a second process aimed
    at a live trial's dir is refused with the owner's files untouched."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_error(lambda: RunDir(Path(config.hydra.run.dir)).claim())

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).absolute()
        exit_on_error(lambda: writable_or_raise(sweep_dir))


def writable_or_raise(directory: Path) -> None:
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        raise errors.RecordsError(directory, PermissionError(13, f"{existing} is not writable"))


def exit_on_error(step: Any) -> None:
    """Run `step`; an AeffError ends the process with its one line (a callback's
    exceptions would only become Hydra warnings)."""
    try:
        step()
    except AeffError as error:
        print(f"aeff: {error}", file=sys.stderr)
        sys.exit(errors.exit_status(error))


def job_labels(hydra_cfg: DictConfig) -> dict[str, Any]:
    """The job's place in Hydra's run, for metadata.json."""
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    return {
        "log_dir": hydra_cfg.runtime.output_dir,
        "command": redact(typed_command()),
        "hydra.overrides": [redact(o) for o in hydra_cfg.overrides.task],
        "hydra.job.num": OmegaConf.select(hydra_cfg.job, "num", default=0) if in_sweep else 0,
        "sweep_dir": str(Path(hydra_cfg.sweep.dir).absolute()) if in_sweep else "",
    }


@hydra.main(version_base="1.3", config_path="pkg://aeff.conf", config_name="config")
def trial_job(cfg: DictConfig) -> dict[str, Any]:
    """One Hydra job: one trial; the returned result is what sweepers see."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    labels = job_labels(hydra_cfg)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        result = train_and_evaluate(cfg, run_dir, labels, Path(hydra_cfg.runtime.cwd))
    except Exception as error:
        bad_input = isinstance(error, AeffError)
        if in_sweep or not bad_input:  # every trial of a sweep has a record, so has a crash
            RunDir(run_dir).record_failure(failure_record(error, labels, cfg))
        if not bad_input:
            raise  # Hydra prints the traceback; in a sweep the sweeper goes on
        log.error("%s", error)
        if in_sweep:
            raise
        RunDir(run_dir).discard_if_unused()  # a bad command line leaves no files
        sys.exit(errors.exit_status(error))
    except TrialInterrupted as interrupt:
        if not in_sweep:
            log.warning(
                "Trial %s. %s", interrupt, resume_hint(interrupt, f"hydra.run.dir={run_dir}")
            )
        raise
    log.info("Records of this trial: %s", run_dir)
    return dataclasses.asdict(result)


def typed_command(*extra: str) -> str:
    """The command line as typed: `aeff ...` (the console script) or `python -m aeff ...`."""
    program = "aeff" if Path(sys.argv[0]).name == "aeff" else "python -m aeff"
    return " ".join([program, shlex.join([*sys.argv[1:], *extra])])


def resume_hint(interrupt: TrialInterrupted, dir_override: str) -> str:
    command = typed_command("resume=true", dir_override)
    if interrupt.checkpoint_step is None:
        how = "No checkpoint was saved; this starts it again with its seed"
    else:
        how = f"A checkpoint of step {interrupt.checkpoint_step} was saved; this continues it"
    return f"{how}: {redact(command)}"


def main() -> None:
    """`python -m aeff` and `aeff`: a trial, or with -m a sweep that fails if a trial did."""
    register()
    try:
        trial_job()
    except TrialInterrupted as interrupt:  # Hydra passes BaseExceptions on
        sys.exit(errors.exit_status(interrupt))
    if aeff_sweeper.failed_trials:
        sys.exit(errors.EXIT_FAILED_TRIALS)
