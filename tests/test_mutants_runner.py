"""The trial loop where mutation testing found it loose: a diverged trial's last row and
warning, the budget when divergence lands on it, the wall time a checkpoint keeps, the
way out of an exception, what prepare() accepts and hands on, a resume's counters, each
epoch's order, launch sizes, snapshots, the result's times and the log lines.
Same fake clock and scripted MNIST as test_rules.py."""

import dataclasses
import logging
import os
import signal
import time
import types

import jax
import numpy as np
import pytest
from conftest import shared_trial_scope
from test_rules import (  # noqa: F401 (mnist is a fixture)
    CLOCK,
    EVAL_SECONDS,
    ON_EVAL_SECONDS,
    SCRIPT,
    STEP_SECONDS,
    TimedAdam,
    mnist,
    trial,
)

from aeff import interrupts, steps
from aeff.errors import ConfigError, TrialInterrupted
from aeff.runner import Counters, TrialLoop, prepare, run_trial
from aeff.spec import HostSplit, Splits
from aeff.submissions.adam import Adam, AdamHParams
from aeff.workloads.mnist import MnistWorkload

NAN_STEP = 14  # as in test_rules.py, so that a session compiles these trials once


class RecordingCheckpoints:
    """Nothing to restore, due at every evaluation; keeps each save's counters and the
    clock when it was taken."""

    def __init__(self) -> None:
        self.saved: list[tuple[dict, float]] = []
        self.states: list = []

    def restore(self, template):
        return None

    def due(self) -> bool:
        return True

    def save(self, state, progress) -> None:
        self.saved.append((dict(progress), CLOCK.now))
        self.states.append(state)


def test_a_diverged_trial_warns_and_its_last_row_has_time_left(mnist, caplog):  # noqa: F811
    """... and its checkpoint holds the state of the step it diverged at, though its launch
    ran on past it."""
    checkpoints = RecordingCheckpoints()
    with caplog.at_level(logging.WARNING, logger="aeff.runner"):
        result, rows = trial(
            mnist(target_value=0.75),
            submission=TimedAdam(nan_step=NAN_STEP),
            max_steps=40,
            steps_per_dispatch=8,
            checkpoints=checkpoints,
        )
    assert result.status == "diverged" and result.global_step == NAN_STEP
    assert checkpoints.saved[-1][0]["global_step"] == NAN_STEP
    assert int(checkpoints.states[-1].global_step) == NAN_STEP
    assert rows[-1]["is_time_remaining"] is True
    assert [r.getMessage() for r in caplog.records if r.name == "aeff.runner"] == [
        f"Diverged: training loss nan at step {NAN_STEP}."
    ]


def test_divergence_on_the_last_budgeted_step_leaves_no_time(mnist):  # noqa: F811
    result, rows = trial(
        mnist(target_value=0.75, max_allowed_runtime_sec=NAN_STEP * STEP_SECONDS),
        submission=TimedAdam(nan_step=NAN_STEP),
        max_steps=40,
        steps_per_dispatch=8,
    )
    assert result.status == "diverged" and result.global_step == NAN_STEP
    assert result.accumulated_submission_time == NAN_STEP * STEP_SECONDS
    assert rows[-1]["is_time_remaining"] is False
    # It diverged on its launch's last step: nothing to take back, nothing run again
    waits = result.accumulated_submission_time + result.accumulated_eval_time
    assert result.wall_time == waits + len(rows) * ON_EVAL_SECONDS


def test_a_checkpoint_keeps_the_wall_time_at_its_save(mnist):  # noqa: F811
    checkpoints = RecordingCheckpoints()
    result, rows = trial(mnist(target_value=0.75), max_steps=8, checkpoints=checkpoints)
    assert [progress["global_step"] for progress, _ in checkpoints.saved] == [4, 8]
    for (progress, _), row in zip(checkpoints.saved, rows, strict=True):
        assert progress["wall_time"] == row["wall_time"] + ON_EVAL_SECONDS
    assert result.wall_time == checkpoints.saved[-1][0]["wall_time"]


# The way out of an exception ------------------------------------------------------------


