"""The Hydra app: compose and check the config, then run one trial and return its result."""

import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from aeff import config
from aeff.config import ConfigError
from aeff.devices import claim_devices, default_lock_dir, visible_gpu_ids
from aeff.logging.callback import METADATA, record_error, run_dir
from aeff.logging.metrics import MetricsCsv
from aeff.spec import Submission, Workload
from aeff.workloads.mnist_data import DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Trial:
    workload: Workload
    submission: Submission
    hparams: Any
    settings: config.TrialConfig
    rng_seed: int  # settings.rng_seed, or drawn when that is null


def prepare(cfg: DictConfig) -> Trial:
    """Every check that needs no data and no device, so bad input fails in a second."""
    settings = config.validate_trial(cfg)
    workload = config.build(settings.workload, "workload")
    submission = config.build(
        {**settings.submission, "batch_size": settings.batch_size}, "submission"
    )
    hparams = config.structured(submission.hparams_schema, settings.hparams, "hparams")
    seed = settings.rng_seed
    if seed is None:
        seed = config.draw_seed()
        log.info("rng_seed=null: drew rng_seed=%d", seed)
    return Trial(workload, submission, hparams, settings, seed)


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
        from aeff.checkpoints import TrialCheckpoints, has_checkpoint

        if has_checkpoint(checkpoint_dir) and not trial.settings.resume:
            raise ConfigError(
                f"{checkpoint_dir} holds a checkpoint of an earlier trial: add resume=true to "
                "continue it, or choose another hydra.run.dir."
            )
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


class TrialInterrupted(Exception):
    """SIGINT or SIGTERM stopped the trial; its records say `interrupted`."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


@contextlib.contextmanager
def interrupts_raised() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into TrialInterrupted, which Hydra's callbacks see."""

    def handler(signum: int, frame: Any) -> None:
        raise TrialInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


config.register()


@hydra.main(version_base="1.3", config_path="pkg://aeff.conf", config_name="config")
def trial_job(cfg: DictConfig) -> dict[str, Any]:
    """One Hydra job: one trial; the returned result is what sweepers see."""
    try:
        trial = prepare(cfg)
        devices = trial.settings.devices
        if devices.per_trial:  # before anything starts JAX's backend
            ids = devices.ids if devices.ids is not None else visible_gpu_ids()
            slot = claim_devices(devices.per_trial, ids, default_lock_dir())
            log.info("devices.per_trial=%d: this trial uses GPUs %s", devices.per_trial, slot)
        records = None
        if trial.settings.logging.enabled:
            records = MetricsCsv.for_run(cfg, trial.rng_seed)
        with interrupts_raised():
            return run(trial, on_eval=records, checkpoint_dir=run_dir() / "checkpoints")
    except TrialInterrupted as interrupt:
        log.warning("Trial %s; resume=true continues it from its last checkpoint.", interrupt)
        if (run_dir() / METADATA).exists():
            record_error(run_dir(), interrupt, status="interrupted")
        sys.exit(interrupt.exit_code)  # stops a sweep too: the signal was meant for it
    except (ConfigError, DataError) as error:
        log.error("%s", error)
        if (run_dir() / METADATA).exists():
            record_error(run_dir(), error)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records it and goes on with the other trials
        sys.exit(2)


def main() -> None:
    """`python -m aeff` and `aeff`: a trial, or with -m a sweep that fails if a trial did."""
    from hydra_plugins.aeff_sweeper import aeff_sweeper

    trial_job()
    if aeff_sweeper.failed_trials:
        sys.exit(1)
