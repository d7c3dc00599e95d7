"""AlgoPerf's published JAX submissions, unmodified, trained through aeff: each as a single
run with complete records, and sweeps of their own search spaces as AlgoPerf's runner
takes them. They are read from `shared/algoperf` beside the repository (CI has it); the
project keeps no copy, and where it is absent these tests skip, naming it."""

import json

import pandas as pd
import pytest
from helpers import REPO, data_overrides, run_aeff
from helpers.in_process import metadata, rows

from aeff.cli.app import compose_config
from aeff.trial import train_and_evaluate

ALGOPERF = (REPO / ".." / "shared" / "algoperf").resolve()
ARCHIVED = ALGOPERF / "algorithms" / "archived_paper_baselines"
EXTERNAL = ALGOPERF / "algorithms" / "baselines" / "external_tuning"
PUBLISHED = {  # submission file, its search space
    "adamw": (ARCHIVED / "adamw/jax/submission.py", ARCHIVED / "adamw/tuning_search_space.json"),
    "nesterov": (
        ARCHIVED / "nesterov/jax/submission.py",
        ARCHIVED / "nesterov/tuning_search_space.json",
    ),
    "nadamw": (ARCHIVED / "nadamw/jax/submission.py", ARCHIVED / "nadamw/tuning_search_space.json"),
    "nadamw_full_budget": (
        EXTERNAL / "jax_nadamw_full_budget.py",
        EXTERNAL / "tuning_search_space.json",
    ),
}

pytestmark = [
    pytest.mark.slow,  # each trains a trial of its own
    pytest.mark.skipif(
        not ARCHIVED.is_dir(), reason=f"AlgoPerf's published files are not in {ALGOPERF}"
    ),
]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_a_published_submission_trains_mnist_as_published(name, tmp_path, mnist_data_dir):
    """Its own batch size (16 for MNIST), its hyperparameters by their names at the space's
    first point, its step called as AlgoPerf calls it; complete records."""
    submission, space = PUBLISHED[name]
    cfg = compose_config(
        [
            f"submission_path={submission}",
            f"tuning_search_space={space}",
            *data_overrides(mnist_data_dir),
            "max_steps=60",
            "eval_every_steps=20",
            "rng_seed=0",
            "logging.packages=false",
        ]
    )
    result = train_and_evaluate(cfg, tmp_path)
    assert result.status == "completed" and result.global_step == 60
    record = metadata(tmp_path)
    assert record["batch_size"] == 16 and record["status"] == "completed"
    names = json.loads(space.read_text())
    first = names[0] if isinstance(names, list) else names
    assert {f"hparams.{k}" for k in first} <= set(record)
    assert (tmp_path / "submission.py").read_bytes() == submission.read_bytes()
    table = rows(tmp_path)
    assert list(table["global_step"]) == [20, 40, 60]
    assert table["validation.accuracy"].iloc[-1] > 0.2  # above chance after 60 steps


def test_the_seeds_command_sweeps_adamws_space_on_four_devices(tmp_path, mnist_data_dir):
    """AlgoPerf's guide's first command, the aeff way: a sampled sweep of AdamW's own
    space, each trial its own run dir and record, the sweep's report beside them."""
    submission, space = PUBLISHED["adamw"]
    out = run_aeff(
        [
            "-m",
            "workload=mnist",
            f"submission_path={submission}",
            f"tuning_search_space={space}",
            "search.num_trials=2",
            "workload.max_allowed_runtime_sec=2",
            *data_overrides(mnist_data_dir),
        ],
        tmp_path,
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert list(summary["status"]) == ["completed", "completed"]
    assert set(summary["submission"]) == {"adamw"}
    lrs = [metadata(sweep_dir / str(job))["hparams.learning_rate"] for job in (0, 1)]
    assert len(set(lrs)) == 2 and all(1e-4 <= lr <= 1e-2 for lr in lrs)
    assert all(metadata(sweep_dir / str(job))["jax_device_count"] == 4 for job in (0, 1))


def test_a_list_space_gives_each_trial_its_point(tmp_path, mnist_data_dir):
    """The current NAdamW baseline's space lists its points: trial i trains point i."""
    submission, space = PUBLISHED["nadamw_full_budget"]
    out = run_aeff(
        [
            "-m",
            f"submission_path={submission}",
            f"tuning_search_space={space}",
            "search.num_trials=2",
            "max_steps=20",
            *data_overrides(mnist_data_dir),
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    points = json.loads(space.read_text())
    for job in (0, 1):
        record = metadata(sweep_dir / str(job))
        assert record["status"] == "completed"
        assert {k: record[f"hparams.{k}"] for k in points[job]} == points[job]
