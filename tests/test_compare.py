"""`python -m aeff.results compare` (`aeff/results/compare.py`): what it prints, the files
it writes, its notes on what the scores rest on, and its refusals in one line."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers.compare_trials import ADAM, NESTEROV, Trial, cell, known_trials, write_trials

from aeff.results import __main__ as cli
from aeff.results import compare, trials_table

INF = math.inf


@pytest.fixture
def known(tmp_path) -> tuple[Path, dict[str, Trial]]:
    return tmp_path / "runs", write_trials(tmp_path / "runs", known_trials())


def test_times_of_trials_that_shared_their_clock_unequally_are_said_not_comparable(tmp_path):
    rows = [(100, 5.0, 0.98)]
    grouped = {"group.size": 4, "parallel_trials": 1}
    write_trials(
        tmp_path, [Trial(ADAM, "mnist", 0, rows), Trial(NESTEROV, "mnist", 0, rows, record=grouped)]
    )
    trials, _ = trials_table.read_trials([tmp_path])
    assert compare.unequal_clocks(trials, "time") == (
        "the trials' clocks were shared unequally (1 trials per program, 1 at once; 4 trials "
        "per program, 1 at once): their times are not comparable; --clock steps is."
    )
    assert compare.unequal_clocks(trials, "steps") is None
    assert compare.unequal_clocks(trials[trials["submission"] == "Adam"], "time") is None


def refusal(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err


def test_compare_prints_the_table_and_writes_the_report(known, tmp_path, capsys, monkeypatch):
    root, _ = known
    monkeypatch.chdir(tmp_path)
    cli.main(["compare", str(root / "adam"), str(root / "nag"), "--baseline", "Nesterov"])
    printed = capsys.readouterr().out
    out = tmp_path / "compare"  # the default: ./compare
    for name in ("compare.csv", "studies.csv", "speedups.csv", "scores.csv"):
        assert str(out / name) in printed
    assert "time_to_target" in printed and "speedup_over_Nesterov" in printed
    table = pd.read_csv(out / "compare.csv")
    assert cell(table, "Adam", "mnist")["time_to_target"] == 25.0
    assert cell(table, "Nesterov", "mnist_loss")["steps_to_target"] == INF
    assert (out / "performance_profiles.png").read_bytes().startswith(b"\x89PNG")
    profiles = pd.read_csv(out / "performance_profiles.csv", index_col="submission")
    assert profiles.shape == (2, 100)
    log_out = tmp_path / "log"
    argv = ["compare", str(root), "--scale", "log", "--clock", "steps", "--out", str(log_out)]
    cli.main([*argv, "--name", "Adam=mine"])
    scores = pd.read_csv(log_out / "scores.csv").set_index("submission")
    assert scores.loc["mine", "leaderboard_score"] == 1.0 and "speedup_over_mine" in scores


def test_compare_refuses_in_one_line(known, tmp_path, capsys):
    root, _ = known
    mixed = tmp_path / "mixed"
    write_trials(mixed, [Trial(ADAM, "mnist", 0, [(100, 5.0, 0.98)])])
    record = mixed / "sweep" / "0" / "metadata.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "workload.target_value": 0.9}))
    said = refusal(capsys, ["compare", str(root), str(mixed), "--out", str(tmp_path / "o")])
    assert said.count("\n") == 1 and "differ in workload.target_value: 0.97" in said
    assert "0.9 (" in said and said.startswith("aeff.results: compare: ")
    into_trial = ["compare", str(root), "--out", str(root / "adam" / "0" / "report")]
    assert "is a trial's run dir" in refusal(capsys, into_trial)
    assert not (root / "adam" / "0" / "report").exists()
    (tmp_path / "a_file").write_text("")
    onto_a_file = ["compare", str(root), "--out", str(tmp_path / "a_file")]
    assert "that is a file; give a folder" in refusal(capsys, onto_a_file)
    below_a_file = ["compare", str(root), "--out", str(tmp_path / "a_file" / "o")]
    assert "cannot write there" in refusal(capsys, below_a_file)
    assert "no such submission" in refusal(capsys, ["compare", str(root), "--baseline", "SGD"])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no trial records" in refusal(capsys, ["compare", str(empty)])
    assert "write each as SHORT=NAME" in refusal(capsys, ["compare", str(root), "--name", "Adam"])


def test_an_out_that_is_a_compared_folder_or_a_sweep_dir_is_refused(known, tmp_path, capsys):
    """`compare A B --out A` would replace sweep A's own studies.csv: one line, nothing
    written."""
    root, _ = known
    adam = root / "adam"
    (adam / "studies.csv").write_text("a sweep's own\n")
    (root / "nag" / "sweep_plan.json").write_text("{}")
    said = refusal(capsys, ["compare", str(adam), str(root / "nag"), "--out", str(adam)])
    assert said.count("\n") == 1 and "that is one of the folders compared" in said
    said = refusal(capsys, ["compare", str(adam), "--out", str(root / "nag")])
    assert said.count("\n") == 1 and "that is a sweep dir" in said
    assert (adam / "studies.csv").read_text() == "a sweep's own\n"
    assert not (adam / "compare.csv").exists() and not (root / "nag" / "scores.csv").exists()


def test_a_workload_a_submission_never_ran_counts_as_missed_in_every_figure(tmp_path, caplog):
    """Adam ran mnist and mnist_loss, Nesterov mnist alone: Nesterov's mnist_loss is inf,
    its speedup the budget + 1 over Adam's time, as the warning says."""
    rows = [(100, 5.0, 0.98)]
    loss = [(50, 3.0, 0.2)]
    write_trials(
        tmp_path,
        [
            Trial(ADAM, "mnist", 0, rows, sweep="a"),
            Trial(ADAM, "mnist_loss", 0, loss, sweep="a"),
            Trial(NESTEROV, "mnist", 0, rows, sweep="n"),
        ],
    )
    out = tmp_path / "out"
    cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "n"), "--out", str(out)])
    assert "Nesterov/mnist_loss has no trial: it counts as missing the target (inf)" in caplog.text
    gains = pd.read_csv(out / "speedups.csv").set_index(["submission", "workload"])
    assert gains.loc[("Nesterov", "mnist_loss"), "time"] == 31.0  # the budget + 1 s
    assert gains.loc[("Nesterov", "mnist_loss"), "speedup"] == pytest.approx(31.0 / 3.0)
    scores = pd.read_csv(out / "scores.csv").set_index("submission")
    assert scores.loc["Nesterov", "speedup_over_Adam"] == pytest.approx(math.sqrt(31.0 / 3.0))
    assert scores.loc["Nesterov", "leaderboard_score"] == pytest.approx(0.5)  # fastest on 1 of 2


def test_a_comparison_where_nothing_reached_the_target_says_what_is_missing(tmp_path, caplog):
    write_trials(
        tmp_path,
        [
            Trial(ADAM, "mnist", 0, [(100, 5.0, 0.5)], sweep="a"),
            Trial(ADAM, "mnist", 1, [(100, 5.0, 0.98)], sweep="a"),
            Trial(NESTEROV, "mnist", None, [(100, 5.0, 0.5)], sweep="n"),
        ],
    )
    cli.main(["compare", str(tmp_path), "--out", str(tmp_path / "out")])
    (line,) = [r.message for r in caplog.records if "no submission reached" in r.message]
    assert "Adam/mnist: 1 of 2; Nesterov/mnist: 0 of 1" in line
    assert "more than half of them must reach the target" in line
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    assert (scores["leaderboard_score"] == 0).all()
