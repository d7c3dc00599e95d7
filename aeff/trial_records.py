"""What a trial's records hold, as `aeff.trial` hands them to its run dir's owner
(`aeff.records.run_dir.RunDir`, which writes them): `metadata.json` as the trial begins
(`start_record`), each row with its config and system sample (`row_writer`), the final
record (`end_records`), and the record of a trial that failed before it began
(`failure_record`).
"""

import dataclasses
import datetime
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from aeff import config, errors, slurm
from aeff.config import Trial
from aeff.records import environment, system
from aeff.records.run_dir import RunDir
from aeff.records.secrets import redact

log = logging.getLogger(__name__)


def start_record(
    trial: Trial, rng_seed: int, prepared: Any, labels: Mapping[str, Any], cwd: Path
) -> dict[str, Any]:
    """metadata.json as the trial begins: the machine, the code, the config, the seed."""
    return {
        "datetime": datetime.datetime.now().astimezone().isoformat(),
        **environment.facts(cwd, trial.settings.logging.record_hostname),
        **environment.jax_facts(),
        **slurm.job_facts(),
        **labels,
        **trial.metadata,
        "identity": trial.identity,
        "rng_seed": rng_seed,
        "rerun_command": environment.rerun_command(
            labels.get("hydra.overrides", []), rng_seed, labels.get("hydra.config_options", [])
        ),
        "steps_per_dispatch": prepared.steps_per_dispatch,
        "compile_time": prepared.compile_time,
    }


def end_records(owner: RunDir, result: Any, keep_checkpoints: bool) -> None:
    """The final record, whole (a signal waits for it); then the checkpoints go."""
    facts = dataclasses.asdict(result)
    owner.end(
        facts.pop("status"),
        **{k: v for k, v in facts.items() if k != "final_metrics"},
        **{f"final.{k}": v for k, v in result.final_metrics.items()},
    )
    if not keep_checkpoints:
        owner.drop_checkpoints()  # a finished trial is never resumed
    log.info(
        "%s after %d steps: goal reached %s, time to target %s, %s",
        result.status,
        result.global_step,
        result.goal_reached,
        time_to_target_text(result),
        ", ".join(f"{k} {v:.4f}" for k, v in result.final_metrics.items()),
    )


def time_to_target_text(result: Any) -> str:
    """E.g. "0.68s at step 4,384 (resolution 4.8%)": the row before was 4.8% earlier."""
    if result.time_to_target is None:
        return "none"
    text = f"{result.time_to_target:.2f}s"
    if result.steps_to_target is not None:  # None: resumed from an older aeff's checkpoint
        text += f" at step {result.steps_to_target:,}"
    if result.time_to_target_resolution is not None:
        text += f" (resolution {result.time_to_target_resolution:.1%})"
    return text


def row_writer(
    trial: Trial,
    owner: RunDir,
    rng_seed: int,
    labels: Mapping[str, Any],
    columns: Mapping[str, Any] | None = None,
) -> Callable[[Mapping[str, Any]], None]:
    """What hands a trial's rows to its run dir's owner, with the config, `columns` (a
    group's id and size) and a system sample."""
    static = {"framework": "jax", "run_idx": labels.get("hydra.job.num", 0)}
    static.update({"rng_seed": rng_seed, **(columns or {}), **trial.record})
    system_metrics = trial.settings.logging.system_metrics

    def on_eval(row: Mapping[str, Any]) -> None:
        sample = {**system.sample(), **system.device_memory()} if system_metrics else {}
        owner.append({**static, **row, **sample})

    return on_eval


def failure_record(
    error: BaseException, labels: Mapping[str, Any], cfg: DictConfig
) -> dict[str, Any]:
    """metadata.json of a trial that failed before it began: the error and what is known."""
    try:
        record = config.check_trial(cfg).metadata
    except Exception:  # the config itself is what failed
        record = {}
    return {
        "datetime": datetime.datetime.now().astimezone().isoformat(),
        **labels,
        **record,
        **error_facts(error),
    }


def error_facts(error: BaseException) -> dict[str, Any]:
    import traceback

    facts = {"error_type": type(error).__name__, "error_message": redact(str(error))}
    if not isinstance(error, errors.AeffError | errors.TrialInterrupted):
        facts["traceback"] = redact("".join(traceback.format_exception(error)))
    return facts
