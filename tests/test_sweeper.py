"""The sweeper's decisions, in-process: which jobs, with which values, in which sweep dir."""

import hashlib
import json
import re
import types

import pytest
from conftest import owned_by_another_process
from hydra import compose, initialize_config_module
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from omegaconf import open_dict

from aeff import results
from aeff.app import register, with_user_files
from aeff.errors import ConfigError, RunDirBusy
from hydra_plugins.aeff_sweeper.aeff_sweeper import AeffSweeper, plan_changes


@pytest.fixture
def sweeper(tmp_path):
    """An AeffSweeper set up on the composed config, sweeping into tmp_path."""
    register()

    def make(*overrides: str) -> AeffSweeper:
        with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.sweep.dir = str(tmp_path)
        made = AeffSweeper()
        made.config = cfg
        search_path = create_config_search_path("pkg://aeff.conf")
        made.hydra_context = types.SimpleNamespace(config_loader=ConfigLoaderImpl(search_path))
        return made

    return make


WITH_MOMENTUM = """
import dataclasses
from aeff.submissions.adam import Adam, AdamHParams

@dataclasses.dataclass(frozen=True)
class MomentumHParams(AdamHParams):
    momentum: float = 0.5

@dataclasses.dataclass(frozen=True)
class MomentumAdam(Adam):
    hparams_schema = MomentumHParams
"""


def values(job: list[str], key: str) -> list[float]:
    return [float(o.split("=", 1)[1]) for o in job if o.split("=", 1)[0] == key]


def test_a_key_on_the_command_line_is_pinned_not_sampled(sweeper):
    space = ["search_space=mnist_adam", "search.num_trials=4"]
    jobs = sweeper(*space).job_overrides(["hparams.epsilon=1e-8"])
    assert len(jobs) == 4
    for job in jobs:
        assert values(job, "hparams.epsilon") == [1e-8]  # once, the pinned value
        assert len(values(job, "hparams.lr")) == 1
    assert len({values(job, "hparams.lr")[0] for job in jobs}) == 4


def test_every_grid_point_gets_every_sampled_point(sweeper):
    space = ["search_space=mnist_adam", "search.num_trials=3"]
    jobs = sweeper(*space).job_overrides(["hparams.epsilon=1e-8,1e-5"])
    assert [values(job, "hparams.epsilon")[0] for job in jobs] == [1e-8] * 3 + [1e-5] * 3
    first, second = ([values(job, "hparams.lr")[0] for job in jobs[i : i + 3]] for i in (0, 3))
    assert first == second and len(set(first)) == 3


def test_a_sweep_over_a_config_groups_options_lists_them(sweeper):
    """Hydra's `glob()` reads the group's options from the config loader."""
    assert sweeper().job_overrides(["submission=glob(*)"]) == [
        ["submission=adam"],
        ["submission=nesterov"],
    ]


def test_both_sampling_methods_are_used_and_reproducible(sweeper):
    def lrs(method: str) -> list[float]:
        config = ["search_space=mnist_adam", "search.num_trials=4", f"search.method={method}"]
        return [values(job, "hparams.lr")[0] for job in sweeper(*config).job_overrides([])]

    assert lrs("halton") == lrs("halton")
    assert lrs("sobol") == lrs("sobol")
    assert lrs("halton") != lrs("sobol")


def test_a_sweep_dir_with_a_sweep_needs_resume(sweeper, tmp_path):
    jobs = [["hparams.lr=0.001"], ["hparams.lr=0.002"]]
    assert sweeper().jobs_to_run(tmp_path, jobs) == [0, 1]
    assert results.read_plan(tmp_path) == jobs
    with pytest.raises(ConfigError, match="holds a sweep already: add resume=true"):
        sweeper().jobs_to_run(tmp_path, jobs)


def test_resume_runs_the_unfinished_trials_of_the_same_plan_only(sweeper, tmp_path):
    """Job 3 completed, but its rows were cut since: its record is damaged."""
    jobs = [[f"hparams.lr=0.00{i}"] for i in range(1, 5)]
    sweeper().jobs_to_run(tmp_path, jobs)
    for job, (status, last_row) in enumerate(
        [("completed", 10), ("failed", 5), ("diverged", 10), ("completed", 5)]
    ):
        (tmp_path / str(job)).mkdir()
        record = {"status": status, "global_step": 10}
        (tmp_path / str(job) / "metadata.json").write_text(json.dumps(record))
        (tmp_path / str(job) / "metrics.csv").write_text(f"global_step\n5\n{last_row}\n")
    resume = [[*job, "resume=true", f"hydra.sweep.dir={tmp_path}"] for job in jobs]
    assert sweeper("resume=true").jobs_to_run(tmp_path, resume) == [1, 3]
    changed = [jobs[0], ["hparams.lr=0.004"], *jobs[2:]]
    with pytest.raises(ConfigError, match=r"trial 1: hparams.lr=0.002 \(now 0.004\)"):
        sweeper("resume=true").jobs_to_run(tmp_path, changed)


