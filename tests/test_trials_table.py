"""The trials table `compare` scores (`aeff/results/trials_table.py`), read from records
written by hand: studies, submissions told apart, trials found twice, trials that cannot be
compared, and the direction of each trial's target metric."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers.compare_trials import ADAM, NESTEROV, Trial, cell, known_trials, write_trials

from aeff.errors import ConfigError
from aeff.results import scoring, trials_table

INF = math.inf


@pytest.fixture
def known(tmp_path) -> tuple[Path, dict[str, Trial]]:
    return tmp_path / "runs", write_trials(tmp_path / "runs", known_trials())


def test_without_a_study_number_a_sweep_is_a_study_and_a_lone_trial_its_own(tmp_path):
    rows = [(100, 5.0, 0.98)]
    trials = [
        Trial(ADAM, "mnist", None, [(100, 5.0, 0.9), (200, 9.0, 0.98)], sweep="a"),
        Trial(ADAM, "mnist", None, [(100, 7.0, 0.98)], sweep="a"),  # study a's best: 7 s
        Trial(ADAM, "mnist", None, [(100, 3.0, 0.9)], sweep="b"),  # study b: inf
        Trial(ADAM, "mnist", None, rows, sweep=None),  # a study of its own: 5 s
        Trial(ADAM, "mnist", None, [(100, 2.0, 0.98)], sweep=None),  # another: 2 s
    ]
    write_trials(tmp_path, trials)
    result = scoring.compare(*trials_table.read_trials([tmp_path]))
    assert sorted(result["studies"]["accumulated_submission_time"]) == [2.0, 5.0, 7.0, INF]
    assert cell(result["table"], "Adam", "mnist")["accumulated_submission_time"] == 6.0


def test_the_default_baseline_is_the_first_dirs_submission(known):
    root, _ = known
    for first, other in (("nag", "adam"), ("adam", "nag")):
        scores = scoring.compare(*trials_table.read_trials([root / first, root / other]))["scores"]
        baseline = {"nag": "Nesterov", "adam": "Adam"}[first]
        assert scores.columns[-1] == f"speedup_over_{baseline}"


def test_a_trial_found_twice_counts_once(known):
    root, _ = known
    once = scoring.compare(*trials_table.read_trials([root]))["studies"]
    twice = scoring.compare(*trials_table.read_trials([root, root / "adam"]))["studies"]
    pd.testing.assert_frame_equal(once, twice)


def submission_file(sha: str, name: str = "my_adam.py") -> dict:
    return {"submission_path": f"/home/me/{sha}/{name}", "submission_path_sha256": sha * 8}


def test_submissions_are_named_by_class_or_file_and_told_apart(tmp_path):
    rows = [(100, 5.0, 0.98)]
    trials = [
        Trial(ADAM, "mnist", 0, rows, sweep="a"),
        Trial("my_adam.Adam", "mnist", 0, rows, sweep="b", record=submission_file("aaaa")),
        Trial("my_adam.Adam", "mnist", 0, rows, sweep="c", record=submission_file("bbbb")),
        Trial("other.Adam", "mnist", 0, rows, sweep="d"),
    ]
    write_trials(tmp_path, trials)
    names = trials_table.read_trials([tmp_path])[0].set_index("origin")["submission"]
    names.index = [Path(origin).name for origin in names.index]
    assert names.to_dict() == {
        "a": "aeff.submissions.adam.Adam",
        "b": "my_adam.py@aaaaaaaa",
        "c": "my_adam.py@bbbbbbbb",
        "d": "other.Adam",
    }
    renamed = trials_table.read_trials([tmp_path], {"other.Adam": "theirs"})[0]["submission"]
    assert set(renamed) == {*names[["a", "b", "c"]], "theirs"}
    write_trials(tmp_path / "more", [Trial(NESTEROV, "mnist", 0, rows)])
    alone = trials_table.read_trials([tmp_path / "more", tmp_path / "b"])[0]["submission"]
    assert set(alone) == {"Nesterov", "my_adam.py"}  # short where no other shares the name
    with pytest.raises(ConfigError, match="no submission is called Adam; they are"):
        trials_table.read_trials([tmp_path], {"Adam": "x"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("workload.target_value", 0.98),
        ("workload.target_metric", "validation.loss"),
        ("workload.max_allowed_runtime_sec", 120.0),
        ("max_steps", 1000),
    ],
)
def test_trials_of_one_workload_with_other_targets_or_budgets_are_refused(tmp_path, key, value):
    rows = [(100, 5.0, 0.98)]
    write_trials(tmp_path, [Trial(ADAM, "mnist", 0, rows), Trial(NESTEROV, "mnist", 0, rows)])
    other = tmp_path / "sweep" / "1" / "metadata.json"
    other.write_text(json.dumps({**json.loads(other.read_text()), key: value}))
    with pytest.raises(ConfigError) as refused:
        trials_table.read_trials([tmp_path])
    message = str(refused.value)
    assert f"workload mnist differ in {key}" in message and "\n" not in message
    assert str(other.parent) in message


def test_trials_of_one_workload_with_another_model_are_refused(tmp_path):
    rows = [(100, 5.0, 0.98)]
    width = [{"identity": {"workload.hidden_width": w}} for w in (128, 256)]
    write_trials(
        tmp_path,
        [
            Trial(ADAM, "mnist", 0, rows, record=width[0]),
            Trial(NESTEROV, "mnist", 0, rows, record=width[1]),
        ],
    )
    with pytest.raises(ConfigError, match=r"workload mnist differ in workload\.hidden_width: 128"):
        trials_table.read_trials([tmp_path])


def test_a_target_is_reached_in_the_direction_its_workload_declares(tmp_path):
    """A record's `workload.target_higher_is_better` wins over the name: the `mnist_loss`
    trials' target metric is `validation.loss` (0.3); declared better higher, 0.5 reaches
    it; without the key (a record written before workloads declared it), by the name, 0.5
    misses it and 0.2 reaches it."""
    declared = {"workload.target_higher_is_better": True}
    rows = [(50, 3.0, 0.5), (100, 6.0, 0.2)]
    write_trials(
        tmp_path,
        [
            Trial(ADAM, "mnist_loss", 0, rows, sweep="a", record=declared),
            Trial(NESTEROV, "mnist_loss", 0, rows, sweep="n"),
        ],
    )
    trials, evals = trials_table.read_trials([tmp_path])
    assert trials.set_index("submission")["higher_is_better"].to_dict() == {
        "Adam": True,
        "Nesterov": False,
    }
    table = scoring.compare(trials, evals)["table"]
    assert cell(table, "Adam", "mnist_loss")["accumulated_submission_time"] == 3.0
    assert cell(table, "Nesterov", "mnist_loss")["accumulated_submission_time"] == 6.0
