"""The sweep report (`aeff/results`), on records written by hand: the order of trials, their
statuses, summary columns, time to target, the score and best trial, the terminal table, plots
and `python -m aeff.results`."""

import json
import logging
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from aeff import results
from aeff.errors import ConfigError
from aeff.records import sweep_dir as sweep_record
from aeff.records.concat import concatenate_csvs, load_metrics
from aeff.records.lock import LOCK
from aeff.results import __main__ as cli

HEADER = "global_step,accumulated_submission_time,goal_reached,{metric},run_idx\n"


def trial(
    run_dir: Path,
    rows: list[tuple] | None,
    *,
    status: str = "completed",
    lr: float = 0.1,
    metric: str = "validation.accuracy",
    **extra,
) -> None:
    """A run dir written by hand: metadata, and metrics.csv unless `rows` is None."""
    run_dir.mkdir(parents=True)
    metadata = {
        "status": status,
        **({"global_step": rows[-1][0]} if rows else {}),  # a finished trial's last row
        "workload": "mnist",
        "submission._target_": "aeff.submissions.adam.Adam",
        "workload.target_metric": metric,
        "hparams.lr": lr,
        **extra,
    }
    (run_dir / "metadata.json").write_text(json.dumps(metadata))
    if rows is not None:
        lines = [f"{step},{time},{reached},{value},0\n" for step, time, reached, value in rows]
        (run_dir / "metrics.csv").write_text(HEADER.format(metric=metric) + "".join(lines))


