"""A sweep dir's own record: the lock of the sweeper that owns it, the plan the sweeper
writes before its first trial (and, for a sweep of studies, the studies' plan), the user
files it was planned with (and the check that they are unchanged), the sweep's config, the
names of the report files written after its last trial, and the removal of submitit's job
pickles from it. The counterpart of `run_dir.py` for a sweep; it knows nothing of Hydra or
pandas.
"""

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aeff.errors import ConfigError, RecordsError
from aeff.records.files import write_json_atomically, write_text_atomically
from aeff.records.lock import Lock
from aeff.records.run_dir import METADATA
from aeff.records.secrets import redact

log = logging.getLogger(__name__)

PLAN = "sweep_plan.json"
# A sweep of several studies (search.num_studies > 1): each study is a sweep dir of its own,
# <sweep dir>/study_<k>; the sweep dir holds their plan and the report across them.
STUDIES_PLAN = "studies_plan.json"
STUDIES = "studies.csv"
STUDY_PREFIX = "study_"
SWEEP_CONFIG = "multirun.yaml"  # the sweep's composed config, credentials redacted
SUMMARY = "summary.csv"
REPORT = "sweep.json"
HTML_REPORT = "report.html"


def claim(sweep_dir: Path) -> None:
    """Own the sweep dir (or a study's folder), made if need be, for the life of this process:
    a second sweeper aimed at it is refused (RunDirBusy, naming the owner)."""
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RecordsError(sweep_dir, error) from error
    Lock.acquire(sweep_dir)


def planned_studies(sweep_dir: Path) -> int:
    """How many studies the sweep dir was planned for: 0 when it holds no plan."""
    planned = read_studies_plan(sweep_dir)
    return planned["num_studies"] if planned else int((sweep_dir / PLAN).exists())


def write_plan(
    sweep_dir: Path,
    jobs: list[list[str]],
    files: Mapping[str, str] | None = None,
    study: int = 0,
    search_seed: int | None = None,
) -> None:
    """Every trial the sweep (or study) will run, as its overrides (credentials redacted),
    the sha256 of each user file it runs (path -> sha256), the study and the seed it samples
    with, before the first one starts."""
    plan = {"num_trials": len(jobs), "jobs": redacted(jobs), "files": dict(files or {})}
    plan.update(study=study, search_seed=search_seed)
    write_json_atomically(sweep_dir / PLAN, plan)


def study_dir(sweep_dir: Path, study: int) -> Path:
    return Path(sweep_dir) / f"{STUDY_PREFIX}{study}"


def write_studies_plan(sweep_dir: Path, seed: int, seeds: list[int]) -> None:
    """The studies of a sweep: how many, and each one's folder and search seed (derived
    from the sweep's `search.seed`), before the first trial starts."""
    studies = [
        {"study": k, "dir": study_dir(sweep_dir, k).name, "search_seed": s}
        for k, s in enumerate(seeds)
    ]
    plan = {"num_studies": len(seeds), "search.seed": seed, "studies": studies}
    write_json_atomically(sweep_dir / STUDIES_PLAN, plan)


def read_studies_plan(sweep_dir: Path) -> dict[str, Any] | None:
    """The studies' plan, or None when the sweep dir holds none (a sweep of one study)."""
    path = Path(sweep_dir) / STUDIES_PLAN
    if not path.exists():
        return None
    try:
        plan = json.loads(path.read_text())
        studies = plan["studies"]
        if not isinstance(plan["num_studies"], int) or len(studies) != plan["num_studies"]:
            raise ValueError
        if not all(isinstance(s["search_seed"], int) for s in studies):
            raise TypeError
        return plan
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{path} is unreadable ({type(error).__name__}): restore it, or start the sweep "
            "again in another hydra.sweep.dir."
        ) from None


def study_dirs(sweep_dir: Path) -> list[Path] | None:
    """The folders of a sweep's studies, in order; None for a sweep of one study."""
    plan = read_studies_plan(sweep_dir)
    return None if plan is None else [study_dir(sweep_dir, k) for k in range(plan["num_studies"])]


def record_sharing(sweep_dir: Path, note: str | None) -> None:
    """How a run of the sweep shared the machine among its trials, in the plan, for
    sweep.json's `measured_under_sharing`; once shared, a sweep stays marked (its
    earlier trials' times were measured so)."""
    plan = plan_record(sweep_dir)
    if note and plan is not None and not plan.get("sharing"):
        write_json_atomically(sweep_dir / PLAN, {**plan, "sharing": note})


def redacted(jobs: list[list[str]]) -> list[list[str]]:
    return [[redact(override) for override in job] for job in jobs]


def write_sweep_config(sweep_dir: Path, yaml_text: str) -> None:
    write_text_atomically(sweep_dir / SWEEP_CONFIG, yaml_text)


def is_sweep_dir(folder: Path) -> bool:
    """A sweep's dir: aeff's sweeper plans it (`sweep_plan.json`); every sweep aeff runs,
    Optuna's too, saves its config there (`multirun.yaml`)."""
    return (folder / PLAN).is_file() or (folder / SWEEP_CONFIG).is_file()


def read_plan(sweep_dir: Path) -> list[list[str]] | None:
    """The planned jobs' overrides, or None when the dir holds no plan."""
    plan = plan_record(sweep_dir)
    return None if plan is None else plan["jobs"]


