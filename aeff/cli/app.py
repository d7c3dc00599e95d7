"""The Hydra app (`python -m aeff`, `aeff`): a thin adapter around `aeff.trial`.

It reads Hydra's state once per job (run dir, overrides, job number) and passes it
on; it decides how the process ends, with the statuses of `aeff.errors`.
"""

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from aeff import config, context, errors, hydra_job, slurm, user_files
from aeff.algoperf.submission import AlgoPerfSubmission
from aeff.config import TrialConfig, unique_suffix
from aeff.errors import AeffError, SweepFailed, TrialInterrupted
from aeff.records.flatten import flatten
from aeff.records.run_dir import RunDir
from aeff.records.secrets import redact, redact_log_records, redacting_console
from aeff.trial import TrialJob, train_and_evaluate
from hydra_plugins.aeff_launcher import slurm_launcher, vectorized_launcher
from hydra_plugins.aeff_sweeper import aeff_sweeper, optuna_sweeper

log = logging.getLogger(__name__)
# In every process that runs aeff's jobs (a launcher's workers too: they import this module
# to run `trial_job`), whatever logging config Hydra applies.
redact_log_records()


USER_FILE_GROUPS = {"submission_path": "submission", "workload_path": "workload"}
FROM_FILE = "from_file"  # the option of its group that a user's file becomes


def register() -> None:
    """Make the schema, resolver, sweeper and launcher known to Hydra; call before composing.
    Idempotent: the store holds aeff's nodes and the `from_file` options of this command's
    files (its run context's), none an earlier command in the process left."""
    # Hydra's plugin scan cannot list modules of an editable install; register directly.
    Plugins.instance().register(aeff_sweeper.AeffSweeper)
    Plugins.instance().register(vectorized_launcher.VectorizedLauncher)
    Plugins.instance().register(slurm_launcher.AeffSlurmLauncher)
    optuna_sweeper.register()
    store = ConfigStore.instance()
    store.store(name="aeff_schema", node=TrialConfig)
    for group in USER_FILE_GROUPS.values():
        store.repo.get(group, {}).pop(f"{FROM_FILE}.yaml", None)
    for group, option in context.current().options.items():
        store.store(group=group, name=FROM_FILE, **option)
    OmegaConf.register_new_resolver(
        "aeff.unique_suffix", unique_suffix, use_cache=True, replace=True
    )


def with_user_files(overrides: list[str]) -> list[str]:
    """`submission_path=F` (`workload_path=F`) selects the class the file F defines, as
    the option `from_file` of the submission (workload) group, with its hyperparameters'
    defaults, so `hparams.*` and `workload.*` override it like a built-in option."""
    for key, group in USER_FILE_GROUPS.items():
        where = [i for i, o in enumerate(overrides) if o.startswith(f"{key}=")]
        if not where:
            continue
        if any(o.startswith(f"{group}=") for o in overrides):
            raise errors.ConfigError(f"give {key}= or {group}=, not both.")
        path = Path(hydra_job.override_value(overrides[where[-1]]))
        cls = config.class_in_file(path, key, group)
        node = user_files.node_of(cls)
        if cls is AlgoPerfSubmission:
            # its batch size is its get_batch_size's; its hyperparameters, its space's names
            hparams = first_point(overrides)
            node = {
                "submission": {"_target_": node["_target_"]},
                "batch_size": None,
                "hparams": hparams,
            }
        elif group == "submission":
            schema_defaults = user_files.node_of(cls.hparams_schema)
            del schema_defaults["_target_"]
            # batch_size: the built-in options' (conf/submission/*.yaml); batch_size= overrides
            node = {"submission": node, "batch_size": 1024, "hparams": schema_defaults}
        option = {"node": node, "package": "_global_" if group == "submission" else group}
        context.current().options[group] = option  # this command's: `register` keeps it
        ConfigStore.instance().store(group=group, name=FROM_FILE, **option)
        # Beside its path, not last: after `-p KEY` an override would be an argument.
        chosen = f"{group}={FROM_FILE}"
        overrides = [*overrides[: where[-1] + 1], chosen, *overrides[where[-1] + 1 :]]
    return overrides


def first_point(overrides: list[str]) -> dict[str, Any]:
    """The hyperparameters of the first point of `tuning_search_space=`'s quasi-random
    sequence (search.seed 0), by their own names: an AlgoPerf submission's defaults, which
    a sweep's trials and `hparams.<name>=` override."""
    from aeff import search

    given = [hydra_job.override_value(o) for o in overrides if o.startswith("tuning_search_space=")]
    if not given:
        return {}
    space = user_files.read_search_space(Path(given[-1]), keep_names=True)
    [point] = search.sample(search.parse_space(space), 1, seed=0)
    return {
        key.removeprefix("hparams."): value
        for key, value in flatten(point).items()
        if key.startswith("hparams.")
    }


def check_sweeper_of_preset(overrides: list[str]) -> None:
    """An `hparams_search` preset configures Optuna's sweeper, which it cannot choose itself
    (config.yaml chooses aeff's, and Hydra takes one override of a group): without
    `hydra/sweeper=optuna` Hydra's refusal would be a paragraph about a key of aeff's."""
    presets = [
        o for o in overrides if o.startswith("hparams_search=") and o != "hparams_search=null"
    ]
    if presets and not any(o.startswith("hydra/sweeper=") for o in overrides):
        raise errors.ConfigError(
            f"{presets[-1]} configures Optuna's sweeper: add hydra/sweeper=optuna "
            '(pip install -e ".[optuna]").'
        )