def by_job(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index(table["run_dir"].map(lambda d: Path(d).name))


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Jobs 0-11 planned; 0, 2 and 10 ran; 1 died while running, on target; the others
    never started."""
    sweep_record.write_plan(tmp_path, [[f"hparams.lr={i}"] for i in range(12)])
    # Job 0 crosses the target at 2.0 s, falls below it, and is back above at 3.0 s.
    rows = [
        (10, 1.0, False, 0.9),
        (20, 2.0, True, 0.97),
        (30, 3.0, True, 0.96),
        (40, 4.0, True, 0.98),
    ]
    trial(tmp_path / "0", rows, status="completed", lr=0.1)
    trial(tmp_path / "2", [(10, 1.0, False, 0.5)], status="diverged", lr=0.2)
    trial(tmp_path / "10", [(10, 1.5, True, 0.975)], status="completed", lr=0.3)
    trial(tmp_path / "1", [(10, 0.5, True, 0.975)], status="running", lr=0.4)
    (tmp_path / "1" / LOCK).touch()  # a lock no process holds: its process died
    return tmp_path


def refusal(capsys, argv: list[str]) -> str:
    """What `python -m aeff.results ARGV` says as it exits 2."""
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err


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
    sweep_record.write_plan(tmp_path, [["hparams.lr=0.1"], ["hparams.lr=0.2"]])
    recorded = "completed" if status == "damaged" else status
    trial(tmp_path / "0", [(10, 0.5, True, 0.98)], status=recorded, lr=0.1)
    if status == "damaged":  # a row added after the record was ended
        with (tmp_path / "0" / "metrics.csv").open("a") as rows:
            rows.write("20,0.6,True,0.99,0\n")
    table, report = results.write_sweep_report(tmp_path)
    assert table["status"].tolist() == [status, results.NOT_STARTED]
    assert table["time_to_target"].iloc[0] == 0.5  # its rows say so; the score does not
    assert report["score"] is None and report["best_trial"] is None
    assert report["num_reached_target"] == 0 and str(tmp_path / "0") in report["failed"]
    trial(tmp_path / "1", [(10, 1.5, True, 0.975)], status="completed", lr=0.2)
    _, report = results.write_sweep_report(tmp_path)
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
    _, report = results.write_sweep_report(tmp_path)
    best = json.loads((tmp_path / "sweep.json").read_text())["best_trial"]
    assert best["hparams.lr"] == lr and best["rng_seed"] == 12345
    assert best["rerun_command"] == command and best == report["best_trial"]
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["rng_seed"][0] == 12345 and summary["rerun_command"][0] == command
    assert "rerun_command" not in results.as_text(results.summary(tmp_path), tmp_path)


def test_the_terminal_table_shows_missing_values_one_way(sweep):
    table, _ = results.write_sweep_report(sweep)
    text = results.as_text(table, sweep)
    assert "None" not in text and "NaN" not in text and "nan" not in text
    assert text.splitlines()[1].split()[0] == "0"  # run dirs relative to the sweep


def test_concat_leaves_out_earlier_attempts(sweep):
    trial(sweep / "2" / ".attempts" / "0", [(10, 1.0, False, 0.1)], status="failed", lr=0.2)
    frame = pd.read_csv(concatenate_csvs(sweep))
    assert not frame["run_dir"].str.contains(".attempts").any()
    assert len(frame) == 1 + 4 + 1 + 1  # jobs 1, 0, 2 and 10


def test_a_sweep_where_no_trial_reached_the_target_has_no_score_and_shows_dashes(tmp_path):
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"]])
    trial(tmp_path / "0", [(10, 1.0, False, 0.5)], status="completed", lr=0.1)
    trial(tmp_path / "1", [(10, 1.0, False, 0.6)], status="completed", lr=0.2)
    table, report = results.write_sweep_report(tmp_path)
    assert report["score"] is None and report["best_trial"] is None
    assert report["num_reached_target"] == 0 and report["failed"] == []
    text = results.as_text(table, tmp_path)
    values = dict(zip(*(line.split() for line in text.splitlines()[:2]), strict=True))
    assert "None" not in text and values["time_to_target"] == "-"


def test_a_folder_without_a_plan_lists_its_records_in_numeric_order(tmp_path):
    for name in ("10", "2", "0", "extra"):
        trial(tmp_path / name, [(5, 1.0, False, 0.5)])
    trial(tmp_path / "2" / ".attempts" / "0", [(5, 1.0, False, 0.1)], status="failed")
    dirs = results.trial_dirs(tmp_path)
    assert [d.name for d in dirs] == ["extra", "0", "2", "10"]  # no earlier attempt
    table, report = results.write_sweep_report(tmp_path)
    assert [Path(d).name for d in table["run_dir"]] == ["extra", "0", "2", "10"]
    assert report["num_planned"] == 4 and report["num_trials"] == 4
    assert report["score"] is None and report["best_trial"] is None
    assert report["num_reached_target"] == 0


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
    table = by_job(results.summary(tmp_path))
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
        table, report = results.write_sweep_report(tmp_path)
    assert [Path(d).name for d in table["run_dir"]] == ["0", "1", "2"]
    unreadable = by_job(table).loc["1"]
    assert unreadable["status"] == results.UNREADABLE == "unreadable"
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
        table, report = results.write_sweep_report(tmp_path)
    foreign = by_job(table).loc["1"]
    assert foreign["status"] == results.FOREIGN == "foreign"
    assert foreign["error"] == (
        f"{tmp_path / '1' / 'metadata.json'} is the record of another run (python -m aeff x), "
        f"not of job 1 of this sweep: move {tmp_path / '1'} aside, then resume the sweep."
    )
    assert [r.getMessage() for r in caplog.records] == [foreign["error"]]
    assert report["failed"] == [str((tmp_path / "1").resolve())]
    assert report["score"] == 4.0 and report["num_reached_target"] == 1


def test_the_score_ignores_trials_that_did_not_reach_the_target(tmp_path):
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"], ["a=3"]])
    trial(tmp_path / "0", None, status="failed", error_message="no data")
    trial(tmp_path / "1", [(10, 4.0, True, 0.99)])
    trial(tmp_path / "2", [(10, 1.0, False, 0.5)])
    table, report = results.write_sweep_report(tmp_path)
    assert report["score"] == 4.0 and report["num_reached_target"] == 1
    assert report["best_trial"]["run_dir"].endswith("/1")
    assert report["failed"] == [str((tmp_path / "0").resolve())]
    on_disk = pd.read_csv(tmp_path / sweep_record.SUMMARY)
    assert list(on_disk.columns) == list(table.columns)  # no index column


@pytest.mark.parametrize("planned", [0, 2])
def test_a_sweep_with_nothing_started_has_an_empty_report(tmp_path, planned):
    if planned:
        sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"]])
    table, report = results.write_sweep_report(tmp_path)
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


def test_a_trial_without_a_record_is_what_its_launcher_returned_or_what_began(tmp_path):
    """logging=off: a trial that began (its .hydra/) or returned is `unrecorded`, no failure;
    one whose job raised is `failed` with its error; the others did not start."""
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"], ["a=3"], ["a=4"]])
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "3" / ".hydra").mkdir(parents=True)
    ended = {1: None, 2: "RuntimeError: no such optimizer", 3: "TrialExited: exit 0"}
    table, report = results.write_sweep_report(tmp_path, ended)
    assert list(table["status"]) == ["unrecorded", "unrecorded", "failed", "failed"]
    assert list(table["error"].fillna(""))[2:] == [ended[2], ended[3]]
    assert report["failed"] == [str(tmp_path / "2"), str(tmp_path / "3")]
    assert report["num_trials"] == 4 and report["num_unrecorded"] == 2
    (tmp_path / "0" / ".hydra").rmdir()
    assert list(results.summary(tmp_path)["status"]) == [
        results.NOT_STARTED,
        results.NOT_STARTED,
        results.NOT_STARTED,
        "unrecorded",
    ]


def test_the_terminal_table_rounds_values_cuts_errors_and_dashes_the_rest(tmp_path):
    assert results.as_text(pd.DataFrame(), tmp_path) == "(no trials)"
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"], ["a=3"]])
    trial(tmp_path / "0", [(10, 1.0, True, 0.123456789)])
    long_error = "E" + "abcdefghij" * 10
    trial(tmp_path / "1", [(10, 2.0, False, 0.5)], status="failed", error_message=long_error)
    table, _ = results.write_sweep_report(tmp_path)
    lines = results.as_text(table, tmp_path).splitlines()
    assert lines[0].split()[0] == "run_dir"  # no index column
    assert [line.split()[0] for line in lines[1:]] == ["0", "1", "2"]
    assert "0.1235" in lines[1] and "0.123456" not in lines[1]
    assert long_error[:60] in lines[2] and long_error[:61] not in lines[2]
    shown = table.columns.drop("rerun_command")  # in summary.csv, not on the console
    assert lines[3].split()[1:] == ["not", "started"] + ["-"] * (len(shown) - 2)


def test_axis_labels_carry_units_and_limits_frame_the_target():
    assert results.axis_label("wall_time") == "wall_time (s)"
    assert results.axis_label("global_step") == "global_step (step)"
    assert results.axis_label("validation.loss") == "validation.loss (nats)"
    assert results.axis_label("validation.accuracy") == "validation.accuracy (fraction)"
    assert results.axis_label("train.other") == "train.other"
    values = pd.Series([0.5, 0.99])
    assert results.around_target(values, 0.97, True) == pytest.approx((0.853, 1.0134))
    assert results.around_target(pd.Series([0.1]), 0.97, True) == pytest.approx((0.853, 0.9934))
    losses = pd.Series([0.2, 3.0])
    assert results.around_target(losses, 0.3, False) == pytest.approx((0.19, 0.35))
    assert results.around_target(pd.Series([0.5]), 0.3, False) == pytest.approx((0.29, 0.35))


@pytest.fixture
def figures(monkeypatch):
    """The axes each plot draws on, kept open for inspection."""
    made = []
    real = plt.subplots

    def subplots(*args, **kwargs):
        figure, axes = real(*args, **kwargs)
        made.append(axes)
        return figure, axes

    monkeypatch.setattr(plt, "subplots", subplots)
    yield made
    plt.close("all")


def plotted_sweep(root: Path) -> Path:
    rows = [(10, 1.0, False, 0.5), (20, 2.0, True, 0.98)]
    trial(root / "0", rows, **{"hparams.lr": 0.1, "hparams.b1": 0.9})
    trial(root / "1", rows, **{"hparams.lr": 0.3, "hparams.b1": 0.9})
    for name in ("0", "1"):  # the target, as RunDir.append writes it into every row
        path = root / name / "metrics.csv"
        frame = pd.read_csv(path)
        frame["workload.target_metric"] = "validation.accuracy"
        frame["workload.target_value"] = 0.97
        frame["hparams.lr"] = 0.1 if name == "0" else 0.3
        frame["hparams.b1"] = 0.9
        frame["validation.loss"] = [0.4, 0.1]
        frame["wall_time"] = [1.5, 2.5]
        frame.to_csv(path, index=False)
    return root


def test_a_plot_names_trials_by_what_differs_and_shows_the_target(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    out = results.plot(root, "global_step", "validation.accuracy", tmp_path / "a.png")
    assert out == tmp_path / "a.png" and out.stat().st_size > 0
    (axes,) = figures
    labels = [line.get_label() for line in axes.get_lines()]
    assert labels == ["0 (lr=0.1)", "1 (lr=0.3)", "target 0.97"]
    target = axes.get_lines()[2]
    assert list(target.get_ydata()) == [0.97, 0.97] and target.get_linestyle() == "--"
    assert axes.get_ylim() == pytest.approx((0.853, 1.0034))
    assert axes.get_xlabel() == "global_step (step)"
    assert axes.get_ylabel() == "validation.accuracy (fraction)"
    assert list(axes.get_lines()[0].get_xdata()) == [10, 20]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == labels


def test_a_trial_of_one_row_is_a_visible_point_and_longer_ones_plain_lines(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    path = root / "1" / "metrics.csv"
    pd.read_csv(path).iloc[:1].to_csv(path, index=False)
    results.plot(root, "global_step", "validation.accuracy", tmp_path / "a.png")
    one, two = figures[-1].get_lines()[1], figures[-1].get_lines()[0]
    assert list(one.get_xdata()) == [10] and one.get_marker() == "o"
    assert two.get_marker() in (None, "None", "")


def test_a_plot_of_non_finite_values_draws_its_limits_from_the_finite_ones(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    path = root / "1" / "metrics.csv"
    pd.read_csv(path).assign(**{"validation.accuracy": [math.nan, math.inf]}).to_csv(path)
    results.plot(root, "global_step", "validation.accuracy", tmp_path / "a.png")
    assert figures[-1].get_ylim() == pytest.approx((0.853, 1.0034))  # trial 0's, as before
    path = root / "0" / "metrics.csv"
    pd.read_csv(path).assign(**{"validation.accuracy": [math.nan, math.nan]}).to_csv(path)
    assert results.plot(root, "global_step", "validation.accuracy", tmp_path / "b.png").exists()


def test_a_plot_of_another_metric_has_no_target_line(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    results.plot(root, "accumulated_submission_time", "goal_reached", tmp_path / "b.png")
    labels = [line.get_label() for line in figures[0].get_lines()]
    assert labels == ["0 (lr=0.1)", "1 (lr=0.3)"]
    with pytest.raises(ConfigError, match=r"^plot --x nope: no such column"):
        results.plot(root, "nope", "validation.accuracy", tmp_path / "c.png")


def test_summary_on_the_command_line_reports_a_sweep_and_lists_a_folder(tmp_path, capsys, figures):
    root = plotted_sweep(tmp_path / "sweep")
    cli.main(["summary", str(root)])  # no plan: a folder of runs, not a sweep
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"2 trials at or below {root} (no sweep_plan.json: no sweep report written)"
    assert not (root / sweep_record.REPORT).exists() and not (root / sweep_record.SUMMARY).exists()
    sweep_record.write_plan(root, [["hparams.lr=0.1"], ["hparams.lr=0.3"]])
    cli.main(["summary", str(root)])
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == ["2 trials of 2 planned", "best time to target: 2 s"]
    assert [line.split()[0] for line in out[1:3]] == ["0", "1"]
    assert (root / sweep_record.REPORT).exists()
    cli.main(["summary", str(root / "0" / "metrics.csv")])  # a file: its run dir
    assert capsys.readouterr().out.splitlines()[-1].startswith("1 trials at or below ")
    assert not (root / "0" / sweep_record.REPORT).exists()
    cli.main(["concat", str(root)])
    assert capsys.readouterr().out.strip() == str(root / "all_metrics.csv")
    assert refusal(capsys, ["concat", str(root / "1" / "metadata.json")]) == (
        f"aeff.results: {root / '1' / 'metadata.json'} holds no rows: give a run dir, a sweep "
        "dir or a CSV of rows.\n"
    )
    cli.main(["concat", str(root / "1" / "metrics.csv")])  # a file: into its folder
    assert capsys.readouterr().out.strip() == str(root / "1" / "all_metrics.csv")
    (tmp_path / "empty").mkdir()
    assert refusal(capsys, ["summary", str(tmp_path / "empty")]) == (
        f"aeff.results: no trial records at or below {tmp_path / 'empty'}: give a sweep dir "
        "or a run dir.\n"
    )
    assert list((tmp_path / "empty").iterdir()) == []
    assert refusal(capsys, ["concat", str(tmp_path / "empty")]) == (
        f"aeff.results: no metrics.csv with complete rows at or below {tmp_path / 'empty'}: "
        "give a run dir, a sweep dir or a metrics.csv.\n"
    )
    cli.main(["plot", str(root), "--y", "validation.accuracy"])
    assert capsys.readouterr().out.strip() == str(root / "validation.accuracy.png")
    assert figures[-1].get_xlabel() == "global_step (step)"
    cli.main(["plot", str(root / "0" / "metrics.csv")])  # defaults: loss over steps
    assert capsys.readouterr().out.strip() == str(root / "0" / "validation.loss.png")
    cli.main(["plot", str(root), "--x", "wall_time", "--out", str(tmp_path / "w.png")])
    assert capsys.readouterr().out.strip() == str(tmp_path / "w.png")
    assert figures[-1].get_xlabel() == "wall_time (s)"
    assert refusal(capsys, ["plot", str(root), "--x", "wall", "--y", "validation.acc"]) == (
        f"aeff.results: plot --x wall --y validation.acc: no such column in the metrics at or "
        f"below {root}; the steps, times and metrics are global_step, "
        "accumulated_submission_time, validation.accuracy, validation.loss, wall_time.\n"
    )
    (tmp_path / "folder.png").mkdir()
    for out, says in [
        (root / "0" / "metadata.json", "name a file ending in .avif, .eps, .gif, .jpeg, "),
        (tmp_path / "plot", "name a file ending in .avif, "),
        (tmp_path / "no" / "p.png", f"there is no folder {tmp_path / 'no'}; make it first."),
        (tmp_path / "folder.png", "cannot write it: Is a directory."),
    ]:
        assert refusal(capsys, ["plot", str(root), "--out", str(out)]).startswith(
            f"aeff.results: plot --out {out}: {says}"
        )
    assert json.loads((root / "0" / "metadata.json").read_text())["status"] == "completed"
    cli.main(["plot", str(root), "--out", str(tmp_path / "p.SVG")])  # any case
    assert (tmp_path / "p.SVG").read_text().startswith("<?xml")
    assert "no metrics.csv with complete rows" in refusal(capsys, ["plot", str(tmp_path / "empty")])
    assert "missing does not exist" in refusal(capsys, ["summary", str(tmp_path / "missing")])


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_a_plot_file_and_its_styling(tmp_path, figures):
    root = tmp_path / "sweep"
    trial(root / "0", [(10, 1.0, False, 0.5)], metric="validation.loss")
    path = root / "0" / "metrics.csv"
    frame = pd.read_csv(path)
    frame["workload.target_metric"] = "validation.loss"
    frame["workload.target_value"] = 0.3
    frame["hparams.lr"], frame["hparams.b1"] = 0.1, 0.9
    frame.to_csv(path, index=False)
    out = results.plot(root, "global_step", "validation.loss", tmp_path / "loss.png")
    assert png_size(out) == (7 * 120, int(4.5 * 120))  # 7 x 4.5 inches at 120 dpi
    (axes,) = figures
    run, target = axes.get_lines()
    assert run.get_label() == "0 (lr=0.1, b1=0.9)"  # one trial: every hparam named
    assert target.get_color() == "black" and target.get_linewidth() == 1
    assert axes.get_ylim() == pytest.approx((0.29, 0.35))  # a loss: lower is better
    assert all(t.get_fontsize() == 7 for t in axes.get_legend().get_texts())
    gridline = axes.xaxis.get_gridlines()[0]
    assert gridline.get_visible() and gridline.get_alpha() == 0.3


def test_the_command_line_explains_itself(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--help"])
    assert stopped.value.code == 0
    usage = capsys.readouterr().out
    words = " ".join(usage.split())
    assert words.startswith(
        "usage: python -m aeff.results [-h] {concat,plot,summary,report,export,compare}"
    )
    assert "PATH`: combine, draw, summarise, report and export trials. PATH is a run dir" in words
    assert "report a sweep's report, report.html included" in words
    assert "concat every metrics.csv below PATH into one CSV" in words
    assert "plot a metric against another, one line per trial" in words
    assert "summary one row per trial" in words
    assert "export every trial into MLflow or TensorBoard" in words
    assert "compare time to target, speedups, performance profiles and scores, as" in words
    assert "`compare DIR [DIR ...]`: training algorithms scored against each other" in words
    with pytest.raises(SystemExit):
        cli.main(["plot", "--help"])
    assert "--out OUT default: PATH/<y>.png" in " ".join(capsys.readouterr().out.split())
    assert "the following arguments are required: command" in refusal(capsys, [])


def test_command_line_warnings_name_the_tool(tmp_path, capsys, monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a fresh process
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metadata.json").write_text("{")
    cli.main(["summary", str(tmp_path)])
    captured = capsys.readouterr()
    assert captured.err.startswith(f"aeff.results: {tmp_path}/0/metadata.json is unreadable")
    assert captured.out.splitlines()[1].split()[:2] == ["0", "unreadable"]


def test_the_plan_is_written_redacted_and_an_unreadable_one_is_one_line(tmp_path, capsys):
    sweep_record.write_plan(tmp_path, [["a=1"], ["+url=https://user:token@host/x?sig=abc&b=2"]])
    assert json.loads((tmp_path / sweep_record.PLAN).read_text()) == {
        "num_trials": 2,
        "jobs": [["a=1"], ["+url=https://***@host/x?sig=***&b=2"]],  # credentials redacted
        "files": {},
        "study": 0,
        "search_seed": None,
    }
    assert sweep_record.planned_files(tmp_path) == {}
    sweep_record.write_plan(tmp_path, [["a=1"]], {"/f/mine.py": "ab12"})
    assert sweep_record.planned_files(tmp_path) == {"/f/mine.py": "ab12"}
    plan = tmp_path / sweep_record.PLAN
    plan.write_text('{"jobs": [["a=1"]]}')  # an older aeff's: no files recorded
    assert (
        sweep_record.read_plan(tmp_path) == [["a=1"]]
        and sweep_record.planned_files(tmp_path) is None
    )
    assert sweep_record.planned_files(tmp_path / "none") is None
    bad_files = ('{"jobs": [], "files": []}', '{"jobs": [], "files": {"a": 1}}')
    bad_files += ('{"jobs": [], "sharing": {"x": 1}}',)  # sweep.json would repeat it
    for text in ("{", '{"num_trials": 1}', "[1]", '{"jobs": 5}', *bad_files):
        plan.write_text(text)
        with pytest.raises(ConfigError) as refused:
            sweep_record.planned_files(tmp_path)
        assert str(refused.value).startswith(f"{plan} is unreadable (")
    for text in ("{", '{"num_trials": 1}', "[1]", '{"jobs": 5}', '{"jobs": [["a=1"], "b=2"]}'):
        plan.write_text(text)
        with pytest.raises(ConfigError) as refused:
            sweep_record.read_plan(tmp_path)
        assert str(refused.value).startswith(f"{plan} is unreadable (")
    assert str(refused.value) == (  # the last: a plan of other shape
        f"{plan} is unreadable (TypeError): restore it, or start the sweep again in "
        "another hydra.sweep.dir."
    )
    said = refusal(capsys, ["summary", str(tmp_path)])
    assert said == f"aeff.results: {refused.value}\n"  # one line


def test_a_sweep_config_is_written_as_given(tmp_path):
    sweep_record.write_sweep_config(tmp_path, "a: 1\n")
    assert (tmp_path / sweep_record.SWEEP_CONFIG).read_text() == "a: 1\n"
    assert sweep_record.SWEEP_CONFIG == "multirun.yaml"


def test_records_without_any_metrics_are_summarised(tmp_path):
    trial(tmp_path / "0", None)  # began, then failed before its first evaluation
    table = results.summary(tmp_path)
    assert table.loc[0, "global_step"] == 0 and table.loc[0, "best_target_metric"] is None
    assert table.loc[0, "time_to_target"] is None


def test_a_trial_on_target_at_its_first_row_is_bracketed_by_its_own_start(tmp_path):
    # Job 1's first row is on target; the row before it in the combined rows is job 0's.
    trial(tmp_path / "0", [(10, 1.0, False, 0.5), (20, 2.0, True, 0.98)])
    trial(tmp_path / "1", [(10, 4.0, True, 0.98)])
    table = by_job(results.summary(tmp_path))
    assert table.loc["0", "time_to_target_resolution"] == pytest.approx(0.5)
    assert table.loc["1", "time_to_target_resolution"] == 1.0
    assert table.loc["1", "time_to_target"] == 4.0 and table.loc["1", "steps_to_target"] == 10


def test_each_trial_gets_the_best_of_its_own_target_metric(tmp_path):
    trial(tmp_path / "0", [(10, 1.0, False, 0.5), (20, 2.0, False, 0.3)], metric="validation.loss")
    trial(tmp_path / "1", [(10, 1.0, False, 0.6), (20, 2.0, False, 0.4)])
    table = by_job(results.summary(tmp_path))
    assert table.loc["0", "best_target_metric"] == 0.3  # a loss: the least
    assert table.loc["1", "best_target_metric"] == 0.6  # an accuracy: the most
    assert list(table["global_step"]) == [20, 20]


def test_many_trials_are_one_collection_coloured_by_the_varying_hparam(tmp_path, figures):
    plan = [[f"hparams.lr={0.001 * 2**i}"] for i in range(20)]
    sweep_record.write_plan(tmp_path, plan)
    for job in range(20):
        trial(tmp_path / str(job), [(10, 1.0, False, 0.5), (20, 2.0, True, 0.98)])
        path = tmp_path / str(job) / "metrics.csv"
        pd.read_csv(path).assign(**{"hparams.lr": 0.001 * 2**job}).to_csv(path, index=False)
    results.plot(tmp_path, "global_step", "validation.accuracy", tmp_path / "a.png")
    axes = figures[0]
    (lines,) = axes.collections
    assert len(lines.get_segments()) == 20 and axes.get_legend() is None
    assert list(lines.get_array()) == [0.001 * 2**i for i in range(20)]  # in job order
    assert type(lines.norm).__name__ == "LogNorm"  # lr spans 2**19
    assert axes.get_title() == "20 trials"
    assert axes.figure.axes[1].get_ylabel() == "hparams.lr"  # the colour bar names it


def test_a_plot_names_trials_by_string_and_null_hparams(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    for job, schedule in (("0", "cosine"), ("1", None)):
        path = root / job / "metrics.csv"
        pd.read_csv(path).assign(**{"hparams.schedule": schedule}).to_csv(path, index=False)
    results.plot(root, "global_step", "validation.accuracy", tmp_path / "a.png")
    labels = [line.get_label() for line in figures[0].get_lines()]
    assert labels[:2] == ["0 (lr=0.1, schedule=cosine)", "1 (lr=0.3, schedule=null)"]


def test_a_metric_with_no_finite_value_is_named_in_a_warning(tmp_path, figures, caplog):
    root = plotted_sweep(tmp_path)
    for job in ("0", "1"):
        path = root / job / "metrics.csv"
        pd.read_csv(path).assign(**{"validation.loss": math.nan}).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        results.plot(root, "global_step", "validation.loss", tmp_path / "a.png")
    assert "validation.loss has no finite value" in caplog.text
    caplog.clear()
    results.plot(root, "global_step", "validation.accuracy", tmp_path / "b.png")
    assert "no finite value" not in caplog.text


def test_the_combined_csv_reads_back_as_the_trials_it_holds(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    combined = concatenate_csvs(root)
    rows = load_metrics(combined)
    assert sorted(Path(d).name for d in rows["run_dir"].unique()) == ["0", "1"]
    assert concatenate_csvs(combined) == combined  # its own folder, the same rows
    assert load_metrics(combined).equals(rows)
    results.plot(combined, "global_step", "validation.accuracy", tmp_path / "a.png")
    labels = [line.get_label() for line in figures[0].get_lines()]
    assert labels == ["0 (lr=0.1)", "1 (lr=0.3)", "target 0.97"]


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


def test_a_run_dir_named_with_dollars_is_drawn_as_text_not_mathtext(tmp_path, figures):
    """`$\\frac{1}{$` in a run dir's name and a hyperparameter's string: matplotlib's
    mathtext parser would refuse it as the figure is saved."""
    rows = [(10, 1.0, False, 0.5), (20, 2.0, True, 0.98)]
    trial(tmp_path / "run$\\frac{1}{$", rows, **{"hparams.schedule": "$x^{"})
    trial(tmp_path / "plain", rows, **{"hparams.schedule": "cosine"})
    out = results.plot(tmp_path, "global_step", "validation.accuracy", tmp_path / "a.png")
    assert out.stat().st_size > 0
    (axes,) = figures
    texts = [t.get_text() for t in axes.get_legend().get_texts()]
    assert texts == ["plain", "run\\$\\frac{1}{\\$"]


def test_a_step_count_read_back_as_a_float_is_shown_whole_and_times_rounded():
    assert results.short(12345.0) == "12345" and results.short(326.0) == "326"
    assert results.short(0.002596866783593736) == "0.002597"
    assert results.seconds(1.23456) == "1.235 s" and results.seconds(None) == "none"
    assert results.seconds(math.inf) == "inf"


def test_summary_of_a_folder_of_many_runs_prints_counts_and_the_best_few(tmp_path, capsys):
    """30 unrelated run dirs: not 32 lines but the counts, the 5 fastest and the total;
    `--full` prints every row."""
    for k in range(30):
        trial(tmp_path / f"run{k}", [(10, 1.0 + k, k % 3 == 0, 0.98)], lr=0.01 * (k + 1))
    cli.main(["summary", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("30 trials: 30 completed; the 5 fastest to the target:")
    assert [line.split()[0] for line in lines[2:7]] == ["run0", "run3", "run6", "run9", "run12"]
    assert len(lines) == 8 and lines[-1].endswith("; --full prints every row)")
    cli.main(["summary", str(tmp_path), "--full"])
    assert len(capsys.readouterr().out.splitlines()) == 32


def test_a_target_reached_only_after_the_budget_counts_as_missed_by_the_report_and_compare(
    tmp_path,
):
    """AlgoPerf's rule, one function for both readers: the final evaluation, made after the
    budget (60 s) ran out, reaches nothing, whatever its `goal_reached` says."""
    from helpers.compare_trials import ADAM, Trial, write_trials

    from aeff.results import compare

    late = [(100, 30.0, 0.9), (200, 60.12, 0.98)]  # on target only past the budget
    missed = [(100, 30.0, 0.9), (150, 45.0, 0.95)]
    written = write_trials(
        tmp_path, [Trial(ADAM, "mnist", 0, late), Trial(ADAM, "mnist", 0, missed)]
    )
    for run_dir, trial in written.items():  # the columns aeff's own rows have too
        lines = [f"{s},{t},{v >= 0.97},{v},0.5,60.0\n" for s, t, v in trial.rows]
        header = "global_step,accumulated_submission_time,goal_reached,validation.accuracy,"
        header += "train.loss,workload.max_allowed_runtime_sec\n"
        (Path(run_dir) / "metrics.csv").write_text(header + "".join(lines))
    table, report = results.write_sweep_report(tmp_path / "sweep")
    assert table["time_to_target"].isna().all()
    assert report["score"] is None and report["num_reached_target"] == 0
    studies = compare.compare(*compare.read_trials([tmp_path]))["studies"]
    assert list(studies["accumulated_submission_time"]) == [math.inf]


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
    assert results.busy_host(host_percent, own_cores, cpus) is busy


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
        table, report = results.write_sweep_report(tmp_path)
    assert list(table["host_busy"]) == [True, False, True]
    assert report["measured_under_sharing"] == (
        "2 of 3 trials ran while other processes kept the host's cores busy "
        "(summary.csv's host_busy)"
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(report["measured_under_sharing"])
