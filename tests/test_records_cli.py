"""The records a user gets from `python -m aeff`: every key and column, crash safety, tools."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import data_overrides, run_aeff, run_sweep, start_aeff

METADATA_KEYS = [
    "status",
    "workload",
    "log_dir",
    "datetime",
    "python_version",
    "python_compiler",
    "os_platform",
    "cwd_git_branch",
    "cwd_git_commit_hash",
    "cwd_git_dirty",
    "git_branch",
    "git_commit_hash",
    "aeff_git_commit_hash",
    "aeff_version",
    "cpu_model_name",
    "cpu_count",
    "gpu_model_name",
    "gpu_count",
    "gpu_driver",
    "jax_version",
    "jax_backend",
    "jax_device_count",
    "jax_devices",
    "command",
    "hydra.overrides",
    "hydra.job.num",
    "sweep_dir",
    "rng_seed",
    "workload.target_metric",
    "workload.max_allowed_runtime_sec",
    "hparams.lr",
    "submission._target_",
    "meta.study",
    "end_datetime",
    "wall_time",
    "elapsed_time",
    "attempt",
    "identity",
    "batch_size",
    "steps_per_dispatch",
    "stop_at_target",
    "compile_time",
    "time_to_target",
    "final.validation.accuracy",
]
COLUMNS = [
    "framework",
    "workload",
    "run_idx",
    "rng_seed",
    "global_step",
    "epoch",
    "accumulated_submission_time",
    "accumulated_eval_time",
    "wall_time",
    "global_start_time",
    "steps_per_epoch",
    "batch_size",
    "goal_reached",
    "is_time_remaining",
    "train.loss",
    "validation.loss",
    "validation.accuracy",
    "test.loss",
    "test.accuracy",
    "hparams.lr",
    "hparams.one_minus_beta_1",
    "workload.target_value",
    "workload.hidden_width",
    "meta.study",
    "cpu.util.avg_percent_since_last",
    "cpu.freq.current",
    "mem.total",
    "mem.available",
    "mem.used",
    "mem.percent_used",
    "disk.read_bytes_since_boot",
    "disk.write_bytes_since_boot",
    "net.bytes_sent_since_boot",
    "net.bytes_recv_since_boot",
    "proc.rss_bytes",
    "gpu.count",
]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, mnist_data_dir):
    cwd = tmp_path_factory.mktemp("sweep")
    return run_sweep(
        [
            "hparams.lr=1e-3,3e-3",
            "+meta.study=demo",
            "max_steps=60",
            "eval_every_steps=20",
            *data_overrides(mnist_data_dir),
        ],
        cwd,
    )


@pytest.mark.slow
@pytest.mark.parametrize("job", [0, 1])
def test_each_trial_leaves_metadata_packages_and_metrics(sweep_dir, job):
    run_dir = sweep_dir / str(job)
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert [key for key in METADATA_KEYS if key not in metadata] == []
    assert metadata["status"] == "completed"
    assert metadata["hparams.lr"] == [0.001, 0.003][job]
    assert metadata["hydra.job.num"] == job and metadata["meta.study"] == "demo"
    assert metadata["sweep_dir"] == str(sweep_dir.resolve())
    assert metadata["jax_device_count"] >= 1 and metadata["cpu_count"] >= 1
    assert isinstance(metadata["rng_seed"], int) and "hostname" not in metadata
    assert metadata["elapsed_time"] > metadata["wall_time"] > 0

    lines = (run_dir / "packages.txt").read_text().splitlines()
    assert lines[0] == "# Python packages" and "# OS packages" in lines
    assert any(line.startswith("jax==") for line in lines)

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [c for c in COLUMNS if c not in rows[0]] == []
    assert [int(r["global_step"]) for r in rows] == [20, 40, 60]
    assert {r["rng_seed"] for r in rows} == {str(metadata["rng_seed"])}
    assert {r["run_idx"] for r in rows} == {str(job)} and {r["meta.study"] for r in rows} == {
        "demo"
    }
    for row in rows:
        assert float(row["mem.total"]) > 0 and float(row["proc.rss_bytes"]) > 0
        assert row["framework"] == "jax" and row["workload"] == "mnist"
        assert 0 <= float(row["validation.accuracy"]) <= 1
    assert "target_value: 0.97" in (run_dir / "config_resolved.yaml").read_text()


@pytest.mark.slow
def test_concat_plot_and_summary_on_a_sweep(sweep_dir):
    tool = [sys.executable, "-m", "aeff.results"]
    out = subprocess.run([*tool, "concat", sweep_dir], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    combined = pd.read_csv(sweep_dir / "all_metrics.csv")
    assert len(combined) == 6 and combined["run_dir"].nunique() == 2

    png = sweep_dir / "curve.png"
    out = subprocess.run(
        [*tool, "plot", sweep_dir, "--y", "validation.accuracy", "--out", png],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    out = subprocess.run([*tool, "summary", sweep_dir], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert sorted(summary["hparams.lr"]) == [0.001, 0.003]
    assert set(summary["status"]) == {"completed"}
    assert (summary["best_target_metric"] > 0.5).all()
    assert "best_target_metric" in out.stdout


@pytest.mark.slow
def test_kill_9_leaves_complete_rows_and_a_running_status(tmp_path, mnist_data_dir):
    args = ["workload.eval_period_time_sec=0.05", "stop_at_target=false"]
    proc = start_aeff([*args, *data_overrides(mnist_data_dir)], tmp_path)
    deadline = time.monotonic() + 120
    metrics = None
    while time.monotonic() < deadline:
        found = list(tmp_path.glob("outputs/*/*/metrics.csv"))
        if found and found[0].read_text().count("\n") >= 6:
            metrics = found[0]
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert metrics is not None, "the trial wrote no rows"
    text = metrics.read_text()
    assert text.endswith("\n")
    rows = list(csv.DictReader(text.splitlines()))
    header = text.splitlines()[0].split(",")
    assert all(len(row) == len(header) and None not in row.values() for row in rows)
    metadata = json.loads((metrics.parent / "metadata.json").read_text())
    assert metadata["status"] == "running"


FAILING_WORKLOAD = """
from dataclasses import dataclass
from aeff.workloads.mnist import MnistWorkload

@dataclass(frozen=True)
class BrokenMnist(MnistWorkload):
    def load_splits(self):
        raise RuntimeError("disk on fire")
"""


@pytest.mark.slow  # compiles a trial's programs: 2 s
def test_an_exception_in_the_trial_is_recorded_as_failed(tmp_path):
    (tmp_path / "broken.py").write_text(FAILING_WORKLOAD)
    out = run_aeff(
        ["workload._target_=broken.BrokenMnist"], tmp_path, env={"PYTHONPATH": str(tmp_path)}
    )
    assert out.returncode != 0
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "failed"
    assert metadata["error_type"] == "RuntimeError"
    assert metadata["error_message"] == "disk on fire"
    assert "load_splits" in metadata["traceback"]


@pytest.mark.slow  # in-process: test_run_dir_records.py
def test_logging_off_writes_no_records(tmp_path, mnist_data_dir):
    out = run_aeff(["logging=off", "debug=short", *data_overrides(mnist_data_dir)], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    assert sorted(p.name for p in run_dir.iterdir()) == [".aeff.lock", ".hydra", "aeff.log"]
