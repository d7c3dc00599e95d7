"""A trial as a library call: a config and a run dir in; a result and a record out.

    result = train_and_evaluate(cfg, run_dir)

`cfg` is a composed config (Hydra's, or `aeff.cli.app.compose_config(overrides)`). The
run dir's owner (aeff.records.run_dir) locks it and writes every record. A trial
that fails before its records begin leaves a `failed` record (a crash, or bad input
in a sweep) or nothing (bad input in a single run); every ending after that is
recorded, exceptions and signals included. Nothing here reads Hydra's global state.
"""

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aeff import config, devices, errors, interrupts, slurm
from aeff.algoperf.submission import AlgoPerfSubmission
from aeff.config import Trial
from aeff.records import sweep_dir as sweep_record
from aeff.records import system
from aeff.records.attempt import Attempt
from aeff.records.packages import packages_text
from aeff.records.run_dir import RunDir, latest_checkpoint_step, read_metadata
from aeff.records.secrets import redact
from aeff.records.speaker import speaking
from aeff.trial_records import end_records, error_facts, failure_record, row_writer, start_record

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
    """Run one trial in `run_dir`; returns its `TrialResult`.

    `labels` are extra metadata.json keys (a launcher's job number, the command);
    `cwd` is where the command ran, for its git state; `hydra_files` are written into
    `.hydra/` once the trial is accepted. A trial that fails before it begins leaves a
    `failed` record when it crashed or `record_bad_input` (a sweep reports every trial),
    else nothing (a new dir is removed). Raises AeffError for bad input,
    TrialInterrupted for a signal and TrialExited for a sys.exit, after recording them.
    """
    job = TrialJob(cfg, Path(run_dir), dict(labels or {}), cwd or Path.cwd(), hydra_files)
    [outcome] = train_and_evaluate_group([job], record_bad_input=record_bad_input)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


# How a group runs, besides what the record holds: its trials share these too.
SHARED_SETTINGS = ("steps_per_dispatch", "checkpoint", "devices", "compilation_cache_dir")


def group_key(cfg: DictConfig, run_dir: Path) -> str | None:
    """What a trial must share with the others of its group: every recorded value but its
    hyperparameters and labels (the workload, the submission and its files' contents, the
    batch size, the loop's settings), how it runs, and the checkpoint step it continues
    from (a group's trials are at one step). None for bad input: its own run reports it."""
    try:
        checked = config.check_trial(cfg)
    except errors.AeffError:
        return None
    settings = checked.settings
    resume_from = latest_checkpoint_step(RunDir(run_dir).checkpoints) if settings.resume else None
    record = {k: v for k, v in checked.record.items() if not k.startswith(("hparams.", "meta."))}
    shared = {key: getattr(settings, key) for key in SHARED_SETTINGS}
    if is_algoperf(checked.submission):  # its own jitted step, one trial's: never grouped
        shared["run_dir"] = str(Path(run_dir).absolute())
    return repr((record, shared, checked.workload, checked.submission, resume_from))


def is_algoperf(submission: Any) -> bool:
    return isinstance(submission, AlgoPerfSubmission)


def train_and_evaluate_group(
    jobs: list[TrialJob], group_id: str | None = None, *, record_bad_input: bool = True
) -> list[Any]:
    """Train `jobs` (one `group_key`) as one program; each job's outcome, in order: its
    `TrialResult`, or the exception that ended it, recorded in its run dir (a refused run
    dir aside). `group_id` labels the records of a group of several. Raises
    TrialInterrupted for a signal, after recording it in every run dir."""
    outcomes: list[Any] = [None] * len(jobs)
    members: list[_Member] = []
    try:
        with interrupts.interrupts_noted():  # its trials train: a signal is a flag
            for index, job in enumerate(jobs):
                with speaking(index):
                    member = _accepted(index, job, outcomes, record_bad_input)
                if member is not None:
                    members.append(member)
            if members:
                devices.set_up(members[0].trial.settings)
                members = _reaching(members, outcomes)
            for step in dict.fromkeys(m.attempt.checkpoint_step for m in members):
                # trials that continue from different steps train one part after another
                part = [m for m in members if m.attempt.checkpoint_step == step]
                _train(part, group_id, outcomes)
    except BaseException as caught:
        error = errors.crash_of(caught)
        for member in members:
            if outcomes[member.index] is None:  # not ended yet
                outcomes[member.index] = _recorded(member, error)
        if isinstance(error, errors.TrialInterrupted):
            raise
    finally:
        for member in members:
            member.owner.release()  # the next trial of a sweep in this process may take it
    return outcomes


