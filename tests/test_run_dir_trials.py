"""The run dir's owner with real trials: one live process per dir, one trajectory per record,
honest resume, in-process trials (`aeff.trial.train_and_evaluate`) on real MNIST, a few steps
each; then the records a user gets from `python -m aeff`: every key and column (read back by
the results tools), a kill -9, a crash, logging=off. The owner on records written by hand, with
no training, is tested in test_run_dir.py.
"""

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import data_overrides, owned_by_another_process, run_aeff, run_sweep, start_aeff
from helpers.in_process import SIGNAL, metadata, rows

from aeff.config import check_trial
from aeff.errors import ConfigError, DataError, RunDirBusy, TrialInterrupted
from aeff.interrupts import interrupts_noted
from aeff.records.attempt import Attempt
from aeff.records.lock import Lock
from aeff.records.run_dir import DAMAGED, RunDir
from aeff.results.summary import summary
from aeff.training.checkpoints import TrialCheckpoints
from aeff.training.loop import run_trial
from aeff.trial import train_and_evaluate
from aeff.workloads.mnist import MnistWorkload

TIME_COLUMNS = ["accumulated_submission_time", "accumulated_eval_time", "wall_time"]
TIME_COLUMNS += ["global_start_time"]


def test_a_second_process_is_refused_naming_the_owner_until_the_owner_dies(tmp_path):
    with owned_by_another_process(tmp_path) as holder:
        assert Lock.is_held(tmp_path) is True
        with pytest.raises(RunDirBusy, match=rf"in use by process {holder.pid} on \S+"):
            RunDir(tmp_path).claim()
    # The holder was SIGKILL-ed: the kernel dropped the lock.
    assert Lock.is_held(tmp_path) is False
    RunDir(tmp_path).claim()  # a dead owner's dir can be taken over


