"""The summary (`aeff/results/summary.py`), on records written by hand: statuses, columns,
the best of each trial's target metric, its first crossing, a busy host."""

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from helpers.written_trials import by_job, trial

from aeff.records import sweep_dir as sweep_record
from aeff.results.summary import FOREIGN, NOT_STARTED, UNREADABLE, busy_host, summary
from aeff.results.sweep_report import write_sweep_report


def test_summary_columns_follow_the_record(tmp_path):
    trial(
        tmp_path / "0",
        [(10, 1.0, False, 0.9), (30, 2.0, True, 0.6), (20, 3.0, True, 0.7)],
        metric="validation.loss",
        **{"meta.note": "a", "other.key": 1},
    )
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "metadata.json").write_text(
        json.dumps({"status": "failed", "error_message": "boom"})
    )
    table = by_job(summary(tmp_path))
    assert table.loc["0", "best_target_metric"] == 0.6  # a loss: the least is best
    assert table.loc["0", "target_metric"] == "validation.loss"
    assert table.loc["0", "global_step"] == 30  # the most, not the last row's
    assert table.loc["0", "time_to_target"] == 2.0
    assert table.loc["0", "meta.note"] == "a" and "other.key" not in table
    assert table.loc["0", "submission"] == "Adam" and table.loc["0", "workload"] == "mnist"
    # A trial with no rows at all: no best, no time, step 0; its error shown.
    assert table.loc["1", "global_step"] == 0
    assert pd.isna(table.loc["1", "best_target_metric"])
    assert pd.isna(table.loc["1", "time_to_target"])
    assert table.loc["1", "submission"] == "" and pd.isna(table.loc["1", "workload"])
    assert table.loc["1", "error"] == "boom" and pd.isna(table.loc["0", "error"])


def test_an_unreadable_record_is_named_listed_and_counted_as_failed(tmp_path, caplog):
    sweep_record.write_plan(tmp_path, [["hparams.lr=1"], ["hparams.lr=2"], ["hparams.lr=3"]])
    trial(tmp_path / "0", [(10, 1.0, True, 0.99)])
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "metadata.json").write_text("{not json")
    trial(tmp_path / "2", [(10, 2.0, True, 0.99)])
    with caplog.at_level(logging.WARNING, logger="aeff.results"):
        table, report = write_sweep_report(tmp_path)
    assert [Path(d).name for d in table["run_dir"]] == ["0", "1", "2"]
    unreadable = by_job(table).loc["1"]
    assert unreadable["status"] == UNREADABLE == "unreadable"
    (message,) = [r.getMessage() for r in caplog.records if r.name == "aeff.results"]
    assert message == (
        f"{tmp_path / '1' / 'metadata.json'} is unreadable (JSONDecodeError: Expecting "
        "property name enclosed in double quotes: line 1 column 2 (char 1)): move it aside, "
        "or choose another hydra.run.dir."
    )
    assert unreadable["error"] == message
    assert pd.isna(unreadable["time_to_target"]) and pd.isna(unreadable["workload"])
    assert report["num_planned"] == 3  # every planned trial
    assert report["num_trials"] == 3  # it started: its record is there
    assert report["failed"] == [str((tmp_path / "1").resolve())]
    assert report["score"] == 1.0


def test_a_planned_jobs_dir_holding_another_runs_record_is_foreign(tmp_path, caplog):
    """Job 1's dir holds a run started there by hand: listed as such, failed, and its
    time to target is not the sweep's score."""
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"]])
    trial(tmp_path / "0", [(10, 4.0, True, 0.99)], **{"sweep_dir": "s", "hydra.job.num": 0})
    trial(tmp_path / "1", [(10, 1.0, True, 0.99)], sweep_dir="", command="python -m aeff x")
    with caplog.at_level(logging.WARNING, logger="aeff.results"):
        table, report = write_sweep_report(tmp_path)
    foreign = by_job(table).loc["1"]
    assert foreign["status"] == FOREIGN == "foreign"
    assert foreign["error"] == (
        f"{tmp_path / '1' / 'metadata.json'} is the record of another run (python -m aeff x), "
        f"not of job 1 of this sweep: move {tmp_path / '1'} aside, then resume the sweep."
    )
    assert [r.getMessage() for r in caplog.records] == [foreign["error"]]
    assert report["failed"] == [str((tmp_path / "1").resolve())]
    assert report["score"] == 4.0 and report["num_reached_target"] == 1


