"""Sweeps on a real one-node SLURM cluster (`hydra/launcher=slurm`): records, requeues
(`scontrol requeue`, preemption, time limits), `scancel`, a lost sweep process, sbatch's
refusals; a vectorized sweep as one requeued job.

The cluster is `scripts/slurm_cluster.sh up` (CI runs it as root, in its own step); the
tests skip, in one line, where no cluster answers.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import data_overrides, run_aeff

from aeff import slurm as aeff_slurm
from aeff.errors import ConfigError
from aeff.trial import train_and_evaluate
from hydra_plugins.aeff_launcher import slurm_launcher

ON_SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
]
# A trial that trains for about 15 s of budget, checkpointing every 2 s.
LONG_TRIAL = [
    "stop_at_target=false",
    "workload.max_allowed_runtime_sec=15",
    "checkpoint.interval_sec=2",
    "logging.system_metrics=false",
]


def cluster_answers() -> bool:
    if not shutil.which("sinfo"):
        return False
    listed = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True)
    return listed.returncode == 0 and {"debug*", "urgent"} <= set(listed.stdout.split())


@pytest.fixture(scope="module")
def cluster():
    """A one-node cluster with partitions `debug` and `urgent`, as
    `scripts/slurm_cluster.sh up` starts it (CI does, as root, and stops it after)."""
    if not cluster_answers():
        pytest.skip(
            "no SLURM cluster answers: start one with scripts/slurm_cluster.sh up "
            "(as root; docs/launchers.md)"
        )


def start_sweep(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "aeff", "-m", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def sweep_dir_of(cwd: Path) -> Path | None:
    found = list((cwd / "outputs" / "multirun").glob("*/*"))
    return found[0] if found else None


def rows(run_dir: Path) -> int:
    path = run_dir / "metrics.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def job_of(run_dir: Path) -> str:
    """The SLURM job whose trial trains in `run_dir` (its record names it)."""
    return json.loads((run_dir / "metadata.json").read_text())["slurm_job_id"]


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "metadata.json").read_text())


def queued(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip() in ("PENDING", "REQUEUED", "REQUEUE_HOLD")


def assert_gap_free(run_dir: Path, last_step: int) -> None:
    steps = list(pd.read_csv(run_dir / "metrics.csv")["global_step"])
    assert steps == sorted(set(steps)), steps  # no step twice, none out of order
    assert steps[-1] == last_step


@pytest.mark.slow
def test_a_sweep_on_slurm_records_every_trial_without_sacct_warnings(
    cluster, tmp_path, mnist_data_dir
):
    """One job at a time (max_batch_size=1): the second batch is submitted while the first
    job may still be COMPLETING."""
    args = [*ON_SLURM, "hparams.lr=1e-3,3e-3", "max_steps=5", *data_overrides(mnist_data_dir)]
    out = run_aeff(["-m", *args, "hydra.sweeper.max_batch_size=1"], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = sweep_dir_of(tmp_path)
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["status"]) == ["completed", "completed"]
    for job in ("0", "1"):
        assert record(sweep / job)["slurm_requeues"] == 0
    assert "sacct" not in out.stdout + out.stderr  # this cluster keeps no accounting


def preempt(job: str) -> None:
    """A job of partition `urgent` (higher priority) that needs every CPU of the node:
    SLURM preempts `job` (PreemptMode=REQUEUE, scripts/slurm_cluster.sh)."""
    cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True)
    urgent = ["-p", "urgent", "-c", cpus.stdout.split()[0], "--mem=100M", "--wrap=sleep 2"]
    subprocess.run(["sbatch", "--quiet", "-o", "/dev/null", *urgent], check=True)


STOPS = {
    "scontrol requeue": lambda job: subprocess.run(["scontrol", "requeue", job], check=True),
    "preemption": preempt,
}


@pytest.mark.slow
@pytest.mark.parametrize("stop", list(STOPS))
def test_a_requeued_trial_continues_from_its_checkpoint_in_its_own_dir(
    cluster, tmp_path, mnist_data_dir, stop
):
    sweep = start_sweep(
        [*ON_SLURM, "hparams.lr=1e-3", *LONG_TRIAL, *data_overrides(mnist_data_dir)], tmp_path
    )
    run_dir = wait_for(
        lambda: (d := sweep_dir_of(tmp_path)) and rows(d / "0") >= 5 and d / "0", "rows"
    )
    job = job_of(run_dir)
    STOPS[stop](job)
    wait_for(lambda: queued(job), "the job to be requeued")
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
    output, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, output[-3000:]
    assert "1 trials, 0 failed" in output
    facts = record(run_dir)
    assert facts["status"] == "completed"
    assert facts["slurm_requeues"] == 1
    assert facts["resumed_from_step"] is not None  # it continued, not started again
    assert_gap_free(run_dir, facts["global_step"])
    logs = "".join(p.read_text() for p in (run_dir.parent / ".submitit").rglob("*.err"))
    assert "Traceback" not in logs


@pytest.mark.slow
def test_a_trial_past_max_num_timeout_ends_interrupted_with_the_resume_command(
    cluster, tmp_path, mnist_data_dir
):
    """timeout_min=1: SLURM warns (USR2) before the limit, submitit requeues the job once
    (max_num_timeout=1), the trial continues, is warned again and ends interrupted."""
    args = [
        *ON_SLURM,
        "hydra.launcher.timeout_min=1",
        "hydra.launcher.signal_delay_s=30",
        "hydra.launcher.max_num_timeout=1",
        "hparams.lr=1e-3",
        *LONG_TRIAL,
        "workload.max_allowed_runtime_sec=600",
        *data_overrides(mnist_data_dir),
    ]
    sweep = start_sweep(args, tmp_path)

    def requeued_job():
        run_dir = sweep_dir_of(tmp_path)
        if not run_dir or not (run_dir / "0" / "metadata.json").exists():
            return None
        job = job_of(run_dir / "0")
        if queued(job):
            subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"])
            return job
        return None

    wait_for(requeued_job, "the time limit's requeue", timeout=240)
    output, _ = sweep.communicate(timeout=300)
    assert sweep.returncode != 0, output[-3000:]
    run_dir = sweep_dir_of(tmp_path) / "0"
    facts = record(run_dir)
    assert facts["status"] == "interrupted"
    assert facts["slurm_requeues"] == 1
    assert f"resume=true hydra.sweep.dir={run_dir.parent}" in output


@pytest.mark.slow
def test_a_cancelled_trial_is_interrupted_and_the_printed_command_finishes_it(
    cluster, tmp_path, mnist_data_dir
):
    args = [*ON_SLURM, "hparams.lr=1e-3", *LONG_TRIAL, *data_overrides(mnist_data_dir)]
    sweep = start_sweep(args, tmp_path)
    run_dir = wait_for(
        lambda: (d := sweep_dir_of(tmp_path)) and rows(d / "0") >= 5 and d / "0", "rows"
    )
    subprocess.run(["scancel", job_of(run_dir)], check=True)
    output, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, output[-3000:]
    assert record(run_dir)["status"] == "interrupted"
    resume = f"resume=true hydra.sweep.dir={run_dir.parent}"
    assert resume in output
    out = run_aeff(["-m", *args, *resume.split()], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    facts = record(run_dir)
    assert facts["status"] == "completed"
    assert facts["resumed_from_step"] is not None
    assert_gap_free(run_dir, facts["global_step"])


@pytest.mark.slow
def test_jobs_of_a_killed_sweep_finish_and_a_resume_submits_none_twice(
    cluster, tmp_path, mnist_data_dir
):
    """The sweep's process dies (a login node closing): its jobs train on and record; a
    resume while one still runs is refused, one after reports them finished and runs none."""
    args = [
        *ON_SLURM,
        "hparams.lr=1e-3,3e-3",
        *LONG_TRIAL,
        *data_overrides(mnist_data_dir),
    ]
    sweep = start_sweep(args, tmp_path)
    sweep_dir = wait_for(lambda: (d := sweep_dir_of(tmp_path)) and rows(d / "0") >= 2 and d, "rows")
    sweep.send_signal(signal.SIGKILL)
    sweep.communicate()
    resume = [*args, "resume=true", f"hydra.sweep.dir={sweep_dir}"]
    early = run_aeff(["-m", *resume], tmp_path)
    assert early.returncode != 0
    assert "wait for" in early.stdout + early.stderr
    jobs = {job_of(sweep_dir / n) for n in ("0", "1") if (sweep_dir / n / "metadata.json").exists()}
    wait_for(
        lambda: all(record(sweep_dir / n).get("status") == "completed" for n in ("0", "1")),
        "the jobs to finish",
    )
    wait_for(lambda: not any(queued(j) for j in jobs), "the jobs to leave the queue")
    out = run_aeff(["-m", *resume], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    said = out.stdout + out.stderr
    assert "Sweep of 2 trials in" in said and ": 0 to run" in said, said[-3000:]
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert list(summary["status"]) == ["completed", "completed"]


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("hydra.launcher.partition=nosuch", "hydra.launcher.partition"),
        ("hydra.launcher.gpus_per_node=1", "hydra.launcher.gpus_per_node=0"),
    ],
)
@pytest.mark.slow
def test_an_sbatch_refusal_is_one_line_naming_the_key(
    cluster, tmp_path, mnist_data_dir, setting, key
):
    args = [*ON_SLURM, setting, "hparams.lr=1e-3", "max_steps=5", *data_overrides(mnist_data_dir)]
    out = run_aeff(["-m", *args], tmp_path)
    assert out.returncode == 2
    said = out.stdout + out.stderr
    refusals = [line for line in said.splitlines() if "sbatch refused" in line]
    assert len(refusals) == 1 and key in refusals[0], said[-3000:]
    assert "Traceback" not in said


def in_job(monkeypatch, job: str, restarts: int) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", job)
    monkeypatch.setenv("SLURM_RESTART_COUNT", str(restarts))


def test_a_record_is_its_jobs_own_only_at_a_later_restart_of_the_same_job(monkeypatch):
    written = {"slurm_job_id": "41", "slurm_requeues": 0}
    in_job(monkeypatch, "41", 1)
    assert aeff_slurm.continues_own_job(written)
    in_job(monkeypatch, "41", 0)  # another step of the same run of the job
    assert not aeff_slurm.continues_own_job(written)
    in_job(monkeypatch, "42", 1)
    assert not aeff_slurm.continues_own_job(written)
    monkeypatch.delenv("SLURM_JOB_ID")
    assert not aeff_slurm.continues_own_job(written)
    assert aeff_slurm.job_facts() == {}


def test_only_the_requeued_job_continues_its_trial_without_resume(
    trial_config, tmp_path, monkeypatch
):
    """An interrupted trial of job 41 with its checkpoint: job 41 run again by SLURM
    continues it without resume=true; job 42, or job 41's same run, is refused."""
    cfg = trial_config("checkpoint.keep=true", "checkpoint.interval_sec=1e-6", "rng_seed=3")
    run_dir = tmp_path / "run"
    in_job(monkeypatch, "41", 0)
    train_and_evaluate(cfg, run_dir)
    metadata = run_dir / "metadata.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "status": "interrupted"}))
    for job, restarts in (("42", 1), ("41", 0)):
        in_job(monkeypatch, job, restarts)
        with pytest.raises(ConfigError, match="holds an earlier trial: add resume=true"):
            train_and_evaluate(cfg, run_dir)
    in_job(monkeypatch, "41", 1)
    result = train_and_evaluate(cfg, run_dir)
    assert result.status == "completed"
    facts = record(run_dir)
    assert facts["slurm_requeues"] == 1 and facts["resumed_from_step"] == 12
    assert_gap_free(run_dir, 12)