@pytest.mark.slow  # trains whole trials; the fast tier keeps the rules' own tests
def test_a_dir_with_an_earlier_trial_is_refused_without_resume(tmp_path, trial_config):
    train_and_evaluate(trial_config("rng_seed=3"), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match="holds an earlier trial: add resume=true"):
        train_and_evaluate(trial_config("rng_seed=4"), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    with pytest.raises(ConfigError, match="ended completed: nothing to resume"):
        train_and_evaluate(trial_config("resume=true"), tmp_path)


@pytest.mark.slow  # trains the trial twice
def test_a_finished_trial_whose_rows_were_cut_is_damaged_and_a_resume_trains_it_again(
    tmp_path, trial_config
):
    train_and_evaluate(trial_config("rng_seed=3"), tmp_path)
    whole = rows(tmp_path)
    digest = hashlib.sha256((tmp_path / "metrics.csv").read_bytes()).hexdigest()
    assert metadata(tmp_path)["metrics_sha256"] == digest
    assert 0 < metadata(tmp_path)["elapsed_time"] < 600  # from the record's start_time
    assert list(summary(tmp_path)["status"]) == ["completed"]
    edited = whole.copy()  # the last step kept, a time halved: as a hand or a spreadsheet might
    edited.loc[0, "accumulated_submission_time"] /= 2
    edited.to_csv(tmp_path / "metrics.csv", index=False)
    table = summary(tmp_path)
    assert list(table["status"]) == [DAMAGED]
    assert table["error"][0].startswith(
        f"{tmp_path / 'metrics.csv'} changed since the trial completed: its sha256 is not the "
        "one metadata.json records (edited, saved again by another program, or corrupted). "
        "resume=true trains the trial again"
    )
    lines = (tmp_path / "metrics.csv").read_text().splitlines(keepends=True)
    (tmp_path / "metrics.csv").write_text("".join(lines[:2]))  # the header and step 4
    table = summary(tmp_path)
    assert list(table["status"]) == [DAMAGED]
    assert "rows end at step 4, but the trial completed at step 12" in table["error"][0]

    (tmp_path / "metrics.csv").write_text(lines[0])  # the header alone
    assert "rows are gone, but the trial completed at step 12" in summary(tmp_path)["error"][0]
    whole.head(1).assign(global_step=0).to_csv(tmp_path / "metrics.csv", index=False)
    assert "rows end at step 0, but the trial completed" in summary(tmp_path)["error"][0]
    (tmp_path / "metrics.csv").write_bytes(b"\xff\xfe not utf-8\n")
    assert "rows cannot be read, but the trial completed" in summary(tmp_path)["error"][0]

    train_and_evaluate(trial_config("resume=true"), tmp_path)
    assert metadata(tmp_path)["status"] == "completed" and metadata(tmp_path)["attempt"] == 1
    pd.testing.assert_frame_equal(  # the recorded seed: the same trajectory again
        rows(tmp_path).drop(columns=[*TIME_COLUMNS, "run_idx"]),
        whole.drop(columns=[*TIME_COLUMNS, "run_idx"]),
    )
    aside = tmp_path / ".attempts" / "0"
    assert (aside / "metrics.csv").read_bytes() == b"\xff\xfe not utf-8\n"
    assert json.loads((aside / "metadata.json").read_text())["global_step"] == 12


def test_rows_without_their_record_are_not_resumed(tmp_path, trial_config):
    (tmp_path / "metrics.csv").write_text("global_step,rng_seed\n4,3\n")  # its record deleted
    before = (tmp_path / "metrics.csv").read_bytes()
    with pytest.raises(ConfigError, match=r"holds metrics\.csv but no metadata\.json"):
        train_and_evaluate(trial_config("resume=true"), tmp_path)
    assert (tmp_path / "metrics.csv").read_bytes() == before


@pytest.mark.slow  # trains, then refuses each of several resumes
def test_resume_refuses_another_trial_naming_the_keys_and_both_values(tmp_path, trial_config):
    interrupted_trial(tmp_path, trial_config, "rng_seed=5", "checkpoint.enabled=false")
    with pytest.raises(ConfigError) as error:
        train_and_evaluate(trial_config("resume=true", "hparams.lr=3e-3", "rng_seed=6"), tmp_path)
    assert "hparams.lr=0.0012 (now 0.003)" in str(error.value)
    assert "rng_seed=5 (now 6)" in str(error.value)


def test_resume_refuses_a_changed_added_or_removed_label_naming_it(tmp_path, trial_config):
    """Every row carries the labels: a resume that changed them would leave rows that say
    A, then B (or a label missing from the earlier rows)."""
    interrupted_trial(tmp_path, trial_config, "+meta.study=A", "+meta.note=x")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    same = ("resume=true", "workload._target_=helpers.in_process.SignalledMnist")
    for labels, named in [
        (["+meta.study=B", "+meta.note=x"], "meta.study='A' (now 'B')"),
        (["+meta.study=A", "+meta.note=x", "+meta.new=1"], "meta.new=None (now 1)"),
        (["+meta.study=A"], "meta.note='x' (now None)"),
    ]:
        with pytest.raises(ConfigError) as refused:
            train_and_evaluate(trial_config(*same, *labels), tmp_path)
        assert str(refused.value) == (
            f"resume=true continues only the same trial, but {tmp_path} recorded {named}: "
            "run with the recorded values, or choose another hydra.run.dir."
        )
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    result = train_and_evaluate(trial_config(*same, "+meta.note=x", "+meta.study=A"), tmp_path)
    assert result.global_step == 12
    assert set(rows(tmp_path)["meta.study"]) == {"A"} and metadata(tmp_path)["meta.study"] == "A"


def interrupted_trial(run_dir, trial_config, *overrides):
    """A trial stopped by SIGTERM at its second evaluation (step 8)."""
    SIGNAL.update(evals=0, at_eval=2)
    cfg = trial_config("workload._target_=helpers.in_process.SignalledMnist", *overrides)
    try:
        with pytest.raises(TrialInterrupted) as stopped:
            train_and_evaluate(cfg, run_dir)
    finally:
        SIGNAL["at_eval"] = None
    assert metadata(run_dir)["status"] == "interrupted"
    return stopped.value


def test_resume_from_the_exit_checkpoint_continues_one_trajectory(tmp_path, trial_config):
    target = "workload._target_=helpers.in_process.SignalledMnist"
    stopped = interrupted_trial(tmp_path / "resumed", trial_config, "rng_seed=7")
    assert stopped.checkpoint_step == 8
    assert list(rows(tmp_path / "resumed")["global_step"]) == [4, 8]
    train_and_evaluate(trial_config(target, "resume=true"), tmp_path / "resumed")
    train_and_evaluate(trial_config(target, "rng_seed=7"), tmp_path / "whole")

    resumed, whole = rows(tmp_path / "resumed"), rows(tmp_path / "whole")
    assert list(resumed["global_step"]) == [4, 8, 12]
    pd.testing.assert_frame_equal(
        resumed.drop(columns=[*TIME_COLUMNS, "run_idx"]),
        whole.drop(columns=[*TIME_COLUMNS, "run_idx"]),
    )
    assert resumed["accumulated_submission_time"].is_monotonic_increasing
    record = metadata(tmp_path / "resumed")
    assert record["status"] == "completed" and record["rng_seed"] == 7
    assert record["attempt"] == 0 and record["resumed_from_step"] == 8
    assert not (tmp_path / "resumed" / "checkpoints").exists()  # finished: none kept


@pytest.mark.slow  # three trials evaluated on 58,000 validation examples: 20 s
def test_a_resume_past_an_epoch_boundary_gives_the_rows_of_a_trial_never_stopped(
    tmp_path, trial_config
):
    """2,000 training examples, 3 steps an epoch: stopped at step 8 (its third epoch), the
    trial resumes with that epoch's order at its place in it, not epoch 0's."""
    target = "workload._target_=helpers.in_process.SignalledMnist"
    small = ("workload.num_validation=58000", "rng_seed=7")
    stopped = interrupted_trial(tmp_path / "resumed", trial_config, *small)
    assert stopped.checkpoint_step == 8
    train_and_evaluate(trial_config(target, *small, "resume=true"), tmp_path / "resumed")
    train_and_evaluate(trial_config(target, *small), tmp_path / "whole")

    resumed, whole = rows(tmp_path / "resumed"), rows(tmp_path / "whole")
    assert list(resumed["global_step"]) == [4, 8, 12]
    assert set(resumed["steps_per_epoch"]) == {3} and resumed["epoch"].iloc[-1] == 4
    pd.testing.assert_frame_equal(
        resumed.drop(columns=[*TIME_COLUMNS, "run_idx"]),
        whole.drop(columns=[*TIME_COLUMNS, "run_idx"]),
    )


def test_resume_without_a_checkpoint_starts_again_with_the_recorded_seed(tmp_path, trial_config):
    target = "workload._target_=helpers.in_process.SignalledMnist"
    interrupted_trial(tmp_path, trial_config, "checkpoint.enabled=false")  # seed drawn
    first = metadata(tmp_path)
    first_rows = rows(tmp_path)
    train_and_evaluate(trial_config(target, "checkpoint.enabled=false", "resume=true"), tmp_path)

    record = metadata(tmp_path)
    assert record["rng_seed"] == first["rng_seed"] and record["attempt"] == 1
    assert list(rows(tmp_path)["global_step"]) == [4, 8, 12]  # one training, from step 0
    assert (rows(tmp_path)["rng_seed"] == first["rng_seed"]).all()
    aside = tmp_path / ".attempts" / "0"
    assert json.loads((aside / "metadata.json").read_text())["status"] == "interrupted"
    pd.testing.assert_frame_equal(pd.read_csv(aside / "metrics.csv"), first_rows)
    np.testing.assert_array_equal(  # the same seed retraces the same steps
        rows(tmp_path)["train.loss"][:2], first_rows["train.loss"]
    )


def test_rows_after_the_checkpoint_are_moved_aside_on_resume(tmp_path):
    """A kill -9 after the checkpoint at step 8 left rows up to 12: 12 is redone."""
    (tmp_path / "checkpoints" / "8").mkdir(parents=True)
    (tmp_path / "metrics.csv").write_text("global_step,x\n4,a\n8,b\n12,c\n")
    identity = {"hparams.lr": 0.1}
    (tmp_path / "metadata.json").write_text(
        json.dumps({"status": "running", "identity": identity, "rng_seed": 1, "attempt": 0})
    )
    owner = RunDir(tmp_path)
    owner.claim()
    attempt = owner.attempt(identity, None, resume=True, checkpointing=True)
    assert attempt == Attempt(0, 1, checkpoint_step=8)
    owner.begin(attempt, {"identity": identity, "rng_seed": 1}, "", None)
    assert (tmp_path / "metrics.csv").read_text() == "global_step,x\n4,a\n8,b\n"
    assert (
        tmp_path / ".attempts" / "0.rows_after_step_8.csv"
    ).read_text() == "global_step,x\n12,c\n"
    owner.append({"global_step": 8, "x": "b"})  # the last row handed out again: skipped
    owner.append({"global_step": 12, "x": "d"})
    assert (tmp_path / "metrics.csv").read_text().endswith("8,b\n12,d\n")
    with pytest.raises(OSError, match="step 4 was recorded already"):
        owner.append({"global_step": 4, "x": "e"})


def test_the_status_moves_once_from_running(tmp_path):
    owner = RunDir(tmp_path)
    owner.claim()
    with pytest.raises(RuntimeError, match="not running"):
        owner.end("completed")
    owner.begin(Attempt(), {"identity": {}}, "", None)
    owner.end("diverged")
    with pytest.raises(RuntimeError, match="diverged, not running"):
        owner.end("failed")
    assert metadata(tmp_path)["status"] == "diverged"


def stopped_trial(mnist_data_dir, checkpoints, on_eval=None):
    """run_trial of 12 steps (evaluations every 4) that a signal stops."""
    from aeff.submissions.adam import Adam, AdamHParams

    with interrupts_noted(), pytest.raises(TrialInterrupted) as stopped:
        run_trial(
            MnistWorkload(data_dir=str(mnist_data_dir)),
            Adam(batch_size=512),
            AdamHParams(),
            0,
            max_steps=12,
            eval_every_steps=4,
            on_eval=on_eval,
            checkpoints=checkpoints,
        )
    return stopped


class SignalDuringSave(TrialCheckpoints):
    """A second SIGINT arrives while the checkpoint on the way out is being written."""

    def save(self, state, progress):
        signal.raise_signal(signal.SIGINT)
        super().save(state, progress)


def test_the_exit_checkpoint_survives_a_second_signal(tmp_path, mnist_data_dir):

    checkpoints = SignalDuringSave(tmp_path, interval_sec=3600)

    fired = []

    def on_eval(row):
        if row["global_step"] == 8 and not fired:
            fired.append(True)
            signal.raise_signal(signal.SIGTERM)

    stopped = stopped_trial(mnist_data_dir, checkpoints, on_eval=on_eval)
    assert stopped.value.signum == signal.SIGTERM
    assert stopped.value.checkpoint_step == 8
    assert [p.name for p in tmp_path.iterdir() if p.name.isdigit()] == ["8"]


def test_seed_drawn_when_null_and_recorded(tmp_path, trial_config):
    result = train_and_evaluate(trial_config(), tmp_path)
    assert metadata(tmp_path)["rng_seed"] == result.rng_seed
    assert check_trial(trial_config()).settings.rng_seed is None


def record(run_dir: Path, **values) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metadata.json").write_text(json.dumps(values))


IDENTITY = {"hparams.lr": 0.1}


def attempt(run_dir: Path, write_records=True, checkpointing=True, identity=IDENTITY):
    owner = RunDir(run_dir, write_records=write_records)
    owner.claim()
    try:
        return owner.attempt(identity, None, resume=True, checkpointing=checkpointing)
    finally:
        owner.release()


def test_a_checkpoint_without_a_record_is_not_resumed(tmp_path):
    """logging=off left no record: nothing says which trial the checkpoint holds."""
    (tmp_path / "checkpoints" / "700").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"holds a checkpoint but no metadata\.json"):
        attempt(tmp_path, write_records=False)


