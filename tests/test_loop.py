"""The trial loop (`aeff.training.loop`) under AlgoPerf's rules: budget, target,
divergence, snapshots, the way out of an exception or a signal, what `prepare` hands on,
a resume; and crash-safe rows.

Trials run in-process on real MNIST under a fake clock that moves only when the test says
(`scripted`): every expected time and step follows from the rules alone.
"""

import csv
import dataclasses
import errno
import functools
import io
import logging
import math
import os
import signal
import time
import types
from typing import ClassVar

import jax
import numpy as np
import pytest
from helpers import shared_trial_scope
from helpers.scripted import (
    CHECKPOINT_SECONDS,
    EVAL_BATCH_SECONDS,
    EVAL_BATCH_SIZE,
    EVAL_EVERY,
    EVAL_SECONDS,
    ON_EVAL_SECONDS,
    STEP_SECONDS,
    PacedAdam,
    Scripted,
    ScriptedMnist,
    SlowCheckpoints,
    TimedAdam,
    trial,
)

from aeff import interrupts
from aeff.errors import RecordsError, TrialInterrupted
from aeff.records import files
from aeff.records.files import append_csv_row, complete_lines, cut_torn_line
from aeff.spec import HostSplit, Splits
from aeff.submissions.adam import Adam, AdamHParams
from aeff.training import programs
from aeff.training.loop import Loop, Member, limits_of, run_group, run_trial
from aeff.training.prepare import prepare
from aeff.training.rules import SNAPSHOTS_PER_EVAL_PERIOD, Counters
from aeff.workloads.mnist import MnistWorkload

# This module's fake clock and script, held by its workloads and submissions: its tests share
# their compilations, and each starts it afresh.
SCRIPTED = Scripted()


@pytest.fixture(scope="module")
def mnist(mnist_data_dir):
    """ScriptedMnist on the test data with the given fields (equal ones share compilations)."""
    return functools.partial(ScriptedMnist, data_dir=str(mnist_data_dir), scripted=SCRIPTED)


# Budget accounting --------------------------------------------------------------------

BUDGET_STEPS = 21  # the budget is spent exactly at the end of step 21
BUDGET = BUDGET_STEPS * STEP_SECONDS


@pytest.fixture(scope=shared_trial_scope)
def budget_run(mnist):
    """A trial stopped by its budget (max_steps allows twice as many) in launches of four
    fused steps, checkpointing at each evaluation; with time.time() read before and after."""
    checkpoints = SlowCheckpoints(SCRIPTED)
    before = time.time()
    result, rows = trial(
        mnist(max_allowed_runtime_sec=BUDGET),
        max_steps=2 * BUDGET_STEPS,
        checkpoints=checkpoints,
    )
    after = time.time()
    return types.SimpleNamespace(
        result=result,
        rows=rows,
        saved_steps=checkpoints.saved_steps,
        before=before,
        after=after,
        clock_end=SCRIPTED.now,
    )


