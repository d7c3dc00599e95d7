"""A group of trials as one library call, the vectorized launcher's `train_and_evaluate`.

    outcomes = train_and_evaluate_group(jobs, group_id)

Each job is a trial with its own run dir, owned and recorded exactly as
`aeff.trial.train_and_evaluate` does it: claimed, checked, begun, a row per evaluation,
ended. Only the training is shared: `aeff.group_loop` trains the group as one program.
Which trials may share it is `group_key`'s to say.
"""

import dataclasses
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aeff import config, errors, trial
from aeff.interrupts import exiting_on_signals, interrupts_held, interrupts_raised
from aeff.logging import system
from aeff.logging.run_dir import RunDir, latest_checkpoint_step
from aeff.logging.speaker import speaking

log = logging.getLogger(__name__)

# How a group runs, besides what the record holds: its trials share these too.
SHARED_SETTINGS = ("steps_per_dispatch", "checkpoint", "devices", "compilation_cache_dir")


def group_key(cfg: DictConfig, run_dir: Path) -> str | None:
    """What a trial must share with the others of its group: every recorded value but its
    hyperparameters and labels (the workload, the submission and its files' contents, the
    batch size, the loop's settings), and how it runs. None for a trial that runs alone:
    bad input (reported by its own run), or a checkpoint to continue from."""
    try:
        checked = config.check_trial(cfg)
    except errors.AeffError:
        return None
    settings = checked.settings
    if settings.resume and latest_checkpoint_step(RunDir(run_dir).checkpoints) is not None:
        return None
    record = {k: v for k, v in checked.record.items() if not k.startswith(("hparams.", "meta."))}
    shared = {key: getattr(settings, key) for key in SHARED_SETTINGS}
    return repr((record, shared, checked.workload, checked.submission))


@dataclasses.dataclass
class _Member:
    index: int
    job: trial.TrialJob
    owner: RunDir
    trial: Any = None
    attempt: Any = None


def train_and_evaluate_group(jobs: list[trial.TrialJob], group_id: str) -> list[Any]:
    """Train `jobs` (one `group_key`) as one program; each job's outcome, in order: its
    `runner.TrialResult`, or the exception that ended it, recorded in its run dir.
    Raises TrialInterrupted for a signal, after recording it in every run dir."""
    outcomes: list[Any] = [None] * len(jobs)
    members: list[_Member] = []
    try:
        with interrupts_raised():
            for index, job in enumerate(jobs):
                with speaking(index):
                    member = _accepted(index, job, outcomes)
                if member is not None:
                    members.append(member)
            if members:
                trial.set_up_devices(members[0].trial.settings)
                members = _reaching(members, outcomes)
            if members:
                labels = {"group.id": group_id, "group.size": len(members)}
                _train(members, labels, outcomes)
    except BaseException as caught:
        error = errors.crash_of(caught)
        for member in members:
            if outcomes[member.index] is None:  # not ended yet
                outcomes[member.index] = _recorded(member, error)
        if isinstance(error, errors.TrialInterrupted):
            raise
        if isinstance(error, errors.AeffError):
            log.error("%s", error)
        else:
            log.exception("The group %s failed: %s", group_id, error)
    finally:
        for member in members:
            member.owner.release()
    return outcomes


def _accepted(index: int, job: trial.TrialJob, outcomes: list[Any]) -> _Member | None:
    """The job's run dir claimed and its trial checked, or its outcome the error."""
    enabled = OmegaConf.select(
        job.cfg, "logging.enabled", default=True, throw_on_resolution_failure=False
    )
    member = _Member(index, job, RunDir(job.run_dir, write_records=enabled is not False))
    try:
        member.owner.claim()
    except errors.RunDirBusy as error:  # another process's: nothing is written there
        log.error("%s", error)
        outcomes[index] = error
        return None
    try:
        member.trial = trial.checked(job.cfg, job.labels)
        member.attempt = trial.accepted(member.owner, member.trial)
    except errors.AeffError as error:
        log.error("%s", error)
        outcomes[index] = _recorded(member, error)
        member.owner.release()
        return None
    return member


def _reaching(members: list[_Member], outcomes: list[Any]) -> list[_Member]:
    """The members whose hyperparameters reach their optimizer state; each other one's
    outcome is its refusal, recorded, and its run dir released (the rest train on)."""
    from aeff import runner  # imports JAX, after `trial.set_up_devices`

    reaching = []
    for member in members:
        checked = member.trial
        with speaking(member.index):
            try:
                runner.refuse_unused_hparams(checked.workload, checked.submission, checked.hparams)
            except errors.AeffError as error:
                log.error("%s", error)
                outcomes[member.index] = _recorded(member, error)
                member.owner.release()
                continue
        reaching.append(member)
    return reaching


def _recorded(member: _Member, error: BaseException) -> BaseException:
    """`error`, recorded as this member's ending (begun or not)."""
    owner, job = member.owner, member.job
    if owner.status is None:
        trial.record_or_discard(owner, error, job.cfg, job.labels, bad=True)
    elif owner.status == "running":
        trial.record_ending(owner, error)
    return error


def _train(members: list[_Member], labels: dict[str, Any], outcomes: list[Any]) -> None:
    """Prepare the group, begin every member's records, train; each member's records end
    as it does."""
    settings = members[0].trial.settings
    from aeff import group_loop  # imports JAX

    loop_members = []
    for m in members:
        with speaking(m.index):
            seed = trial.seed_of(m.attempt)
        loop_members.append(group_loop.Member(m.trial.hparams, seed, tag=m.index))

    def record_signal(signum: int) -> None:
        for member in members:
            _recorded(member, errors.TrialInterrupted(signum))

    first = members[0].trial
    with exiting_on_signals("its records began", record_signal):
        group = group_loop.prepare_group(
            first.workload,
            first.submission,
            loop_members,
            steps_per_dispatch=settings.steps_per_dispatch,
            max_steps=settings.max_steps,
            eval_every_steps=settings.eval_every_steps,
        )
    system.prime()
    with interrupts_held() as held:  # every member's records begin whole, or not at all
        for position, (member, loop_member) in enumerate(zip(members, loop_members, strict=True)):
            _begin(member, loop_member, group.member(position), labels, outcomes)
    if held:
        raise errors.TrialInterrupted(held[0])
    group_loop.GroupLoop(
        group,
        loop_members,
        settings.stop_at_target,
        settings.max_steps,
        settings.eval_every_steps,
        target_resolution=settings.target_resolution,
    ).run()


def _begin(
    member: _Member,
    loop_member: Any,
    prepared: Any,
    group_labels: dict[str, Any],
    outcomes: list[Any],
) -> None:
    """A member's records begun, and where its rows, checkpoints and ending go."""
    checked, owner, job = member.trial, member.owner, member.job
    record = trial.start_record(checked, prepared, {**job.labels, **group_labels}, job.cwd)
    trial.begin_records(owner, member.attempt, checked, job.cfg, record, job.hydra_files)
    loop_member.on_eval = trial.row_writer(
        checked, owner, prepared.rng_seed, job.labels, group_labels
    )
    loop_member.checkpoints = trial.trial_checkpoints(checked.settings, owner)

    def on_end(result: Any) -> None:
        trial.end_records(owner, result, keep_checkpoints=checked.settings.checkpoint.keep)
        outcomes[member.index] = result

    loop_member.on_end = on_end
