"""The rows and records every results tool reads (`aeff/results/rows.py`): which run dirs a
folder holds, rows edited by hand, and the direction of a trial's target metric."""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.written_trials import by_job, drawn_figures, example_sweep, trial

from aeff.records import sweep_dir as sweep_record
from aeff.records.concat import concatenate_csvs
from aeff.results import __main__ as cli
from aeff.results.rows import read_rows, target_higher_is_better, trial_dirs
from aeff.results.sweep_report import write_sweep_report


@pytest.fixture
def sweep(tmp_path) -> Path:
    return example_sweep(tmp_path)


@pytest.fixture
def figures(monkeypatch):
    yield from drawn_figures(monkeypatch)


def test_concat_leaves_out_earlier_attempts(sweep):
    trial(sweep / "2" / ".attempts" / "0", [(10, 1.0, False, 0.1)], status="failed", lr=0.2)
    frame = pd.read_csv(concatenate_csvs(sweep))
    assert not frame["run_dir"].str.contains(".attempts").any()
    assert len(frame) == 1 + 4 + 1 + 1  # jobs 1, 0, 2 and 10


def test_a_folder_without_a_plan_lists_its_records_in_numeric_order(tmp_path):
    for name in ("10", "2", "0", "extra"):
        trial(tmp_path / name, [(5, 1.0, False, 0.5)])
    trial(tmp_path / "2" / ".attempts" / "0", [(5, 1.0, False, 0.1)], status="failed")
    dirs = trial_dirs(tmp_path)
    assert [d.name for d in dirs] == ["extra", "0", "2", "10"]  # no earlier attempt
    table, report = write_sweep_report(tmp_path)
    assert [Path(d).name for d in table["run_dir"]] == ["extra", "0", "2", "10"]
    assert report["num_planned"] == 4 and report["num_trials"] == 4
    assert report["score"] is None and report["best_trial"] is None
    assert report["num_reached_target"] == 0


@pytest.mark.parametrize("column", ["validation.accuracy", "accumulated_submission_time"])
def test_a_cell_edited_to_text_leaves_its_trial_damaged_in_every_tool(
    sweep, capsys, monkeypatch, figures, column
):
    """summary, report and plot read one trial's edited cell alike: the trial is
    damaged, the cell is left out, one line names it, and nothing is a traceback."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a fresh process
    path = sweep / "0" / "metrics.csv"
    frame = pd.read_csv(path)
    frame[column] = frame[column].astype(str)
    frame.loc[1, column] = "abc"
    frame.to_csv(path, index=False)
    record = json.loads((sweep / "0" / "metadata.json").read_text())
    (sweep / "0" / "metadata.json").write_text(json.dumps({**record, "metrics_sha256": "0"}))
    for argv in (
        ["summary", sweep],
        ["report", sweep],
        ["plot", sweep, "--y", "validation.accuracy", "--x", "accumulated_submission_time"],
    ):
        cli.main([str(a) for a in argv])
        err = capsys.readouterr().err.strip().splitlines()
        named = [line for line in err if f"({column}: 'abc')" in line]
        assert len(named) == 1 and f"{sweep}/0/metrics.csv" in named[0], (argv, err)
        assert "sha256" not in " ".join(err)  # the same trial not named twice
    table = pd.read_csv(sweep / sweep_record.SUMMARY)
    assert by_job(table).loc["0", "status"] == "damaged"


def test_a_target_is_better_higher_as_its_record_declares_else_as_its_name_says(tmp_path):
    """The workload's declared direction (metadata.json, and every row, as
    `workload.target_higher_is_better`) wins over the name; a record written before
    workloads declared it is read by the name: a loss is lowered."""
    loss, accuracy = "validation.loss", "validation.accuracy"
    key = "workload.target_higher_is_better"
    assert target_higher_is_better({"workload.target_metric": loss, key: True}) is True
    assert target_higher_is_better({"workload.target_metric": accuracy, key: False}) is False
    assert target_higher_is_better({"workload.target_metric": loss}) is False
    assert target_higher_is_better({"workload.target_metric": accuracy}) is True
    assert target_higher_is_better({"workload.target_metric": loss, key: None}) is False
    # Rows read back: one trial declares it, the other (an older record) does not.
    trial(tmp_path / "0", [(10, 1.0, False, 0.5)], metric=loss)
    trial(tmp_path / "1", [(10, 1.0, False, 0.5)], metric=loss)
    path = tmp_path / "0" / "metrics.csv"
    pd.read_csv(path).assign(**{"workload.target_metric": loss, key: True}).to_csv(
        path, index=False
    )
    path = tmp_path / "1" / "metrics.csv"
    pd.read_csv(path).assign(**{"workload.target_metric": loss}).to_csv(path, index=False)
    rows = by_job(read_rows(tmp_path))
    assert target_higher_is_better(rows.loc["0"]) is True
    assert target_higher_is_better(rows.loc["1"]) is False
    for declared in ("True", "true", np.True_):  # as a column of several trials' rows holds it
        assert target_higher_is_better({"workload.target_metric": loss, key: declared}) is True
    for declared in ("False", np.False_):
        assert target_higher_is_better({"workload.target_metric": accuracy, key: declared}) is False
