"""`hydra/launcher=vectorized` end to end: the same records as the default launcher, trials
grouped by what they share, bad input and signals as in any sweep, and a resume of the
unfinished trials."""

import json
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import HELPERS, data_overrides, run_aeff, run_sweep, start_aeff

from aeff.records.concat import concatenate_csvs
from aeff.results.plots import plot

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


def metadata(run_dir: Path) -> dict:
    return json.loads((run_dir / "metadata.json").read_text())


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
