"""SIGTERM and SIGINT: a last row, `interrupted`, a checkpoint, and the shell's exit codes."""

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest
from helpers import data_overrides, run_aeff, start_aeff
from helpers.records import assert_records_parseable, fingerprint, status_in_summary


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_leaves_a_last_row_a_checkpoint_and_its_exit_code(
    signum, exit_code, tmp_path, mnist_data_dir
):
    run_dir = tmp_path / "run"
    args = [
        "stop_at_target=false",
        "eval_every_steps=200",
        "checkpoint.interval_sec=1000",  # so the only checkpoint is the signal's
        f"hydra.run.dir={run_dir}",
        *data_overrides(mnist_data_dir),
    ]
    proc = start_aeff(args, tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "metrics.csv").exists():
        time.sleep(0.02)
    time.sleep(0.3)  # between two evaluations
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == exit_code

    assert_records_parseable(run_dir)
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "interrupted"
    assert metadata["error_message"] == f"stopped by {signal.Signals(signum).name}"
    assert status_in_summary(run_dir) == "interrupted"
    (checkpoint,) = (run_dir / "checkpoints").glob("[0-9]*")
    rows = pd.read_csv(run_dir / "metrics.csv")
    # The last row is the step the signal stopped, which the checkpoint holds.
    assert rows["global_step"].iloc[-1] == int(checkpoint.name)
    assert len(rows) >= 2

    # Starting over in that dir without resume=true is refused and changes nothing there.
    before = fingerprint(run_dir)
    out = run_aeff(args, tmp_path, timeout=120)
    assert out.returncode == 2
    assert "add resume=true" in out.stdout
    assert records_only(fingerprint(run_dir)) == records_only(before)


def records_only(files: dict[str, str]) -> dict[str, str]:
    """Without Hydra's files (its log and composed config record every run in the dir) and
    the lock, which names the last process that owned the dir."""
    skipped = ("aeff.log", ".aeff.lock")
    return {k: v for k, v in files.items() if not k.startswith(".hydra") and k not in skipped}


PHASE_WORKLOAD = """
import dataclasses, os, signal
from aeff.workloads.mnist import MnistWorkload

@dataclasses.dataclass(frozen=True)
class Signalled(MnistWorkload):
    def load_splits(self):
        if os.environ["PHASE"] == "data":
            os.kill(os.getpid(), signal.SIGTERM)
        return super().load_splits()

    def loss(self, logits, labels):  # traced while the programs compile
        if os.environ["PHASE"] == "compile":
            os.kill(os.getpid(), signal.SIGHUP)
        return super().loss(logits, labels)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("phase", "exit_code", "name"),
    [("imports", 130, "SIGINT"), ("data", 143, "SIGTERM"), ("compile", 129, "SIGHUP")],
)
def test_a_signal_before_the_records_begin_ends_the_run_at_once_in_one_line(
    phase, exit_code, name, tmp_path, mnist_data_dir
):
    (tmp_path / "signalled.py").write_text(PHASE_WORKLOAD)
    args = ["workload_path=signalled.py", "max_steps=5", *data_overrides(mnist_data_dir)]
    env = {**os.environ, "PHASE": phase}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aeff", *args], cwd=tmp_path, env=env, stderr=subprocess.PIPE
    )
    if phase == "imports":
        time.sleep(0.6)  # Python is still importing the app (1.3 s or more); its handler
        # is in place after 0.05 s on an idle machine (a loaded CI once took over 0.3 s)
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == exit_code
    lines = stderr.decode().strip().splitlines()
    assert lines == [f"aeff: stopped by {name} before {BEFORE[phase]}; nothing to resume."]
    records = list(tmp_path.rglob("metadata.json"))
    if phase == "imports":  # no run dir yet
        assert not records
    else:  # the run dir says what happened to it
        (record,) = records
        metadata = json.loads(record.read_text())
        assert metadata["status"] == "interrupted"
        assert metadata["error_message"] == f"stopped by {name}"


BEFORE = {
    "imports": "the trial began",
    "data": "its records began",
    "compile": "its records began",
}


SWEEP_WORKLOAD = """
import dataclasses, os, signal
from aeff.workloads.mnist import MnistWorkload

