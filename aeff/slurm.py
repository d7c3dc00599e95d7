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

from aeff import interrupts
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


def job_fields() -> dict[str, str]:
    """`scontrol show job` of this process's job, field by field ({} where it cannot
    be had)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return {}
    try:
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return dict(re.findall(r"(\w+)=(\S*)", shown))


def end_stopped_job(interrupt: TrialInterrupted, resume_hint: str) -> Exception:
    """End a submitit job whose trial a signal stopped (its checkpoint and `interrupted`
    record written), as SLURM means the stop:
    - a warning of its time limit (submitit's signal, USR2) or a preemption (SIGTERM,
      and SLURM shows a PreemptTime): submitit's own handler requeues the job (it
      exits), or past `hydra.launcher.max_num_timeout` refuses (it raises; the trial
      stays interrupted);
    - a requeue by SLURM (`scontrol requeue`: it counts a restart beyond this run's):
      the job exits quietly, to run again;
    - anything else (`scancel`): returns the error the job ends with (Hydra returns it
      to the sweep at once), the resume command in it."""
    fields = job_fields()
    warning = interrupts.warning_signal()
    preempted = fields.get("PreemptTime", "None") not in ("None", "Unknown", "")
    if warning is not None and (interrupts.was_received(warning) or preempted):
        handler = signal.getsignal(warning)  # submitit's, back in place after the trial
        if callable(handler):
            what = "preemption" if preempted else "time limit or preemption"
            log.warning("Trial %s: SLURM's %s; requeueing the job.", interrupt, what)
            handler(warning, None)  # exits (requeued), or raises past the bound
    restarts = fields.get("Restarts", "0")
    if restarts.isdigit() and int(restarts) > job_facts().get(REQUEUES, 0):
        log.warning("Trial %s: SLURM requeues the job; it continues from there.", interrupt)
        sys.exit(0)
    log.warning("Trial %s. %s", interrupt, resume_hint)
    return RuntimeError(f"{interrupt} (its record: interrupted). {resume_hint}")
