"""The worker processes a launcher runs trials in, stopped when a signal stops the sweep.

Only joblib's process pool (`hydra/launcher=parallel`) runs trials in workers of this
process; the other launchers run them in this process, or on a cluster, where the trial's
own handler stops it (`aeff.interrupts`). `stop_workers` passes the signal on to each
worker, waits for their trials to end, then ends the workers, so that a resume finds every
run dir free.
"""

import contextlib
import logging
import signal
import sys
import time

import psutil

from aeff.records.lock import Lock

log = logging.getLogger(__name__)


def stop_workers(signum: int, wait_sec: float) -> None:
    """Pass the signal on to the worker processes of joblib's pool, so each trial takes its
    own way out (a last row, a checkpoint, `interrupted`); wait up to `wait_sec` for every
    trial to end, then end the workers (killing one whose trial did not end in time)."""
    workers = detached_loky_workers()
    for worker in workers:
        with contextlib.suppress(psutil.Error):
            worker.send_signal(signum)
    deadline = time.monotonic() + wait_sec
    while (training := [w for w in workers if Lock.held_by(w)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if training:
        log.warning(
            "Killing %s: their trials did not end within %g s of %s (hydra.sweeper.stop_wait_sec)",
            ", ".join(f"process {w.pid}" for w in training),
            wait_sec,
            signal.Signals(signum).name,
        )
    for worker in workers:  # none runs a trial now: done, or idle in the launcher's loop
        with contextlib.suppress(psutil.Error):
            worker.kill()
    psutil.wait_procs(workers, timeout=10)


def detached_loky_workers() -> list[psutil.Process]:
    """The workers of joblib's process pool, taken out of its hands: a worker that ends (its
    trial stopped before it began, an idle one on Ctrl-C) would otherwise make the pool's
    manager thread SIGKILL the others, mid-checkpoint. Empty when no pool runs in this
    process."""
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    processes = getattr(getattr(module, "_executor", None), "_processes", None)
    if not isinstance(processes, dict):
        return []
    pids = list(processes)
    processes.clear()  # the pool no longer knows them: it neither waits for nor kills them
    workers = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            workers.append(psutil.Process(pid))
    return workers
