"""`hydra/launcher=vectorized`, as `python -m aeff -m` runs it: in this process, which jobs
form groups, what Hydra's callbacks and JobReturns see, each job's log (in-process, mutmut can
credit these tests); then end to end in processes: the same records as the default launcher,
trials grouped by what they share, bad input and signals as in any sweep, and a resume of the
unfinished trials. Which trials share a program, and a group's lifecycle, are in
test_group.py."""

import json
import logging
import signal
import time
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from helpers import (
    HELPERS,
    data_overrides,
    owned_by_another_process,
    run_aeff,
    run_sweep,
    start_aeff,
)
from helpers.in_process import aeff_main, metadata, root_logging_kept
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback

from aeff.cli import app
from aeff.records.concat import concatenate_csvs
from aeff.results.plots import plot
from hydra_plugins.aeff_launcher.vectorized_launcher import VectorizedLauncherConf

LRS = ["0.001", "0.002", "0.003", "0.004", "-1"]  # as the sweeper writes them
RECORDER = f"+hydra.callbacks.record._target_={__name__}.Recorder"


class Recorder(Callback):
    """What Hydra's per-job callbacks are told, in the order they are told it, and what
    the launcher returns."""

    calls: ClassVar[list[tuple[str, int]]] = []
    returns: ClassVar[dict[int, JobReturn]] = {}
    launched: ClassVar[list[list[JobReturn]]] = []  # what each launch returned
    task_functions: ClassVar[set] = set()

    def on_job_start(self, config, task_function, **kwargs) -> None:
        Recorder.calls.append(("start", config.hydra.job.num))
        Recorder.task_functions.add(task_function)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        Recorder.calls.append(("end", config.hydra.job.num))
        Recorder.returns[config.hydra.job.num] = job_return


def launcher_hydra_runs() -> type:
    """The launcher class Hydra will instantiate, after its plugin scan. The scan runs once
    a process, at the first `Plugins.instance()`, and executes again every plugin module it
    can list on `sys.path` (the repo root is there under `python -m pytest`, or as the cwd),
    making a new `VectorizedLauncher`: the class this module imported may not be Hydra's,
    and patching it would patch nothing."""
    app.register()
    return Plugins.instance().class_name_to_class[VectorizedLauncherConf._target_]


@pytest.fixture
def sweep(monkeypatch, tmp_path, mnist_data_dir):
    """`python -m aeff -m hydra/launcher=vectorized ARGS` in `tmp_path`, in this process;
    returns its exit status. The sweep dir is `tmp_path/sweep`."""
    monkeypatch.chdir(tmp_path)
    Recorder.calls, Recorder.returns, Recorder.launched = [], {}, []
    Recorder.task_functions = set()
    launcher = launcher_hydra_runs()
    launch = launcher.launch

    def recorded_launch(self, job_overrides, initial_job_idx):
        Recorder.launched.append(launch(self, job_overrides, initial_job_idx))
        return Recorder.launched[-1]

    monkeypatch.setattr(launcher, "launch", recorded_launch)

    def run(*args: str) -> int:
        typed = ["-m", "hydra/launcher=vectorized", "hydra.sweep.dir=sweep", RECORDER, *args]
        return aeff_main(monkeypatch, *typed, *data_overrides(mnist_data_dir))

    with root_logging_kept():
        yield run


def log_of(job_dir: Path) -> list[str]:
    return (job_dir / "aeff.log").read_text().splitlines()