@pytest.mark.parametrize("key", ["submission_path", "workload_path", "tuning_search_space"])
def test_resume_with_an_edited_user_file_is_refused_as_a_whole(
    sweeper, tmp_path, next_process, key
):
    """Its unstarted trials would run the edit beside the finished trials of the planned
    file: nothing is resumed, nothing written."""
    source = tmp_path / "files" / "mine.py"
    source.parent.mkdir()
    source.write_text("x = 1\n")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    jobs = [[f"{key}={source}", f"hparams.lr=0.00{i}"] for i in (1, 2)]
    sweeper().jobs_to_run(sweep_dir, jobs)
    (sweep_dir / "0").mkdir()
    (sweep_dir / "0" / "metadata.json").write_text(json.dumps({"status": "interrupted"}))
    before = {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()}
    old = hashlib.sha256(source.read_bytes()).hexdigest()
    source.write_text("x = 2\n")
    new = hashlib.sha256(source.read_bytes()).hexdigest()
    next_process()
    with pytest.raises(ConfigError) as refused:
        sweeper("resume=true").jobs_to_run(sweep_dir, jobs)
    assert str(refused.value) == (
        f"resume=true finishes only the same sweep, but {source} changed since {sweep_dir} "
        f"planned it (sha256 {old[:12]}, now {new[:12]}): restore the planned file, or start "
        "the sweep again in another hydra.sweep.dir."
    )
    assert {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()} == before
    source.write_text("x = 1\n")  # restored: the sweep resumes
    next_process()
    assert sweeper("resume=true").jobs_to_run(sweep_dir, jobs) == [0, 1]


def test_resume_naming_another_file_than_the_planned_one_is_refused(sweeper, tmp_path):
    """The same relative path, typed in another folder, is another file."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mine.py").write_text("x = 1\n")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    sweeper().jobs_to_run(sweep_dir, [[f"submission_path={tmp_path / 'a' / 'mine.py'}"]])
    with pytest.raises(ConfigError) as refused:
        sweeper("resume=true").jobs_to_run(sweep_dir, [[f"submission_path={tmp_path}/b/mine.py"]])
    assert str(refused.value) == (
        f"resume=true finishes only the same sweep, but {sweep_dir} planned it with "
        f"{tmp_path / 'a' / 'mine.py'}, which this command does not name: resume with the "
        "sweep's own command line, from the folder it started in."
    )


def test_resume_of_a_plan_without_the_files_sha256_goes_on_with_a_warning(
    sweeper, tmp_path, caplog
):
    """A plan an older aeff wrote records no sha256: a resume cannot check the files."""
    jobs = [[f"submission_path={tmp_path / 'mine.py'}"]]
    (tmp_path / "mine.py").write_text("x = 1\n")
    (tmp_path / "sweep_plan.json").write_text(json.dumps({"num_trials": 1, "jobs": jobs}))
    assert sweeper("resume=true").jobs_to_run(tmp_path, jobs) == [0]
    assert "records no sha256 of the user's files" in caplog.text


def test_resume_with_a_changed_added_or_removed_label_is_refused_naming_it(sweeper, tmp_path):
    """Each job's labels are in its overrides, so in the plan: they stay as planned."""
    jobs = [["+meta.study=A", f"hparams.lr=0.00{i}"] for i in (1, 2)]
    sweeper().jobs_to_run(tmp_path, jobs)
    for labels, named in [
        (["+meta.study=B"], "meta.study=A (now B)"),
        (["+meta.study=A", "+meta.new=1"], "meta.new=None (now 1)"),
        ([], "meta.study=A (now None)"),
    ]:
        changed = [[*labels, job[-1]] for job in jobs]
        with pytest.raises(ConfigError, match=rf"planned for trial 0: {re.escape(named)}:"):
            sweeper("resume=true").jobs_to_run(tmp_path, changed)


def test_resume_is_refused_while_a_trial_of_the_sweep_runs(sweeper, tmp_path):
    jobs = [["hparams.lr=0.001"]]
    sweeper().jobs_to_run(tmp_path, jobs)
    (tmp_path / "0").mkdir()
    with (
        owned_by_another_process(tmp_path / "0") as holder,
        pytest.raises(RunDirBusy, match=f"process {holder.pid}"),
    ):
        sweeper("resume=true").jobs_to_run(tmp_path, jobs)


