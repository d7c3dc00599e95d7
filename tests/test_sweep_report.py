"""A sweep's report files (`aeff/results/sweep_report.py`: summary.csv, sweep.json), on
records written by hand: every planned trial in job order, time to target, the score and
the best trial, and what the sweep was measured under."""

import json
import logging
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers.written_trials import example_sweep, trial

from aeff.records import sweep_dir as sweep_record
from aeff.results import scoring, trials_table
from aeff.results.summary import NOT_STARTED, summary
from aeff.results.sweep_report import write_sweep_report
from aeff.results.text import as_text


@pytest.fixture
def sweep(tmp_path) -> Path:
    return example_sweep(tmp_path)


def test_the_report_lists_every_planned_trial_in_job_order(sweep):
    table, report = write_sweep_report(sweep)
    jobs = [Path(d).name for d in table["run_dir"]]
    assert jobs == [str(i) for i in range(12)]
    statuses = dict(zip(jobs, table["status"], strict=True))
    assert statuses["0"] == "completed" and statuses["2"] == "diverged"
    assert statuses["1"] == "interrupted" and statuses["3"] == NOT_STARTED
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
    assert set(table.loc[table["status"] != NOT_STARTED, "workload"]) == {"mnist"}
    assert set(table["submission"].dropna()) == {"Adam"}


def test_time_to_target_is_the_first_crossing_and_the_score_the_least(sweep):
    table, report = write_sweep_report(sweep)
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
    sweep_record.write_plan(tmp_path, [["hparams.lr=0.1"], ["hparams.lr=0.2"]])
    recorded = "completed" if status == "damaged" else status
    trial(tmp_path / "0", [(10, 0.5, True, 0.98)], status=recorded, lr=0.1)
    if status == "damaged":  # a row added after the record was ended
        with (tmp_path / "0" / "metrics.csv").open("a") as rows:
            rows.write("20,0.6,True,0.99,0\n")
    table, report = write_sweep_report(tmp_path)
    assert table["status"].tolist() == [status, NOT_STARTED]
    assert table["time_to_target"].iloc[0] == 0.5  # its rows say so; the score does not
    assert report["score"] is None and report["best_trial"] is None
    assert report["num_reached_target"] == 0 and str(tmp_path / "0") in report["failed"]
    trial(tmp_path / "1", [(10, 1.5, True, 0.975)], status="completed", lr=0.2)
    _, report = write_sweep_report(tmp_path)
    assert report["score"] == 1.5 and report["best_trial"]["hparams.lr"] == 0.2
    assert report["num_reached_target"] == 1
    assert json.loads((tmp_path / "sweep.json").read_text())["score"] == 1.5


def test_the_best_trial_is_recorded_with_its_seed_its_command_and_every_digit(tmp_path):
    """sweep.json and summary.csv say exactly what to run again: pandas' own JSON would
    round the learning rate to 10 digits, and two seeds would look alike without theirs."""
    lr = 0.002596866783593736
    sweep_record.write_plan(tmp_path, [[f"hparams.lr={lr}"]])
    command = f"python -m aeff hparams.lr={lr} rng_seed=12345"
    trial(tmp_path / "0", [(10, 1.5, True, 0.98)], lr=lr, rng_seed=12345, rerun_command=command)
    _, report = write_sweep_report(tmp_path)
    best = json.loads((tmp_path / "sweep.json").read_text())["best_trial"]
    assert best["hparams.lr"] == lr and best["rng_seed"] == 12345
    assert best["rerun_command"] == command and best == report["best_trial"]
    written = pd.read_csv(tmp_path / "summary.csv")
    assert written["rng_seed"][0] == 12345 and written["rerun_command"][0] == command
    assert "rerun_command" not in as_text(summary(tmp_path), tmp_path)


def test_a_sweep_where_no_trial_reached_the_target_has_no_score_and_shows_dashes(tmp_path):
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"]])
    trial(tmp_path / "0", [(10, 1.0, False, 0.5)], status="completed", lr=0.1)
    trial(tmp_path / "1", [(10, 1.0, False, 0.6)], status="completed", lr=0.2)
    table, report = write_sweep_report(tmp_path)
    assert report["score"] is None and report["best_trial"] is None
    assert report["num_reached_target"] == 0 and report["failed"] == []
    text = as_text(table, tmp_path)
    values = dict(zip(*(line.split() for line in text.splitlines()[:2]), strict=True))
    assert "None" not in text and values["time_to_target"] == "-"