class FailingCheckpoints(RecordingCheckpoints):
    """Saves at evaluations; the way out's save fails as a full disk would."""

    def save(self, state, progress) -> None:
        if len(self.saved) == 1:
            raise OSError(28, "No space left on device")
        super().save(state, progress)


def stopped_trial(workload, failures: dict, checkpoints):
    """A trial evaluated every 4 steps whose n-th call of on_eval raises failures[n];
    (the error it raised, the steps of every call)."""
    calls: list[int] = []

    def on_eval(row):
        calls.append(row["global_step"])
        if len(calls) in failures:
            raise failures[len(calls)]

    CLOCK.now = 0.0
    SCRIPT[:] = [0.5]
    with pytest.raises(BaseException) as stopped:
        run_trial(
            workload,
            TimedAdam(),
            AdamHParams(),
            0,
            eval_every_steps=4,
            max_steps=40,
            on_eval=on_eval,
            checkpoints=checkpoints,
            clock=CLOCK,
        )
    return stopped.value, calls


def test_an_error_gets_a_checkpoint_but_no_further_row(mnist):  # noqa: F811
    """Only a signal earns a last row: an error in the records is not evaluated again."""
    checkpoints = RecordingCheckpoints()
    error, calls = stopped_trial(mnist(), {2: RuntimeError("disk")}, checkpoints)
    assert isinstance(error, RuntimeError)
    assert calls == [4, 8]
    assert [progress["global_step"] for progress, _ in checkpoints.saved] == [4, 8]


def test_a_signal_gets_the_row_it_cut_short_once_and_a_checkpoint(mnist):  # noqa: F811
    checkpoints = RecordingCheckpoints()
    error, calls = stopped_trial(mnist(), {2: TrialInterrupted(signal.SIGTERM)}, checkpoints)
    assert isinstance(error, TrialInterrupted) and error.checkpoint_step == 8
    assert calls == [4, 8, 8]  # handed out again, not evaluated again
    assert [progress["global_step"] for progress, _ in checkpoints.saved] == [4, 8]


@pytest.mark.parametrize("during", ["_queue", "_account"])
def test_a_signal_during_a_launch_waits_until_it_is_charged(mnist, monkeypatch, during):  # noqa: F811
    """SIGTERM while the launch from step 8 is queued, or charged: it waits until the
    trial's state and the counters that describe it are both at step 12, then ends the
    trial there with a row, a checkpoint and the 12 steps' time (before, the way out took
    the state's step 12 with the time of 8)."""
    original, launches = getattr(TrialLoop, during), []

    def signalled(self, *args):
        launches.append(self.counters.global_step)
        if len(launches) == 4:  # the fourth launch: from step 8 (the first is one step)
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args)

    monkeypatch.setattr(TrialLoop, during, signalled)
    checkpoints = RecordingCheckpoints()
    with interrupts.interrupts_raised():
        error, calls = stopped_trial(mnist(), {}, checkpoints)
    assert isinstance(error, TrialInterrupted) and error.checkpoint_step == 12
    assert launches == [0, 1, 4, 8] and calls == [4, 8, 12]  # the launch's row on the way out
    progress, _ = checkpoints.saved[-1]
    assert progress["global_step"] == 12 and progress["submission_time"] == 12 * STEP_SECONDS
    assert int(checkpoints.states[-1].global_step) == 12


def test_the_way_out_warns_when_its_row_or_checkpoint_cannot_be_written(mnist, caplog):  # noqa: F811
    failures = {2: TrialInterrupted(signal.SIGTERM), 3: OSError("records gone")}
    with caplog.at_level(logging.WARNING, logger="aeff.runner"):
        error, calls = stopped_trial(mnist(), failures, FailingCheckpoints())
    assert isinstance(error, TrialInterrupted) and error.checkpoint_step is None
    assert calls == [4, 8, 8]
    assert [r.getMessage() for r in caplog.records if r.name == "aeff.runner"] == [
        "No last row on the way out: records gone",
        "No checkpoint on the way out: [Errno 28] No space left on device",
    ]


