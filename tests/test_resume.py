"""Checkpoints: a killed trial resumes where it was, with one gap-free metrics.csv.

Signals and kills at chosen moments are in tests/reliability/.
"""

import json
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from conftest import data_overrides, run_aeff, start_aeff

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


def wait_for_checkpoint(run_dir, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((run_dir / "checkpoints").glob("[0-9]*")):
            return
        time.sleep(0.05)
    raise AssertionError("no checkpoint was written")


@pytest.mark.slow
def test_kill_9_then_resume_finishes_with_gap_free_metrics(tmp_path, mnist_data_dir):
    run_dir = tmp_path / "run"
    args = [
        "stop_at_target=false",
        "workload.max_allowed_runtime_sec=6",
        "rng_seed=1",
        "checkpoint.interval_sec=0.5",
        f"hydra.run.dir={run_dir}",
        *data_overrides(mnist_data_dir),
    ]
    proc = start_aeff(args, tmp_path)
    wait_for_checkpoint(run_dir)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows_before = pd.read_csv(run_dir / "metrics.csv")
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "running"

    out = run_aeff([*args, "resume=true"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Resumed from the checkpoint at step" in out.stdout + out.stderr
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert len(rows) > len(rows_before)
    assert (
        rows["global_step"].is_monotonic_increasing and not rows["global_step"].duplicated().any()
    )
    assert rows["accumulated_submission_time"].is_monotonic_increasing
    pd.testing.assert_frame_equal(rows.iloc[: len(rows_before)], rows_before)
    assert rows["accumulated_submission_time"].iloc[-1] >= 6  # the whole budget, across runs
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "completed" and metadata["rng_seed"] == 1
