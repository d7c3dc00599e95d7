"""A trial as a library call: a config and a run dir in; a result and a record out.

    result = train_and_evaluate(cfg, run_dir)

`cfg` is a composed config (Hydra's, or `aeff.app.compose_config(overrides)`). The
run dir's owner (aeff.logging.run_dir) locks it and writes every record. A trial
that fails before its records begin leaves a `failed` record (a crash, or bad input
in a sweep) or nothing (bad input in a single run); every ending after that is
recorded, exceptions and signals included. Nothing here reads Hydra's global state.
"""

import dataclasses
import datetime
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aeff import config, errors
from aeff.config import Trial
from aeff.devices import claim_devices, default_lock_dir, visible_gpu_ids
from aeff.interrupts import exiting_on_signals, interrupts_held, interrupts_raised
from aeff.logging import environment, system
from aeff.logging.packages import packages_text
from aeff.logging.run_dir import Attempt, RunDir
from aeff.logging.secrets import redact

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrialJob:
    """A trial as `train_and_evaluate` takes it, from a Hydra job (`aeff.hydra_job`)."""

    cfg: DictConfig
    run_dir: Path
    labels: dict[str, Any]
    cwd: Path
    hydra_files: Mapping[str, str] | None = None


def train_and_evaluate(
    cfg: DictConfig,
    run_dir: Path,
    labels: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    *,
    hydra_files: Mapping[str, str] | None = None,
    record_bad_input: bool = False,
) -> Any:
    """Run one trial in `run_dir`; returns its `runner.TrialResult`.

    `labels` are extra metadata.json keys (a launcher's job number, the command);
    `cwd` is where the command ran, for its git state; `hydra_files` are written into
    `.hydra/` once the trial is accepted. A trial that fails before it begins leaves a
    `failed` record when it crashed or `record_bad_input` (a sweep reports every trial),
    else nothing (a new dir is removed). Raises AeffError for bad input,
    TrialInterrupted for a signal and TrialExited for a sys.exit, after recording them.
    """
    enabled = OmegaConf.select(
        cfg, "logging.enabled", default=True, throw_on_resolution_failure=False
    )
    owner = RunDir(run_dir, write_records=enabled is not False)
    owner.claim()  # RunDirBusy: another process owns it, and nothing is written
    try:
        with interrupts_raised():
            return _run(cfg, owner, {**(labels or {})}, cwd or Path.cwd(), hydra_files)
    except BaseException as caught:
        error = errors.crash_of(caught)
        if owner.status is None:  # it never began
            record_or_discard(owner, error, cfg, labels or {}, record_bad_input)
        if error is not caught:
            raise error from caught
        raise
    finally:
        owner.release()  # the next trial of a sweep in this process may take it over


def record_or_discard(
    owner: RunDir, error: BaseException, cfg: DictConfig, labels: Mapping[str, Any], bad: bool
) -> None:
    bad_input = isinstance(error, errors.AeffError)
    if bad or not bad_input:  # a crash, a signal, or bad input in a sweep
        owner.record_failure(failure_record(error, labels, cfg), errors.record_status(error))
    else:
        owner.discard_if_unused()  # a bad command line leaves no files


def _run(
    cfg: DictConfig,
    owner: RunDir,
    labels: dict[str, Any],
    cwd: Path,
    hydra_files: Mapping[str, str] | None,
) -> Any:
    """Check, prepare, begin the records, train, end them."""
    trial = checked(cfg, labels)
    attempt = accepted(owner, trial)

    def record_signal(signum: int) -> None:  # before its records began
        interrupted = errors.TrialInterrupted(signum)
        owner.record_failure(failure_record(interrupted, labels, cfg), "interrupted")

    prepared = _prepare(trial, attempt, record_signal)
    try:
        with interrupts_held() as held:  # the records begin whole, or not at all
            record = start_record(trial, prepared, labels, cwd)
            begin_records(owner, attempt, trial, cfg, record, hydra_files)
        if held:
            raise errors.TrialInterrupted(held[0])
        result = _train(trial, owner, prepared, attempt, labels)
    except BaseException as error:
        if owner.status != "running":
            raise  # it never began: train_and_evaluate records it
        record_ending(owner, errors.crash_of(error))
        raise
    end_records(owner, result, keep_checkpoints=trial.settings.checkpoint.keep)
    return result


def checked(cfg: DictConfig, labels: Mapping[str, Any]) -> Trial:
    """`config.check_trial`, and in a sweep, user files that are the ones it planned."""
    trial = config.check_trial(cfg)
    if sweep_dir := labels.get("sweep_dir"):
        refuse_files_edited_since_planned(trial, Path(sweep_dir))
    return trial


def refuse_files_edited_since_planned(trial: Trial, sweep_dir: Path) -> None:
    """A process that first read a user file after the sweep was planned (a parallel
    launcher's worker) may have read an edit: its trial would run, and record, other code
    or another space than the sweep's other trials."""
    from aeff import results  # pandas: only in a sweep's processes

    planned = results.planned_files(sweep_dir) or {}
    for key in config.USER_FILES:
        path, digest = trial.record.get(key), trial.record.get(f"{key}_sha256")
        if path in planned and planned[path] != digest:
            raise errors.ConfigError(
                f"{key}={path} changed since the sweep in {sweep_dir} was planned (sha256 "
                f"{planned[path][:12]}, now {digest[:12]}): restore the planned file, then "
                "resume the sweep."
            )


def accepted(owner: RunDir, trial: Trial) -> Attempt:
    """The attempt the trial makes in `owner`'s dir (`RunDir.attempt`)."""
    settings = trial.settings
    return owner.attempt(
        trial.identity,
        settings.rng_seed,
        settings.resume,
        settings.checkpoint.enabled,
        labels=trial.labels,
    )