def test_a_resume_must_keep_its_records_and_checkpoints(tmp_path):
    record(tmp_path, status="interrupted", identity=IDENTITY, rng_seed=1, attempt=0)
    (tmp_path / "checkpoints" / "640").mkdir(parents=True)
    with pytest.raises(ConfigError, match="resume it with logging=default"):
        attempt(tmp_path, write_records=False)
    with pytest.raises(ConfigError, match=r"step 640: resume it with checkpoint\.enabled=true"):
        attempt(tmp_path, checkpointing=False)
    assert attempt(tmp_path) == Attempt(0, 1, checkpoint_step=640)


def test_a_kill_between_moving_aside_and_the_new_record_keeps_the_seed(tmp_path):
    record(tmp_path / ".attempts" / "0", status="running", identity=IDENTITY, rng_seed=9)
    assert attempt(tmp_path) == Attempt(1, 9, move_aside=False)
    (tmp_path / ".attempts" / "1").mkdir()  # a folder of that number exists already
    owner = RunDir(tmp_path)
    owner.claim()
    record(tmp_path, status="running", identity=IDENTITY, rng_seed=9, attempt=1)
    owner.begin(Attempt(2, 9, move_aside=True), {"identity": IDENTITY}, "", None)
    assert json.loads((tmp_path / ".attempts" / "2" / "metadata.json").read_text())["attempt"] == 1


