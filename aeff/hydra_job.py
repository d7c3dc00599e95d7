"""What a Hydra job hands a trial (its run dir, labels, `.hydra/` texts and paths), and
what a sweep's job returns from it (`sweep_trials`).

Hydra's state is read here, once per job, by the app's job function and by the
vectorized launcher; nothing below `aeff.trial` reads it. Both run a sweep's trials
through `sweep_trials`: a job alone, or a group of them.
"""

import dataclasses
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from aeff import context, interrupts
from aeff.config import workload_path_keys
from aeff.errors import AeffError, ConfigError, TrialInterrupted
from aeff.records.secrets import redact
from aeff.records.speaker import speaking
from aeff.trial import TrialJob, train_and_evaluate_group

log = logging.getLogger(__name__)


def trial_job_of(cfg: DictConfig, hydra_cfg: DictConfig) -> TrialJob:
    """The job's trial: `cfg` with paths made absolute, and what Hydra knows of the job."""
    cwd = Path(hydra_cfg.runtime.cwd)
    absolute_paths(cfg, cwd)
    return TrialJob(
        cfg,
        Path(hydra_cfg.runtime.output_dir),
        {**job_labels(hydra_cfg), **study_labels(cfg, hydra_cfg)},
        cwd,
        hydra_files(cfg, hydra_cfg),
    )


def job_labels(hydra_cfg: DictConfig) -> dict[str, Any]:
    """The job's place in Hydra's run, for metadata.json."""
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    return {
        "log_dir": hydra_cfg.runtime.output_dir,
        "command": redact(typed_command()),
        "hydra.overrides": [redact(o) for o in typed_overrides(hydra_cfg)],
        "hydra.config_options": [redact(o) for o in config_options(hydra_cfg)],
        "hydra.job.num": OmegaConf.select(hydra_cfg.job, "num", default=0) if in_sweep else 0,
        "sweep_dir": str(Path(hydra_cfg.sweep.dir).absolute()) if in_sweep else "",
        "parallel_trials": parallel_trials(hydra_cfg.launcher) if in_sweep else 1,
    }


def config_options(hydra_cfg: DictConfig) -> list[str]:
    """The command line's options that choose the configs (`--config-dir`, `--config-path`,
    `--config-name`), with absolute folders: a re-run composes the same config."""
    options = []
    for source in OmegaConf.select(hydra_cfg, "runtime.config_sources", default=None) or []:
        folder = source.path if source.schema == "file" else f"{source.schema}://{source.path}"
        if source.provider == "command-line":
            options += ["--config-dir", folder]
        elif source.provider == "main" and folder != "pkg://aeff.conf":
            options += ["--config-path", folder]
    name = OmegaConf.select(hydra_cfg, "job.config_name", default="config")
    return options + (["--config-name", name] if name not in ("config", None) else [])


def study_labels(cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, Any]:
    """The trial's study of an aeff sweep (0-based; the sweeper sets `search.study` for each
    job) and the seed that study sampled with (`search.seed`, set by the sweeper per study);
    outside aeff's sweeps study 0 and no search seed."""
    sweeper = str(OmegaConf.select(hydra_cfg, "sweeper._target_", default=""))
    if hydra_cfg.mode != RunMode.MULTIRUN or not sweeper.endswith("AeffSweeper"):
        return {"study": 0, "search_seed": None}
    return {
        "study": OmegaConf.select(cfg, "search.study", default=0),
        "search_seed": OmegaConf.select(cfg, "search.seed", default=None),
    }


def parallel_trials(launcher: DictConfig, num_jobs: int | None = None) -> int:
    """How many trials the launcher runs at once on this host (at most `num_jobs`):
    joblib's `n_jobs` (-1: one per core, -2: all cores but one...), submitit's local
    `array_parallelism`; other launchers one at a time, or each on its own machine."""
    n_jobs = launcher.get("n_jobs")
    if str(launcher.get("_target_", "")).endswith("LocalLauncher"):
        n_jobs = launcher.get("array_parallelism")
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    cpus = os.cpu_count() or 1
    at_once = n_jobs if n_jobs > 0 else cpus + 1 + n_jobs
    return max(1, min(at_once, num_jobs or at_once))


def typed_overrides(hydra_cfg: DictConfig) -> list[str]:
    """The job's overrides as typed: `+meta.x=${hparams.lr}` kept, not resolved (which
    would also fail for an unset `${oc.env:...}`, before the trial's checks could say so)."""
    return OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)


