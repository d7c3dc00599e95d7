"""A group of trials through `aeff.group.train_and_evaluate_group`, in-process (the
vectorized launcher's call; test_vectorized_sweeps.py runs the launcher in processes)."""

import pytest
from conftest import owned_by_another_process
from test_run_dir import SIGNAL, metadata, rows

from aeff.errors import ConfigError, RunDirBusy, TrialInterrupted
from aeff.group import train_and_evaluate_group
from aeff.runner import TrialResult
from aeff.trial import TrialJob

SIGNALLED = "workload._target_=test_run_dir.SignalledMnist"


def jobs(tmp_path, config, *per_job: tuple[str, ...]) -> list[TrialJob]:
    """A sweep's jobs in `tmp_path/<job number>`, labelled as Hydra's jobs are."""
    return [
        TrialJob(
            config(*overrides),
            tmp_path / str(i),
            {"hydra.job.num": i, "sweep_dir": str(tmp_path)},
            tmp_path,
        )
        for i, overrides in enumerate(per_job)
    ]


def test_each_job_is_a_trial_of_its_own_and_a_bad_or_busy_one_leaves_the_others(
    tmp_path, trial_config
):
    """Job 1's dir is another live process's, job 2's learning rate is refused: each gets
    its error, job 1's dir no files, job 2 a `failed` record; jobs 0 and 3 train as one
    program of two, each with its own seed, rows and record."""
    group = jobs(
        tmp_path,
        trial_config,
        ("hparams.lr=1e-3", "rng_seed=1"),
        ("hparams.lr=2e-3", "rng_seed=2"),
        ("hparams.lr=1e30", "rng_seed=3"),
        ("hparams.lr=3e-3", "rng_seed=4"),
    )
    with owned_by_another_process(tmp_path / "1"):
        outcomes = train_and_evaluate_group(group, "g7")
        assert sorted(p.name for p in (tmp_path / "1").iterdir()) == [".aeff.lock"]
    assert [type(o) for o in outcomes] == [TrialResult, RunDirBusy, ConfigError, TrialResult]
    failed = metadata(tmp_path / "2")
    assert failed["status"] == "failed" and "hparams.lr" in failed["error_message"]
    for job, seed, lr in ((0, 1, 1e-3), (3, 4, 3e-3)):
        record = metadata(tmp_path / str(job))
        assert record["status"] == "completed" and outcomes[job].global_step == 12
        assert (record["rng_seed"], record["hparams.lr"]) == (seed, lr)
        assert (record["group.id"], record["group.size"]) == ("g7", 2)
        assert (record["hydra.job.num"], record["sweep_dir"]) == (job, str(tmp_path))
        trial_rows = rows(tmp_path / str(job))
        assert list(trial_rows["global_step"]) == [4, 8, 12]
        assert (trial_rows["group.id"] == "g7").all() and (trial_rows["hparams.lr"] == lr).all()
    assert outcomes[0].final_metrics != outcomes[3].final_metrics


@pytest.mark.slow  # a group's programs for the signalled workload: 5 s
def test_a_signal_ends_every_trial_of_the_group_recorded(tmp_path, trial_config):
    """SIGTERM at the group's second evaluation (the first trial's step 8): every trial
    records `interrupted` with a last row and a checkpoint at that step."""
    group = jobs(tmp_path, trial_config, (SIGNALLED, "rng_seed=1"), (SIGNALLED, "hparams.lr=3e-3"))
    SIGNAL.update(evals=0, at_eval=3)  # each trial's goal is checked at each evaluation
    try:
        with pytest.raises(TrialInterrupted):
            train_and_evaluate_group(group, "g8")
    finally:
        SIGNAL["at_eval"] = None
    for job in (0, 1):
        record = metadata(tmp_path / str(job))
        assert record["status"] == "interrupted" and record["group.size"] == 2
        assert record["error_message"] == "stopped by SIGTERM"
        assert list(rows(tmp_path / str(job))["global_step"]) == [4, 8]
        assert (tmp_path / str(job) / "checkpoints" / "8").is_dir()
