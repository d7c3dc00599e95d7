"""`python -m aeff.results` (`aeff/results/__main__.py`): its help, its commands on a sweep
and on a folder of runs, its refusals in one line, and its warnings named for the tool."""

import json
import logging

import pytest
from helpers.written_trials import drawn_figures, plotted_sweep, refusal

from aeff.records import sweep_dir as sweep_record
from aeff.results import __main__ as cli


@pytest.fixture
def figures(monkeypatch):
    yield from drawn_figures(monkeypatch)


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