def test_the_score_ignores_trials_that_did_not_reach_the_target(tmp_path):
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"], ["a=3"]])
    trial(tmp_path / "0", None, status="failed", error_message="no data")
    trial(tmp_path / "1", [(10, 4.0, True, 0.99)])
    trial(tmp_path / "2", [(10, 1.0, False, 0.5)])
    table, report = write_sweep_report(tmp_path)
    assert report["score"] == 4.0 and report["num_reached_target"] == 1
    assert report["best_trial"]["run_dir"].endswith("/1")
    assert report["failed"] == [str((tmp_path / "0").resolve())]
    on_disk = pd.read_csv(tmp_path / sweep_record.SUMMARY)
    assert list(on_disk.columns) == list(table.columns)  # no index column


@pytest.mark.parametrize("planned", [0, 2])
def test_a_sweep_with_nothing_started_has_an_empty_report(tmp_path, planned):
    if planned:
        sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"]])
    table, report = write_sweep_report(tmp_path)
    assert len(table) == planned
    assert report == {
        "num_trials": 0,
        "num_planned": planned,
        "num_reached_target": 0,
        "num_unrecorded": 0,
        "failed": [str(tmp_path / str(i)) for i in range(planned)],
        "best_time_to_target": None,
        "score": None,
        "best_trial": None,
        "measured_under_sharing": None,
        "study": 0,
        "search_seed": None,
    }


def test_a_target_reached_only_after_the_budget_counts_as_missed_by_the_report_and_compare(
    tmp_path,
):
    """AlgoPerf's rule, one function for both readers: the final evaluation, made after the
    budget (60 s) ran out, reaches nothing, whatever its `goal_reached` says."""
    from helpers.compare_trials import ADAM, Trial, write_trials

    late = [(100, 30.0, 0.9), (200, 60.12, 0.98)]  # on target only past the budget
    missed = [(100, 30.0, 0.9), (150, 45.0, 0.95)]
    written = write_trials(
        tmp_path, [Trial(ADAM, "mnist", 0, late), Trial(ADAM, "mnist", 0, missed)]
    )
    for run_dir, by_hand in written.items():  # the columns aeff's own rows have too
        lines = [f"{s},{t},{v >= 0.97},{v},0.5,60.0\n" for s, t, v in by_hand.rows]
        header = "global_step,accumulated_submission_time,goal_reached,validation.accuracy,"
        header += "train.loss,workload.max_allowed_runtime_sec\n"
        (Path(run_dir) / "metrics.csv").write_text(header + "".join(lines))
    table, report = write_sweep_report(tmp_path / "sweep")
    assert table["time_to_target"].isna().all()
    assert report["score"] is None and report["num_reached_target"] == 0
    studies = scoring.compare(*trials_table.read_trials([tmp_path]))["studies"]
    assert list(studies["accumulated_submission_time"]) == [math.inf]


def test_trials_on_a_busy_host_are_marked_and_the_sweep_said_measured_under_sharing(
    tmp_path, caplog
):
    """As trials run at once mark sweep.json: each such trial in summary.csv, the sweep's
    `measured_under_sharing`, and one warning."""
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"], ["a=3"]])
    for job, host in enumerate([100.0, 50.0, 98.0]):  # percent of 2 cores; the trial used 1
        trial(tmp_path / str(job), [(10, 1.0, False, 0.5)], cpu_count=2)
        metrics = tmp_path / str(job) / "metrics.csv"
        lines = metrics.read_text().splitlines()
        lines[0] += ",cpu.util.avg_percent_since_last,proc.cpu.cores_since_last"
        lines[1] += f",{host},1.0"
        metrics.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        table, report = write_sweep_report(tmp_path)
    assert list(table["host_busy"]) == [True, False, True]
    assert report["measured_under_sharing"] == (
        "2 of 3 trials ran while other processes kept the host's cores busy "
        "(summary.csv's host_busy)"
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(report["measured_under_sharing"])
