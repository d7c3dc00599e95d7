"""The sweep report's rules on records written by hand: order, statuses, score, best trial."""

import json
from pathlib import Path

import pandas as pd
import pytest

from aeff import results
from aeff.logging.concat import concatenate_csvs
from aeff.logging.run_dir import LOCK

HEADER = "global_step,accumulated_submission_time,goal_reached,validation.accuracy,run_idx\n"


def trial(run_dir: Path, status: str, rows: list[tuple], lr: float) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "metadata.json").write_text(
        json.dumps(
            {
                "status": status,
                "global_step": rows[-1][0],  # a finished trial's last row
                "workload": "mnist",
                "submission._target_": "aeff.submissions.adam.Adam",
                "workload.target_metric": "validation.accuracy",
                "hparams.lr": lr,
            }
        )
    )
    lines = [f"{step},{time},{reached},{accuracy},0\n" for step, time, reached, accuracy in rows]
    (run_dir / "metrics.csv").write_text(HEADER + "".join(lines))


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Jobs 0-11 planned; 0, 2 and 10 ran; 1 died while running, on target; the others
    never started."""
    results.write_plan(tmp_path, [[f"hparams.lr={i}"] for i in range(12)])
    # Job 0 crosses the target at 2.0 s, falls below it, and is back above at 3.0 s.
    rows = [
        (10, 1.0, False, 0.9),
        (20, 2.0, True, 0.97),
        (30, 3.0, True, 0.96),
        (40, 4.0, True, 0.98),
    ]
    trial(tmp_path / "0", "completed", rows, 0.1)
    trial(tmp_path / "2", "diverged", [(10, 1.0, False, 0.5)], 0.2)
    trial(tmp_path / "10", "completed", [(10, 1.5, True, 0.975)], 0.3)
    trial(tmp_path / "1", "running", [(10, 0.5, True, 0.975)], 0.4)
    (tmp_path / "1" / LOCK).touch()  # a lock no process holds: its process died
    return tmp_path


def test_the_report_lists_every_planned_trial_in_job_order(sweep):
    table, report = results.write_sweep_report(sweep)
    jobs = [Path(d).name for d in table["run_dir"]]
    assert jobs == [str(i) for i in range(12)]
    statuses = dict(zip(jobs, table["status"], strict=True))
    assert statuses["0"] == "completed" and statuses["2"] == "diverged"
    assert statuses["1"] == "interrupted" and statuses["3"] == results.NOT_STARTED
    assert report["num_trials"] == 4 and report["num_planned"] == 12
    assert report["failed"] == [
        str(sweep / j)
        for j in jobs
        if statuses[j]
        not in (
            "completed",
            "diverged",
        )
    ]  # divergence is a result; an interrupted or unstarted trial is not
    assert set(table.loc[table["status"] != results.NOT_STARTED, "workload"]) == {"mnist"}
    assert set(table["submission"].dropna()) == {"Adam"}


def test_time_to_target_is_the_first_crossing_and_the_score_the_least(sweep):
    table, report = results.write_sweep_report(sweep)
    by_job = table.set_index(table["run_dir"].map(lambda d: Path(d).name))
    assert by_job.loc["0", "time_to_target"] == 2.0  # not 4.0, the last crossing
    # The crossing lies between the rows at 1.0 s and 2.0 s; job 10 crossed by its first.
    assert by_job.loc["0", "time_to_target_resolution"] == 0.5
    assert by_job.loc["0", "steps_to_target"] == 20
    assert by_job.loc["10", "time_to_target_resolution"] == 1.0
    assert pd.isna(by_job.loc["2", "time_to_target_resolution"])
    assert by_job.loc["0", "best_target_metric"] == 0.98
    assert pd.isna(by_job.loc["2", "time_to_target"])
    # Job 1 crossed first, but died: its row says so, the score counts finished trials
    assert by_job.loc["1", "time_to_target"] == 0.5
    assert report["score"] == 1.5 and report["num_reached_target"] == 2
    assert report["best_trial"]["hparams.lr"] == 0.3
    on_disk = json.loads((sweep / "sweep.json").read_text())
    assert on_disk["score"] == 1.5
    assert len(pd.read_csv(sweep / "summary.csv")) == 12


@pytest.mark.parametrize("status", ["failed", "interrupted", "damaged"])
def test_a_trial_that_did_not_finish_never_sets_the_score_whatever_its_rows(tmp_path, status):
    """Job 0 reached the target first (0.5 s), then failed, was interrupted, or had its
    rows changed since it completed: no score from it, alone or beside a finished trial."""
    results.write_plan(tmp_path, [["hparams.lr=0.1"], ["hparams.lr=0.2"]])
    recorded = "completed" if status == "damaged" else status
    trial(tmp_path / "0", recorded, [(10, 0.5, True, 0.98)], 0.1)
    if status == "damaged":  # a row added after the record was ended
        with (tmp_path / "0" / "metrics.csv").open("a") as rows:
            rows.write("20,0.6,True,0.99,0\n")
    table, report = results.write_sweep_report(tmp_path)
    assert table["status"].tolist() == [status, results.NOT_STARTED]
    assert table["time_to_target"].iloc[0] == 0.5  # its rows say so; the score does not
    assert report["score"] is None and report["best_trial"] is None
    assert report["num_reached_target"] == 0 and str(tmp_path / "0") in report["failed"]
    trial(tmp_path / "1", "completed", [(10, 1.5, True, 0.975)], 0.2)
    _, report = results.write_sweep_report(tmp_path)
    assert report["score"] == 1.5 and report["best_trial"]["hparams.lr"] == 0.2
    assert report["num_reached_target"] == 1
    assert json.loads((tmp_path / "sweep.json").read_text())["score"] == 1.5


def test_the_terminal_table_shows_missing_values_one_way(sweep):
    table, _ = results.write_sweep_report(sweep)
    text = results.as_text(table, sweep)
    assert "None" not in text and "NaN" not in text and "nan" not in text
    assert text.splitlines()[1].split()[0] == "0"  # run dirs relative to the sweep


def test_concat_leaves_out_earlier_attempts(sweep):
    trial(sweep / "2" / ".attempts" / "0", "failed", [(10, 1.0, False, 0.1)], 0.2)
    frame = pd.read_csv(concatenate_csvs(sweep))
    assert not frame["run_dir"].str.contains(".attempts").any()
    assert len(frame) == 1 + 4 + 1 + 1  # jobs 1, 0, 2 and 10


def test_a_sweep_where_no_trial_reached_the_target_shows_dashes(tmp_path):
    trial(tmp_path / "0", "completed", [(10, 1.0, False, 0.5)], 0.1)
    table, report = results.write_sweep_report(tmp_path)
    assert report["score"] is None and report["best_trial"] is None
    text = results.as_text(table, tmp_path)
    values = dict(zip(*(line.split() for line in text.splitlines()[:2]), strict=True))
    assert "None" not in text and values["time_to_target"] == "-"


def test_plot_labels_axes_with_units_and_frames_the_target(sweep, tmp_path):
    assert results.axis_label("accumulated_submission_time") == "accumulated_submission_time (s)"
    assert results.axis_label("validation.loss") == "validation.loss (nats)"
    assert results.axis_label("validation.accuracy") == "validation.accuracy (fraction)"
    low, high = results.around_target(pd.Series([0.1, 0.9, 0.98]), 0.97, higher_is_better=True)
    assert 0.8 < low < 0.97 < 0.98 < high  # the climb from 0.1 is off the frame
    low, high = results.around_target(pd.Series([2.3, 0.5, 0.2]), 0.3, higher_is_better=False)
    assert low < 0.2 < 0.3 < high < 2.3
    out = results.plot(sweep, "global_step", "validation.accuracy", tmp_path / "p.png")
    assert out.stat().st_size > 0