def test_a_process_refused_a_live_owners_dir_writes_nothing_there(tmp_path, trial_config):
    with owned_by_another_process(tmp_path):
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(RunDirBusy):
            train_and_evaluate(trial_config(), tmp_path, record_bad_input=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_refused_resume_leaves_hydras_copies_as_they_were(tmp_path, trial_config):
    train_and_evaluate(trial_config(), tmp_path, hydra_files={"overrides.yaml": "- first\n"})
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_and_evaluate(
            trial_config("resume=true"), tmp_path, hydra_files={"overrides.yaml": "- second\n"}
        )
    assert (tmp_path / ".hydra" / "overrides.yaml").read_text() == "- first\n"


def test_a_signal_while_the_records_begin_ends_them_interrupted(
    tmp_path, trial_config, monkeypatch
):
    begin = RunDir.begin

    def begin_with_a_signal(self, *args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # noted: raised once the records are whole
        begin(self, *args, **kwargs)

    monkeypatch.setattr(RunDir, "begin", begin_with_a_signal)
    with pytest.raises(TrialInterrupted):
        train_and_evaluate(trial_config(), tmp_path)
    written = metadata(tmp_path)
    assert written["status"] == "interrupted" and "identity" in written
    assert (tmp_path / "config_resolved.yaml").exists()


# orbax's event loop, closed after the failed restore, reports it when collected
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["no arrays", "bad json"])
def test_a_damaged_checkpoint_is_named_with_the_way_out(tmp_path, trial_config, damage):
    target = "workload._target_=helpers.in_process.SignalledMnist"
    interrupted_trial(tmp_path, trial_config, "rng_seed=11")
    step = tmp_path / "checkpoints" / "8"
    if damage == "no arrays":
        for path in (step / "state").rglob("*"):
            if path.is_file() and "ocdbt" in str(path.relative_to(step / "state")):
                path.unlink()
    else:
        for path in (step / "progress").rglob("*"):
            if path.is_file():
                path.write_text("{not json")
    with pytest.raises(DataError, match=rf"checkpoint {step} is unreadable.*mv {step}"):
        train_and_evaluate(trial_config(target, "resume=true"), tmp_path)
    assert metadata(tmp_path)["status"] == "failed"
    step.rename(tmp_path / "checkpoints.broken-8")  # the way out the message gives
    train_and_evaluate(trial_config(target, "resume=true"), tmp_path)
    record = metadata(tmp_path)
    assert record["status"] == "completed" and record["rng_seed"] == 11
    assert list(rows(tmp_path)["global_step"]) == [4, 8, 12]


class SignalInFirstSave(TrialCheckpoints):
    """SIGTERM arrives while the first checkpoint due at an evaluation is written."""

    signalled = False

    def save(self, state, progress):
        if not SignalInFirstSave.signalled:
            SignalInFirstSave.signalled = True
            signal.raise_signal(signal.SIGTERM)
        super().save(state, progress)


def test_a_signal_during_a_checkpoint_save_still_leaves_a_checkpoint(tmp_path, mnist_data_dir):

    checkpoints = SignalInFirstSave(tmp_path, interval_sec=0)  # due at every evaluation
    stopped = stopped_trial(mnist_data_dir, checkpoints)
    assert stopped.value.checkpoint_step == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.isdigit()] == ["4"]