def begin_records(
    owner: RunDir,
    attempt: Attempt,
    trial: Trial,
    cfg: DictConfig,
    record: dict[str, Any],
    hydra_files: Mapping[str, str] | None,
) -> None:
    """metadata.json (`running`), the resolved config, packages.txt, `.hydra/`, user files."""
    settings = trial.settings
    owner.begin(
        attempt,
        record,
        redact(OmegaConf.to_yaml(cfg, resolve=True)),
        packages_text(settings.logging.os_packages) if settings.logging.packages else None,
        hydra_files,
        trial.files,
    )


def record_ending(owner: RunDir, error: BaseException) -> None:
    """The status and error of a trial that an exception or a signal ended."""
    owner.end(errors.record_status(error), **_error_facts(error))
    if isinstance(error, errors.TrialInterrupted):
        error.recorded = True


def _prepare(trial: Trial, attempt: Attempt, record_signal: Callable[[int], None]) -> Any:
    """The seed (recorded, given or drawn), the devices, data and compiled programs."""
    settings = trial.settings
    seed = seed_of(attempt)
    set_up_devices(settings)
    from aeff import runner  # imports JAX; kept out of config checking

    with exiting_on_signals("its records began", record_signal):  # data, compiling: C++
        prepared = runner.prepare(
            trial.workload,
            trial.submission,
            trial.hparams,
            seed,
            steps_per_dispatch=settings.steps_per_dispatch,
            max_steps=settings.max_steps,
            eval_every_steps=settings.eval_every_steps,
        )
    system.prime()
    return prepared


def seed_of(attempt: Attempt) -> int:
    """The recorded or given seed, or one drawn now (and logged)."""
    if attempt.rng_seed is not None:
        return attempt.rng_seed
    seed = config.draw_seed()
    log.info("rng_seed=null: drew rng_seed=%d", seed)
    return seed


def set_up_devices(settings: config.TrialConfig) -> None:
    """Before JAX starts: memory on demand, this trial's GPUs, the compilation cache."""
    # A trial takes the GPU memory it needs, not three quarters of the card (JAX's
    # default), so that several trials can share one; set before JAX starts.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    _claim_gpus(settings)
    if settings.compilation_cache_dir:
        enable_compilation_cache(Path(settings.compilation_cache_dir).expanduser())


def start_record(
    trial: Trial, prepared: Any, labels: Mapping[str, Any], cwd: Path
) -> dict[str, Any]:
    """metadata.json as the trial begins: the machine, the code, the config, the seed."""
    return {
        "datetime": datetime.datetime.now().astimezone().isoformat(),
        **environment.facts(cwd, trial.settings.logging.record_hostname),
        **environment.jax_facts(),
        **labels,
        **trial.record,
        "identity": trial.identity,
        "rng_seed": prepared.rng_seed,
        "steps_per_dispatch": prepared.steps_per_dispatch,
        "compile_time": prepared.compile_time,
    }


def end_records(owner: RunDir, result: Any, keep_checkpoints: bool) -> None:
    """The final record, whole (a signal waits for it); then the checkpoints go."""
    facts = dataclasses.asdict(result)
    with interrupts_held() as held:
        owner.end(
            facts.pop("status"),
            **{k: v for k, v in facts.items() if k != "final_metrics"},
            **{f"final.{k}": v for k, v in result.final_metrics.items()},
        )
    if held:
        log.warning("A signal came while the final record was written; the trial had ended.")
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


def _train(trial: Trial, owner: RunDir, prepared: Any, attempt: Attempt, labels: dict) -> Any:
    """The loop, with rows to the owner and checkpoints in its dir."""
    from aeff import runner

    settings = trial.settings
    checkpoints = trial_checkpoints(settings, owner)
    return runner.TrialLoop(
        prepared,
        settings.stop_at_target,
        settings.max_steps,
        settings.eval_every_steps,
        row_writer(trial, owner, prepared.rng_seed, labels),
        checkpoints,
        resume_from=attempt.checkpoint_step,
        target_resolution=settings.target_resolution,
    ).run()


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


def trial_checkpoints(settings: config.TrialConfig, owner: RunDir) -> Any:
    """The trial's checkpoints in its run dir, or None with checkpoint.enabled=false."""
    if not settings.checkpoint.enabled:
        return None
    from aeff.checkpoints import TrialCheckpoints

    return TrialCheckpoints(owner.checkpoints, settings.checkpoint.interval_sec)


def failure_record(
    error: BaseException, labels: Mapping[str, Any], cfg: DictConfig
) -> dict[str, Any]:
    """metadata.json of a trial that failed before it began: the error and what is known."""
    try:
        record = config.check_trial(cfg).record
    except Exception:  # the config itself is what failed
        record = {}
    return {
        "datetime": datetime.datetime.now().astimezone().isoformat(),
        **labels,
        **record,
        **_error_facts(error),
    }


def _error_facts(error: BaseException) -> dict[str, Any]:
    import traceback

    facts = {"error_type": type(error).__name__, "error_message": redact(str(error))}
    if not isinstance(error, errors.AeffError | errors.TrialInterrupted):
        facts["traceback"] = redact("".join(traceback.format_exception(error)))
    return facts


def _claim_gpus(settings: config.TrialConfig) -> None:
    """With devices.per_trial, this trial's own GPUs, before anything starts JAX's backend."""
    devices = settings.devices
    if devices.per_trial:
        ids = devices.ids if devices.ids is not None else visible_gpu_ids()
        slot = claim_devices(devices.per_trial, ids, default_lock_dir())
        log.info("devices.per_trial=%d: this trial uses GPUs %s", devices.per_trial, slot)


def enable_compilation_cache(directory: Path) -> None:
    """Keep every compiled program on disk, however small, for the next process."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