@dataclasses.dataclass(frozen=True)
class Signalled(MnistWorkload):
    def load_splits(self):
        if self.split_seed == 1 and os.path.exists("signal"):
            os.kill(os.getpid(), signal.SIGTERM)
        return super().load_splits()
"""


@pytest.mark.slow
def test_a_signal_while_a_sweeps_later_trial_prepares_reports_the_sweep_and_how_to_finish(
    tmp_path, mnist_data_dir
):
    (tmp_path / "signalled.py").write_text(SWEEP_WORKLOAD)
    (tmp_path / "signal").touch()
    args = ["-m", "workload_path=signalled.py", "workload.split_seed=0,1", "max_steps=3"]
    args += ["hydra.sweep.dir=sweep", *data_overrides(mnist_data_dir)]
    out = run_aeff(args, tmp_path)
    assert out.returncode == 143
    sweep = tmp_path / "sweep"
    typed = [a for a in args if a != "hydra.sweep.dir=sweep"]
    finish = shlex.join([*typed, "resume=true", f"hydra.sweep.dir={sweep}"])
    assert out.stderr.strip().splitlines()[-1] == (
        "aeff: stopped by SIGTERM before its records began; the sweep's report is written. "
        f"Finish it with: python -m aeff {finish}"
    )
    report = json.loads((sweep / "sweep.json").read_text())
    assert report["num_trials"] == 2 and report["failed"] == [str(sweep / "1")]
    assert json.loads((sweep / "1" / "metadata.json").read_text())["status"] == "interrupted"

    (tmp_path / "signal").unlink()
    out = run_aeff([*args, "resume=true"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((sweep / "sweep.json").read_text())["failed"] == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "to_group", "exit_code"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
    ids=["ctrl-c-to-the-group", "sigterm-to-the-parent"],
)
def test_a_stopped_parallel_sweep_stops_its_workers_then_reports_and_resumes_at_once(
    signum, to_group, exit_code, tmp_path, mnist_data_dir
):
    """Ctrl-C (SIGINT to the process group) or SIGTERM to the parent alone: the parent
    passes the signal on to joblib's workers, waits for their trials' last rows and
    checkpoints, then reports; no worker lives on, and the resume command it prints runs."""
    args = ["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "hparams.lr=1e-3,3e-3"]
    args += ["max_steps=300", "eval_every_steps=50", "stop_at_target=false"]
    args += ["checkpoint.interval_sec=1000", "hydra.sweep.dir=sweep"]  # the signal's checkpoint
    args += data_overrides(mnist_data_dir)
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aeff", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a command
    )
    try:
        console, workers = stopped_sweep(proc, sweep, signum, to_group)
        _, alive = psutil.wait_procs(workers, timeout=5)  # joblib's resource tracker: at once
    finally:  # on a failure, nothing of it lives on
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == exit_code, console[-3000:]
    assert alive == []

    for job in "01":
        metadata = json.loads((sweep / job / "metadata.json").read_text())
        assert metadata["status"] == "interrupted", metadata
        (checkpoint,) = (sweep / job / "checkpoints").glob("[0-9]*")
        assert pd.read_csv(sweep / job / "metrics.csv")["global_step"].iloc[-1] == int(
            checkpoint.name
        )
    assert list(pd.read_csv(sweep / "summary.csv")["status"]) == ["interrupted"] * 2
    (said,) = [line for line in console.splitlines() if "Finish it with: " in line]
    finish = said.split("Finish it with: ", 1)[1]
    assert finish.startswith("python -m aeff ")

    out = run_aeff(shlex.split(finish)[3:], tmp_path)  # at once: every run dir is free
    assert out.returncode == 0, out.stderr[-3000:]
    assert list(pd.read_csv(sweep / "summary.csv")["status"]) == ["completed"] * 2


def rows(run_dir) -> int:
    """The evaluation rows in a run dir's metrics.csv so far."""
    path = run_dir / "metrics.csv"
    return max(len(path.read_text().splitlines()) - 1, 0) if path.exists() else 0


def stopped_sweep(proc, sweep, signum, to_group) -> tuple[str, list[psutil.Process]]:
    """Signal the sweep once both trials have a row; its console and its worker processes."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(rows(sweep / job) for job in "01"):
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children()  # joblib's, and its resource tracker
    if to_group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    console, _ = proc.communicate(timeout=60)
    return console, workers