@dataclasses.dataclass
class _Member:
    index: int
    job: TrialJob
    owner: RunDir
    record_bad_input: bool
    trial: Any = None
    attempt: Any = None


def _accepted(
    index: int, job: TrialJob, outcomes: list[Any], record_bad_input: bool
) -> "_Member | None":
    """The job's run dir claimed and its trial checked, or its outcome the error."""
    enabled = OmegaConf.select(
        job.cfg, "logging.enabled", default=True, throw_on_resolution_failure=False
    )
    owner = RunDir(job.run_dir, write_records=enabled is not False)
    member = _Member(index, job, owner, record_bad_input)
    try:
        owner.claim()
    except errors.RunDirBusy as error:  # another process's: nothing is written there
        log.error("%s", error)
        outcomes[index] = error
        return None
    try:
        trial = member.trial = checked(job.cfg, job.labels)
        settings = trial.settings
        # A SLURM job that SLURM requeued continues its own trial (aeff.slurm).
        own_job = slurm.continues_own_job(read_metadata(owner.path))
        member.attempt = owner.attempt(
            trial.identity,
            settings.rng_seed,
            settings.resume or own_job,
            settings.checkpoint.enabled,
            labels=trial.labels,
        )
        interrupts.check()
    except BaseException as caught:
        outcomes[index] = _recorded(member, errors.crash_of(caught))
        owner.release()
        if isinstance(caught, errors.TrialInterrupted):
            raise
        return None
    return member


def _reaching(members: list[_Member], outcomes: list[Any]) -> list[_Member]:
    """The members whose hyperparameters reach their optimizer state; each other one's
    outcome is its refusal, recorded, and its run dir released (the rest train on). Its
    submission's code raising for its values (`optimizer()` refusing one) ends it alone."""
    from aeff.training.prepare import refuse_unused_hparams  # JAX, after `devices.set_up`

    reaching = []
    for member in members:
        checked = member.trial
        if is_algoperf(checked.submission):  # handed its hyperparameters at every call
            reaching.append(member)
            continue
        with speaking(member.index):
            try:
                refuse_unused_hparams(checked.workload, checked.submission, checked.hparams)
            except (Exception, SystemExit) as error:  # bad input, or its own code crashing
                outcomes[member.index] = _recorded(member, errors.crash_of(error))
                member.owner.release()
                continue
        reaching.append(member)
    return reaching


def _recorded(member: _Member, error: BaseException) -> BaseException:
    """`error`, recorded as this member's ending (begun or not); bad input also said, in
    one line (a crash is the caller's to report: a traceback, or a sweep's summary)."""
    if isinstance(error, errors.AeffError):
        with speaking(member.index):
            log.error("%s", error)
    owner, job, status = member.owner, member.job, errors.record_status(error)
    bad_input = isinstance(error, errors.AeffError)
    if owner.status == "running":
        owner.end(status, **error_facts(error))
        if isinstance(error, errors.TrialInterrupted):
            error.recorded = True
    elif owner.status is None and (member.record_bad_input or not bad_input):  # in a sweep
        owner.record_failure(failure_record(error, job.labels, job.cfg), status)
    elif owner.status is None:
        owner.discard_if_unused()  # a bad command line leaves no files
    return error


def _train(members: list[_Member], group_id: str | None, outcomes: list[Any]) -> None:
    """Prepare the trials, begin every member's records, train; each member's records
    end as it does."""
    from aeff.training import loop  # imports JAX

    seeds = {}
    for member in members:
        with speaking(member.index):
            seeds[member.index] = seed_of(member.attempt)
    settings = members[0].trial.settings
    limits = loop.limits_of(
        members[0].trial.workload,
        eval_every_steps=settings.eval_every_steps,
        max_steps=settings.max_steps,
        stop_at_target=settings.stop_at_target,
        target_resolution=settings.target_resolution,
    )

    def record_signal(signum: int) -> None:  # before their records began
        for member in members:
            _recorded(member, errors.TrialInterrupted(signum))

    with interrupts.exiting("its records began", record_signal):  # data, compiling: C++
        members, prepared = _prepared(members, seeds, limits, outcomes)
    if not members:
        return
    system.prime()
    labels = {"group.id": group_id, "group.size": len(members)} if group_id else {}
    loop_members = [_begin(m, seeds[m.index], prepared, labels, outcomes) for m in members]
    interrupts.check()  # the records have begun whole: a signal now is recorded
    ended = _contract(members[0].trial.submission)[1](prepared, loop_members, limits).run()
    for member, outcome in zip(members, ended, strict=True):
        outcomes[member.index] = outcome  # an ending that could not be recorded: its error


