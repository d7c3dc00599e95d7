"""Launchers run the same trials with the same records: joblib in parallel, submitit."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from helpers import data_overrides, run_aeff, run_sweep

KILLED_WORKER = """
import dataclasses, os, signal
from pathlib import Path
from aeff.submissions.adam import Adam

@dataclasses.dataclass(frozen=True)
class KilledAdam(Adam):
    \"\"\"SIGKILL-ed, as by the kernel's out-of-memory killer, for an lr above 0.1 while the
    file `kill` exists.\"\"\"

    @staticmethod
    def optimizer(hparams):
        if hparams.lr > 0.1 and Path("kill").exists():
            os.kill(os.getpid(), signal.SIGKILL)
        return Adam.optimizer(hparams)
"""


def finished_sweep(cwd, args, mnist_data_dir):
    sweep = run_sweep(
        [
            "hparams.lr=1e-3,3e-3",
            "max_steps=5",
            *args,
            *data_overrides(mnist_data_dir),
        ],
        cwd,
    )
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["status"]) == ["completed", "completed"]
    assert sorted(summary["hparams.lr"]) == [0.001, 0.003]
    for job in ("0", "1"):
        for name in ("metadata.json", "metrics.csv", "packages.txt"):
            assert (sweep / job / name).exists()
    return sweep


@pytest.mark.slow
def test_two_parallel_joblib_workers_get_their_own_devices(tmp_path, mnist_data_dir):
    sweep = finished_sweep(
        tmp_path,
        [
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=2",
            "devices.per_trial=1",
            "devices.ids=[0,1]",
        ],
        mnist_data_dir,
    )
    metadata = [json.loads((sweep / job / "metadata.json").read_text()) for job in ("0", "1")]
    assert sorted(m["cuda_visible_devices"] for m in metadata) == ["0", "1"]
    assert [m["parallel_trials"] for m in metadata] == [2, 2]  # each knows it had company


@pytest.mark.slow
def test_two_trials_through_submitit_local(tmp_path, mnist_data_dir):
    token = "plantedSubmititToken0123"
    label = f"+meta.source='https://reader:{token}@data.example.com/x'"
    sweep = finished_sweep(tmp_path, ["hydra/launcher=submitit_local", label], mnist_data_dir)
    assert list((sweep / ".submitit").rglob("*.out"))  # submitit's logs stay
    for path in (p for p in sweep.rglob("*") if p.is_file()):  # its pickles held the token
        assert token not in path.read_bytes().decode(errors="replace"), path


def test_claimed_slots_never_overlap(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from aeff.devices import claim_devices;"
        "print(claim_devices(2, [0, 1, 2, 3], Path(sys.argv[1])), flush=True);"
        "time.sleep(1.5)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, tmp_path], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    slots = sorted(proc.stdout.readline().strip() for proc in procs)
    third = subprocess.run([sys.executable, "-c", code, tmp_path], capture_output=True, text=True)
    for proc in procs:
        proc.wait()
    assert slots == ["[0, 1]", "[2, 3]"]
    assert "All 2 slots of 2 GPUs are taken" in third.stderr


@pytest.mark.slow
def test_a_worker_the_kernel_kills_ends_the_sweep_in_one_line_and_resume_finishes_it(
    tmp_path, mnist_data_dir
):
    (tmp_path / "killed.py").write_text(KILLED_WORKER)
    (tmp_path / "kill").touch()
    args = ["-m", "hydra/launcher=parallel", "submission_path=killed.py", "hparams.lr=0.5,1e-3"]
    args += ["max_steps=3", "hydra.sweep.dir=sweep", *data_overrides(mnist_data_dir)]
    out = run_aeff(args, tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    console = (out.stdout + out.stderr).splitlines()
    (said,) = [line for line in console if "The launcher failed" in line]
    assert said.endswith(f"resume=true hydra.sweep.dir={tmp_path / 'sweep'}")
    assert "TerminatedWorkerError: A worker process managed by the executor" in said
    report = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert str(tmp_path / "sweep" / "0") in report["failed"]

    (tmp_path / "kill").unlink()
    out = run_aeff([*args, "resume=true"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "sweep" / "summary.csv")
    assert list(summary["status"]) == ["completed", "completed"]