def test_a_trial_without_a_record_is_what_its_launcher_returned_or_what_began(tmp_path):
    """logging=off: a trial that began (its .hydra/) or returned is `unrecorded`, no failure;
    one whose job raised is `failed` with its error; the others did not start."""
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"], ["a=3"], ["a=4"]])
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "3" / ".hydra").mkdir(parents=True)
    ended = {1: None, 2: "RuntimeError: no such optimizer", 3: "TrialExited: exit 0"}
    table, report = write_sweep_report(tmp_path, ended)
    assert list(table["status"]) == ["unrecorded", "unrecorded", "failed", "failed"]
    assert list(table["error"].fillna(""))[2:] == [ended[2], ended[3]]
    assert report["failed"] == [str(tmp_path / "2"), str(tmp_path / "3")]
    assert report["num_trials"] == 4 and report["num_unrecorded"] == 2
    (tmp_path / "0" / ".hydra").rmdir()
    assert list(summary(tmp_path)["status"]) == [
        NOT_STARTED,
        NOT_STARTED,
        NOT_STARTED,
        "unrecorded",
    ]


def test_records_without_any_metrics_are_summarised(tmp_path):
    trial(tmp_path / "0", None)  # began, then failed before its first evaluation
    table = summary(tmp_path)
    assert table.loc[0, "global_step"] == 0 and table.loc[0, "best_target_metric"] is None
    assert table.loc[0, "time_to_target"] is None


def test_a_trial_on_target_at_its_first_row_is_bracketed_by_its_own_start(tmp_path):
    # Job 1's first row is on target; the row before it in the combined rows is job 0's.
    trial(tmp_path / "0", [(10, 1.0, False, 0.5), (20, 2.0, True, 0.98)])
    trial(tmp_path / "1", [(10, 4.0, True, 0.98)])
    table = by_job(summary(tmp_path))
    assert table.loc["0", "time_to_target_resolution"] == pytest.approx(0.5)
    assert table.loc["1", "time_to_target_resolution"] == 1.0
    assert table.loc["1", "time_to_target"] == 4.0 and table.loc["1", "steps_to_target"] == 10


def test_each_trial_gets_the_best_of_its_own_target_metric(tmp_path):
    trial(tmp_path / "0", [(10, 1.0, False, 0.5), (20, 2.0, False, 0.3)], metric="validation.loss")
    trial(tmp_path / "1", [(10, 1.0, False, 0.6), (20, 2.0, False, 0.4)])
    table = by_job(summary(tmp_path))
    assert table.loc["0", "best_target_metric"] == 0.3  # a loss: the least
    assert table.loc["1", "best_target_metric"] == 0.6  # an accuracy: the most
    assert list(table["global_step"]) == [20, 20]


@pytest.mark.parametrize(
    ("host_percent", "own_cores", "cpus", "busy"),
    [
        (100.0, 1.0, 2, True),  # the trial one core, other work the other
        (55.0, 1.0, 2, False),  # a quiet machine: others a tenth of a core
        (100.0, 2.0, 2, False),  # the trial itself used both cores
        (20.0, 1.0, 16, False),  # others use 2.2 cores, but 12.8 are idle
        (100.0, 1.0, None, False),  # a record without the host's core count
    ],
)
def test_a_host_is_busy_when_other_work_takes_cores_the_trial_could_have_had(
    host_percent, own_cores, cpus, busy
):
    assert busy_host(host_percent, own_cores, cpus) is busy


def test_the_best_of_a_target_its_workload_declares_better_higher_is_its_most(tmp_path):
    """A record's `workload.target_higher_is_better` wins over the name: a metric named
    `validation.loss` whose workload declares it better higher is best at its most; a
    record without the key (written before workloads declared it) by the name, its least."""
    rows = [(10, 1.0, False, 0.5), (20, 2.0, False, 0.3)]
    declared = {"workload.target_higher_is_better": True}
    trial(tmp_path / "0", rows, metric="validation.loss", **declared)
    trial(tmp_path / "1", rows, metric="validation.loss")
    trial(
        tmp_path / "2",
        rows,
        metric="validation.loss",
        **{"workload.target_higher_is_better": False},
    )
    table = by_job(summary(tmp_path))
    assert table.loc["0", "best_target_metric"] == 0.5  # declared better higher: the most
    assert table.loc["1", "best_target_metric"] == 0.3  # by its name, a loss: the least
    assert table.loc["2", "best_target_metric"] == 0.3
