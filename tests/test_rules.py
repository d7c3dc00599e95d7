"""The trial loop's measurement rules (AlgoPerf): budget, target, divergence, crash-safe rows.

Trials run in-process on real MNIST under a fake clock that moves only when the test says:
the compiled code calls back to advance it by STEP_SECONDS per training step and by
EVAL_BATCH_SECONDS per evaluation batch; on_eval (the records) and checkpoints advance it
on the host. Every metric of the n-th evaluation is scripted, so each expected time and
step follows from the rules alone.
"""

import csv
import dataclasses
import errno
import functools
import io
import math
import os
import signal
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import shared_trial_scope
from jax.experimental import io_callback

from aeff.errors import RecordsError, TrialInterrupted
from aeff.logging import files
from aeff.logging.files import append_csv_row, complete_lines, cut_torn_line
from aeff.runner import SNAPSHOTS_PER_EVAL_PERIOD, run_trial
from aeff.submissions.adam import Adam, AdamHParams
from aeff.workloads.mnist import MnistWorkload

STEP_SECONDS = 0.25  # per training step, fused or not
EVAL_BATCH_SECONDS = 1.5  # per evaluation batch of either split
ON_EVAL_SECONDS = 100.0  # slow records
CHECKPOINT_SECONDS = 1000.0
EVAL_BATCH_SIZE = 5000
# Validation and test hold 10,000 examples each: two batches per split.
EVAL_SECONDS = EVAL_BATCH_SECONDS * 2 * math.ceil(10_000 / EVAL_BATCH_SIZE)
EVAL_EVERY = 4