PATH_KEYS = (
    "submission_path",
    "workload_path",
    "tuning_search_space",
    "compilation_cache_dir",
)


def absolute_paths(cfg: DictConfig, cwd: Path) -> None:
    """Relative paths as the user meant them: from where the command ran, also when
    `hydra.job.chdir=true` moves the job into its run dir."""
    for key in (*workload_path_keys(cfg), *PATH_KEYS):
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        relative = isinstance(value, str) and not Path(value).expanduser().is_absolute()
        if relative and "://" not in value:  # a URL is refused where its key is checked
            OmegaConf.update(cfg, key, str(cwd / value))


def hydra_files(cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, str]:
    """What Hydra would write into `.hydra/` (`hydra.output_subdir` is null, so that a
    process refused a run dir changes nothing in it), with credentials redacted."""
    overrides = OmegaConf.create(typed_overrides(hydra_cfg))
    return {
        "config.yaml": redact(OmegaConf.to_yaml(cfg)),
        "hydra.yaml": redact(OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg}))),
        "overrides.yaml": redact(OmegaConf.to_yaml(overrides)),
    }


def override_value(override: str) -> str:
    """The value of `key=value` as Hydra reads it (quotes and escapes removed:
    `submission_path='/a b/c.py'` is the file `/a b/c.py`); the text after `=` when Hydra
    reads no single string there (a sweep, or no valid override: Hydra refuses it later)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    text = override.split("=", 1)[1] if "=" in override else ""
    try:
        value = OverridesParser.create().parse_override(override).value()
    except Exception:  # Hydra's own parse error, said by Hydra as it composes
        return text
    return value if isinstance(value, str) else text


def sweep_trials(jobs: list[TrialJob], group_id: str | None = None) -> list[Any]:
    """A sweep's jobs trained as one group (one job: a group of one, unlabelled), and what
    each job returns to Hydra: its result, or `objective=`'s number (`job_result`), or the
    exception that ended it, said in one line (bad input is said where it is found). A
    process a signal stopped starts no further job (a launcher's worker would go on to the
    next one handed to it): raises TrialInterrupted, as for a signal while they train."""
    if (signum := interrupts.received()) is not None:
        raise TrialInterrupted(signum)
    outcomes = train_and_evaluate_group(jobs, group_id, record_bad_input=True)
    returned = []
    for index, (job, outcome) in enumerate(zip(jobs, outcomes, strict=True)):
        with speaking(index):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, AeffError):
                    log.error("The trial failed (its record: %s): %s", job.run_dir, outcome)
                returned.append(outcome)
                continue
            try:
                returned.append(job_result(outcome, job.cfg))
            except AeffError as error:  # an objective the trial has no number for
                log.error("%s", error)
                returned.append(error)
    return returned


def job_result(result: Any, cfg: DictConfig) -> dict[str, Any] | float:
    """What a trial's job returns to the sweeper: the result as a dict, or with `objective=`
    the one number an optimising sweeper (Optuna's) minimises or maximises."""
    if objective := cfg.get("objective"):
        return objective_value(result, objective, cfg.workload.max_allowed_runtime_sec)
    return dataclasses.asdict(result)


def objective_value(result: Any, objective: str, budget: float) -> float:
    """The number an optimising sweeper gets for the trial: its time to target (the
    budget if it missed the target, diverged included), or a final metric."""
    if objective == "time_to_target":
        return budget if result.time_to_target is None else float(result.time_to_target)
    metric = objective.removeprefix("final.")
    if metric not in result.final_metrics:
        raise ConfigError(
            f"objective={objective}: the trial has no final {metric}; it has "
            f"{', '.join(sorted(result.final_metrics))}."
        )
    return float(result.final_metrics[metric])


def typed_command(*extra: str, without: tuple[str, ...] = ()) -> str:
    """The command line as typed (its run context's `typed`, before `with_user_files` adds
    to it): `aeff ...` (the console script) or `python -m aeff ...`, without the arguments
    that start with `without`, then `extra`."""
    program = "aeff" if Path(sys.argv[0]).name == "aeff" else "python -m aeff"
    typed = context.current().typed
    typed = [a for a in (sys.argv[1:] if typed is None else typed) if not a.startswith(without)]
    return " ".join([program, shlex.join([*typed, *extra])])
