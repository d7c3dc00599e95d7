"""Whole trials through the Python API, each in a child process with its own device count."""

import itertools

import numpy as np
import pytest
from helpers import GROUPING_SCRIPT, data_overrides, run_trial_json

# Each trial runs in a child process with its own device count.
pytestmark = pytest.mark.slow

TIME_KEYS = {
    "accumulated_submission_time",
    "accumulated_eval_time",
    "wall_time",
    "global_start_time",
    "compile_time",
}


@pytest.fixture(scope="module")
def short_trial(mnist_data_dir):
    return [
        *data_overrides(mnist_data_dir),
        "rng_seed=0",
        "max_steps=12",
        "eval_every_steps=3",
        "batch_size=512",
    ]


def test_loss_trajectory_agrees_across_1_2_and_4_devices(short_trial):
    trajectories = {}
    for devices in (1, 2, 4):
        out = run_trial_json(short_trial, devices=devices)
        assert out["device_count"] == devices
        rows = out["runs"][0]["rows"]
        assert [row["global_step"] for row in rows] == [3, 6, 9, 12]
        trajectories[devices] = np.array(
            [[row["train.loss"], row["validation.loss"], row["test.accuracy"]] for row in rows]
        )
    assert trajectories[1][-1, 0] < trajectories[1][0, 0]  # it learns
    for devices in (2, 4):
        np.testing.assert_allclose(trajectories[devices], trajectories[1], rtol=2e-5, atol=1e-6)


def test_same_seed_gives_the_same_metrics_bit_for_bit(short_trial):
    out = run_trial_json(short_trial, repeat=2)
    first, second = (
        [{k: v for k, v in row.items() if k not in TIME_KEYS} for row in run["rows"]]
        for run in out["runs"]
    )
    assert first == second
    assert out["runs"][0]["result"]["rng_seed"] == 0
    assert not out["tensorflow_imported"]


def test_rows_follow_the_budget_rules(short_trial):
    rows = run_trial_json(short_trial)["runs"][0]["rows"]
    for earlier, later in itertools.pairwise(rows):
        assert later["accumulated_submission_time"] > earlier["accumulated_submission_time"]
        assert later["wall_time"] > later["accumulated_submission_time"]
        assert later["accumulated_eval_time"] > earlier["accumulated_eval_time"]
        assert later["goal_reached"] >= earlier["goal_reached"]
    assert rows[-1]["epoch"] == pytest.approx(12 / rows[-1]["steps_per_epoch"])


def test_target_stops_the_trial_and_records_time_to_target(short_trial):
    out = run_trial_json(
        [*short_trial, "max_steps=400", "eval_every_steps=20", "workload.target_value=0.9"]
    )
    result, rows = out["runs"][0]["result"], out["runs"][0]["rows"]
    assert result["goal_reached"] and result["status"] == "completed"
    assert result["global_step"] < 400
    assert rows[-1]["validation.accuracy"] >= 0.9 > rows[-2]["validation.accuracy"]
    assert result["time_to_target"] == rows[-1]["accumulated_submission_time"]


EVALUATED = ["train.loss", "validation.loss", "validation.accuracy", "test.loss", "test.accuracy"]


@pytest.mark.parametrize("devices", [1, 4])
def test_a_trials_rows_do_not_depend_on_its_grouping(short_trial, devices):
    """The same trial alone, as a group of one, and as the first of a group of eight, with
    and without a neighbour that diverges at its second step: the same rows."""
    out = run_trial_json(short_trial, devices=devices, script=GROUPING_SCRIPT)
    assert out["device_count"] == devices
    runs = out["runs"]
    assert runs["diverging statuses"] == ["completed", *["diverged"] * 7]
    assert runs["group of 8 statuses"] == ["completed"] * 8
    alone = runs["alone"]
    assert [row["global_step"] for row in alone] == [3, 6, 9, 12]
    for name in ("group of 1", "group of 8", "diverging"):
        rows = runs[name]
        assert [row["global_step"] for row in rows] == [3, 6, 9, 12], name
        for row, single in zip(rows, alone, strict=True):
            for column in EVALUATED:
                assert row[column] == pytest.approx(single[column], rel=1e-5, abs=1e-5), name
