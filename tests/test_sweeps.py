"""Sweeps as a user runs them: sampled search spaces, failure isolation, resume."""

import json
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO, data_overrides, run_aeff, run_sweep
from helpers.sweeper import failures_named

from aeff import search
from aeff.results.summary import summary as read_summary

FLAKY_WORKLOAD = '''
from dataclasses import dataclass
from pathlib import Path
from aeff.workloads.mnist import MnistWorkload

@dataclass(frozen=True)
class FlakyMnist(MnistWorkload):
    """Fails while the file `fail` exists in the working directory."""

    def load_splits(self):
        if Path("fail").exists():
            raise RuntimeError("flaky storage")
        return super().load_splits()
'''

EXITING_SUBMISSION = """
import dataclasses, sys
from aeff.submissions.adam import Adam

@dataclasses.dataclass(frozen=True)
class ExitingAdam(Adam):
    \"\"\"Ends the process with status 0, as a careless script would, for an lr above 0.1.\"\"\"

    @staticmethod
    def optimizer(hparams):
        if hparams.lr > 0.1:
            sys.exit(0)
        return Adam.optimizer(hparams)
"""


CRASHING_SUBMISSION = """
import dataclasses
from aeff.submissions.adam import Adam

@dataclasses.dataclass(frozen=True)
class CrashingAdam(Adam):
    \"\"\"Crashes for an lr above 0.1.\"\"\"

    @staticmethod
    def optimizer(hparams):
        if hparams.lr > 0.1:
            raise RuntimeError("no such optimizer")
        return Adam.optimizer(hparams)
"""


def sweep_dirs(cwd):
    return sorted((cwd / "outputs" / "multirun").glob("*/*"))