def test_the_trial_stops_at_the_first_step_that_spends_the_budget(budget_run):
    """Submission time >= budget ends the trial at once: not a step early, none after; the
    last launch is cut to single steps so as not to overrun; a final row at that step."""
    result, rows = budget_run.result, budget_run.rows
    assert result.status == "completed"
    assert result.global_step == BUDGET_STEPS
    assert [row["global_step"] for row in rows] == [4, 8, 12, 16, 20, 21]
    assert [row["is_time_remaining"] for row in rows] == [True] * 5 + [False]
    assert {(row["batch_size"], row["steps_per_epoch"]) for row in rows} == {(512, 50_000 // 512)}
    assert [row["epoch"] for row in rows] == [row["global_step"] / (50_000 // 512) for row in rows]


def test_the_final_evaluation_after_the_budget_reaches_no_target(mnist):
    """The evaluation made once the budget is spent (step 21) is on target, but AlgoPerf
    scores only evaluations made while time remained: the trial missed it, in its result
    and its rows, as the summary and `compare` read them."""
    script = [0.5] * 5 + [0.875]
    result, rows = trial(
        mnist(max_allowed_runtime_sec=BUDGET, target_value=0.75), script, max_steps=40
    )
    assert [row["global_step"] for row in rows] == [4, 8, 12, 16, 20, 21]
    assert rows[-1]["validation.accuracy"] == 0.875 and not rows[-1]["is_time_remaining"]
    assert not result.goal_reached and result.time_to_target is None
    assert [row["goal_reached"] for row in rows] == [False] * 6


def test_a_budget_shorter_than_one_launch_is_not_overrun(mnist):
    """The same rule from the first launch on: a budget of two steps ends the trial at step 2."""
    result, rows = trial(mnist(max_allowed_runtime_sec=2 * STEP_SECONDS), max_steps=40)
    assert result.global_step == 2
    assert result.accumulated_submission_time == 2 * STEP_SECONDS
    assert [row["global_step"] for row in rows] == [2]


def test_only_training_steps_are_charged_to_the_submission_time(budget_run):
    """Neither compilation, evaluations, records nor checkpoints count against the budget."""
    result, rows = budget_run.result, budget_run.rows
    assert result.accumulated_submission_time == BUDGET_STEPS * STEP_SECONDS
    assert [row["accumulated_submission_time"] for row in rows] == [
        row["global_step"] * STEP_SECONDS for row in rows
    ]


def test_evaluation_time_is_the_evaluations_alone(budget_run):
    """accumulated_eval_time: the evaluation batches, not the records or checkpoints after."""
    result, rows = budget_run.result, budget_run.rows
    assert result.num_evals == len(rows)
    assert result.accumulated_eval_time == len(rows) * EVAL_SECONDS
    assert [row["accumulated_eval_time"] for row in rows] == [
        (i + 1) * EVAL_SECONDS for i in range(len(rows))
    ]


def test_wall_time_is_everything_since_the_start(budget_run):
    """wall_time: steps, evaluations, records and checkpoints; compilation comes before it.
    A row's wall_time is taken after its evaluation, before its own record and checkpoint."""
    result, rows, n = budget_run.result, budget_run.rows, len(budget_run.rows)
    assert budget_run.saved_steps == [row["global_step"] for row in rows]
    after_eval = ON_EVAL_SECONDS + CHECKPOINT_SECONDS
    assert [row["wall_time"] for row in rows] == [
        row["global_step"] * STEP_SECONDS + (i + 1) * EVAL_SECONDS + i * after_eval
        for i, row in enumerate(rows)
    ]
    assert result.wall_time == BUDGET_STEPS * STEP_SECONDS + n * (EVAL_SECONDS + after_eval)
    assert budget_run.clock_end == result.compile_time + result.wall_time


def test_global_start_time_is_the_epoch_time_at_the_start(budget_run):
    """global_start_time comes from time.time(), not from the injected (perf) clock."""
    (start,) = {row["global_start_time"] for row in budget_run.rows}
    assert budget_run.before <= start <= budget_run.after


@pytest.mark.slow  # six trials on the fake clock: 7-11 s
@pytest.mark.parametrize("size", [1, 2])
@pytest.mark.parametrize(
    "pace",
    [
        lambda step: 1 / 64,  # steady: launches of many steps, the last ones shrinking
        lambda step: 1 / 64 if step < 20 else 1 / 32,  # twice as slow from step 20 on
        lambda step: 1 / 64 if step % 3 else 1 / 32,  # uneven
    ],
)
def test_a_trial_ends_within_one_step_of_its_budget_alone_or_in_a_group(
    mnist, monkeypatch, size, pace
):
    """AlgoPerf checks the budget after every step. Launches that hold many steps must end
    as close: each trial, alone or in a group (whose step is each trial's in turn, so
    `size` times as long), ends at the first step that spends the budget, so long as a
    launch's steps take at most twice the last launch's pace (`rules.launch_size`)."""
    launches = []
    queue = Loop._queue

    def recorded(self, step, sizes, *args):
        launches.append(sum(sizes))
        return queue(self, step, sizes, *args)

    monkeypatch.setattr(Loop, "_queue", recorded)
    SCRIPTED.start()
    SCRIPTED.pace = pace
    try:
        results = run_group(
            mnist(max_allowed_runtime_sec=1.0),
            PacedAdam(scripted=SCRIPTED),
            [Member(AdamHParams(lr=1e-3 * (i + 1)), i) for i in range(size)],
            steps_per_dispatch=8,
            clock=SCRIPTED,
            eval_every_steps=1000,
            max_steps=1000,
        )
    finally:
        SCRIPTED.pace = lambda step: STEP_SECONDS
    assert max(launches) >= 8  # launches of many steps: the rule is exercised
    for result in results:
        step_time = size * pace(result.global_step - 1)  # the last step's
        assert result.accumulated_submission_time >= 1.0
        assert result.accumulated_submission_time - step_time < 1.0
        assert result.global_step == results[0].global_step


class ResumedAt:
    """A TrialCheckpoints stand-in: the trial resumes at step 16 having spent `spent`
    seconds (its parameters as initialised); saves nothing."""

    def __init__(self, spent: float) -> None:
        self.spent = spent

    def restore(self, template, step):
        counters = Counters(global_start_time=0.0, global_step=step, submission_time=self.spent)
        return template, dataclasses.asdict(counters)

    def due(self) -> bool:
        return False

    def save(self, state, progress) -> None:
        pass


@pytest.mark.slow  # a group of three compiled and trained to its budget: 15-20 s
def test_members_resumed_at_different_times_each_end_within_one_step_of_their_budget(mnist):
    """A group's members resume from one step with their own submission times: launches
    sized by the least-spent member would carry the most-spent one past its budget."""
    spent = (0.1, 0.5, 0.9)
    SCRIPTED.start()
    SCRIPTED.pace = lambda step: 1 / 64
    members = [
        Member(AdamHParams(lr=1e-3 * (i + 1)), i, checkpoints=ResumedAt(t), resume_from=16)
        for i, t in enumerate(spent)
    ]
    try:
        results = run_group(
            mnist(max_allowed_runtime_sec=1.0),
            PacedAdam(scripted=SCRIPTED),
            members,
            steps_per_dispatch=8,
            clock=SCRIPTED,
            eval_every_steps=1000,
            max_steps=1000,
        )
    finally:
        SCRIPTED.pace = lambda step: STEP_SECONDS
    for result in results:
        step_time = len(spent) / 64  # a step of the group: each running trial's in turn
        assert result.accumulated_submission_time >= 1.0
        assert result.accumulated_submission_time - step_time < 1.0
    most, least = max(range(len(spent)), key=spent.__getitem__), spent.index(min(spent))
    assert results[most].global_step < results[least].global_step


# The target ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "target", "value", "reached"),
    [
        ("validation.accuracy", 0.75, 0.75, True),
        ("validation.accuracy", 0.75, math.nextafter(0.75, 0), False),
        ("validation.accuracy", 0.75, 0.8, True),
        ("validation.loss", 0.25, 0.25, True),
        ("validation.loss", 0.25, math.nextafter(0.25, 1), False),
        ("validation.loss", 0.25, 0.2, True),
        ("test.loss", 0.25, 0.3, False),
        ("validation.accuracy", 0.97, math.inf, False),  # a broken metric reaches nothing
        ("validation.accuracy", 0.97, math.nan, False),
        ("validation.loss", 0.25, -math.inf, False),
    ],
)
def test_has_reached_goal_counts_the_target_itself(metric, target, value, reached):
    """Accuracies reach the target at >=, losses at <=."""
    workload = MnistWorkload(target_metric=metric, target_value=target)
    other = {"validation.accuracy": 0.0, "validation.loss": 9.0, "test.loss": 9.0}
    assert workload.has_reached_goal({**other, metric: value}) is reached


@pytest.mark.parametrize(
    ("metric", "target", "script"),
    [
        ("validation.accuracy", 0.75, [0.5, 0.75, 0.875]),
        ("validation.loss", 0.25, [0.5, 0.25, 0.125]),
    ],
)
def test_a_value_equal_to_the_target_stops_the_trial(mnist, metric, target, script):
    """The second evaluation (step 8) is exactly on target: the trial ends there, with
    time_to_target its submission time and no second row at that step."""
    result, rows = trial(mnist(target_metric=metric, target_value=target), script, max_steps=40)
    assert result.status == "completed"
    assert result.goal_reached
    assert result.global_step == 2 * EVAL_EVERY
    assert [(row["global_step"], row["goal_reached"]) for row in rows] == [(4, False), (8, True)]
    assert result.time_to_target == 2 * EVAL_EVERY * STEP_SECONDS
    assert result.time_to_target == rows[-1]["accumulated_submission_time"]
    assert result.steps_to_target == 2 * EVAL_EVERY


def test_time_to_target_is_the_first_crossing_when_the_trial_goes_on(mnist):
    """With stop_at_target=False the trial runs to max_steps; dropping below the target and
    crossing it again later change neither goal_reached nor time_to_target."""
    script = [0.5, 0.75, 0.5, 0.875, 0.5]
    result, rows = trial(
        mnist(target_value=0.75), script, max_steps=5 * EVAL_EVERY, stop_at_target=False
    )
    assert result.global_step == 5 * EVAL_EVERY
    assert [row["validation.accuracy"] for row in rows] == script
    assert [row["goal_reached"] for row in rows] == [False, True, True, True, True]
    assert result.goal_reached
    assert result.time_to_target == 2 * EVAL_EVERY * STEP_SECONDS
    assert result.steps_to_target == 2 * EVAL_EVERY  # not the later crossing's step


@pytest.mark.parametrize(("max_steps", "eval_steps"), [(10, [4, 8, 10]), (12, [4, 8, 12])])
def test_the_last_step_gets_one_final_evaluation(mnist, max_steps, eval_steps):
    """A trial stopped by max_steps between evaluations is evaluated at that step (which can
    reach the target); one stopped on an evaluation step is not evaluated twice."""
    script = [0.5, 0.5, 0.75]
    result, rows = trial(mnist(target_value=0.75), script, max_steps=max_steps)
    assert [row["global_step"] for row in rows] == eval_steps
    assert result.global_step == max_steps
    assert result.num_evals == len(eval_steps)
    assert result.final_metrics["validation.accuracy"] == 0.75
    assert result.goal_reached
    assert result.time_to_target == max_steps * STEP_SECONDS


def test_a_rows_train_loss_is_the_mean_of_the_steps_since_the_row_before(mnist):
    """Rows every step give each step's loss; rows every 4 steps, the mean of those 4."""
    _, every_step = trial(mnist(), max_steps=8, eval_every_steps=1)
    _, every_4 = trial(mnist(), max_steps=8, eval_every_steps=4)
    losses = [row["train.loss"] for row in every_step]
    assert abs(losses[0] - np.log(10)) < 0.5  # the first step: an untrained 10-way classifier
    expected = [np.mean(losses[:4]), np.mean(losses[4:])]
    assert [row["train.loss"] for row in every_4] == pytest.approx(expected, rel=1e-6)


# Divergence ---------------------------------------------------------------------------

NAN_STEP = 14


@pytest.mark.parametrize("steps_per_dispatch", [1, 8])
def test_a_nan_loss_ends_the_trial_as_diverged_at_that_step(mnist, steps_per_dispatch):
    """Divergence is a result, not an error: status "diverged" at the step whose loss was
    NaN, charged up to that step, goal not reached."""
    result, rows = trial(
        mnist(target_value=0.75),
        submission=TimedAdam(nan_step=NAN_STEP, scripted=SCRIPTED),
        max_steps=40,
        steps_per_dispatch=steps_per_dispatch,
    )
    assert result.status == "diverged"
    assert not result.goal_reached
    assert result.time_to_target is None
    assert result.global_step == NAN_STEP
    assert result.accumulated_submission_time == NAN_STEP * STEP_SECONDS
    assert rows[-1]["global_step"] == NAN_STEP
    assert math.isnan(rows[-1]["train.loss"])


# Time to target's resolution ----------------------------------------------------------

RESOLUTION = 0.1
PERIOD_STEPS = 40  # a time-cadence evaluation every 40 steps of training
TARGET = 0.84  # validation accuracy: first reached between the evaluations at 1 and 41


@dataclasses.dataclass(frozen=True)
class TimedMnist(MnistWorkload):
    """MNIST with its real metrics, whose every evaluation batch takes EVAL_BATCH_SECONDS."""

    eval_batch_size: int = EVAL_BATCH_SIZE
    scripted: Scripted | None = None

    def eval_sums(self, params, model_state, batch, mask):
        jax.debug.callback(functools.partial(self.scripted.advance, EVAL_BATCH_SECONDS))
        return super().eval_sums(params, model_state, batch, mask)


@pytest.fixture(scope="module")
def timed_mnist(mnist_data_dir):
    return TimedMnist(
        data_dir=str(mnist_data_dir),
        eval_period_time_sec=PERIOD_STEPS * STEP_SECONDS,
        target_value=TARGET,
        scripted=SCRIPTED,
    )


@pytest.fixture(scope=shared_trial_scope)
def resolved(timed_mnist):
    """The same trial on the time cadence with and without target_resolution."""
    return {
        resolution: trial(
            timed_mnist, eval_every_steps=None, target_resolution=resolution, max_steps=400
        )
        for resolution in (RESOLUTION, None)
    }


def crossing(rows):
    return next(i for i, row in enumerate(rows) if row["validation.accuracy"] >= TARGET)


def test_time_to_target_is_known_within_the_resolution(resolved):
    """Snapshots between evaluations, evaluated once the target is found reached, bracket
    the first crossing to within 10% of its time; evaluations alone bracketed a third."""
    result, rows = resolved[RESOLUTION]
    i = crossing(rows)
    assert i > 0 and rows[i]["goal_reached"] and not rows[i - 1]["goal_reached"]
    assert result.time_to_target == rows[i]["accumulated_submission_time"]
    assert result.steps_to_target == rows[i]["global_step"]
    before = rows[i - 1]["accumulated_submission_time"]
    assert result.time_to_target_resolution == 1 - before / result.time_to_target
    assert result.time_to_target_resolution <= RESOLUTION
    plain, plain_rows = resolved[None]
    assert plain.time_to_target_resolution > 3 * RESOLUTION
    assert [row["global_step"] for row in plain_rows] == [1, PERIOD_STEPS + 1]
    assert result.time_to_target < plain.time_to_target
    assert result.global_step == plain.global_step  # the trial ends where it did


def test_snapshots_are_evaluated_at_their_own_steps(resolved, timed_mnist):
    """The crossing row holds the metrics of the parameters at its step (a trial stopped
    there agrees), and the evaluations on the period are the same with or without."""
    _, rows = resolved[RESOLUTION]
    at = rows[crossing(rows)]
    stopped, _ = trial(timed_mnist, eval_every_steps=None, max_steps=at["global_step"])
    for metric in ("validation.accuracy", "validation.loss", "test.accuracy"):
        assert stopped.final_metrics[metric] == pytest.approx(at[metric], rel=1e-6)
    by_step = {row["global_step"]: row for row in rows}
    for row in resolved[None][1]:
        assert by_step[row["global_step"]]["validation.loss"] == row["validation.loss"]


def test_the_train_loss_is_shared_out_between_the_rows(resolved):
    """Each row's train loss is the mean over the steps since the row before it."""
    rows, plain_rows = resolved[RESOLUTION][1], resolved[None][1]
    start, end = plain_rows[-2]["global_step"], plain_rows[-1]["global_step"]
    segment = [row for row in rows if start < row["global_step"] <= end]
    assert len(segment) > 1
    steps = np.diff([start] + [row["global_step"] for row in segment])
    total = sum(n * row["train.loss"] for n, row in zip(steps, segment, strict=True))
    assert total / (end - start) == pytest.approx(plain_rows[-1]["train.loss"], rel=1e-5)


def test_snapshots_are_spaced_by_the_resolution_at_least_a_period_fraction(timed_mnist):
    """A tiny resolution still takes at most SNAPSHOTS_PER_EVAL_PERIOD snapshots a period."""
    result, rows = trial(
        dataclasses.replace(timed_mnist, target_value=0.8),
        eval_every_steps=None,
        target_resolution=1e-6,
        max_steps=400,
    )
    times = [row["accumulated_submission_time"] for row in rows[1:]]
    floor = PERIOD_STEPS * STEP_SECONDS / SNAPSHOTS_PER_EVAL_PERIOD
    assert len(times) > 2 and min(np.diff(times)) >= floor
    assert result.time_to_target_resolution < 0.2


def test_a_signal_among_the_snapshot_rows_loses_and_repeats_none(resolved, timed_mnist):
    """SIGTERM while the first snapshot's row is written: the other snapshots and the
    evaluation that found the target follow, once each; the trial has then ended."""
    _, whole = resolved[RESOLUTION]
    cut = next(i for i, row in enumerate(whole) if row["global_step"] % PERIOD_STEPS != 1)
    steps: list[int] = []

    def on_eval(row):
        steps.append(row["global_step"])
        if len(steps) == cut + 1:
            os.kill(os.getpid(), signal.SIGTERM)

    SCRIPTED.now = 0.0
    with interrupts.interrupts_noted():
        result = run_trial(
            timed_mnist,
            TimedAdam(scripted=SCRIPTED),
            AdamHParams(),
            0,
            max_steps=400,
            target_resolution=RESOLUTION,
            on_eval=on_eval,
            clock=SCRIPTED,
        )
    assert steps == [row["global_step"] for row in whole]
    assert result.goal_reached and result.status == "completed"


@pytest.mark.parametrize("first_on_target", ["snapshot", "evaluation"])
def test_the_refinement_goes_through_the_snapshots_in_order(mnist, first_on_target):
    """The evaluation at step 41 finds the target (measurement 1); the snapshots since step 1
    are measured next, in order (measurements 2, 3, ...). The first of them on target is the
    crossing; when none is, the evaluation itself is."""
    on_snapshot = first_on_target == "snapshot"
    SCRIPTED.measured = -2  # `prepare` runs the validation split's 2 batches once, compiling
    SCRIPTED.by_measurement = True
    try:
        result, rows = trial(
            mnist(eval_period_time_sec=PERIOD_STEPS * STEP_SECONDS, target_value=0.75),
            [0.5, 0.75, 0.75 if on_snapshot else 0.5],
            eval_every_steps=None,
            target_resolution=RESOLUTION,
            max_steps=400,
        )
    finally:
        SCRIPTED.by_measurement = False
    steps = [row["global_step"] for row in rows]
    assert steps[0] == 1 and steps[-1] == PERIOD_STEPS + 1 and steps == sorted(steps)
    crossing = rows[1] if on_snapshot else rows[-1]
    assert [row["goal_reached"] for row in rows].index(True) == rows.index(crossing)
    assert len(rows) == SCRIPTED.measured // 4  # a row for every measurement
    assert (len(rows) == 3) is on_snapshot  # else every snapshot since step 1 has one
    assert result.steps_to_target == crossing["global_step"]
    assert result.time_to_target == crossing["global_step"] * STEP_SECONDS
    before = rows[rows.index(crossing) - 1]["accumulated_submission_time"]
    assert result.time_to_target_resolution == 1 - before / result.time_to_target


def test_a_step_cadence_takes_no_snapshots(mnist):
    """Rows at every eval_every_steps and nowhere else, with a resolution asked for."""
    result, rows = trial(mnist(target_value=0.75), [0.5, 0.5, 0.75], target_resolution=0.1)
    assert [row["global_step"] for row in rows] == [4, 8, 12]
    assert result.time_to_target_resolution == 1 - 8 / 12


# Divergence's records, the way out, a resume ----------------------------------------------


class RecordingCheckpoints:
    """Nothing to restore, due at every evaluation; keeps each save's counters and the
    clock when it was taken."""

    def __init__(self) -> None:
        self.saved: list[tuple[dict, float]] = []
        self.states: list = []

    def due(self) -> bool:
        return True

    def save(self, state, progress) -> None:
        self.saved.append((dict(progress), SCRIPTED.now))
        self.states.append(state)


def loop_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aeff.training.loop"]


def test_a_diverged_trial_warns_and_its_last_row_has_time_left(mnist, caplog):
    """... and its checkpoint holds the counters of the step it diverged at."""
    checkpoints = RecordingCheckpoints()
    with caplog.at_level(logging.WARNING, logger="aeff.training.loop"):
        result, rows = trial(
            mnist(target_value=0.75),
            submission=TimedAdam(nan_step=NAN_STEP, scripted=SCRIPTED),
            max_steps=40,
            steps_per_dispatch=8,
            checkpoints=checkpoints,
        )
    assert result.status == "diverged" and result.global_step == NAN_STEP
    assert checkpoints.saved[-1][0]["global_step"] == NAN_STEP
    assert rows[-1]["is_time_remaining"] is True
    assert loop_lines(caplog) == [f"Diverged: training loss nan at step {NAN_STEP}."]


def test_divergence_on_the_last_budgeted_step_leaves_no_time(mnist):
    result, rows = trial(
        mnist(target_value=0.75, max_allowed_runtime_sec=NAN_STEP * STEP_SECONDS),
        submission=TimedAdam(nan_step=NAN_STEP, scripted=SCRIPTED),
        max_steps=40,
        steps_per_dispatch=8,
    )
    assert result.status == "diverged" and result.global_step == NAN_STEP
    assert result.accumulated_submission_time == NAN_STEP * STEP_SECONDS
    assert rows[-1]["is_time_remaining"] is False
    waits = result.accumulated_submission_time + result.accumulated_eval_time
    assert result.wall_time == waits + len(rows) * ON_EVAL_SECONDS  # nothing run again


def test_a_checkpoint_keeps_the_wall_time_at_its_save(mnist):
    checkpoints = RecordingCheckpoints()
    result, rows = trial(mnist(target_value=0.75), max_steps=8, checkpoints=checkpoints)
    assert [progress["global_step"] for progress, _ in checkpoints.saved] == [4, 8]
    for (progress, _), row in zip(checkpoints.saved, rows, strict=True):
        assert progress["wall_time"] == row["wall_time"] + ON_EVAL_SECONDS
    assert result.wall_time == checkpoints.saved[-1][0]["wall_time"]


class FullDisk(RecordingCheckpoints):
    """Saves at evaluations until `fails_from` saves, then fails as a full disk would."""

    def __init__(self, fails_from: int) -> None:
        super().__init__()
        self.fails_from = fails_from

    def save(self, state, progress) -> None:
        if len(self.saved) >= self.fails_from:
            raise OSError(28, "No space left on device")
        super().save(state, progress)


def stopped_trial(workload, on_eval_does: dict, checkpoints, pending=()):
    """A trial evaluated every 4 steps, within `interrupts_noted` with `pending` signals
    noted before it starts, whose n-th call of on_eval runs on_eval_does[n]; (the error
    that ended it, the steps of every call)."""
    calls: list[int] = []

    def on_eval(row):
        calls.append(row["global_step"])
        if len(calls) in on_eval_does:
            on_eval_does[len(calls)]()

    SCRIPTED.start()
    with pytest.raises(BaseException) as stopped, interrupts.interrupts_noted():
        for signum in pending:
            os.kill(os.getpid(), signum)
        run_trial(
            workload,
            TimedAdam(scripted=SCRIPTED),
            AdamHParams(),
            0,
            eval_every_steps=4,
            max_steps=40,
            on_eval=on_eval,
            checkpoints=checkpoints,
            clock=SCRIPTED,
        )
    return stopped.value, calls


def raise_(error):
    def raising():
        raise error

    return raising


def sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


def test_an_error_gets_a_checkpoint_but_no_further_row(mnist):
    """Only a signal earns a last row: an error in the records is not evaluated again."""
    checkpoints = RecordingCheckpoints()
    error, calls = stopped_trial(mnist(), {2: raise_(RuntimeError("disk"))}, checkpoints)
    assert isinstance(error, RuntimeError)
    assert calls == [4, 8]
    assert [progress["global_step"] for progress, _ in checkpoints.saved] == [4, 8]


def test_a_signal_while_a_row_is_written_stops_the_trial_after_it_with_a_checkpoint(mnist):
    checkpoints = RecordingCheckpoints()
    error, calls = stopped_trial(mnist(), {2: sigterm}, checkpoints)
    assert isinstance(error, TrialInterrupted) and error.checkpoint_step == 8
    assert calls == [4, 8]  # written once, not evaluated again
    # the evaluation's checkpoint, then the way out's of the same step (which
    # TrialCheckpoints skips)
    assert [progress["global_step"] for progress, _ in checkpoints.saved] == [4, 8, 8]


def test_a_signal_during_a_launch_waits_for_it_to_be_charged(mnist, monkeypatch):
    """SIGTERM while the launch from step 8 runs: the launch ends and is charged, its due
    evaluation is written, and the trial ends there with a checkpoint and 12 steps' time."""
    queue, launches = Loop._queue, []

    def signalled(self, step, *args):
        launches.append(step)
        if len(launches) == 4:  # the fourth launch: from step 8 (the first is one step)
            sigterm()
        return queue(self, step, *args)

    monkeypatch.setattr(Loop, "_queue", signalled)
    checkpoints = RecordingCheckpoints()
    error, calls = stopped_trial(mnist(), {}, checkpoints)
    assert isinstance(error, TrialInterrupted) and error.checkpoint_step == 12
    assert launches == [0, 1, 4, 8] and calls == [4, 8, 12]
    progress, _ = checkpoints.saved[-1]
    assert progress["global_step"] == 12 and progress["submission_time"] == 12 * STEP_SECONDS
    assert int(checkpoints.states[-1].global_step) == 12


def test_the_way_out_warns_when_its_row_or_checkpoint_cannot_be_written(mnist, caplog):
    with caplog.at_level(logging.WARNING, logger="aeff.training.loop"):
        error, calls = stopped_trial(
            mnist(), {1: raise_(OSError("records gone"))}, FullDisk(0), [signal.SIGTERM]
        )
    assert isinstance(error, TrialInterrupted) and error.checkpoint_step is None
    assert calls == [0]
    assert loop_lines(caplog) == [
        "No last row on the way out: records gone",
        "No checkpoint on the way out: [Errno 28] No space left on device",
    ]


def test_a_signal_before_the_first_launch_gets_one_row_at_its_step(mnist):
    checkpoints = RecordingCheckpoints()
    error, calls = stopped_trial(mnist(), {}, checkpoints, [signal.SIGTERM])
    assert isinstance(error, TrialInterrupted) and error.checkpoint_step == 0
    assert calls == [0]


def test_a_second_signal_during_the_way_outs_checkpoint_is_noted_and_waits(mnist):
    class SignalledCheckpoints(RecordingCheckpoints):
        def save(self, state, progress) -> None:
            if len(self.saved) == 2:
                sigterm()
            super().save(state, progress)

    checkpoints = SignalledCheckpoints()
    error, _ = stopped_trial(mnist(), {2: sigterm}, checkpoints)
    assert error.checkpoint_step == 8
    assert [progress["global_step"] for progress, _ in checkpoints.saved] == [4, 8, 8]


def test_a_checkpoint_holds_one_copy_of_the_state_at_its_step(mnist):
    checkpoints = RecordingCheckpoints()
    workload = mnist(target_value=0.75)
    result, _ = trial(workload, max_steps=8, checkpoints=checkpoints)
    assert result.rng_seed == 0
    initial, _ = programs.init_model(workload.program_key())(jax.random.key(0))  # compiled
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
        [AdamHParams()],
        [0],
        limits_of(workload),
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


def test_the_result_gives_the_evaluation_compile_and_start_times(mnist):
    """On the fake clock: each evaluation takes EVAL_SECONDS; prepare's warm-up runs the
    single step, the fused program of 4 steps and one validation pass before the start."""
    before = time.time()
    result, rows = trial(mnist(target_value=0.75), max_steps=8, steps_per_dispatch=4)
    assert result.accumulated_eval_time == len(rows) * EVAL_SECONDS == 2 * EVAL_SECONDS
    assert result.compile_time == (1 + 4) * STEP_SECONDS + EVAL_SECONDS / 2
    assert before <= rows[0]["global_start_time"] <= time.time()


WALL_BEFORE = 5000.0


class ResumedCheckpoints(RecordingCheckpoints):
    """Restores a checkpoint of `step` with `counters` (Counters' fields) beside it."""

    def __init__(self, **counters):
        super().__init__()
        self.counters = counters

    def restore(self, template, step):
        counters = Counters(global_start_time=0.0, global_step=step, **self.counters)
        return template._replace(global_step=np.int32(step)), dataclasses.asdict(counters)


def resumed(mnist, step: int, **counters):
    """A trial of max_steps=8 continued from step `step`: its result, its rows and the
    fake clock when it began training."""
    SCRIPTED.start()
    workload, rows = mnist(), []
    limits = limits_of(workload, max_steps=8, eval_every_steps=4)
    prepared = prepare(
        workload,
        TimedAdam(scripted=SCRIPTED),
        [AdamHParams()],
        [0],
        limits,
        steps_per_dispatch=8,
        clock=SCRIPTED,
    )
    checkpoints = ResumedCheckpoints(**counters)
    member = Member(
        AdamHParams(), 0, on_eval=rows.append, checkpoints=checkpoints, resume_from=step
    )
    start = SCRIPTED.now
    [result] = Loop(prepared, [member], limits, SCRIPTED).run()
    return result, rows, start


def test_a_resumed_trial_says_so_and_carries_its_wall_time_on(mnist, caplog):
    with caplog.at_level(logging.INFO, logger="aeff.training.loop"):
        result, rows, start = resumed(mnist, 4, wall_time=WALL_BEFORE)
    assert caplog.records[0].getMessage() == "Resumed from the checkpoint at step 4."
    assert [row["global_step"] for row in rows] == [8]
    assert rows[0]["wall_time"] == result.wall_time == WALL_BEFORE + SCRIPTED.now - start


def test_a_trial_resumed_at_its_last_step_ends_there_without_a_step_more(mnist):
    """Killed as it recorded its end at max_steps=8, after its last checkpoint."""
    result, rows, _ = resumed(mnist, 8, last_eval_step=8)
    assert (result.status, result.global_step, rows) == ("completed", 8, [])


def test_each_epoch_gets_its_own_order(mnist_data_dir, monkeypatch):
    """TinyMnist in batches of 16: an epoch is 4 steps, and 10 steps start three."""
    drawn = []
    original = programs.epoch_order

    def recorded(rng_seed, global_step, num_examples):
        drawn.append(global_step)
        return original(rng_seed, global_step, num_examples)

    monkeypatch.setattr(programs, "epoch_order", recorded)
    workload = TinyMnist(data_dir=str(mnist_data_dir))
    result = run_trial(workload, Adam(batch_size=16), AdamHParams(), 0, max_steps=10)
    assert result.global_step == 10
    assert drawn == [0, 4, 8]


def test_launches_run_to_the_due_evaluation_within_a_second(mnist, monkeypatch):
    """A time cadence of 10 steps (2.5 s): after the first step sets the pace, launches of
    at most MAX_LAUNCH_SECONDS (4 steps) end at each due evaluation."""
    ends = []
    launch = Loop._launch

    def recorded(self):
        launch(self)
        ends.append(self.trials[0].counters.global_step)

    monkeypatch.setattr(Loop, "_launch", recorded)
    workload = mnist(target_value=0.75, eval_period_time_sec=10 * STEP_SECONDS)
    _, rows = trial(workload, eval_every_steps=None, max_steps=40, steps_per_dispatch=8)
    assert [row["global_step"] for row in rows] == [1, 11, 21, 31, 40]
    assert ends == [1, 5, 9, 11, 15, 19, 21, 25, 29, 31, 35, 39, 40]


TIME_CADENCE = {"eval_every_steps": None, "max_steps": 40, "target_resolution": 0.05}


def test_snapshots_give_no_rows_while_the_target_is_not_reached(mnist):
    workload = mnist(target_value=0.75, eval_period_time_sec=10 * STEP_SECONDS)
    result, rows = trial(workload, script=(0.5,), **TIME_CADENCE)
    assert not result.goal_reached
    assert [row["global_step"] for row in rows] == [1, 11, 21, 31, 40]


def test_a_train_loss_target_is_resolved_by_the_snapshots(mnist):
    workload = mnist(
        target_metric="train.loss", target_value=1.5, eval_period_time_sec=10 * STEP_SECONDS
    )
    result, rows = trial(workload, **TIME_CADENCE)
    on_target = [row["global_step"] for row in rows if row["train.loss"] <= 1.5]
    assert result.goal_reached and result.steps_to_target == on_target[0]
    assert on_target[0] % 10 != 1  # a snapshot between the evaluations at steps 1, 11, 21...
    assert rows[-1]["global_step"] % 10 == 1  # the evaluation that found the target


def test_each_row_is_logged_with_its_times_and_metrics(mnist, caplog):
    with caplog.at_level(logging.INFO, logger="aeff.training.loop"):
        trial(mnist(target_value=0.75), max_steps=8)
    assert loop_lines(caplog) == [
        f"step {step} | submission {step * STEP_SECONDS:.2f}s | eval {n * EVAL_SECONDS:.2f}s | "
        "validation.accuracy 0.5000 | validation loss 0.5000"
        for n, step in ((1, 4), (2, 8))
    ]


@dataclasses.dataclass(frozen=True)
class ErrorRateMnist(ScriptedMnist):
    """Evaluated on its validation split alone, reporting an error rate (lower is better,
    though its name says nothing of it), its console line the target metric alone."""

    eval_splits: ClassVar[tuple[str, ...]] = ("validation",)
    eval_metrics: ClassVar[dict[str, bool]] = {"loss": False, "error": False}
    console_metrics: ClassVar[tuple[str, ...]] = ()
    target_metric: str = "validation.error"
    target_value: float = 0.75

    def eval_sums(self, params, model_state, batch, mask):
        sums = super().eval_sums(params, model_state, batch, mask)
        return {"loss": sums["loss"], "error": sums["accuracy"]}


def test_the_target_is_reached_in_the_direction_the_workload_declares(mnist_data_dir):
    workload = ErrorRateMnist(data_dir=str(mnist_data_dir), scripted=SCRIPTED)
    result, rows = trial(workload, [0.875, 0.875, 0.5], max_steps=40)
    assert [row["validation.error"] for row in rows] == [0.875, 0.875, 0.5]
    assert result.steps_to_target == 12 and rows[-1]["goal_reached"]


def test_the_rows_and_console_hold_the_splits_and_metrics_the_workload_declares(
    mnist_data_dir, caplog
):
    with caplog.at_level(logging.INFO, logger="aeff.training.loop"):
        _, rows = trial(
            ErrorRateMnist(data_dir=str(mnist_data_dir), scripted=SCRIPTED), [0.875], max_steps=8
        )
    assert [sorted(k for k in row if "." in k) for row in rows] == [
        ["train.loss", "validation.error", "validation.loss"]
    ] * 2
    one_split = EVAL_SECONDS / 2  # two splits' batches in EVAL_SECONDS
    assert loop_lines(caplog) == [
        f"step {step} | submission {step * STEP_SECONDS:.2f}s | eval {n * one_split:.2f}s | "
        "validation.error 0.8750"
        for n, step in ((1, 4), (2, 8))
    ]


# Crash-safe CSV -----------------------------------------------------------------------

COLUMNS = ["step", "loss"]


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def os_calls(monkeypatch):
    """Every os.write and os.fsync that aeff.records.files makes, in order (all still run)."""
    calls = []
    real_write, real_fsync = os.write, os.fsync

    def write(fd, data):
        calls.append(("write", bytes(data)))
        return real_write(fd, data)

    def fsync(fd):
        calls.append(("fsync", None))
        return real_fsync(fd)

    monkeypatch.setattr(files.os, "write", write)
    monkeypatch.setattr(files.os, "fsync", fsync)
    return calls


def test_each_row_is_one_write_then_fsync(tmp_path, os_calls):
    """The header goes with the first row; each row in one write, fsync-ed before the next,
    so a kill can leave at most a whole line missing, never half of one."""
    path = tmp_path / "metrics.csv"
    append_csv_row(path, COLUMNS, {"step": 1, "loss": 0.5})
    first = path.read_bytes()
    append_csv_row(path, COLUMNS, {"step": 2, "loss": 0.25, "not a column": 3})
    second = path.read_bytes()[len(first) :]
    assert os_calls == [("write", first), ("fsync", None), ("write", second), ("fsync", None)]
    assert rows_of(first.decode()) == [{"step": "1", "loss": "0.5"}]
    assert rows_of(path.read_text()) == [
        {"step": "1", "loss": "0.5"},
        {"step": "2", "loss": "0.25"},
    ]


@pytest.mark.parametrize("whole_rows", [0, 2])
def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path, whole_rows):
    """A line half-written by a crash (the header itself, with no whole row) is cut; the
    next append then continues a clean file."""
    path = tmp_path / "metrics.csv"
    cut_torn_line(path)
    assert not path.exists()
    for step in range(1, whole_rows + 1):
        append_csv_row(path, COLUMNS, {"step": step, "loss": 0.5})
    whole = path.read_bytes() if path.exists() else b""
    cut_torn_line(path)
    assert (path.read_bytes() if path.exists() else b"") == whole
    with path.open("ab") as file:
        file.write(b"9,0." if whole_rows else b"step,lo")
    cut_torn_line(path)
    assert path.read_bytes() == whole
    append_csv_row(path, COLUMNS, {"step": 3, "loss": 0.125})
    expected = [{"step": str(step), "loss": "0.5"} for step in range(1, whole_rows + 1)]
    assert rows_of(path.read_text()) == [*expected, {"step": "3", "loss": "0.125"}]


def test_readers_see_only_complete_lines(tmp_path):
    """complete_lines hides a half-written last line (a writer may be mid-row) and leaves
    the file to its writer."""
    path = tmp_path / "metrics.csv"
    for step in (1, 2):
        append_csv_row(path, COLUMNS, {"step": step, "loss": 0.5})
    with path.open("ab") as file:
        file.write(b"3,0.")
    torn = path.read_bytes()
    assert rows_of(complete_lines(path)) == [
        {"step": "1", "loss": "0.5"},
        {"step": "2", "loss": "0.5"},
    ]
    assert path.read_bytes() == torn


@pytest.mark.parametrize("failure", ["write", "fsync"])
def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch, failure):
    """A disk that fills up part-way through a row, or a failed fsync, raises RecordsError
    and cuts the file back to its bytes before the append."""
    path = tmp_path / "metrics.csv"
    append_csv_row(path, COLUMNS, {"step": 1, "loss": 0.5})
    before = path.read_bytes()
    real_write = os.write

    def write_half_then_full_disk(fd, data):
        if os.fstat(fd).st_size > len(before):  # half the row is in: now the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data[: len(data) // 2])

    def failing_fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    if failure == "write":
        monkeypatch.setattr(files.os, "write", write_half_then_full_disk)
    else:
        monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(RecordsError, match=r"metrics\.csv"):
        append_csv_row(path, COLUMNS, {"step": 2, "loss": 0.25})
    assert path.read_bytes() == before
