"""The plan of a sweep as functions of values (aeff/sweeps/plan.py), without Hydra: the grid
times the sampled points, pinned keys, studies, the sweep dir's layout, what a resume's plan
changes, and the batches jobs are launched in."""

from pathlib import Path

import pytest

from aeff import search
from aeff.errors import ConfigError
from aeff.sweeps import plan
from aeff.sweeps.plan import plan_changes

SPACE = {"hparams": {"lr": {"min": 1e-4, "max": 1e-2}, "epsilon": {"values": [1e-8, 1e-5]}}}
SAMPLED = {"num_trials": 3, "method": "halton", "seed": 0}


def test_plan_changes_ignore_what_does_not_change_a_trial():
    planned = [["hparams.lr=0.1", "max_steps=3"]]
    same = [
        ["hparams.lr=0.1", "max_steps=3", "resume=true", "hydra.sweep.dir=x", "devices.ids=[0]"]
    ]
    assert plan_changes(planned, same) == ""
    assert plan_changes(planned, [*planned, *planned]) == "1 trials (now 2)"
    assert "max_steps=3 (now 4)" in plan_changes(planned, [["hparams.lr=0.1", "max_steps=4"]])


def test_plan_changes_ignore_the_keys_the_sweeper_names():
    planned = [["hparams.lr=0.1", "workload.data_dir=/a"]]
    moved = [["hparams.lr=0.1", "workload.data_dir=/b"]]
    assert plan_changes(planned, moved, ignored=("workload.data_dir",)) == ""
    assert plan_changes(planned, moved) == "for trial 0: workload.data_dir=/a (now /b)"


def test_plan_values_read_keys_as_hydra_spells_them():
    planned = [["+hparams.x=a=b", "hydra/launcher=joblib"]]
    assert plan_changes(planned, [["hparams.x=a=b"]]) == ""
    assert plan_changes(planned, [["hparams.x=a=c"]]) == "for trial 0: hparams.x=a=b (now a=c)"


def test_plan_changes_name_every_differing_key_on_either_side():
    planned = [["a=1", "b=2", "d=5"]]
    now = [["a=3", "c=4", "d=5"]]
    assert plan_changes(planned, now) == (
        "for trial 0: a=1 (now 3), b=2 (now None), c=None (now 4)"
    )


def test_batches_are_runs_of_consecutive_jobs_at_most_max_batch_size_long():
    assert plan.batches([]) == []
    assert plan.batches([0, 1, 2, 4, 5, 9]) == [[0, 1, 2], [4, 5], [9]]
    assert plan.batches([0, 1, 2, 3, 4, 6], 2) == [[0, 1], [2, 3], [4], [6]]
    assert plan.batches([3, 4], 1) == [[3], [4]]
    assert plan.batches([2, 1]) == [[2], [1]]


def test_a_launchers_calls_take_whole_batches_up_to_max_batch_size_jobs():
    assert plan.calls([2, 1, 3]) == [[0, 1, 2]]
    assert plan.calls([2, 1, 3], 3) == [[0, 1], [2]]
    assert plan.calls([4, 1], 3) == [[0], [1]]  # a batch larger than the limit goes alone


def test_every_grid_point_gets_every_sampled_point_and_a_pinned_key_is_not_sampled():
    axes = [["batch_size=256", "batch_size=512"], ["hparams.epsilon=0.001"]]
    jobs = plan.job_plan(axes, {"batch_size", "hparams.epsilon"}, [], space(), SAMPLED)(0)
    assert len(jobs) == 2 * 3
    assert [job[0] for job in jobs] == ["batch_size=256"] * 3 + ["batch_size=512"] * 3
    for job in jobs:
        assert [o for o in job if o.startswith("hparams.epsilon")] == ["hparams.epsilon=0.001"]
    lrs = [[o for o in job if o.startswith("hparams.lr=")] for job in jobs]
    assert lrs[:3] == lrs[3:] and len({lr[0] for lr in lrs[:3]}) == 3


def test_each_seed_samples_its_own_points_and_only_the_first_is_checked_to_compose():
    checked = []
    jobs = plan.job_plan([["max_steps=3"]], set(), [], space(), SAMPLED, record(checked))
    assert len(checked) == 1 and checked[0][1] == ["max_steps=3"]  # at planning, once
    assert jobs(0) == jobs(0) and jobs(0) != jobs(1) and len(checked) == 1


def test_a_grid_alone_is_its_jobs_and_sampling_needs_a_number_of_trials():
    assert plan.job_plan([["a=1", "a=2"], ["b=3"]], {"a", "b"}, [], [], {})(0) == [
        ["a=1", "b=3"],
        ["a=2", "b=3"],
    ]
    with pytest.raises(ConfigError, match=r"^search.num_trials is set but nothing is sampled"):
        plan.job_plan([], set(), [], [], {"num_trials": 2})
    with pytest.raises(ConfigError, match=r"^search_space is chosen: set search.num_trials=N"):
        plan.job_plan([], set(), [], space(), {"num_trials": None})
    lr = search.interval("hparams.lr", 1e-4, 1e-2, {"log"})
    with pytest.raises(ConfigError, match=r"^hparams.lr is an interval: set search.num_trials"):
        plan.job_plan([], set(), [lr], [], {"num_trials": None})


def test_studies_after_the_first_get_their_own_seed_folder_and_rng_seed(tmp_path):
    seen = []

    def jobs(seed: int) -> list[list[str]]:
        seen.append(seed)
        return [["rng_seed=7", "hparams.lr=0.1"]]

    (only,) = plan.studies(tmp_path, 1, 5, jobs)
    assert (only.folder, only.seed, only.jobs) == (tmp_path, 5, [["rng_seed=7", "hparams.lr=0.1"]])
    first, second = plan.studies(tmp_path / "a b", 2, 5, jobs)
    assert seen == [5, 5, search.study_seed(5, 1)]
    assert second.folder == tmp_path / "a b" / "study_1"
    assert second.jobs == [
        [
            "hparams.lr=0.1",
            "search.seed=" + str(search.study_seed(5, 1)),
            "search.study=1",
            f"rng_seed={search.study_seed(7, 1)}",
            f"hydra.sweep.dir='{tmp_path / 'a b' / 'study_1'}'",
        ]
    ]
    assert "rng_seed=7" in first.jobs[0]  # study 0 keeps the seed given


def test_the_sweep_dirs_layout_is_checked_against_its_plan():
    plan.check_layout(Path("s"), 0, 2, resume=False)  # a new sweep dir
    plan.check_layout(Path("s"), 2, 2, resume=True)
    with pytest.raises(ConfigError, match=r"^s holds a sweep already: add resume=true"):
        plan.check_layout(Path("s"), 1, 1, resume=False)
    with pytest.raises(ConfigError, match=r"planned search.num_studies=2 \(now 3\)"):
        plan.check_layout(Path("s"), 2, 3, resume=True)


def test_bad_settings_of_studies_or_subdir_are_refused():
    plan.check_studies(2, 0)
    plan.check_subdir("${hydra.job.num}")
    for num_studies in (0, 1.5, True, "abc"):
        with pytest.raises(ConfigError, match=r"expected an integer >= 1\.$"):
            plan.check_studies(num_studies, 0)
    with pytest.raises(ConfigError, match=r"^search.study=1: the sweeper sets each trial's"):
        plan.check_studies(1, 1)
    with pytest.raises(ConfigError, match=r"^hydra.sweep.subdir=x: aeff keeps each trial in"):
        plan.check_subdir("x")


def space() -> list:
    return search.parse_space(SPACE)


def record(calls: list):
    return lambda values, company: calls.append((values, company))
