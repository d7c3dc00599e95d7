"""The Hydra app: compose and check the config, then run one trial and return its result."""

import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from aeff import config
from aeff.config import ConfigError
from aeff.spec import Submission, Workload
from aeff.workloads.mnist_data import DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Trial:
    workload: Workload
    submission: Submission
    hparams: Any
    settings: config.TrialConfig


def prepare(cfg: DictConfig) -> Trial:
    """Every check that needs no data and no device, so bad input fails in a second."""
    settings = config.validate_trial(cfg)
    workload = config.build(settings.workload, "workload")
    submission = config.build(
        {**settings.submission, "batch_size": settings.batch_size}, "submission"
    )
    hparams = config.structured(submission.hparams_schema, settings.hparams, "hparams")
    return Trial(workload, submission, hparams, settings)


def run(trial: Trial, on_eval: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    from aeff.runner import run_trial  # imports JAX; kept out of config checking

    seed = trial.settings.rng_seed
    if seed is None:
        seed = config.draw_seed()
        log.info("rng_seed=null: drew rng_seed=%d", seed)
    result = run_trial(
        trial.workload,
        trial.submission,
        trial.hparams,
        seed,
        stop_at_target=trial.settings.stop_at_target,
        max_steps=trial.settings.max_steps,
        eval_every_steps=trial.settings.eval_every_steps,
        on_eval=on_eval,
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


config.register()


@hydra.main(version_base="1.3", config_path="pkg://aeff.conf", config_name="config")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Run one trial; the returned result is what sweepers see."""
    try:
        return run(prepare(cfg))
    except (ConfigError, DataError) as error:
        log.error("%s", error)
        sys.exit(2)