def compose_config(overrides: list[str]) -> DictConfig:
    """The config `python -m aeff OVERRIDES` would run, for scripts and benchmarks."""
    from hydra import compose, initialize_config_module

    register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        return compose(config_name="config", overrides=with_user_files(overrides))


class RunDirCallback(Callback):
    """Claims a single run's dir before Hydra writes into it, so a second process aimed
    at a live trial's dir is refused with the owner's files untouched."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with errors_end_the_process():
            RunDir(records_dir(config, "run")).claim()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with errors_end_the_process():
            refuse_studies_of_another_sweeper(config)
            writable_or_raise(records_dir(config, "sweep").absolute())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Another sweeper's sweep (Optuna's) gets aeff's report too; aeff's writes its own."""
        if str(config.hydra.sweeper.get("_target_", "")).endswith("AeffSweeper"):
            return
        optuna_sweeper.end_with_report(records_dir(config, "sweep").absolute(), config.objective)


def refuse_studies_of_another_sweeper(config: DictConfig) -> None:
    """Studies (`search.num_studies` > 1) are aeff's sweeper's: another (Optuna's) would
    run one study and report it as several."""
    sweeper = str(config.hydra.sweeper.get("_target_", ""))
    num_studies = OmegaConf.select(config, "search.num_studies", default=1)
    if num_studies != 1 and not sweeper.endswith("AeffSweeper"):
        raise errors.ConfigError(
            f"search.num_studies={num_studies}: studies are unsupported with "
            f"{sweeper.rpartition('.')[2] or 'this sweeper'}; only aeff's sweeper "
            "(hydra/sweeper=aeff, the default) runs them."
        )


def records_dir(config: DictConfig, mode: str) -> Path:
    """The folder `hydra.<mode>.dir` names. An empty one (an unset variable, say) is
    refused: Hydra would take the current folder, and the records would mix with what
    is there."""
    value = str(config.hydra[mode].dir)
    if not value.strip():
        raise errors.ConfigError(
            f"hydra.{mode}.dir is empty: give a folder for the records, or leave it out "
            "for one under outputs/."
        )
    return Path(value)


def writable_or_raise(directory: Path) -> None:
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        raise errors.RecordsError(directory, PermissionError(13, f"{existing} is not writable"))


@contextlib.contextmanager
def errors_end_the_process() -> Iterator[None]:
    """An AeffError in the block ends the process with its one line (a callback's
    exceptions would only become Hydra warnings)."""
    try:
        yield
    except AeffError as error:
        print(f"aeff: {redact(str(error))}", file=sys.stderr)
        sys.exit(errors.exit_status(error))


@hydra.main(version_base="1.3", config_path="pkg://aeff.conf", config_name="config")
@vectorized_launcher.vectorizable
def trial_job(cfg: DictConfig) -> dict[str, Any]:
    """One Hydra job: one trial; the returned result is what sweepers see."""
    hydra_cfg = HydraConfig.get()
    job = hydra_job.trial_job_of(cfg, hydra_cfg)
    run_dir = job.run_dir
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return sweep_job(job, hydra_cfg.sweep.dir)
    try:
        result = train_and_evaluate(
            job.cfg, run_dir, job.labels, job.cwd, hydra_files=job.hydra_files
        )
    except AeffError as error:  # said in one line where it was found
        sys.exit(errors.exit_status(error))
    except TrialInterrupted as interrupt:
        log.warning("Trial %s. %s", interrupt, resume_hint(interrupt, run_dir))
        raise
    except Exception as error:  # a crash, recorded: its traceback as a log line, redacted
        log.exception("The trial failed (its record: %s): %s", run_dir, error)
        sys.exit(errors.exit_status(error))
    log.info("Records of this trial: %s", run_dir)
    return hydra_job.job_result(result, job.cfg)


def sweep_job(job: TrialJob, sweep_dir: str) -> Any:
    """A sweep's job, run as the vectorized launcher runs a group (`sweep_trials`): what
    ended it goes up for the sweeper to report with the others (a bad input recorded too,
    so that every planned trial is reported)."""
    try:
        [outcome] = hydra_job.sweep_trials([job])
    except TrialInterrupted as interrupt:
        if slurm.in_submitit_job():  # requeued to continue, or stopped for good
            hint = f"resume=true hydra.sweep.dir={sweep_dir} finishes it."
            raise slurm.end_stopped_job(interrupt, hint) from None
        raise
    if isinstance(outcome, BaseException):
        raise outcome
    log.info("Records of this trial: %s", job.run_dir)
    return outcome


def resume_hint(interrupt: TrialInterrupted, run_dir: Path) -> str:
    if not interrupt.recorded:
        return "It had not begun training: nothing to resume."
    command = hydra_job.typed_command(
        "resume=true", f"hydra.run.dir={run_dir}", without=("resume=", "hydra.run.dir=")
    )
    if interrupt.checkpoint_step is None:
        how = "No checkpoint was saved; this starts it again with its seed"
    else:
        how = f"A checkpoint of step {interrupt.checkpoint_step} was saved; this continues it"
    return f"{how}: {redact(command)}"


def main() -> None:
    """`python -m aeff` and `aeff`: a trial, or with -m a sweep that fails if a trial did."""
    context.begin(typed=sys.argv[1:])  # this command's, before anything reads it
    register()
    with errors_end_the_process():
        check_sweeper_of_preset(sys.argv[1:])
        sys.argv[1:] = with_user_files(sys.argv[1:])
    try:
        # What Hydra prints itself (its refusal of an override, --cfg, --help) is no log
        # record: redacted as it is written.
        redacting_console(trial_job)
    except (TrialInterrupted, SweepFailed) as ending:  # Hydra passes BaseExceptions on
        sys.exit(errors.exit_status(ending))