@pytest.mark.slow
def test_a_vectorized_sweep_in_one_requeued_job_continues_every_trial(
    cluster, tmp_path, mnist_data_dir
):
    """docs/launchers.md: groups of trials on SLURM as one job running the whole sweep,
    `resume=true` in its command so that a requeued job finishes what it began."""
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "aeff",
        "-m",
        "hydra/launcher=vectorized",
        "resume=true",
        f"hydra.sweep.dir={sweep_dir}",
        "hparams.lr=1e-3,3e-3",
        *LONG_TRIAL,
        "workload.max_allowed_runtime_sec=12",
        *data_overrides(mnist_data_dir),
    ]
    script = tmp_path / "sweep.sh"
    script.write_text("#!/bin/bash\nexec " + " ".join(command) + "\n")
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--requeue", "-c", "1", "--mem=3G", "-o", "job.log", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    job = submitted.stdout.strip()
    wait_for(lambda: rows(sweep_dir / "0") >= 5, "rows")
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for(lambda: queued(job), "the job to be requeued")
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
    log = tmp_path / "job.log"  # the rerun's (sbatch truncates it)
    wait_for(lambda: log.exists() and "2 trials, 0 failed" in log.read_text(), "its report", 300)
    for trial in ("0", "1"):
        facts = record(sweep_dir / trial)
        assert facts["status"] == "completed" and facts["slurm_requeues"] == 1
        assert facts["resumed_from_step"] is not None
        assert_gap_free(sweep_dir / trial, facts["global_step"])


@pytest.mark.parametrize(
    ("sbatch_said", "key"),
    [
        (
            "sbatch: error: Memory specification can not be satisfied\nsbatch: error: Batch "
            "job submission failed: Requested node configuration is not available",
            "hydra.launcher.mem_gb",
        ),
        (
            "sbatch: error: Batch job submission failed: Requested node configuration is not "
            "available",
            "hydra.launcher.cpus_per_task",
        ),
        ("sbatch: error: Invalid generic resource (gres) specification", "gpus_per_node=0"),
    ],
)
def test_sbatchs_refusal_names_the_key_to_change(sbatch_said, key):
    said = slurm_launcher.sbatch_refusal(f"Command failed\n{sbatch_said}\n")
    assert said.startswith("sbatch refused the jobs (") and key in said
    assert "\n" not in said


def test_an_error_without_sbatchs_refusal_is_not_taken_for_one():
    assert slurm_launcher.sbatch_refusal("Could not connect to slurmctld") is None