def sampled_lrs(sweep_dir):
    lrs = []
    for job in sorted(
        (p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
    ):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        lrs.append(next(float(o.split("=")[1]) for o in overrides if o.startswith("hparams.lr=")))
    return lrs


@pytest.mark.slow
def test_a_sampled_sweep_trains_and_records_the_points_its_seed_gives(tmp_path, mnist_data_dir):
    """The trials run the space's points for `search.seed` (`aeff.search.sample`, whose
    reproducibility test_search.py pins), each recorded with its sampled values."""
    args = [
        "-m",
        "search_space=mnist_adam",
        "search.num_trials=4",
        "search.seed=0",
        "debug=short",
        *data_overrides(mnist_data_dir),
    ]
    out = run_aeff(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (first,) = sweep_dirs(tmp_path)
    lrs = sampled_lrs(first)
    space = yaml.safe_load((REPO / "conf" / "search_space" / "mnist_adam.yaml").read_text())
    points = search.sample(search.parse_space(space), 4, seed=0)
    assert lrs == [point["hparams.lr"] for point in points]
    assert len(set(lrs)) == 4 and all(1e-4 <= lr <= 1e-2 for lr in lrs)
    summary = pd.read_csv(first / "summary.csv")
    assert len(summary) == 4 and set(summary["status"]) == {"completed"}
    assert sorted(summary["hparams.lr"]) == pytest.approx(sorted(lrs))
    for job in range(4):
        metadata = json.loads((first / str(job) / "metadata.json").read_text())
        assert metadata["hparams.lr"] == lrs[job]  # sampled values are in the records
    report = json.loads((first / "sweep.json").read_text())
    assert report["num_trials"] == 4 and report["failed"] == []


@pytest.mark.slow
def test_failed_trial_does_not_stop_the_sweep_and_resume_reruns_only_it(tmp_path, mnist_data_dir):
    (tmp_path / "flaky.py").write_text(FLAKY_WORKLOAD)
    (tmp_path / "fail").touch()
    args = [
        "-m",
        "workload._target_=aeff.workloads.mnist.MnistWorkload,flaky.FlakyMnist",
        "hparams.lr=1e-3,3e-3",
        "debug=short",
        "rng_seed=null",
        *data_overrides(mnist_data_dir),
    ]
    env = {"PYTHONPATH": str(tmp_path)}
    out = run_aeff(args, tmp_path, env=env)
    assert out.returncode != 0
    (sweep,) = sweep_dirs(tmp_path)
    assert "2 of 4 planned trials failed" in out.stderr + out.stdout
    statuses = {
        j: json.loads((sweep / str(j) / "metadata.json").read_text())["status"] for j in range(4)
    }
    assert statuses == {0: "completed", 1: "completed", 2: "failed", 3: "failed"}
    finished_mtime = (sweep / "0" / "metadata.json").stat().st_mtime_ns
    assert json.loads((sweep / "sweep.json").read_text())["failed"] == [
        str(sweep / "2"),
        str(sweep / "3"),
    ]

    (tmp_path / "fail").unlink()
    out = run_aeff([*args, "resume=true", f"hydra.sweep.dir={sweep}"], tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "4 trials" in out.stdout + out.stderr and "2 to run" in out.stdout + out.stderr
    assert (sweep / "0" / "metadata.json").stat().st_mtime_ns == finished_mtime
    rerun = json.loads((sweep / "2" / "metadata.json").read_text())
    assert rerun["status"] == "completed" and rerun["attempt"] == 1
    failed = json.loads((sweep / "2" / ".attempts" / "0" / "metadata.json").read_text())
    assert failed["status"] == "failed" and failed["error_message"] == "flaky storage"
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["status"]) == ["completed"] * 4


@pytest.mark.slow
def test_a_resume_after_the_submission_file_was_edited_is_refused_naming_it(
    tmp_path, mnist_data_dir
):
    (tmp_path / "mine.py").write_text(EXITING_SUBMISSION)
    args = ["-m", "submission_path=./mine.py", "hparams.lr=1e-3,3e-3", "debug=short"]
    args += ["logging.packages=false", *data_overrides(mnist_data_dir)]
    out = run_aeff(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    records = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file() and p.suffix != ".lock"}
    (tmp_path / "mine.py").write_text(EXITING_SUBMISSION + "# edited\n")
    out = run_aeff([*args, "resume=true", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    said = (out.stdout + out.stderr).splitlines()
    (line,) = [line for line in said if "resume=true finishes" in line]
    assert f"but {tmp_path / 'mine.py'} changed since {sweep} planned it (sha256 " in line
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file() and p.suffix != ".lock"} == (
        records
    )


@pytest.mark.slow
def test_a_trial_that_calls_sys_exit_fails_alone_and_the_sweep_says_so(tmp_path, mnist_data_dir):
    (tmp_path / "exiting.py").write_text(EXITING_SUBMISSION)
    args = ["-m", "submission_path=exiting.py", "hparams.lr=0.5,0.001", "max_steps=3"]
    out = run_aeff([*args, *data_overrides(mnist_data_dir)], tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]
    (sweep,) = sweep_dirs(tmp_path)
    exited, trained = (json.loads((sweep / j / "metadata.json").read_text()) for j in "01")
    assert exited["status"] == "failed" and exited["error_type"] == "TrialExited"
    assert "sys.exit(0)" in exited["traceback"]
    assert trained["status"] == "completed" and trained["global_step"] == 3
    assert json.loads((sweep / "sweep.json").read_text())["failed"] == [str(sweep / "0")]


def test_sweep_with_bad_space_fails_before_any_trial(tmp_path):
    out = run_aeff(["-m", "search_space=mnist_adam", "search.num_trials=0"], tmp_path, timeout=60)
    assert out.returncode != 0
    assert "search.num_trials=0" in out.stdout + out.stderr
    assert not list(tmp_path.glob("outputs/multirun/*/*/0"))


@pytest.mark.slow  # trains whole trials; the fast tier keeps the rules' own tests
def test_a_logging_off_sweep_reports_its_trials_unrecorded_and_only_a_crash_fails_it(
    aeff_in_process, tmp_path, mnist_data_dir
):
    (tmp_path / "crashing.py").write_text(CRASHING_SUBMISSION)
    args = ["-m", "submission_path=crashing.py", "logging=off", "max_steps=4"]
    args += ["eval_every_steps=4", *data_overrides(mnist_data_dir)]

    with failures_named() as said:
        assert aeff_in_process(*args, "hparams.lr=1e-3", "hydra.sweep.dir=trained") == 0
    sweep = tmp_path / "trained"
    assert list(pd.read_csv(sweep / "summary.csv")["status"]) == ["unrecorded"]
    report = json.loads((sweep / "sweep.json").read_text())
    assert report["failed"] == [] and report["num_trials"] == report["num_unrecorded"] == 1
    # No failed trial, so no advice to resume (which would only train it again). (The console
    # is not read with capsys: Hydra's logging config closes pytest's capture.)
    assert said.sweeps == []
    # The report's reader says the same without the sweep's process: it began there.
    assert list(read_summary(sweep)["status"]) == ["unrecorded"]

    assert aeff_in_process(*args, "hparams.lr=3e-3,0.5", "hydra.sweep.dir=crashed") == 1
    sweep = tmp_path / "crashed"
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["status"]) == ["unrecorded", "failed"]
    assert summary["error"][1] == "RuntimeError: no such optimizer"
    assert json.loads((sweep / "sweep.json").read_text())["failed"] == [str(sweep / "1")]


@pytest.mark.slow  # a sampled trial, then again: 10 s
def test_a_trials_recorded_command_runs_it_again_with_the_same_rows(
    aeff_in_process, tmp_path, mnist_data_dir
):
    """A sampled trial's `rerun_command`: its overrides at full precision and the seed it
    drew (`rng_seed=null`), without the sweep's settings; from the record's cwd it trains
    the same rows."""
    args = ["-m", "search_space=mnist_adam", "search.num_trials=1", "max_steps=8"]
    args += ["eval_every_steps=4", "hydra.sweep.dir=sweep", *data_overrides(mnist_data_dir)]
    assert aeff_in_process(*args) == 0
    record = json.loads((tmp_path / "sweep" / "0" / "metadata.json").read_text())
    command = shlex.split(record["rerun_command"])
    assert (
        command[:3] == ["python", "-m", "aeff"] and command[-1] == f"rng_seed={record['rng_seed']}"
    )
    assert f"hparams.lr={record['hparams.lr']!r}" in command
    assert not [a for a in command if a.startswith(("search", "hydra"))]
    assert record["cwd"] == str(tmp_path)

    assert aeff_in_process(*command[3:], "hydra.run.dir=again") == 0
    rows, again = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("sweep/0", "again"))
    assert list(again["global_step"]) == list(rows["global_step"]) == [4, 8]
    for column in ("train.loss", "validation.loss", "validation.accuracy"):
        assert again[column].to_numpy() == pytest.approx(rows[column].to_numpy(), abs=1e-6)


@pytest.mark.slow  # a trial in a sweep, then its recorded command in a process of its own: 25 s
def test_the_recorded_command_of_a_users_files_and_config_dir_trains_the_same_rows(
    aeff_in_process, tmp_path, mnist_data_dir
):
    """A trial of `--config-dir conf workload=<the user's option>` and a submission file in a
    folder with a space (quoted for Hydra): its `rerun_command`, run as typed in a shell
    from the record's cwd, trains the same trial (rows equal at every step both evaluated)."""
    (tmp_path / "conf" / "workload").mkdir(parents=True)
    (tmp_path / "conf" / "workload" / "narrow.yaml").write_text(
        "defaults:\n  - mnist\n  - _self_\nhidden_width: 32\n"
    )
    (tmp_path / "dir with space").mkdir()
    (tmp_path / "dir with space" / "my_adam.py").write_text(
        (REPO / "tests" / "helpers" / "wild_adam.py").read_text()
    )
    args = ["-m", "--config-dir", "conf", "workload=narrow"]
    args += ["submission_path='dir with space/my_adam.py'", "max_steps=8", "eval_every_steps=4"]
    assert aeff_in_process(*args, "hydra.sweep.dir=sweep", *data_overrides(mnist_data_dir)) == 0
    record = json.loads((tmp_path / "sweep" / "0" / "metadata.json").read_text())
    assert record["workload.hidden_width"] == 32
    command = shlex.split(record["rerun_command"])
    assert command[:5] == ["python", "-m", "aeff", "--config-dir", str(tmp_path / "conf")]
    assert "submission=from_file" not in command

    again = run_aeff([*command[3:], "hydra.run.dir=again"], cwd=Path(record["cwd"]))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        json.loads((tmp_path / "again" / "metadata.json").read_text())["rng_seed"]
        == (record["rng_seed"])
    )
    rows, rerun = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("sweep/0", "again"))
    both = rows.merge(rerun, on="global_step", suffixes=("", ".rerun"))
    assert list(both["global_step"]) == [4, 8]
    for column in ("train.loss", "validation.loss", "validation.accuracy", "hparams.lr"):
        assert list(both[column]) == list(both[f"{column}.rerun"])


