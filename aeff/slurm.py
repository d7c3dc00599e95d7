"""A trial in a SLURM job (`hydra/launcher=slurm`, submitit): which job it is, whether a
record in its run dir is its own from before SLURM requeued it, and how a stopped job ends.

SLURM keeps a job's id across requeues and counts them in `SLURM_RESTART_COUNT`, so a
record written by the same job id at a lower restart count is this trial's own, stopped by
a requeue (preemption, `scontrol requeue`, a time limit through submitit's USR2 handler):
it continues from its checkpoint without resume=true. Nothing else may take the dir over.
"""

import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from aeff.errors import TrialInterrupted

log = logging.getLogger(__name__)

JOB_ID = "slurm_job_id"  # metadata.json: the job the trial runs in
REQUEUES = "slurm_requeues"  # metadata.json: how often SLURM requeued that job


def job_facts() -> dict[str, Any]:
    """The SLURM job this process runs in, for the trial's record ({} outside one)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return {}
    return {JOB_ID: job, REQUEUES: int(os.environ.get("SLURM_RESTART_COUNT") or 0)}


def continues_own_job(record: Mapping[str, Any] | None) -> bool:
    """Whether `record` (a run dir's metadata.json) is this process's job's own, written
    before SLURM requeued it: the same job id at a lower restart count."""
    facts = job_facts()
    if not record or not facts or record.get(JOB_ID) != facts[JOB_ID]:
        return False
    return isinstance(record.get(REQUEUES), int) and record[REQUEUES] < facts[REQUEUES]


def in_submitit_job() -> bool:
    return "SUBMITIT_FOLDER" in os.environ  # set by submitit where it runs a job


def being_requeued() -> bool:
    """Whether SLURM counts a restart of this job beyond the one it runs as: it stops the
    job to run it again (`scontrol requeue`, preemption), not for good (`scancel`)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    restarts = re.search(r"\bRestarts=(\d+)", shown)
    return bool(restarts) and int(restarts[1]) > job_facts()[REQUEUES]


def end_stopped_job(interrupt: TrialInterrupted, resume_hint: str) -> Exception:
    """End a submitit job whose trial a signal stopped (its checkpoint and `interrupted`
    record written). SLURM's warning of a time limit or preemption (submitit's signal,
    USR2): submitit's own handler requeues the job (it exits), or refuses past
    `hydra.launcher.max_num_timeout` (it raises; the trial stays interrupted). A job SLURM
    requeues itself exits quietly, to run again. Any other stop (`scancel`): returns the
    error the job ends with (Hydra returns it to the sweep at once), the resume command
    in it."""
    handler = signal.getsignal(interrupt.signum)  # submitit's, back in place after the trial
    if interrupt.signum not in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) and callable(handler):
        log.warning("Trial %s: SLURM's time limit or preemption; requeueing the job.", interrupt)
        handler(interrupt.signum, None)  # exits (requeued), or raises past the bound
    if being_requeued():
        log.warning("Trial %s: SLURM requeues the job; it continues from there.", interrupt)
        sys.exit(0)
    log.warning("Trial %s. %s", interrupt, resume_hint)
    return RuntimeError(f"{interrupt} (its record: interrupted). {resume_hint}")