@pytest.mark.slow  # trains whole trials; the fast tier keeps the rules' own tests
def test_each_job_of_a_group_is_a_hydra_job_with_its_own_log(sweep, tmp_path):
    """Jobs 0-2 form a group, in which job 2's run dir is held by another process; job 3
    runs alone (the group's limit), job 4 (a bad lr) too. Hydra's callbacks and JobReturns
    tell each job's own story, as the basic launcher would."""
    with owned_by_another_process(tmp_path / "sweep" / "2"):
        status = sweep(
            f"hparams.lr={','.join(LRS)}",
            "max_steps=2",
            "eval_every_steps=2",
            "hydra.launcher.trials_per_program=3",
        )
    assert status == 1  # a failed trial fails the sweep
    assert Recorder.calls == [
        ("start", 0), ("start", 1), ("start", 2), ("end", 0), ("end", 1), ("end", 2),
        ("start", 3), ("end", 3), ("start", 4), ("end", 4),
    ]  # fmt: skip
    outcomes = {}
    for job, job_return in Recorder.returns.items():
        value = job_return._return_value  # a result's dict, or what ended the job
        failed = isinstance(value, BaseException)
        outcomes[job] = (
            job_return.status.name,
            type(value).__name__ if failed else value["status"],
        )
        assert job_return.hydra_cfg.hydra.job.num == job and "hydra" not in job_return.cfg
        assert job_return.overrides[0] == f"hparams.lr={LRS[job]}"
        assert job_return.working_dir == str(tmp_path)
    assert outcomes == {
        0: ("COMPLETED", "completed"),
        1: ("COMPLETED", "completed"),
        2: ("FAILED", "RunDirBusy"),
        3: ("COMPLETED", "completed"),
        4: ("FAILED", "ConfigError"),
    }
    (task_function,) = Recorder.task_functions  # the app's job function, grouped or not
    assert task_function.aeff_trial_job
    (launched,) = Recorder.launched  # a JobReturn a job, in the jobs' order
    assert [id(r) for r in launched] == [id(Recorder.returns[job]) for job in range(5)]
    # one task name, grouped or not: Hydra's, after the module of `hydra.main`
    assert {r.task_name for r in Recorder.returns.values()} == {"app"}
    groups = {job: metadata(tmp_path / "sweep" / str(job)).get("group.id") for job in (0, 1, 3)}
    assert groups == {0: "0-2", 1: "0-2", 3: None}
    for job in (0, 1):
        log = log_of(tmp_path / "sweep" / str(job))
        assert log[0].endswith("] - 3 trials in one program: jobs 0, 1, 2")
        named = [line.split(" - ", 1)[1] for line in log if " - job " in line]
        assert named and all(line.startswith(f"job {job}: ") for line in named), log
        assert not any(f"job {job}: job" in line for line in named)
        assert not any("Records of this trial" in line for line in log)  # job 3's line
    assert not any(" - job " in line for line in log_of(tmp_path / "sweep" / "3"))
    # Hydra's logging as before the launch (`hydra_logging`: one console handler), so the
    # sweeper's last lines are printed once. (Not read with capsys: Hydra's dictConfig closes
    # every handler; absl's, made while pytest's capture was sys.stderr, would close it.)
    assert [type(h) for h in logging.getLogger().handlers] == [logging.StreamHandler]


# End to end, in processes -------------------------------------------------------------

WILD_ADAM = HELPERS / "wild_adam.py"
GRID = [  # lr x epsilon x seed: the lr=1e37 trials diverge at their second step
    "hparams.lr=2e-3,1e37",
    "hparams.epsilon=1e-8,1e-4",
    "rng_seed=5,6",
    f"submission_path={WILD_ADAM}",
    "batch_size=256",
    "max_steps=24",
    "eval_every_steps=8",
    "workload.target_value=0.8155",  # validation accuracy: the seed-5 trials reach it first
]
JOBS = [str(job) for job in range(8)]
EVAL_COLUMNS = [
    "global_step",
    "epoch",
    "train.loss",
    "validation.loss",
    "validation.accuracy",
    "test.loss",
    "test.accuracy",
]


@pytest.fixture(scope="module")
def both_launchers(tmp_path_factory, mnist_data_dir):
    """The grid's sweep dirs: with the default launcher, and with the vectorized one."""
    return {
        launcher: run_sweep(
            [*GRID, f"hydra/launcher={launcher}", *data_overrides(mnist_data_dir)],
            tmp_path_factory.mktemp(launcher),
        )
        for launcher in ("basic", "vectorized")
    }


