"""AlgoPerf's scoring (`aeff/results/scoring.py`) over aeff's records, checked on trials
written by hand against known answers and against AlgoPerf's own code."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import algoperf_oracle as oracle
from helpers.compare_trials import (
    Trial,
    algoperf_frames,
    cell,
    known_trials,
    scoring_cases,
    write_trials,
)

from aeff.results import scoring, trials_table

INF = math.inf


@pytest.fixture
def known(tmp_path) -> tuple[Path, dict[str, Trial]]:
    return tmp_path / "runs", write_trials(tmp_path / "runs", known_trials())


def test_each_study_takes_its_best_trial_by_evaluation_index_and_workloads_the_median(known):
    root, written = known
    trials, evals = trials_table.read_trials([root])
    result = scoring.compare(trials, evals)
    studies = result["studies"].set_index(["submission", "workload", "study"]).sort_index()
    adam_mnist = studies.loc["Adam", "mnist"]
    assert list(adam_mnist["accumulated_submission_time"]) == [20.0, 25.0, INF]
    assert list(adam_mnist["global_step"]) == [200, 150, INF]
    tie_winner = adam_mnist["run_dir"].iloc[0]
    assert written[tie_winner].rows[-1] == (200, 20.0, 0.97)  # the first, not the faster
    assert list(adam_mnist["trials"]) == [2, 2, 2]
    assert adam_mnist["run_dir"].isna().tolist() == [False, False, True]
    failed_study = studies.loc["Nesterov", "mnist"].iloc[2]
    assert failed_study["accumulated_submission_time"] == INF  # its rows reach the target
    table = result["table"]
    expected = {  # (time, steps, studies reaching the target)
        ("Adam", "mnist"): (25.0, 200.0, 2),
        ("Nesterov", "mnist"): (12.0, 200.0, 2),
        ("Adam", "mnist_loss"): (6.0, 100.0, 2),
        ("Nesterov", "mnist_loss"): (INF, INF, 1),  # median of [inf, inf, 2]
    }
    for (submission, workload), (time, steps, reached) in expected.items():
        row = cell(table, submission, workload)
        assert (row["accumulated_submission_time"], row["global_step"]) == (time, steps)
        assert (row["studies"], row["studies_reached"]) == (3, reached)


def test_profiles_scores_and_speedups_of_the_known_trials(known):
    trials, evals = trials_table.read_trials([known[0]])
    result = scoring.compare(trials, evals, baseline="Adam")
    profiles = result["profiles"]
    assert profiles.columns[0] == 1.0 and profiles.columns[-1] == 4.0 and profiles.shape[1] == 100
    # Adam: mnist_loss at once, mnist from tau = 25 / 12; Nesterov: mnist only.
    tau = profiles.columns.to_numpy()
    assert (profiles.loc["Adam"].to_numpy() == np.where(tau >= 25 / 12, 1.0, 0.5)).all()
    assert (profiles.loc["Nesterov"] == 0.5).all()
    scores = result["scores"].set_index("submission")
    area = (0.5 * (25 / 12 - 1) + (4 - 25 / 12)) / 3
    assert scores.loc["Adam", "leaderboard_score"] == pytest.approx(area, abs=0.5 * 3 / 99 / 3)
    assert scores.loc["Nesterov", "leaderboard_score"] == pytest.approx(0.5)
    gains = result["speedups"].set_index(["submission", "workload"])
    # inf becomes the budget + 1 s: 31 s for mnist_loss.
    assert gains.loc[("Nesterov", "mnist"), "speedup"] == pytest.approx(12 / 25)
    assert gains.loc[("Nesterov", "mnist_loss"), "speedup"] == pytest.approx(31 / 6)
    assert gains.loc[("Nesterov", "mnist_loss"), "baseline_time"] == 6.0
    mean = math.sqrt(12 / 25 * 31 / 6)
    assert scores.loc["Nesterov", "speedup_over_Adam"] == pytest.approx(mean)
    assert scores.loc["Adam", "speedup_over_Adam"] == 1.0


def test_on_the_steps_clock_the_same_trials_are_timed_by_steps(known):
    trials, evals = trials_table.read_trials([known[0]])
    result = scoring.compare(trials, evals, clock="steps", baseline="Nesterov")
    scores = result["scores"].set_index("submission")["leaderboard_score"]
    assert scores["Adam"] == 1.0 and scores["Nesterov"] == 0.5  # 200 = 200 steps on mnist
    gains = result["speedups"].set_index(["submission", "workload"])["speedup"]
    assert gains[("Adam", "mnist_loss")] == 0.0  # no max_steps: no ceiling for Nesterov's inf


CASES = scoring_cases()


@pytest.fixture(scope="module")
def answers() -> dict:
    return oracle.stored_answers()


# The known answers: AlgoPerf's scoring, run once on the same trials
# (tests/helpers/make_algoperf_scoring.py).
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("case", CASES)
def test_aeff_scores_the_trials_as_algoperfs_scoring_did(tmp_path, answers, case):
    trials, clock, scale, max_tau = CASES[case]
    write_trials(tmp_path, trials)
    expected = answers["cases"][case]
    assert ("speedups" in expected) == (clock == "time")
    assert_agreement(tmp_path, expected, clock, scale, max_tau)


def test_the_known_answers_say_where_they_came_from(answers):
    assert answers["source"]["commit"] == oracle.SOURCE["commit"]
    assert sorted(answers["cases"]) == sorted(CASES)


@pytest.fixture(scope="module")
def algoperf() -> oracle.Scoring:
    folder = oracle.ALGOPERF.resolve()
    if not (folder / "scoring" / "performance_profile.py").is_file():
        pytest.skip(f"no AlgoPerf scoring/ in {folder}: only the stored answers are checked")
    return oracle.load(folder)


# AlgoPerf's scoring itself, run now where ../shared/algoperf holds it: its answers are
# aeff's and the stored ones (../shared/algoperf has no compute_speedups.py: the speedups
# are the stored answers' alone).
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("case", CASES)
def test_aeff_scores_the_trials_as_algoperfs_scoring_does(tmp_path, algoperf, answers, case):
    trials, clock, scale, max_tau = CASES[case]
    written = write_trials(tmp_path, trials)
    frames = algoperf_frames(trials_table.read_trials([tmp_path])[0], written)
    live = oracle.answers(algoperf, frames, clock, scale, max_tau)
    assert_agreement(tmp_path, live, clock, scale, max_tau)
    stored = answers["cases"][case]
    for part in ("times", "profiles", "scores"):
        expected, found = oracle.unsplit(stored[part]), oracle.unsplit(live[part])
        pd.testing.assert_frame_equal(found, expected, check_exact=True)
    if algoperf.speedups is not None and clock == "time":
        assert live["speedups"] == stored["speedups"]


def assert_agreement(root, expected, clock, scale, max_tau) -> None:
    """aeff's compare of the trials under `root` gives AlgoPerf's answers `expected`
    (oracle.answers): its time matrix, profiles, scores and speedups over the first."""
    trials, evals = trials_table.read_trials([root])
    base, *others = sorted(trials["submission"].unique())
    result = scoring.compare(trials, evals, base, clock=clock, scale=scale, max_tau=max_tau)
    ours = scoring.time_matrix(result["table"], scoring.CLOCKS[clock])
    times = oracle.unsplit(expected["times"])
    pd.testing.assert_frame_equal(ours, times, check_names=False, check_dtype=False)
    profiles = oracle.unsplit(expected["profiles"])
    pd.testing.assert_frame_equal(result["profiles"], profiles, check_names=False)
    ours_scores = result["scores"].set_index("submission")["leaderboard_score"]
    scores = oracle.unsplit(expected["scores"])["score"]
    pd.testing.assert_series_equal(ours_scores, scores, check_names=False)
    if "speedups" not in expected:
        return
    assert sorted(expected["speedups"]) == others
    gains = result["speedups"].set_index(["submission", "workload"])["speedup"]
    means = scoring.mean_speedups(scoring.speedups(ours, base, scoring.ceilings(trials, "time")))
    for other, algoperf in expected["speedups"].items():
        assert gains[other].to_dict() == algoperf["speedup"]
        assert means[other] == pytest.approx(algoperf["mean"], rel=1e-12)


def test_an_even_number_of_studies_takes_numpys_median_inf_included():
    studies = pd.DataFrame(
        {
            "submission": ["A"] * 4,
            "workload": ["w", "w", "v", "v"],
            "study": [0, 1, 0, 1],
            "index": [0, -1, 1, 2],
            "accumulated_submission_time": [10.0, INF, 10.0, 20.0],
            "global_step": [1.0, INF, 2.0, 4.0],
        }
    )
    table = scoring.workload_times(studies).set_index("workload")
    assert table.loc["w", "accumulated_submission_time"] == INF
    assert table.loc["v", "accumulated_submission_time"] == 15.0
    assert table.loc["v", "global_step"] == 3.0


def test_a_time_over_four_times_the_fastest_counts_as_a_miss():
    times = pd.DataFrame({"w": [10.0, 40.0, 41.0, INF]}, index=list("abcd"))
    assert scoring.ratios_to_fastest(times)["w"].tolist() == [1.0, 4.0, INF, INF]
    nobody = pd.DataFrame({"w": [INF, INF]}, index=list("ab"))  # inf over inf: stays inf
    assert scoring.ratios_to_fastest(nobody)["w"].tolist() == [INF, INF]


def test_the_score_is_the_normalized_area_under_the_profile():
    profiles = pd.DataFrame([[0.0, 1.0, 1.0]], index=["a"], columns=[1.0, 2.0, 3.0])
    assert scoring.leaderboard_scores(profiles)["a"] == 0.75
    assert scoring.leaderboard_scores(profiles, normalize=False)["a"] == 1.5
