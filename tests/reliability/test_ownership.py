"""One live process per run dir and sweep dir; every planned trial of a sweep in its report."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import data_overrides, run_aeff, start_aeff
from helpers.records import fingerprint


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_process_aimed_at_a_live_trials_dir_is_refused(tmp_path, mnist_data_dir):
    run_dir = tmp_path / "run"
    args = [
        "stop_at_target=false",
        "workload.max_allowed_runtime_sec=60",
        f"hydra.run.dir={run_dir}",
        *data_overrides(mnist_data_dir),
    ]
    owner = start_aeff(args, tmp_path)
    try:
        wait_for(lambda: (run_dir / "metrics.csv").exists())
        before = {k: v for k, v in fingerprint(run_dir).items() if k.startswith((".hydra", "meta"))}
        for second in (args, [*args, "resume=true", "hparams.lr=0.1"]):
            out = run_aeff(second, tmp_path)
            assert out.returncode == 2, out.stdout + out.stderr
            assert f"{run_dir} is in use by process {owner.pid} on " in out.stderr
            assert "Traceback" not in out.stdout + out.stderr
        after = {k: v for k, v in fingerprint(run_dir).items() if k.startswith((".hydra", "meta"))}
        assert after == before
    finally:
        owner.send_signal(signal.SIGTERM)
        owner.wait()
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "interrupted"


@pytest.mark.slow  # a sweep in a process
def test_trials_that_fail_before_training_are_in_the_report_and_fail_the_sweep(tmp_path):
    out = run_aeff(["-m", "max_steps=8", "hparams.lr=1e-3,2e-3", "+meta.x=${nope}"], tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    report = json.loads((sweep_dir / "sweep.json").read_text())
    assert report["num_trials"] == report["num_planned"] == 2
    assert report["failed"] == [str(sweep_dir / "0"), str(sweep_dir / "1")]
    table = pd.read_csv(sweep_dir / "summary.csv")
    assert list(table["status"]) == ["failed", "failed"]
    assert all("nope" in error for error in table["error"])


@pytest.mark.slow
def test_a_killed_sweep_reports_every_started_trial_and_how_many_were_planned(
    tmp_path, mnist_data_dir
):
    args = [
        "-m",
        "max_steps=5,100000,5",  # job 1 trains until it is killed
        "stop_at_target=false",
        *data_overrides(mnist_data_dir),
    ]
    proc = start_aeff(args, tmp_path)
    try:
        wait_for(lambda: list(tmp_path.glob("outputs/multirun/*/*/1/metrics.csv")))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    out = subprocess.run(
        [sys.executable, "-m", "aeff.results", "summary", sweep_dir],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "2 trials of 3 planned" in out.stdout
    table = pd.read_csv(sweep_dir / "summary.csv")
    assert list(table["status"]) == ["completed", "interrupted", "not started"]