def test_a_continued_trial_keeps_no_error_of_the_interrupted_one(tmp_path, trial_config):
    target = "workload._target_=helpers.in_process.SignalledMnist"
    interrupted_trial(tmp_path, trial_config, "rng_seed=13")
    first = metadata(tmp_path)
    assert first["error_message"] == "stopped by SIGTERM"
    train_and_evaluate(trial_config(target, "resume=true"), tmp_path)
    record = metadata(tmp_path)
    assert record["status"] == "completed" and "error_message" not in record
    assert record["first_datetime"] == first["datetime"] and record["resumed_from_step"] == 8


def test_a_signal_while_the_final_record_is_written_waits_for_it(
    tmp_path, trial_config, monkeypatch
):
    end = RunDir.end

    def end_with_a_signal(self, *args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # noted: the trial has ended, its record says how
        end(self, *args, **kwargs)

    monkeypatch.setattr(RunDir, "end", end_with_a_signal)
    result = train_and_evaluate(trial_config(), tmp_path)
    assert metadata(tmp_path)["status"] == result.status == "completed"


# The records of `python -m aeff` ------------------------------------------------------

METADATA_KEYS = [
    "status",
    "workload",
    "log_dir",
    "datetime",
    "python_version",
    "python_compiler",
    "os_platform",
    "cwd_git_branch",
    "cwd_git_commit_hash",
    "cwd_git_dirty",
    "git_branch",
    "git_commit_hash",
    "aeff_git_commit_hash",
    "aeff_version",
    "cpu_model_name",
    "cpu_count",
    "gpu_model_name",
    "gpu_count",
    "gpu_driver",
    "jax_version",
    "jax_backend",
    "jax_device_count",
    "jax_devices",
    "command",
    "hydra.overrides",
    "hydra.job.num",
    "sweep_dir",
    "rng_seed",
    "workload.target_metric",
    "workload.max_allowed_runtime_sec",
    "hparams.lr",
    "submission._target_",
    "meta.study",
    "end_datetime",
    "wall_time",
    "elapsed_time",
    "attempt",
    "identity",
    "batch_size",
    "steps_per_dispatch",
    "stop_at_target",
    "compile_time",
    "time_to_target",
    "final.validation.accuracy",
]
COLUMNS = [
    "framework",
    "workload",
    "run_idx",
    "rng_seed",
    "global_step",
    "epoch",
    "accumulated_submission_time",
    "accumulated_eval_time",
    "wall_time",
    "global_start_time",
    "steps_per_epoch",
    "batch_size",
    "goal_reached",
    "is_time_remaining",
    "train.loss",
    "validation.loss",
    "validation.accuracy",
    "test.loss",
    "test.accuracy",
    "hparams.lr",
    "hparams.one_minus_beta_1",
    "workload.target_value",
    "workload.hidden_width",
    "meta.study",
    "cpu.util.avg_percent_since_last",
    "cpu.freq.current",
    "mem.total",
    "mem.available",
    "mem.used",
    "mem.percent_used",
    "disk.read_bytes_since_boot",
    "disk.write_bytes_since_boot",
    "net.bytes_sent_since_boot",
    "net.bytes_recv_since_boot",
    "proc.rss_bytes",
    "gpu.count",
]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, mnist_data_dir):
    cwd = tmp_path_factory.mktemp("sweep")
    return run_sweep(
        [
            "hparams.lr=1e-3,3e-3",
            "+meta.study=demo",
            "max_steps=60",
            "eval_every_steps=20",
            *data_overrides(mnist_data_dir),
        ],
        cwd,
    )