@pytest.mark.slow
def test_each_trial_records_what_it_records_with_the_default_launcher(both_launchers):
    """Rows, status, target: while four trials diverge (and leave the program), two reach
    the target early (and leave it) and two train on."""
    basic, vectorized = both_launchers["basic"], both_launchers["vectorized"]
    ended = []
    for job in JOBS:
        alone, grouped = metadata(basic / job), metadata(vectorized / job)
        assert grouped["status"] == alone["status"]
        assert grouped["global_step"] == alone["global_step"]
        assert grouped["steps_to_target"] == alone["steps_to_target"]
        ended.append((grouped["status"], grouped["global_step"], grouped["steps_to_target"]))
        rows_alone = pd.read_csv(basic / job / "metrics.csv")[EVAL_COLUMNS]
        rows_grouped = pd.read_csv(vectorized / job / "metrics.csv")[EVAL_COLUMNS]
        pd.testing.assert_frame_equal(rows_grouped, rows_alone, rtol=2e-5, atol=1e-6)
    # jobs: lr (2e-3, 1e37) x epsilon (1e-8, 1e-4) x seed (5, 6)
    reached, trained_on, diverged = (
        ("completed", 16, 16),
        ("completed", 24, 24),
        ("diverged", 2, None),
    )
    assert ended == [reached, trained_on, reached, trained_on, *[diverged] * 4]
    summary = [pd.read_csv(s / "summary.csv") for s in (basic, vectorized)]
    assert list(summary[1]["status"]) == list(summary[0]["status"])
    log = (vectorized / "0" / "aeff.log").read_text()
    assert "4 trials still running: a program of their own" in log
    assert "2 trials still running: a program of their own" in log


@pytest.mark.slow
def test_a_group_on_four_devices_records_what_one_trial_on_one_records(
    both_launchers, tmp_path, mnist_data_dir
):
    """Each trial's batch is split over the devices: the trajectories do not change. Two of
    the grid's trials (its jobs 0 and 2: lr 2e-3, seed 5, each epsilon)."""
    four = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    args = [*GRID[3:], "hparams.lr=2e-3", "hparams.epsilon=1e-8,1e-4", "rng_seed=5"]
    args += ["hydra/launcher=vectorized", "hydra.sweep.dir=sweep"]
    out = run_aeff(["-m", *args, *data_overrides(mnist_data_dir)], tmp_path, env=four)
    assert out.returncode == 0, out.stderr[-3000:]
    for job, grid_job in (("0", "0"), ("1", "2")):
        record = metadata(tmp_path / "sweep" / job)
        assert record["jax_device_count"] == 4 and record["group.size"] == 2
        rows = pd.read_csv(tmp_path / "sweep" / job / "metrics.csv")[EVAL_COLUMNS]
        alone = pd.read_csv(both_launchers["basic"] / grid_job / "metrics.csv")[EVAL_COLUMNS]
        pd.testing.assert_frame_equal(rows, alone, rtol=2e-5, atol=1e-6)


@pytest.mark.slow
def test_the_record_names_the_group_and_each_log_its_own_trial(both_launchers):
    vectorized = both_launchers["vectorized"]
    records = [metadata(vectorized / job) for job in JOBS]
    assert {(r["group.id"], r["group.size"]) for r in records} == {("0-7", 8)}
    rows = pd.read_csv(vectorized / "0" / "metrics.csv")
    assert set(rows["group.id"]) == {"0-7"} and set(rows["group.size"]) == {8}
    assert "group.id" not in metadata(both_launchers["basic"] / "0")
    for job in JOBS:
        log = (vectorized / job / "aeff.log").read_text()
        named = {
            line.split("job ")[1].split(":")[0] for line in log.splitlines() if "- job " in line
        }
        assert named == {job} and f"job {job}: job" not in log, log
        assert "8 trials in one program" in log


