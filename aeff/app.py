"""The Hydra app: compose and check the config, then run one trial and return its result."""

import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from aeff import config
from aeff.config import ConfigError, Trial
from aeff.devices import claim_devices, default_lock_dir, visible_gpu_ids
from aeff.interrupts import TrialInterrupted, interrupts_raised
from aeff.logging.callback import discard_untrained, record_error, run_dir
from aeff.logging.files import RecordsError
from aeff.logging.metrics import MetricsCsv
from aeff.workloads.mnist_data import DataError

log = logging.getLogger(__name__)


def prepare(cfg: DictConfig, run_dir: Path | None = None) -> Trial:
    """The checked trial, with its seed drawn when `rng_seed` is null."""
    trial = config.check_trial(cfg, run_dir)
    if trial.rng_seed is None:
        trial = dataclasses.replace(trial, rng_seed=config.draw_seed())
        log.info("rng_seed=null: drew rng_seed=%d", trial.rng_seed)
    return trial


def run(
    trial: Trial,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_dir: Path | None = None,
) -> dict[str, Any]:
    from aeff.runner import run_trial  # imports JAX; kept out of config checking

    if trial.settings.compilation_cache_dir:
        enable_compilation_cache(Path(trial.settings.compilation_cache_dir).expanduser())

    checkpoints = None
    if checkpoint_dir is not None and trial.settings.checkpoint.enabled:
        from aeff.checkpoints import TrialCheckpoints

        checkpoints = TrialCheckpoints(checkpoint_dir, trial.settings.checkpoint.interval_sec)

    result = run_trial(
        trial.workload,
        trial.submission,
        trial.hparams,
        trial.rng_seed,
        stop_at_target=trial.settings.stop_at_target,
        max_steps=trial.settings.max_steps,
        eval_every_steps=trial.settings.eval_every_steps,
        steps_per_dispatch=trial.settings.steps_per_dispatch,
        on_eval=on_eval,
        checkpoints=checkpoints,
    )
    log.info(
        "%s after %d steps: goal reached %s, time to target %s, %s",
        result.status,
        result.global_step,
        result.goal_reached,
        "none" if result.time_to_target is None else f"{result.time_to_target:.2f}s",
        ", ".join(f"{k} {v:.4f}" for k, v in result.final_metrics.items()),
    )
    return dataclasses.asdict(result)


def enable_compilation_cache(directory: Path) -> None:
    """Keep every compiled program on disk, however small, for the next process."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


config.register()


@hydra.main(version_base="1.3", config_path="pkg://aeff.conf", config_name="config")
def trial_job(cfg: DictConfig) -> dict[str, Any]:
    """One Hydra job: one trial; the returned result is what sweepers see."""
    directory = run_dir()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        trial = prepare(cfg, directory)
    except ConfigError as error:
        log.error("%s", error)
        if multirun:
            record_error(directory, error)
            raise  # the sweeper records it and goes on with the other trials
        discard_untrained(directory)  # the records callback wrote nothing for it
        sys.exit(2)
    try:
        devices = trial.settings.devices
        if devices.per_trial:  # before anything starts JAX's backend
            ids = devices.ids if devices.ids is not None else visible_gpu_ids()
            slot = claim_devices(devices.per_trial, ids, default_lock_dir())
            log.info("devices.per_trial=%d: this trial uses GPUs %s", devices.per_trial, slot)
        records = None
        if trial.settings.logging.enabled:
            records = MetricsCsv.for_run(cfg, trial.rng_seed)
        with interrupts_raised():
            return run(trial, on_eval=records, checkpoint_dir=directory / "checkpoints")
    except TrialInterrupted as interrupt:
        log.warning("Trial %s; resume=true continues it from its last checkpoint.", interrupt)
        record_error(directory, interrupt, status="interrupted")
        sys.exit(interrupt.exit_code)  # stops a sweep too: the signal was meant for it
    except (ConfigError, DataError, RecordsError) as error:
        log.error("%s", error)
        if multirun:
            record_error(directory, error)
            raise
        if not discard_untrained(directory):
            record_error(directory, error)
        sys.exit(2)


def main() -> None:
    """`python -m aeff` and `aeff`: a trial, or with -m a sweep that fails if a trial did."""
    from hydra_plugins.aeff_sweeper import aeff_sweeper

    trial_job()
    if aeff_sweeper.failed_trials:
        sys.exit(1)
