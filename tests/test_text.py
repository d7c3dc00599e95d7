"""The results on a terminal (`aeff/results/text.py`): the summary table, values as a
reader takes them, and a large folder's brief."""

import math
from pathlib import Path

import pandas as pd
import pytest
from helpers.written_trials import example_sweep, trial

from aeff.records import sweep_dir as sweep_record
from aeff.results import __main__ as cli
from aeff.results.sweep_report import write_sweep_report
from aeff.results.text import as_text, seconds, short


@pytest.fixture
def sweep(tmp_path) -> Path:
    return example_sweep(tmp_path)


def test_the_terminal_table_shows_missing_values_one_way(sweep):
    table, _ = write_sweep_report(sweep)
    text = as_text(table, sweep)
    assert "None" not in text and "NaN" not in text and "nan" not in text
    assert text.splitlines()[1].split()[0] == "0"  # run dirs relative to the sweep


def test_the_terminal_table_rounds_values_cuts_errors_and_dashes_the_rest(tmp_path):
    assert as_text(pd.DataFrame(), tmp_path) == "(no trials)"
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"], ["a=3"]])
    trial(tmp_path / "0", [(10, 1.0, True, 0.123456789)])
    long_error = "E" + "abcdefghij" * 10
    trial(tmp_path / "1", [(10, 2.0, False, 0.5)], status="failed", error_message=long_error)
    table, _ = write_sweep_report(tmp_path)
    lines = as_text(table, tmp_path).splitlines()
    assert lines[0].split()[0] == "run_dir"  # no index column
    assert [line.split()[0] for line in lines[1:]] == ["0", "1", "2"]
    assert "0.1235" in lines[1] and "0.123456" not in lines[1]
    assert long_error[:60] in lines[2] and long_error[:61] not in lines[2]
    shown = table.columns.drop("rerun_command")  # in summary.csv, not on the console
    assert lines[3].split()[1:] == ["not", "started"] + ["-"] * (len(shown) - 2)


def test_a_step_count_read_back_as_a_float_is_shown_whole_and_times_rounded():
    assert short(12345.0) == "12345" and short(326.0) == "326"
    assert short(0.002596866783593736) == "0.002597"
    assert seconds(1.23456) == "1.235 s" and seconds(None) == "none"
    assert seconds(math.inf) == "inf"


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
