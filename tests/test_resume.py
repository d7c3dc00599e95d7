"""Checkpoints: a killed trial resumes where it was, with one gap-free metrics.csv.

Signals and kills at chosen moments are in tests/reliability/.
"""

import hashlib
import json
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from helpers import data_overrides, run_aeff, start_aeff

from aeff.records.lock import LOCK
from aeff.records.rows import read_rows
from aeff.records.run_dir import ATTEMPTS, CHECKPOINTS, METADATA, METRICS, latest_checkpoint_step
from aeff.training.checkpoints import TrialCheckpoints


def test_a_step_saved_already_is_not_saved_again(tmp_path):
    """An interrupt just after a checkpoint due at an evaluation asks for the same step."""
    checkpoints = TrialCheckpoints(tmp_path / "checkpoints", interval_sec=30)
    checkpoints.save({"w": np.ones(3)}, {"global_step": 5, "wall_time": 1.0})
    checkpoints.save({"w": np.ones(3)}, {"global_step": 5, "wall_time": 1.2})
    checkpoints.save({"w": np.zeros(3)}, {"global_step": 6, "wall_time": 2.0})
    state, progress = TrialCheckpoints(tmp_path / "checkpoints", 30).restore({"w": np.ones(3)}, 6)
    assert progress["global_step"] == 6
    np.testing.assert_array_equal(state["w"], np.zeros(3))


EVERY = 20  # steps between rows


def rows_after_checkpoint(run_dir) -> tuple[int | None, int]:
    """The latest saved checkpoint's step, and how many rows were written after it."""
    step = latest_checkpoint_step(run_dir / CHECKPOINTS)
    if step is None or not (run_dir / METRICS).exists():
        return step, 0
    header, rows = read_rows(run_dir / METRICS)
    column = header.index("global_step")
    return step, sum(int(row[column]) > step for row in rows)


def kill_with_rows_after_a_checkpoint(proc, run_dir, timeout=120) -> int:
    """SIGKILL `proc` at a moment when rows were written after its latest checkpoint, as a
    kill on a busy machine finds it; returns that checkpoint's step. The process is stopped
    (SIGSTOP) while the files are read, so no checkpoint lands between reading and killing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        os.kill(proc.pid, signal.SIGSTOP)
        step, after = rows_after_checkpoint(run_dir)
        if step is not None and after >= 2:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return step
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"no rows after a checkpoint before the trial ended: {proc.poll()}")


@pytest.mark.slow
def test_kill_9_then_resume_finishes_with_gap_free_metrics(tmp_path, mnist_data_dir):
    """The rows up to the checkpoint a resume continues from are kept as they were; those
    after it are set aside and trained again, so the trajectory has each step once, every
    EVERY steps, whenever the kill came."""
    run_dir = tmp_path / "run"
    args = [
        "stop_at_target=false",
        "workload.max_allowed_runtime_sec=6",
        f"eval_every_steps={EVERY}",
        "rng_seed=1",
        "checkpoint.interval_sec=1",
        f"hydra.run.dir={run_dir}",
        *data_overrides(mnist_data_dir),
    ]
    proc = start_aeff(args, tmp_path)
    checkpoint = kill_with_rows_after_a_checkpoint(proc, run_dir)
    rows_before = pd.read_csv(run_dir / METRICS)
    assert json.loads((run_dir / METADATA).read_text())["status"] == "running"

    out = run_aeff([*args, "resume=true"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Resumed from the checkpoint at step {checkpoint}." in out.stdout + out.stderr
    rows = pd.read_csv(run_dir / METRICS)
    kept = rows_before[rows_before["global_step"] <= checkpoint]
    cut = rows_before[rows_before["global_step"] > checkpoint].reset_index(drop=True)
    assert len(cut) >= 2
    pd.testing.assert_frame_equal(rows.iloc[: len(kept)], kept)  # as they were
    aside = run_dir / ATTEMPTS / f"0.rows_after_step_{checkpoint}.csv"
    pd.testing.assert_frame_equal(pd.read_csv(aside), cut)  # set aside, not lost
    # trained again: each step once, a row every EVERY steps (the last at the budget's end)
    steps = rows["global_step"].to_numpy()
    assert steps[0] == EVERY and (np.diff(steps[:-1]) == EVERY).all(), steps
    assert steps[-1] > steps[-2] and steps[-1] > cut["global_step"].iloc[-1]
    assert rows["accumulated_submission_time"].is_monotonic_increasing
    assert rows["accumulated_submission_time"].iloc[-1] >= 6  # the whole budget, across runs
    metadata = json.loads((run_dir / METADATA).read_text())
    assert metadata["status"] == "completed" and metadata["rng_seed"] == 1
    assert metadata["resumed_from_step"] == checkpoint


UNCHECKED = (LOCK, "aeff.log")  # the lock names its owner; the log tells the refusal

FAILING_WORKLOAD = """import dataclasses
from aeff.workloads.mnist import MnistWorkload

@dataclasses.dataclass(frozen=True)
class FailingMnist(MnistWorkload):
    def has_reached_goal(self, metrics):
        raise RuntimeError("a bug in the goal")
"""


@pytest.mark.slow
def test_a_resume_after_the_users_file_changed_is_refused_naming_its_sha256(
    tmp_path, mnist_data_dir
):
    """A trial that failed after its records began (its workload file's bug), then resumed
    with the file fixed: other code, another trial. Refused (exit 2) in one line naming
    workload_path_sha256 and both values; its records as they were."""
    source, run_dir = tmp_path / "failing.py", tmp_path / "run"
    source.write_text(FAILING_WORKLOAD)
    args = ["workload_path=failing.py", "debug=short", "rng_seed=0", f"hydra.run.dir={run_dir}"]
    args += data_overrides(mnist_data_dir)
    out = run_aeff(args, tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]
    record = json.loads((run_dir / METADATA).read_text())
    assert record["status"] == "failed" and "identity" in record
    before = {
        p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name not in UNCHECKED
    }
    recorded = record["workload_path_sha256"]
    source.write_text(
        FAILING_WORKLOAD.replace('raise RuntimeError("a bug in the goal")', "return False")
    )
    now = hashlib.sha256(source.read_bytes()).hexdigest()
    out = run_aeff([*args, "resume=true"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    said = (out.stdout + out.stderr).splitlines()
    (line,) = [line for line in said if "resume=true continues only" in line]
    assert f"workload_path_sha256={recorded!r} (now {now!r})" in line
    after = {
        p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name not in UNCHECKED
    }
    assert after == before