@pytest.mark.slow
@pytest.mark.parametrize("job", [0, 1])
def test_each_trial_leaves_metadata_packages_and_metrics(sweep_dir, job):
    run_dir = sweep_dir / str(job)
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert [key for key in METADATA_KEYS if key not in metadata] == []
    assert metadata["status"] == "completed"
    assert metadata["hparams.lr"] == [0.001, 0.003][job]
    assert metadata["hydra.job.num"] == job and metadata["meta.study"] == "demo"
    assert metadata["sweep_dir"] == str(sweep_dir.resolve())
    assert metadata["jax_device_count"] >= 1 and metadata["cpu_count"] >= 1
    assert isinstance(metadata["rng_seed"], int) and "hostname" not in metadata
    assert metadata["elapsed_time"] > metadata["wall_time"] > 0

    lines = (run_dir / "packages.txt").read_text().splitlines()
    assert lines[0] == "# Python packages" and "# OS packages" in lines
    assert any(line.startswith("jax==") for line in lines)

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [c for c in COLUMNS if c not in rows[0]] == []
    assert [int(r["global_step"]) for r in rows] == [20, 40, 60]
    assert {r["rng_seed"] for r in rows} == {str(metadata["rng_seed"])}
    assert {r["run_idx"] for r in rows} == {str(job)} and {r["meta.study"] for r in rows} == {
        "demo"
    }
    for row in rows:
        assert float(row["mem.total"]) > 0 and float(row["proc.rss_bytes"]) > 0
        assert row["framework"] == "jax" and row["workload"] == "mnist"
        assert 0 <= float(row["validation.accuracy"]) <= 1
    assert "target_value: 0.97" in (run_dir / "config_resolved.yaml").read_text()


