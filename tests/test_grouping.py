"""Which trials the vectorized launcher puts in one program (`aeff.trial.group_key`) and
how many: those that differ only in hyperparameters, seed and labels, up to
`hydra.launcher.trials_per_program`; every other job runs alone."""

import copy

import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from aeff.cli.app import register
from aeff.trial import group_key
from hydra_plugins.aeff_launcher.vectorized_launcher import VectorizedLauncher, vectorizable


@pytest.fixture(scope="module")
def composed():
    """The app's config with Hydra's node, composed once; tests patch copies of it."""
    register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        return compose("config", ["hparams.lr=1e-3", "rng_seed=1"], return_hydra_config=True)


def patched(composed, **values):
    """A copy of the trial's config (without Hydra's node) with `values` (dotted keys)."""
    cfg = copy.deepcopy(composed)
    with open_dict(cfg):
        del cfg["hydra"]
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    return cfg


def key(composed, run_dir, **values):
    return group_key(patched(composed, **values), run_dir)


@pytest.mark.parametrize(
    "same", [{"hparams.lr": 3e-3}, {"hparams.epsilon": 1e-4, "rng_seed": 7}, {"meta.arm": "b"}]
)
def test_hyperparameters_seeds_and_labels_may_differ_in_a_group(composed, tmp_path, same):
    assert key(composed, tmp_path, **same) == key(composed, tmp_path)


NESTEROV = {"submission._target_": "aeff.submissions.nesterov.Nesterov", "hparams": {}}


@pytest.mark.parametrize(
    "apart",
    [
        {"batch_size": 512},
        {"max_steps": 10},
        {"eval_every_steps": 5},
        {"steps_per_dispatch": 4},
        {"stop_at_target": False},
        {"workload.target_value": 0.9},
        {"workload.max_allowed_runtime_sec": 5.0},
        {"workload.hidden_width": 64},
        NESTEROV,
    ],
)
def test_what_shapes_the_programs_or_the_loop_keeps_trials_apart(composed, tmp_path, apart):
    other = key(composed, tmp_path, **apart)
    assert other is not None and other != key(composed, tmp_path)


def test_bad_input_runs_alone_and_a_resume_groups_by_its_checkpoint_step(composed, tmp_path):
    assert key(composed, tmp_path, **{"hparams.lr": -1.0}) is None
    fresh = key(composed, tmp_path / "new", resume=True)
    (tmp_path / "a" / "checkpoints" / "40").mkdir(parents=True)
    (tmp_path / "b" / "checkpoints" / "40").mkdir(parents=True)
    at_40 = key(composed, tmp_path / "a", resume=True, **{"hparams.lr": 3e-3})
    assert at_40 == key(composed, tmp_path / "b", resume=True) != fresh
    (tmp_path / "b" / "checkpoints" / "48").mkdir()
    assert key(composed, tmp_path / "b", resume=True) not in (at_40, fresh)
    assert key(composed, tmp_path / "a") == key(composed, tmp_path / "new")  # refused later


def sweep_configs(composed, tmp_path, jobs):
    """The jobs' configs as a launcher gets them: Hydra's node included, numbered."""
    configs = []
    for num, values in enumerate(jobs):
        cfg = copy.deepcopy(composed)
        with open_dict(cfg):
            for key_, value in values.items():
                OmegaConf.update(cfg, key_, value)
            cfg.hydra.job.num = num
            cfg.hydra.runtime.output_dir = str(tmp_path / str(num))
        configs.append(cfg)
    return configs


@pytest.fixture(autouse=True)
def no_hydra_job_left():
    """The launcher sets Hydra's job config, as Hydra's own launchers do."""
    yield
    HydraConfig.instance().cfg = None


def test_groups_hold_at_most_trials_per_program_in_job_order(composed, tmp_path):
    jobs = [{"hparams.lr": lr, "batch_size": b} for lr in (1e-3, 2e-3, 3e-3) for b in (256, 512)]
    jobs.append({"hparams.lr": -1.0})  # bad input: alone
    launcher = VectorizedLauncher(trials_per_program=2)
    launcher.task_function = vectorizable(lambda cfg: cfg)
    # batch 256: jobs 0, 2, 4 (two groups: at most 2 a program); batch 512: 1, 3, 5
    groups = launcher._groups(sweep_configs(composed, tmp_path, jobs))
    assert groups == [[0, 2], [1, 3], [4], [5], [6]]


def test_jobs_that_change_their_process_run_alone(composed, tmp_path):
    """A job that moves into its run dir or sets environment variables cannot share a
    process's program with others."""
    jobs = [{"hparams.lr": lr} for lr in (1e-3, 2e-3, 3e-3, 4e-3)]
    jobs[1]["hydra.job.chdir"] = True
    jobs[2]["hydra.job.env_set"] = {"OMP_NUM_THREADS": "1"}
    launcher = VectorizedLauncher()
    launcher.task_function = vectorizable(lambda cfg: cfg)
    assert launcher._groups(sweep_configs(composed, tmp_path, jobs)) == [[0, 3], [1], [2]]


def test_resumed_jobs_share_a_group_when_they_continue_from_one_step(composed, tmp_path):
    jobs = [{"hparams.lr": lr, "resume": True} for lr in (1e-3, 2e-3, 3e-3, 4e-3, 5e-3)]
    for job, step in ((1, 40), (2, 48), (3, 40)):
        (tmp_path / str(job) / "checkpoints" / str(step)).mkdir(parents=True)
    launcher = VectorizedLauncher()
    launcher.task_function = vectorizable(lambda cfg: cfg)
    assert launcher._groups(sweep_configs(composed, tmp_path, jobs)) == [[0, 4], [1, 3], [2]]


def test_another_apps_jobs_run_one_by_one(composed, tmp_path):
    launcher = VectorizedLauncher()
    launcher.task_function = lambda cfg: cfg
    configs = sweep_configs(composed, tmp_path, [{"hparams.lr": 1e-3}, {"hparams.lr": 2e-3}])
    assert launcher._groups(configs) == [[0], [1]]


def test_trials_per_program_must_be_positive(composed, tmp_path):
    with pytest.raises(ValueError, match="trials_per_program=0: use 1 or more"):
        VectorizedLauncher(trials_per_program=0)
    launcher = VectorizedLauncher(trials_per_program=1)  # every trial a program of its own
    launcher.task_function = vectorizable(lambda cfg: cfg)
    configs = sweep_configs(composed, tmp_path, [{"hparams.lr": 1e-3}, {"hparams.lr": 2e-3}])
    assert launcher._groups(configs) == [[0], [1]]