def test_a_signal_before_the_first_row_gets_one_row_at_its_step(mnist, monkeypatch):  # noqa: F811
    monkeypatch.setattr(interrupts, "_pending", [signal.SIGTERM])  # before the first launch
    checkpoints = RecordingCheckpoints()
    error, calls = stopped_trial(mnist(), {}, checkpoints)
    assert isinstance(error, TrialInterrupted) and error.checkpoint_step == 0
    assert calls == [0]  # evaluated there, no row handed out before it


def test_a_signal_after_a_row_was_written_hands_out_no_row_again(mnist, monkeypatch):  # noqa: F811
    monkeypatch.setattr(interrupts, "_pending", [])
    calls: list[int] = []

    def on_eval(row):
        calls.append(row["global_step"])
        interrupts._pending.append(signal.SIGTERM)  # noted once the row is written

    CLOCK.now, SCRIPT[:] = 0.0, [0.5]
    with pytest.raises(TrialInterrupted):
        run_trial(
            mnist(),
            TimedAdam(),
            AdamHParams(),
            0,
            eval_every_steps=4,
            max_steps=40,
            on_eval=on_eval,
            checkpoints=RecordingCheckpoints(),
            clock=CLOCK,
        )
    assert calls == [4]


class SignalledCheckpoints(RecordingCheckpoints):
    """A second SIGTERM arrives while the way out's checkpoint is written."""

    def save(self, state, progress) -> None:
        if len(self.saved) == 1:
            signal.raise_signal(signal.SIGTERM)
        super().save(state, progress)


def test_a_signal_during_the_way_outs_checkpoint_waits_for_it(mnist, caplog):  # noqa: F811
    checkpoints = SignalledCheckpoints()
    with caplog.at_level(logging.WARNING, logger="aeff.runner"), interrupts.interrupts_raised():
        error, _ = stopped_trial(mnist(), {2: TrialInterrupted(signal.SIGTERM)}, checkpoints)
    assert error.checkpoint_step == 8
    assert [progress["global_step"] for progress, _ in checkpoints.saved] == [4, 8]
    assert [r.getMessage() for r in caplog.records if r.name == "aeff.runner"] == [
        "Signal received while saving; the checkpoint was finished first."
    ]


def test_a_checkpoint_holds_one_copy_of_the_state_at_its_step(mnist):  # noqa: F811
    checkpoints = RecordingCheckpoints()
    workload = mnist(target_value=0.75)
    result, _ = trial(workload, max_steps=8, checkpoints=checkpoints)
    assert result.rng_seed == 0
    initial = steps.init_params(workload.program_key())(jax.random.key(0))  # compiled already
    shapes = jax.tree.map(np.shape, initial)
    for (progress, _), state in zip(checkpoints.saved, checkpoints.states, strict=True):
        assert int(state.global_step) == progress["global_step"]  # a scalar: no device axis
        assert jax.tree.map(np.shape, state.params) == shapes


TINY_TRAIN = 64  # training examples of TinyMnist: a batch of all of them compiles in a second
INITIALISED_WITH: list[tuple] = []  # (workload, rng) of each init_optimizer_state call


@dataclasses.dataclass(frozen=True)
class TinyMnist(MnistWorkload):
    """MNIST with its first TINY_TRAIN training examples and 100 of each eval split."""

    def load_splits(self) -> Splits:
        splits = super().load_splits()
        return Splits(
            *(
                HostSplit(s.inputs[:n], s.labels[:n])
                for s, n in zip(splits, (TINY_TRAIN, 100, 100), strict=True)
            )
        )


@dataclasses.dataclass(frozen=True)
class InitRecordingAdam(Adam):
    def init_optimizer_state(self, workload, params, hparams, rng):
        INITIALISED_WITH.append((workload, rng))
        return super().init_optimizer_state(workload, params, hparams, rng)


@pytest.fixture(scope=shared_trial_scope)
def tiny_prepared(mnist_data_dir):
    """prepare() with a batch of the whole training split, under a clock at 1000 s that
    moves 3 s during the compilation."""
    ticks = iter([1000.0, 1003.0])
    workload = TinyMnist(data_dir=str(mnist_data_dir))
    INITIALISED_WITH.clear()
    prepared = prepare(
        workload,
        InitRecordingAdam(batch_size=TINY_TRAIN),
        AdamHParams(),
        0,
        steps_per_dispatch=4,
        clock=lambda: next(ticks),
    )
    return workload, prepared