@pytest.mark.slow
def test_concat_plot_and_summary_on_a_sweep(sweep_dir):
    tool = [sys.executable, "-m", "aeff.results"]
    out = subprocess.run([*tool, "concat", sweep_dir], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    combined = pd.read_csv(sweep_dir / "all_metrics.csv")
    assert len(combined) == 6 and combined["run_dir"].nunique() == 2

    png = sweep_dir / "curve.png"
    out = subprocess.run(
        [*tool, "plot", sweep_dir, "--y", "validation.accuracy", "--out", png],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    out = subprocess.run([*tool, "summary", sweep_dir], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert sorted(summary["hparams.lr"]) == [0.001, 0.003]
    assert set(summary["status"]) == {"completed"}
    assert (summary["best_target_metric"] > 0.5).all()
    assert "best_target_metric" in out.stdout


@pytest.mark.slow
def test_kill_9_leaves_complete_rows_and_a_running_status(tmp_path, mnist_data_dir):
    args = ["workload.eval_period_time_sec=0.05", "stop_at_target=false"]
    proc = start_aeff([*args, *data_overrides(mnist_data_dir)], tmp_path)
    deadline = time.monotonic() + 120
    metrics = None
    while time.monotonic() < deadline:
        found = list(tmp_path.glob("outputs/*/*/metrics.csv"))
        if found and found[0].read_text().count("\n") >= 6:
            metrics = found[0]
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert metrics is not None, "the trial wrote no rows"
    text = metrics.read_text()
    assert text.endswith("\n")
    rows = list(csv.DictReader(text.splitlines()))
    header = text.splitlines()[0].split(",")
    assert all(len(row) == len(header) and None not in row.values() for row in rows)
    metadata = json.loads((metrics.parent / "metadata.json").read_text())
    assert metadata["status"] == "running"


FAILING_WORKLOAD = """
from dataclasses import dataclass
from aeff.workloads.mnist import MnistWorkload

@dataclass(frozen=True)
class BrokenMnist(MnistWorkload):
    def load_splits(self):
        raise RuntimeError("disk on fire")
"""


@pytest.mark.slow  # compiles a trial's programs: 2 s
def test_an_exception_in_the_trial_is_recorded_as_failed(tmp_path):
    (tmp_path / "broken.py").write_text(FAILING_WORKLOAD)
    out = run_aeff(
        ["workload._target_=broken.BrokenMnist"], tmp_path, env={"PYTHONPATH": str(tmp_path)}
    )
    assert out.returncode != 0
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "failed"
    assert metadata["error_type"] == "RuntimeError"
    assert metadata["error_message"] == "disk on fire"
    assert "load_splits" in metadata["traceback"]


@pytest.mark.slow  # in-process: test_run_dir.py
def test_logging_off_writes_no_records(tmp_path, mnist_data_dir):
    out = run_aeff(["logging=off", "debug=short", *data_overrides(mnist_data_dir)], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    assert sorted(p.name for p in run_dir.iterdir()) == [".aeff.lock", ".hydra", "aeff.log"]