@pytest.mark.slow
def test_the_results_tools_read_a_vectorized_sweep_as_any_other(both_launchers, tmp_path):
    vectorized = both_launchers["vectorized"]
    sweep = json.loads((vectorized / "sweep.json").read_text())
    assert sweep["num_trials"] == 8 and sweep["failed"] == []
    rows = pd.read_csv(concatenate_csvs(vectorized))
    assert sorted(set(rows["run_idx"])) == list(range(8))
    assert set(rows["group.size"]) == {8}
    plotted = plot(vectorized, "global_step", "validation.accuracy", tmp_path / "a.png")
    assert plotted.stat().st_size > 0


@pytest.mark.slow
def test_trials_that_differ_in_their_programs_or_are_bad_run_apart(tmp_path, mnist_data_dir):
    """Two batch sizes make two groups; a bad lr is refused by its own job, alone. Every
    job, grouped or not, gets Hydra's job callbacks and a JobReturn."""
    args = [
        "-m",
        "hparams.lr=1e-3,2e-3,-1",
        "batch_size=128,256",
        "max_steps=4",
        "hydra/launcher=vectorized",
        "hydra.sweep.dir=sweep",
        "+hydra.callbacks.jobs._target_=helpers.job_callbacks.JobFiles",
        *data_overrides(mnist_data_dir),
    ]
    out = run_aeff(args, tmp_path, env={"PYTHONPATH": str(Path(__file__).parent)})
    assert out.returncode == 1  # a failed trial fails the sweep
    sweep = tmp_path / "sweep"
    told = {job: (sweep / str(job) / "callbacks.txt").read_text() for job in range(6)}
    for job in range(4):  # a result: its first key
        assert told[job] == f"start {job}\nend COMPLETED accumulated_eval_time\n"
    for job in (4, 5):
        assert told[job] == f"start {job}\nend FAILED ConfigError\n"
    records = {job: metadata(sweep / str(job)) for job in range(6)}
    assert {j: r.get("group.id") for j, r in records.items()} == {
        0: "0-2", 1: "1-3", 2: "0-2", 3: "1-3", 4: None, 5: None,
    }  # fmt: skip
    assert [records[j]["status"] for j in range(6)] == ["completed"] * 4 + ["failed"] * 2
    assert "lr=-1" in records[4]["error_message"]


@pytest.mark.slow
def test_a_signal_ends_every_trial_of_a_group_and_a_resume_finishes_them_together(
    tmp_path, mnist_data_dir
):
    args = [
        "-m",
        "hparams.lr=1e-3,2e-3",
        "stop_at_target=false",
        "max_steps=300",
        "eval_every_steps=20",
        "checkpoint.interval_sec=1000",  # so the only checkpoints are the signal's
        "hydra/launcher=vectorized",
        "hydra.sweep.dir=sweep",
        *data_overrides(mnist_data_dir),
    ]
    sweep = tmp_path / "sweep"
    proc = start_aeff(args, tmp_path)
    deadline = time.monotonic() + 120
    while not all((sweep / job / "metrics.csv").exists() for job in ("0", "1")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    stopped = {}
    for job in ("0", "1"):
        assert metadata(sweep / job)["status"] == "interrupted"
        assert metadata(sweep / job)["group.size"] == 2
        (checkpoint,) = (sweep / job / "checkpoints").glob("[0-9]*")
        stopped[job] = int(checkpoint.name)
        assert 0 < stopped[job] < 300

    out = run_aeff([*args, "resume=true"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed_in = set()
    for job in ("0", "1"):
        record = metadata(sweep / job)
        assert record["status"] == "completed" and record["global_step"] == 300
        rows = pd.read_csv(sweep / job / "metrics.csv")
        steps = list(rows["global_step"])
        assert steps == sorted(set(steps)) and steps[-1] == 300
        assert stopped[job] in steps  # continued from its checkpoint, not started again
        resumed = rows[rows["global_step"] > stopped[job]]
        assert set(resumed["group.size"]) == {2}
        resumed_in |= set(resumed["group.id"])
    assert len(resumed_in) == 1  # the two trials continued together, in one group