def planned_files(sweep_dir: Path) -> dict[str, str] | None:
    """The user files' sha256 the sweep was planned with (path -> sha256); None without a
    plan, or for a plan an older aeff wrote, which records none."""
    plan = plan_record(sweep_dir)
    return None if plan is None else plan.get("files")


def plan_record(sweep_dir: Path) -> dict[str, Any] | None:
    """The plan as written (checked), or None when the dir holds none."""
    path = sweep_dir / PLAN
    if not path.exists():
        return None
    try:
        plan = json.loads(path.read_text())
        jobs, files = plan["jobs"], plan.get("files", {})
        if not all(isinstance(job, list) and all(isinstance(o, str) for o in job) for job in jobs):
            raise TypeError
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise TypeError
        if not isinstance(plan.get("sharing"), str | None):
            raise TypeError
        return plan
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(
            f"{path} is unreadable ({type(error).__name__}): restore it, or start the sweep "
            "again in another hydra.sweep.dir."
        ) from None


def refuse_edited_files(
    sweep_dir: Path, now: Mapping[str, str], keys: Mapping[str, str] | None = None
) -> None:
    """Refuse user files that are not the bytes the sweep was planned with: its trials would
    run other code (or another space) beside the finished ones. `now`: path -> sha256 as this
    process read them. A resume (`keys` None) must name every planned file; a trial of the
    sweep (`keys`: path -> the config key naming it) checks the planned files it reads, as a
    parallel launcher's worker may have first read one after an edit."""
    planned = planned_files(sweep_dir)
    if planned is None:
        if keys is None:
            log.warning(
                "%s records no sha256 of the user's files (an older aeff planned it): an edit "
                "since cannot be detected.",
                sweep_dir / PLAN,
            )
        return
    for path in planned if keys is None else [p for p in keys if p in planned]:
        before = planned[path]
        if path not in now:
            raise ConfigError(
                f"resume=true finishes only the same sweep, but {sweep_dir} planned it with "
                f"{path}, which this command does not name: resume with the sweep's own "
                "command line, from the folder it started in."
            )
        if now[path] == before:
            continue
        if keys is not None:
            raise ConfigError(
                f"{keys[path]}={path} changed since the sweep in {sweep_dir} was planned (sha256 "
                f"{before[:12]}, now {now[path][:12]}): restore the planned file, then "
                "resume the sweep."
            )
        raise ConfigError(
            f"resume=true finishes only the same sweep, but {path} changed since "
            f"{sweep_dir} planned it (sha256 {before[:12]}, now {now[path][:12]}): "
            "restore the planned file, or start the sweep again in another "
            "hydra.sweep.dir."
        )


def remove_job_pickles(sweep_dir: Path, folder: str | None) -> None:
    """Once every job has returned, the submitit launchers' pickles of each job's call and
    result in `folder` (`<sweep dir>/.submitit/%j`), which hold its overrides as typed,
    credentials included; its logs stay. A stopped sweep keeps them: SLURM may still run
    or requeue its jobs from them. A folder outside the sweep dir is left alone: other
    sweeps' jobs may share it; None: no submitit launcher."""
    root = Path(folder.split("%", 1)[0]) if folder else None
    if root is None or not root.resolve().is_relative_to(sweep_dir.resolve()):
        return
    try:
        for pickle in root.rglob("*.pkl"):
            pickle.unlink(missing_ok=True)
    except OSError as error:
        log.warning("submitit's job pickles in %s stay: %s", folder, error)


# The report files, written after the sweep's (or a study's) last trial. What they say is
# `aeff.results`'s (it reads the trials back); their writes are here, each whole or not at all.


def write_summary(sweep_dir: Path, csv_text: str) -> Path:
    """`summary.csv`: one row per planned trial."""
    write_text_atomically(sweep_dir / SUMMARY, csv_text)
    return sweep_dir / SUMMARY


def write_report(sweep_dir: Path, report: Mapping[str, Any]) -> Path:
    """`sweep.json`: the sweep's (or, for a sweep of studies, the report across them)."""
    write_json_atomically(sweep_dir / REPORT, report)
    return sweep_dir / REPORT


def write_studies(sweep_dir: Path, csv_text: str) -> Path:
    """`studies.csv`: a sweep of studies' row per study."""
    write_text_atomically(sweep_dir / STUDIES, csv_text)
    return sweep_dir / STUDIES


def write_html(sweep_dir: Path, page: str) -> Path:
    """`report.html`, credentials redacted as it is written."""
    write_text_atomically(sweep_dir / HTML_REPORT, redact(page))
    return sweep_dir / HTML_REPORT


def foreign(job_dir: Path, job: int, metadata: Mapping[str, Any]) -> str | None:
    """Why the record in a sweep's job dir is another run's, or None when it is that job's:
    a run aimed there by hand (`hydra.run.dir=`) records no sweep, or another job."""
    if "sweep_dir" not in metadata:  # no record, or none aeff wrote
        return None
    if metadata["sweep_dir"] and metadata.get("hydra.job.num") == job:
        return None
    return (
        f"{job_dir / METADATA} is the record of another run ({metadata.get('command')}), "
        f"not of job {job} of this sweep: move {job_dir} aside, then resume the sweep."
    )