def test_plan_changes_ignore_what_does_not_change_a_trial():
    planned = [["hparams.lr=0.1", "max_steps=3"]]
    same = [
        ["hparams.lr=0.1", "max_steps=3", "resume=true", "hydra.sweep.dir=x", "devices.ids=[0]"]
    ]
    assert plan_changes(planned, same) == ""
    assert plan_changes(planned, [*planned, *planned]) == "1 trials (now 2)"
    assert "max_steps=3 (now 4)" in plan_changes(planned, [["hparams.lr=0.1", "max_steps=4"]])


def test_a_grid_value_that_does_not_compose_is_refused_before_any_trial(sweeper):
    with pytest.raises(ConfigError, match=r"batch_size=abc does not compose"):
        sweeper().job_overrides(["max_steps=8", "batch_size=512,abc,256"])
    with pytest.raises(ConfigError, match=r"hparam\.lr=0\.001 does not compose"):
        sweeper().job_overrides(["hparam.lr=1e-3,2e-3"])


def test_a_grid_over_the_hyperparameter_of_a_users_submission_composes(sweeper, tmp_path):
    """Each value is composed with the job's other overrides, which choose the submission."""
    (tmp_path / "mine.py").write_text(WITH_MOMENTUM)
    typed = with_user_files([f"submission_path={tmp_path / 'mine.py'}"])  # as `main` does
    jobs = sweeper(*typed).job_overrides([*typed, "hparams.momentum=0.9,0.95"])
    assert [values(job, "hparams.momentum") for job in jobs] == [[0.9], [0.95]]


def test_a_search_space_file_in_algoperfs_format_is_sampled_with_aeffs_names(sweeper, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(
        json.dumps(  # AlgoPerf's MNIST development space, as it is
            {
                "learning_rate": {"min": 1e-4, "max": 1e-2, "scaling": "log"},
                "one_minus_beta_1": {"min": 0.9, "max": 0.999, "scaling": "log"},
                "epsilon": {"feasible_points": [1e-8, 1e-5, 1e-3]},
            }
        )
    )
    jobs = sweeper(f"tuning_search_space={space}", "search.num_trials=4").job_overrides([])
    assert len(jobs) == 4
    for job in jobs:
        assert 1e-4 <= values(job, "hparams.lr")[0] <= 1e-2
        assert 0.9 <= values(job, "hparams.one_minus_beta_1")[0] <= 0.999
        assert values(job, "hparams.epsilon")[0] in (1e-8, 1e-5, 1e-3)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"momentum": {"min": 0.1, "max": 0.9}}, "'hparams.momentum': Adam's hyperparameters are"),
        ({"learning_rate": {"min": 1e-2, "max": 1e-4}}, "min <= max"),
        ({"learning_rate": {"min": 1e-2, "max": 1e-1, "scaling": "cubic"}}, "linear or log"),
        (  # a key the config lacks, not only under hparams: refused before any trial
            {"workload.hiden_width": {"min": 64, "max": 128, "type": "int"}},
            r"workload.hiden_width=\d+ does not compose: Could not override",
        ),
        ({"meta.note": {"feasible_points": ["a", "b"]}}, r"meta.note='[ab]' does not compose"),
        (
            {"learning_rate": {"min": 1e-3, "max": 1e-2}, "lr": {"min": 1e-4, "max": 1e-3}},
            r"space.yaml names hparams.lr twice \(as lr\)",
        ),
        (  # found at planning, not when the trial that draws [1, 2] starts
            {"epsilon": {"feasible_points": [1e-8, "abc", None, [1, 2]]}},
            r"search_space.hparams.epsilon: the point \[1, 2\] is not allowed",
        ),
        (
            {"epsilon": {"feasible_points": [1e-8, "abc", None]}},
            r"search_space.hparams.epsilon: the points mix numbers \(1e-08\) and strings",
        ),
        (
            {"learning_rate": {"min": "1e-5", "max": 1e-2}},
            r"search_space.hparams.lr: min and max must be numbers, without quotes: min='1e-5'",
        ),
    ],
)
def test_a_search_space_file_with_a_bad_name_or_range_is_refused(sweeper, tmp_path, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(json.dumps(space))  # JSON is YAML too
    with pytest.raises(ConfigError, match=message):
        sweeper(f"tuning_search_space={path}", "search.num_trials=2").job_overrides([])
