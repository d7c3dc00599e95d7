"""`kill -9` at six moments of a trial: the records stay whole and resume finishes the trial."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import HELPERS, data_overrides, run_aeff, start_aeff
from helpers.records import assert_records_parseable, status_in_summary

from aeff.records.concat import load_metrics

KILL_AT = HELPERS / "kill_at.py"
MAX_STEPS = 300


def trial_args(run_dir: Path, mnist_data_dir: Path) -> list[str]:
    return [
        "stop_at_target=false",
        f"max_steps={MAX_STEPS}",
        "eval_every_steps=20",
        "rng_seed=0",
        "checkpoint.interval_sec=0.3",
        f"hydra.run.dir={run_dir}",
        *data_overrides(mnist_data_dir),
    ]


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def rows_in(path: Path) -> int:
    return path.read_text().count("\n") - 1 if path.exists() else 0


def kill_from_inside(moment: str, args: list[str], cwd: Path) -> None:
    out = subprocess.run(
        [sys.executable, KILL_AT, moment, *args], cwd=cwd, capture_output=True, timeout=300
    )
    assert out.returncode == -signal.SIGKILL, out.stderr.decode()[-3000:]


def kill_from_outside(moment: str, args: list[str], run_dir: Path, cwd: Path) -> None:
    proc = start_aeff(args, cwd)
    try:
        if moment == "startup":  # records started; JAX, data and compilation still to come
            wait_for(lambda: (run_dir / "metadata.json").exists())
        else:  # training, at a random moment after the third row
            wait_for(lambda: rows_in(run_dir / "metrics.csv") >= 3)
            # concat and summary read a trial that is still writing.
            assert status_in_summary(run_dir) == "running"
            assert len(load_metrics(run_dir)) >= 3
            time.sleep(random.Random(0).uniform(0.0, 0.3))
        assert proc.poll() is None, "the trial ended before the kill"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize(
    "moment", ["startup", "metadata", "csv_row", "checkpoint", "training", "final_metadata"]
)
def test_kill_9_leaves_whole_records_and_resume_finishes(moment, tmp_path, mnist_data_dir):
    run_dir = tmp_path / "run"
    args = trial_args(run_dir, mnist_data_dir)
    if moment in ("startup", "training"):
        kill_from_outside(moment, args, run_dir, tmp_path)
    else:
        kill_from_inside(moment, args, tmp_path)

    assert_records_parseable(run_dir)
    if moment != "metadata":  # killed before its first record: none to read back
        assert json.loads((run_dir / "metadata.json").read_text())["status"] == "running"
        assert status_in_summary(run_dir) == "interrupted"
    rows_before = (
        pd.read_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else None
    )

    out = run_aeff([*args, "resume=true"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert_records_parseable(run_dir)
    assert not list(run_dir.glob(".*.tmp"))
    assert status_in_summary(run_dir) == "completed"
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "completed" and metadata["global_step"] == MAX_STEPS
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert list(rows["global_step"]) == list(range(20, MAX_STEPS + 1, 20))
    if rows_before is not None:  # rows up to the checkpoint are kept as they were
        checkpoint = metadata["resumed_from_step"] or -1
        kept = rows_before[rows_before["global_step"] <= checkpoint]
        pd.testing.assert_frame_equal(rows.iloc[: len(kept)], kept)
