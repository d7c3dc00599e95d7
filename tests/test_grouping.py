"""Which trials the vectorized launcher puts in one program (`aeff.group.group_key`) and
how many: those that differ only in hyperparameters, seed and labels, up to
`hydra.launcher.trials_per_program`; every other job runs alone."""

import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from aeff.app import register
from aeff.group import group_key
from hydra_plugins.aeff_launcher.vectorized_launcher import VectorizedLauncher, vectorizable

BASE = ("hparams.lr=1e-3", "rng_seed=1")


def key(compose_config, tmp_path, *overrides):
    return group_key(compose_config(*BASE, *overrides), tmp_path)


@pytest.fixture(scope="module")
def base_key(tmp_path_factory):
    register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        return group_key(compose("config", list(BASE)), tmp_path_factory.mktemp("run"))


@pytest.mark.parametrize(
    "same", [("hparams.lr=3e-3",), ("hparams.epsilon=1e-4", "rng_seed=7"), ("+meta.arm=b",)]
)
def test_hyperparameters_seeds_and_labels_may_differ_in_a_group(
    compose_config, tmp_path, same, base_key
):
    assert key(compose_config, tmp_path, *same) == base_key


@pytest.mark.parametrize(
    "apart",
    [
        ("batch_size=512",),
        ("max_steps=10",),
        ("eval_every_steps=5",),
        ("steps_per_dispatch=4",),
        ("stop_at_target=false",),
        ("workload.target_value=0.9",),
        ("workload.max_allowed_runtime_sec=5",),
        ("workload.hidden_width=64",),
        ("submission=nesterov",),
    ],
)
def test_what_shapes_the_programs_or_the_loop_keeps_trials_apart(compose_config, tmp_path, apart):
    assert key(compose_config, tmp_path, *apart) != key(compose_config, tmp_path)


def test_bad_input_and_a_checkpoint_to_continue_run_alone(compose_config, tmp_path):
    assert key(compose_config, tmp_path, "hparams.lr=-1") is None
    (tmp_path / "checkpoints" / "40").mkdir(parents=True)
    assert key(compose_config, tmp_path, "resume=true") is None
    assert key(compose_config, tmp_path) is not None  # a new trial there is refused later


def sweep_configs(tmp_path, jobs):
    register()
    configs = []
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        for num, overrides in enumerate(jobs):
            cfg = compose("config", [*overrides, f"hydra.sweep.dir={tmp_path}"], True)
            with open_dict(cfg):
                cfg.hydra.job.num = num
                cfg.hydra.runtime.output_dir = str(tmp_path / str(num))
            configs.append(cfg)
    return configs


@pytest.fixture(autouse=True)
def no_hydra_job_left():
    """The launcher sets Hydra's job config, as Hydra's own launchers do."""
    yield
    HydraConfig.instance().cfg = None


def test_groups_hold_at_most_trials_per_program_in_job_order(tmp_path):
    jobs = [
        [f"hparams.lr={lr}", f"batch_size={b}"] for lr in (1e-3, 2e-3, 3e-3) for b in (256, 512)
    ]
    jobs.append(["hparams.lr=-1"])  # bad input: alone
    launcher = VectorizedLauncher(trials_per_program=2)
    launcher.task_function = vectorizable(lambda cfg: cfg)
    # batch 256: jobs 0, 2, 4 (two groups: at most 2 a program); batch 512: 1, 3, 5
    assert launcher._groups(sweep_configs(tmp_path, jobs)) == [[0, 2], [1, 3], [4], [5], [6]]


def test_another_apps_jobs_run_one_by_one(tmp_path):
    launcher = VectorizedLauncher()
    launcher.task_function = lambda cfg: cfg
    configs = sweep_configs(tmp_path, [["hparams.lr=1e-3"], ["hparams.lr=2e-3"]])
    assert launcher._groups(configs) == [[0], [1]]


def test_trials_per_program_must_be_positive():
    with pytest.raises(ValueError, match="trials_per_program=0: use 1 or more"):
        VectorizedLauncher(trials_per_program=0)
