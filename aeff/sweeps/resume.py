"""Which jobs of a sweep (or study) run: all of a new one, after its plan is written; with
resume=true, those not finished, once the plan, the user files and the job dirs say that this
is the same sweep and that none of its trials still runs."""

from collections.abc import Collection, Mapping
from pathlib import Path

from aeff.errors import ConfigError, RunDirBusy
from aeff.records import sweep_dir as sweep_record
from aeff.records.lock import Lock
from aeff.records.run_dir import FINISHED, read_metadata, status_of
from aeff.sweeps.plan import plan_changes


def jobs_to_run(
    sweep_dir: Path,
    jobs: list[list[str]],
    files: Mapping[str, str],
    resume: bool,
    study: int = 0,
    search_seed: int | None = None,
    ignored: Collection[str] = (),
) -> list[int]:
    """All jobs of a new sweep (or study, in its folder), its plan written first (`files`:
    path -> sha256 of the user files it runs); with `resume`, those not finished, after
    checking that the plan is the one recorded (but for the keys `ignored`) and that no job
    still runs."""
    planned = sweep_record.read_plan(sweep_dir)
    if not resume:
        if planned is not None:
            raise ConfigError(
                f"{sweep_dir} holds a sweep already: add resume=true to finish it, or "
                "choose another hydra.sweep.dir."
            )
        sweep_record.write_plan(sweep_dir, jobs, files, study, search_seed)
        return list(range(len(jobs)))
    if planned is None:
        sweep_record.write_plan(sweep_dir, jobs, files, study, search_seed)
        planned = jobs
    # An edited space samples other values: name the file, not the values it changed.
    sweep_record.refuse_edited_files(sweep_dir, files)
    if changes := plan_changes(planned, sweep_record.redacted(jobs), ignored):
        raise ConfigError(
            f"resume=true finishes only the same sweep, but {sweep_dir} planned "
            f"{changes}: resume with the sweep's own command line."
        )
    todo = []
    for index in range(len(jobs)):
        job_dir = sweep_dir / str(index)
        if Lock.is_held(job_dir):
            raise RunDirBusy(f"{job_dir} is in use by {Lock.owner(job_dir)}: wait for it.")
        record = read_metadata(job_dir) or {}
        if why := sweep_record.foreign(job_dir, index, record):
            raise ConfigError(why)
        if status_of(job_dir, record) not in FINISHED:
            todo.append(index)
    return todo
