"""`hydra/launcher=slurm`: Hydra's submitit launcher, quiet and clear on a real cluster.

It runs jobs as `hydra_submitit_launcher`'s SlurmLauncher does (one SLURM job per trial,
submitit's requeue on a time limit or preemption), and besides:
- where the cluster keeps no accounting (no slurmdbd: `sacct` fails), it follows its jobs
  with `squeue` instead of printing submitit's sacct warning three times every poll;
- an `sbatch` refusal (a partition or GPU the cluster lacks) is one line naming the
  `hydra.launcher.*` key to change.
"""

import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

log = logging.getLogger(__name__)

# sbatch's refusal -> what to change (submitit's sbatch errors carry sbatch's stderr).
REFUSALS = {
    "invalid partition": "set hydra.launcher.partition to one of the cluster's partitions",
    "invalid generic resource": (
        "the partition has no GPUs (gres) to give: set hydra.launcher.gpus_per_node=0, or "
        "hydra.launcher.partition to a partition with GPUs"
    ),
    "memory specification": "lower hydra.launcher.mem_gb to what a node of the partition has",
    "node configuration is not available": (
        "ask for what a node of the partition has: hydra.launcher.cpus_per_task, "
        "hydra.launcher.mem_gb, hydra.launcher.gpus_per_node, hydra.launcher.nodes"
    ),
    "time limit": "lower hydra.launcher.timeout_min to the partition's limit",
}


class AeffSlurmLauncher(SlurmLauncher):
    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.launched = False  # whether this process submitted jobs already

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from submitit.core.utils import FailedJobError
        from submitit.slurm import slurm as submitit_slurm

        from aeff.errors import ConfigError, RunDirBusy

        if not getattr(submitit_slurm.SlurmJob.watcher, "follows_squeue", False):
            submitit_slurm.SlurmJob.watcher = squeue_watcher()
        # Once, before this process's first jobs: the sweeper launches batch after batch
        # (studies, max_batch_size), and a job that returned may still be COMPLETING.
        first, self.launched = not self.launched, True
        if first and (live := live_jobs(str(self.params["submitit_folder"]))):
            raise RunDirBusy(
                f"SLURM still queues or runs jobs {', '.join(live)} of this sweep (an earlier "
                "sweep process left them): wait for them to end (squeue --me), or scancel "
                "them, then resume."
            )
        try:
            return super().launch(job_overrides, initial_job_idx)
        except FailedJobError as error:
            refusal = sbatch_refusal(str(error))
            if refusal is None:
                raise
            raise ConfigError(refusal) from None


def squeue_watcher() -> Any:
    """A watcher of SLURM jobs for submitit (imported only where jobs are watched)."""
    from submitit.slurm import slurm as submitit_slurm

    class SqueueWhereNoAccounting(submitit_slurm.SlurmInfoWatcher):
        """submitit's watcher (it asks `sacct` for its jobs' states), which asks `squeue`
        where sacct fails (a cluster without accounting). squeue lists a job while it is
        queued, runs or ended recently (MinJobAge); one it no longer lists has ended, and its
        result file says how."""

        accounting = True
        follows_squeue = True

        def update(self) -> None:
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            output = None
            if self.accounting:
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode == 0:
                    output = done.stdout
                else:
                    self.accounting = False
                    why = done.stderr.strip()
                    log.debug("sacct failed (%s): following the jobs with squeue", why)
            if output is None:
                output = self.squeue()
            if output is not None:
                self._info_dict.update(self.read_info(output))
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

        def squeue(self) -> str | None:
            """sacct's columns, from squeue: each of this user's jobs (array tasks one a
            line), and each registered job squeue no longer lists as ended."""
            command = ["squeue", "--me", "--array", "--noheader", "--states=all"]
            try:
                listed = subprocess.run(
                    [*command, "--format=%i|%T|%N"], capture_output=True, text=True, timeout=60
                )
            except (OSError, subprocess.SubprocessError) as error:
                log.debug("squeue failed: %s", error)
                return None
            if listed.returncode != 0:
                log.debug("squeue failed: %s", listed.stderr.strip())
                return None
            lines = [line for line in listed.stdout.splitlines() if line.strip()]
            known = {line.split("|", 1)[0] for line in lines}
            lines += [f"{job}|ENDED|" for job in self._registered - self._finished - known]
            return "\n".join(["JobID|State|NodeList", *lines])

    return SqueueWhereNoAccounting(delay_s=600)


def live_jobs(submitit_folder: str) -> list[str]:
    """The SLURM jobs of this sweep (each has its folder in submitit's, named by its id)
    that squeue lists as not ended: pending, running, requeued."""
    root = Path(submitit_folder.split("%", 1)[0])
    ids = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    if not ids:
        return []
    command = ["squeue", "--me", "--array", "--noheader", "--format=%i|%T"]
    try:
        listed = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    states = dict(line.split("|", 1) for line in listed.splitlines() if "|" in line)
    ended = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
    return sorted(job for job in ids if job in states and states[job] not in ended)


def sbatch_refusal(message: str) -> str | None:
    """One line for sbatch's refusal in `message` (submitit's error), naming the key to
    change; None when `message` holds none."""
    said = [
        line.split("sbatch: error:", 1)[1].strip().rstrip(".")
        for line in message.splitlines()
        if "sbatch: error:" in line
    ]
    if not said:
        return None
    for line in said:  # sbatch's first reason is the most precise one
        for words, change in REFUSALS.items():
            if words in line.lower():
                if words == "invalid partition" and (names := partitions()):
                    change += f" ({', '.join(names)})"
                return f"sbatch refused the jobs ({line}): {change}."
    return f"sbatch refused the jobs ({said[-1]}): change the hydra.launcher.* key it names."


def partitions() -> list[str]:
    """The cluster's partitions, as sinfo lists them ([] where it cannot)."""
    try:
        listed = subprocess.run(
            ["sinfo", "--noheader", "--format=%R"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(set(listed.stdout.split())) if listed.returncode == 0 else []