def test_a_batch_of_the_whole_training_split_is_one_step_an_epoch(tiny_prepared):
    _, prepared = tiny_prepared
    assert (prepared.batch_size, prepared.num_train) == (TINY_TRAIN, TINY_TRAIN)
    assert prepared.steps_per_epoch == 1 and prepared.steps_per_dispatch == 1


def test_the_optimizer_state_is_initialised_with_the_workload_and_a_key(tiny_prepared):
    workload, _ = tiny_prepared
    [(given_workload, rng)] = INITIALISED_WITH
    assert given_workload is workload
    assert jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)


def test_compile_time_is_the_clocks_difference(tiny_prepared):
    _, prepared = tiny_prepared
    assert prepared.compile_time == 3.0


def test_the_result_gives_the_evaluation_compile_and_start_times(mnist):  # noqa: F811
    """On the fake clock: each evaluation takes EVAL_SECONDS; prepare's warm-up runs the
    single step, the fused program of 4 steps and one validation pass before the start."""
    before = time.time()
    result, rows = trial(mnist(target_value=0.75), max_steps=8, steps_per_dispatch=4)
    assert result.accumulated_eval_time == len(rows) * EVAL_SECONDS == 2 * EVAL_SECONDS
    assert result.compile_time == (1 + 4) * STEP_SECONDS + EVAL_SECONDS / 2
    assert before <= rows[0]["global_start_time"] <= time.time()


class ResumedCheckpoints(RecordingCheckpoints):
    """Restores step 4 of a trial that had run WALL_BEFORE seconds of wall time."""

    def restore(self, template, step):
        counters = Counters(global_start_time=0.0, global_step=step, wall_time=WALL_BEFORE)
        return template._replace(global_step=np.int32(step)), dataclasses.asdict(counters)


WALL_BEFORE = 5000.0


def test_a_resumed_trial_says_so_and_carries_its_wall_time_on(mnist, caplog):  # noqa: F811
    CLOCK.now, SCRIPT[:] = 0.0, [0.5]
    rows = []
    prepared = prepare(
        mnist(), TimedAdam(), AdamHParams(), 0, steps_per_dispatch=8, max_steps=8, clock=CLOCK
    )
    loop = TrialLoop(
        prepared,
        max_steps=8,
        eval_every_steps=4,
        on_eval=rows.append,
        checkpoints=ResumedCheckpoints(),
        clock=CLOCK,
        resume_from=4,
    )
    start = CLOCK.now
    with caplog.at_level(logging.INFO, logger="aeff.runner"):
        result = loop.run()
    assert caplog.records[0].getMessage() == "Resumed from the checkpoint at step 4."
    assert [row["global_step"] for row in rows] == [8]
    assert rows[0]["wall_time"] == result.wall_time == WALL_BEFORE + CLOCK.now - start


def test_each_epoch_gets_its_own_order(mnist_data_dir, monkeypatch):
    """TinyMnist in batches of 16: an epoch is 4 steps, and 10 steps start three."""
    drawn = []
    original = steps.epoch_order

    def recorded(rng_seed, global_step, num_examples):
        drawn.append(global_step)
        return original(rng_seed, global_step, num_examples)

    monkeypatch.setattr(steps, "epoch_order", recorded)
    workload = TinyMnist(data_dir=str(mnist_data_dir))
    result = run_trial(workload, Adam(batch_size=16), AdamHParams(), 0, max_steps=10)
    assert result.global_step == 10
    assert drawn == [0, 4, 8]


def test_launches_run_to_the_due_evaluation_within_a_second(mnist, monkeypatch):  # noqa: F811
    """A time cadence of 10 steps (2.5 s): after the first step sets the pace, launches of
    at most MAX_LAUNCH_SECONDS (4 steps) end at each due evaluation."""
    ends = []
    launch = TrialLoop._launch

    def recorded(self):
        losses = launch(self)
        ends.append(self.counters.global_step)
        return losses

    monkeypatch.setattr(TrialLoop, "_launch", recorded)
    workload = mnist(target_value=0.75, eval_period_time_sec=10 * STEP_SECONDS)
    _, rows = trial(workload, eval_every_steps=None, max_steps=40, steps_per_dispatch=8)
    assert [row["global_step"] for row in rows] == [1, 11, 21, 31, 40]
    assert ends == [1, 5, 9, 11, 15, 19, 21, 25, 29, 31, 35, 39, 40]


