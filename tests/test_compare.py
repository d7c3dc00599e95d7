"""`python -m aeff.results compare`: AlgoPerf's scoring over aeff's records, checked on
trials written by hand against known answers and against AlgoPerf's own code."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import algoperf_oracle as oracle
from helpers.compare_trials import (
    ADAM,
    NESTEROV,
    Trial,
    algoperf_frames,
    known_trials,
    scoring_cases,
    write_trials,
)

from aeff.errors import ConfigError
from aeff.results import __main__ as cli
from aeff.results import compare

INF = math.inf


@pytest.fixture
def known(tmp_path) -> tuple[Path, dict[str, Trial]]:
    return tmp_path / "runs", write_trials(tmp_path / "runs", known_trials())


def cell(table: pd.DataFrame, submission: str, workload: str) -> pd.Series:
    (row,) = table[(table["submission"] == submission) & (table["workload"] == workload)].index
    return table.loc[row]


def test_each_study_takes_its_best_trial_by_evaluation_index_and_workloads_the_median(known):
    root, written = known
    trials, evals = compare.read_trials([root])
    result = compare.compare(trials, evals)
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
    trials, evals = compare.read_trials([known[0]])
    result = compare.compare(trials, evals, baseline="Adam")
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
    trials, evals = compare.read_trials([known[0]])
    result = compare.compare(trials, evals, clock="steps", baseline="Nesterov")
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
    frames = algoperf_frames(compare.read_trials([tmp_path])[0], written)
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
    trials, evals = compare.read_trials([root])
    base, *others = sorted(trials["submission"].unique())
    result = compare.compare(trials, evals, base, clock=clock, scale=scale, max_tau=max_tau)
    ours = compare.time_matrix(result["table"], compare.CLOCKS[clock])
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
    means = compare.mean_speedups(compare.speedups(ours, base, compare.ceilings(trials, "time")))
    for other, algoperf in expected["speedups"].items():
        assert gains[other].to_dict() == algoperf["speedup"]
        assert means[other] == pytest.approx(algoperf["mean"], rel=1e-12)


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
    result = compare.compare(*compare.read_trials([tmp_path]))
    assert sorted(result["studies"]["accumulated_submission_time"]) == [2.0, 5.0, 7.0, INF]
    assert cell(result["table"], "Adam", "mnist")["accumulated_submission_time"] == 6.0


def test_the_default_baseline_is_the_first_dirs_submission(known):
    root, _ = known
    for first, other in (("nag", "adam"), ("adam", "nag")):
        scores = compare.compare(*compare.read_trials([root / first, root / other]))["scores"]
        baseline = {"nag": "Nesterov", "adam": "Adam"}[first]
        assert scores.columns[-1] == f"speedup_over_{baseline}"


def test_a_trial_found_twice_counts_once(known):
    root, _ = known
    once = compare.compare(*compare.read_trials([root]))["studies"]
    twice = compare.compare(*compare.read_trials([root, root / "adam"]))["studies"]
    pd.testing.assert_frame_equal(once, twice)


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
    table = compare.workload_times(studies).set_index("workload")
    assert table.loc["w", "accumulated_submission_time"] == INF
    assert table.loc["v", "accumulated_submission_time"] == 15.0
    assert table.loc["v", "global_step"] == 3.0


def test_a_time_over_four_times_the_fastest_counts_as_a_miss():
    times = pd.DataFrame({"w": [10.0, 40.0, 41.0, INF]}, index=list("abcd"))
    assert compare.ratios_to_fastest(times)["w"].tolist() == [1.0, 4.0, INF, INF]
    nobody = pd.DataFrame({"w": [INF, INF]}, index=list("ab"))  # inf over inf: stays inf
    assert compare.ratios_to_fastest(nobody)["w"].tolist() == [INF, INF]


def test_the_score_is_the_normalized_area_under_the_profile():
    profiles = pd.DataFrame([[0.0, 1.0, 1.0]], index=["a"], columns=[1.0, 2.0, 3.0])
    assert compare.leaderboard_scores(profiles)["a"] == 0.75
    assert compare.leaderboard_scores(profiles, normalize=False)["a"] == 1.5


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
    names = compare.read_trials([tmp_path])[0].set_index("origin")["submission"]
    names.index = [Path(origin).name for origin in names.index]
    assert names.to_dict() == {
        "a": "aeff.submissions.adam.Adam",
        "b": "my_adam.py@aaaaaaaa",
        "c": "my_adam.py@bbbbbbbb",
        "d": "other.Adam",
    }
    renamed = compare.read_trials([tmp_path], {"other.Adam": "theirs"})[0]["submission"]
    assert set(renamed) == {*names[["a", "b", "c"]], "theirs"}
    write_trials(tmp_path / "more", [Trial(NESTEROV, "mnist", 0, rows)])
    alone = compare.read_trials([tmp_path / "more", tmp_path / "b"])[0]["submission"]
    assert set(alone) == {"Nesterov", "my_adam.py"}  # short where no other shares the name
    with pytest.raises(ConfigError, match="no submission is called Adam; they are"):
        compare.read_trials([tmp_path], {"Adam": "x"})


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
        compare.read_trials([tmp_path])
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
        compare.read_trials([tmp_path])


def test_times_of_trials_that_shared_their_clock_unequally_are_said_not_comparable(tmp_path):
    rows = [(100, 5.0, 0.98)]
    grouped = {"group.size": 4, "parallel_trials": 1}
    write_trials(
        tmp_path, [Trial(ADAM, "mnist", 0, rows), Trial(NESTEROV, "mnist", 0, rows, record=grouped)]
    )
    trials, _ = compare.read_trials([tmp_path])
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