@pytest.mark.slow  # two Optuna trials of 20 steps: 10 s
def test_optunas_sweeper_gets_each_trials_objective_and_the_sweep_aeffs_report(
    tmp_path, mnist_data_dir
):
    """lightning-hydra-template's habit: `hydra/sweeper=optuna` with a preset. Each job
    returns its time to target (the budget where it missed), Optuna's results name the
    best, and the sweep dir gets summary.csv, sweep.json and report.html as aeff's own."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra")
    args = ["hydra/sweeper=optuna", "hparams_search=mnist_optuna", "hydra.sweeper.n_trials=2"]
    args += ["max_steps=20", "eval_every_steps=10", "workload.target_value=0.5"]
    sweep = run_sweep([*args, *data_overrides(mnist_data_dir)], tmp_path)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 2 and set(summary["status"]) == {"completed"}
    times = summary["time_to_target"].fillna(60.0)  # the budget where missed
    assert best["best_value"] == pytest.approx(times.min())
    lr = best["best_params"]["hparams.lr"]
    assert 1e-4 <= lr <= 1e-2 and summary["hparams.lr"][times.idxmin()] == pytest.approx(lr)
    report = json.loads((sweep / "sweep.json").read_text())
    assert report["num_trials"] == 2 and (sweep / "report.html").exists()