@pytest.mark.parametrize(
    ("eval_every_steps", "goal_reached", "submission_time", "due"),
    [
        (None, False, 1.0, True),  # at the snapshot's time, not only past it
        (None, False, 0.9, False),
        (None, True, 1.0, False),  # the goal is known: nothing left to resolve
        (8, False, 1.0, False),  # a step cadence: every evaluation is at a known step
    ],
)
def test_when_a_snapshot_is_due(
    tiny_prepared, eval_every_steps, goal_reached, submission_time, due
):
    _, prepared = tiny_prepared
    loop = TrialLoop(prepared, eval_every_steps=eval_every_steps, target_resolution=0.05)
    loop.counters.goal_reached = goal_reached
    loop.counters.submission_time, loop.next_snapshot_time = submission_time, 1.0
    assert loop._snapshot_due() is due


@pytest.mark.parametrize(("now", "due"), [(10.0, 10.25), (0.5, 0.5 + 0.5 / 16)])
def test_the_next_snapshot_is_half_the_resolution_later_at_least_a_period_fraction(
    tiny_prepared, now, due
):
    """r/2 of the submission time at 10 s (0.25 s); 1/16 of the 0.5 s period early on."""
    _, prepared = tiny_prepared
    loop = TrialLoop(prepared, target_resolution=0.05)
    assert prepared.workload.eval_period_time_sec == 0.5
    loop.counters.submission_time = now
    loop._schedule_snapshot()
    assert loop.next_snapshot_time == pytest.approx(due)


TIME_CADENCE = {"eval_every_steps": None, "max_steps": 40, "target_resolution": 0.05}


def test_snapshots_give_no_rows_while_the_target_is_not_reached(mnist):  # noqa: F811
    workload = mnist(target_value=0.75, eval_period_time_sec=10 * STEP_SECONDS)
    result, rows = trial(workload, script=(0.5,), **TIME_CADENCE)
    assert not result.goal_reached
    assert [row["global_step"] for row in rows] == [1, 11, 21, 31, 40]


def test_a_train_loss_target_is_resolved_by_the_snapshots(mnist):  # noqa: F811
    workload = mnist(
        target_metric="train.loss", target_value=1.5, eval_period_time_sec=10 * STEP_SECONDS
    )
    result, rows = trial(workload, **TIME_CADENCE)
    on_target = [row["global_step"] for row in rows if row["train.loss"] <= 1.5]
    assert result.goal_reached and result.steps_to_target == on_target[0]
    assert on_target[0] % 10 != 1  # a snapshot between the evaluations at steps 1, 11, 21...
    assert rows[-1]["global_step"] % 10 == 1  # the evaluation that found the target


def test_each_row_is_logged_with_its_times_and_metrics(mnist, caplog):  # noqa: F811
    with caplog.at_level(logging.INFO, logger="aeff.runner"):
        trial(mnist(target_value=0.75), max_steps=8)
    assert [r.getMessage() for r in caplog.records if r.name == "aeff.runner"] == [
        f"step {step} | submission {step * STEP_SECONDS:.2f}s | eval {n * EVAL_SECONDS:.2f}s | "
        "validation.accuracy 0.5000 | validation loss 0.5000"
        for n, step in ((1, 4), (2, 8))
    ]


def test_a_batch_that_does_not_divide_over_the_devices_is_refused(mnist, monkeypatch):  # noqa: F811
    """As on 4 devices (the end-to-end test runs 4 fake ones in another process)."""
    four = types.SimpleNamespace(devices=np.empty(4))
    monkeypatch.setattr(steps, "device_mesh", lambda: four)
    with pytest.raises(ConfigError) as refused:
        prepare(mnist(), Adam(batch_size=1022), AdamHParams(), 0, steps_per_dispatch=8)
    assert str(refused.value) == (
        "batch_size=1022 does not divide over the 4 local devices: use a multiple of 4."
    )