def _prepared(
    members: list[_Member], seeds: dict[int, int], limits: Any, outcomes: list[Any]
) -> tuple[list[_Member], Any]:
    """The members' trials prepared as one. Their programs' first run may crash in one
    trial's own code: then each is prepared alone, one that crashes alone is recorded
    failed with its own error, and the others are prepared again without it."""
    first = members[0].trial

    def prepared(some: list[_Member]) -> Any:
        return _contract(first.submission)[0](
            first.workload,
            first.submission,
            [m.trial.hparams for m in some],
            [seeds[m.index] for m in some],
            limits,
            steps_per_dispatch=first.settings.steps_per_dispatch,
        )

    try:
        return members, prepared(members)
    except errors.AeffError:
        raise  # the group's input: every trial's
    except Exception:
        if len(members) == 1:
            raise
        healthy = []
        for member in members:
            try:
                prepared([member])
            except Exception as own:
                outcomes[member.index] = _recorded(member, own)
                member.owner.release()
            else:
                healthy.append(member)
        if len(healthy) == len(members):
            raise  # no one trial's: the group's
    return _prepared(healthy, seeds, limits, outcomes) if healthy else ([], None)


def _contract(submission: Any) -> tuple[Callable, type]:
    """How trials of the submission's contract are prepared, and the loop that trains them:
    aeff's own programs, or an AlgoPerf submission's own step called once per step."""
    if is_algoperf(submission):
        from aeff.algoperf import runner

        return runner.prepare, runner.HostLoop
    from aeff.training import loop, prepare

    return prepare.prepare, loop.Loop


def _begin(
    member: _Member, seed: int, prepared: Any, group_labels: dict[str, Any], outcomes: list[Any]
) -> Any:
    """A member's records begun, and the loop's member: where its rows, checkpoints and
    ending go."""
    from aeff.training.checkpoints import TrialCheckpoints
    from aeff.training.loop import Member

    checked, owner, job, settings = member.trial, member.owner, member.job, member.trial.settings
    owner.begin(  # metadata.json (`running`), the resolved config, packages.txt, `.hydra/`
        member.attempt,
        start_record(checked, seed, prepared, {**job.labels, **group_labels}, job.cwd),
        redact(OmegaConf.to_yaml(job.cfg, resolve=True)),
        packages_text(settings.logging.os_packages) if settings.logging.packages else None,
        job.hydra_files,
        checked.files,
    )

    def on_end(outcome: Any) -> None:
        outcomes[member.index] = outcome  # ended: a signal now is not this trial's
        if isinstance(outcome, BaseException):
            _recorded(member, errors.crash_of(outcome))
        else:
            end_records(owner, outcome, keep_checkpoints=settings.checkpoint.keep)

    return Member(
        checked.hparams,
        seed,
        on_eval=row_writer(checked, owner, seed, job.labels, group_labels),
        on_end=on_end,
        checkpoints=TrialCheckpoints(owner.checkpoints, settings.checkpoint.interval_sec)
        if settings.checkpoint.enabled
        else None,
        resume_from=member.attempt.checkpoint_step,
        tag=member.index,
    )


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
    keys = {trial.record[k]: k for k in config.USER_FILES if trial.record.get(k)}
    now = {path: trial.record.get(f"{key}_sha256") for path, key in keys.items()}
    sweep_record.refuse_edited_files(sweep_dir, now, keys)


def seed_of(attempt: Attempt) -> int:
    """The recorded or given seed, or one drawn now (and logged)."""
    if attempt.rng_seed is not None:
        return attempt.rng_seed
    seed = config.draw_seed()
    log.info("rng_seed=null: drew rng_seed=%d", seed)
    return seed