class FakeClock:
    """`time.perf_counter` for run_trial: it moves only by `advance`."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CLOCK = FakeClock()  # module-level: compiled callbacks outlive the test that traced them
SCRIPT: list[float] = []  # every metric of the n-th evaluation (the last one from then on)
ROWS: list[dict] = []  # the rows handed to on_eval in the current trial


MEASURED = [0]  # evaluation batches so far (4 a measurement: 2 splits of 2 batches)
BY_MEASUREMENT = [False]  # SCRIPT[n] for the n-th measurement, not for the n-th row


def _scripted_value() -> np.ndarray:
    n = MEASURED[0] // 4
    MEASURED[0] += 1
    index = n if BY_MEASUREMENT[0] else len(ROWS)
    return np.float32(SCRIPT[min(index, len(SCRIPT) - 1)])


@dataclasses.dataclass(frozen=True)
class ScriptedMnist(MnistWorkload):
    """MNIST whose every evaluation batch takes EVAL_BATCH_SECONDS and whose metrics
    (losses and accuracies alike) follow SCRIPT; dyadic values stay exact through the mean."""

    eval_batch_size: int = EVAL_BATCH_SIZE

    def eval_sums(self, params, batch, mask):
        jax.debug.callback(functools.partial(CLOCK.advance, EVAL_BATCH_SECONDS))
        # io_callback: called for every batch (a pure one may be hoisted out of the loop)
        value = io_callback(_scripted_value, jax.ShapeDtypeStruct((), jnp.float32))
        total = value * jnp.sum(mask)
        return {"loss": total, "accuracy": total}


@dataclasses.dataclass(frozen=True)
class TimedAdam(Adam):
    """Adam whose every training step takes STEP_SECONDS; the loss of step `nan_step`
    (counted from 1, as global_step after it) is NaN, through a NaN batch."""

    batch_size: int = 512
    nan_step: int = 0  # 0: never

    def data_selection(self, workload, input_stream, params, optimizer_state, global_step, rng):
        batch = super().data_selection(
            workload, input_stream, params, optimizer_state, global_step, rng
        )
        if not self.nan_step:
            return batch
        poison = jnp.where(global_step + 1 == self.nan_step, jnp.nan, 1.0)
        return batch._replace(inputs=batch.inputs * poison)

    def update_params(self, workload, params, optimizer_state, batch, rng):
        jax.debug.callback(functools.partial(CLOCK.advance, STEP_SECONDS))
        return super().update_params(workload, params, optimizer_state, batch, rng)


class SlowCheckpoints:
    """A TrialCheckpoints stand-in: nothing to restore, due at every evaluation, and each
    save takes CHECKPOINT_SECONDS."""

    def __init__(self) -> None:
        self.saved_steps: list[int] = []

    def restore(self, template):
        return None

    def due(self) -> bool:
        return True

    def save(self, state, progress) -> None:
        self.saved_steps.append(progress["global_step"])
        CLOCK.advance(CHECKPOINT_SECONDS)


def trial(workload, script=(0.5,), submission=None, **kwargs):
    """run_trial under CLOCK with seed 0, an evaluation every EVAL_EVERY steps, the n-th
    evaluation reporting script[n], and records taking ON_EVAL_SECONDS; (result, rows)."""
    CLOCK.now = 0.0
    SCRIPT[:] = script
    ROWS.clear()

    def on_eval(row):
        ROWS.append(row)
        CLOCK.advance(ON_EVAL_SECONDS)

    kwargs.setdefault("eval_every_steps", EVAL_EVERY)
    result = run_trial(
        workload,
        submission or TimedAdam(),
        AdamHParams(),
        0,
        on_eval=on_eval,
        clock=CLOCK,
        **kwargs,
    )
    return result, list(ROWS)


@pytest.fixture(scope="module")
def mnist(mnist_data_dir):
    """ScriptedMnist on the test data with the given fields (equal ones share compilations)."""
    return functools.partial(ScriptedMnist, data_dir=str(mnist_data_dir))


# Budget accounting --------------------------------------------------------------------

BUDGET_STEPS = 21  # the budget is spent exactly at the end of step 21
BUDGET = BUDGET_STEPS * STEP_SECONDS


@pytest.fixture(scope=shared_trial_scope)
def budget_run(mnist):
    """A trial stopped by its budget (max_steps allows twice as many) in launches of four
    fused steps, checkpointing at each evaluation; with time.time() read before and after."""
    checkpoints = SlowCheckpoints()
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
        clock_end=CLOCK.now,
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
        submission=TimedAdam(nan_step=NAN_STEP),
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

    def eval_sums(self, params, batch, mask):
        jax.debug.callback(functools.partial(CLOCK.advance, EVAL_BATCH_SECONDS))
        return super().eval_sums(params, batch, mask)


@pytest.fixture(scope="module")
def timed_mnist(mnist_data_dir):
    return TimedMnist(
        data_dir=str(mnist_data_dir),
        eval_period_time_sec=PERIOD_STEPS * STEP_SECONDS,
        target_value=TARGET,
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
    """SIGTERM while the first snapshot's row is written: that row is handed out again, the
    other snapshots and the evaluation that found the target follow, once each."""
    _, whole = resolved[RESOLUTION]
    cut = next(i for i, row in enumerate(whole) if row["global_step"] % PERIOD_STEPS != 1)
    steps: list[int] = []

    def on_eval(row):
        steps.append(row["global_step"])
        if len(steps) == cut + 1:
            raise TrialInterrupted(signal.SIGTERM)

    CLOCK.now = 0.0
    with pytest.raises(TrialInterrupted):
        run_trial(
            timed_mnist,
            TimedAdam(),
            AdamHParams(),
            0,
            max_steps=400,
            target_resolution=RESOLUTION,
            on_eval=on_eval,
            clock=CLOCK,
        )
    expected = [row["global_step"] for row in whole]
    assert steps == expected[: cut + 1] + expected[cut:]


@pytest.mark.parametrize("first_on_target", ["snapshot", "evaluation"])
def test_the_refinement_goes_through_the_snapshots_in_order(mnist, first_on_target):
    """The evaluation at step 41 finds the target (measurement 1); the snapshots since step 1
    are measured next, in order (measurements 2, 3, ...). The first of them on target is the
    crossing; when none is, the evaluation itself is."""
    on_snapshot = first_on_target == "snapshot"
    MEASURED[0] = -2  # `prepare` runs the validation split's 2 batches once, compiling
    BY_MEASUREMENT[0] = True
    try:
        result, rows = trial(
            mnist(eval_period_time_sec=PERIOD_STEPS * STEP_SECONDS, target_value=0.75),
            [0.5, 0.75, 0.75 if on_snapshot else 0.5],
            eval_every_steps=None,
            target_resolution=RESOLUTION,
            max_steps=400,
        )
    finally:
        BY_MEASUREMENT[0] = False
    steps = [row["global_step"] for row in rows]
    assert steps[0] == 1 and steps[-1] == PERIOD_STEPS + 1 and steps == sorted(steps)
    crossing = rows[1] if on_snapshot else rows[-1]
    assert [row["goal_reached"] for row in rows].index(True) == rows.index(crossing)
    assert len(rows) == MEASURED[0] // 4  # a row for every measurement
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


# Crash-safe CSV -----------------------------------------------------------------------

COLUMNS = ["step", "loss"]


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def os_calls(monkeypatch):
    """Every os.write and os.fsync that aeff.logging.files makes, in order (all still run)."""
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
