"""AlgoPerf's rules of a trial as arithmetic: no devices, no clocks, no files.

What a trial has done is its `Counters`; the loop (`aeff.training.loop`) measures, and
these functions say what the measurements mean: how a launch is charged and sized, when
an evaluation or a snapshot is due, when the target was crossed and how closely that is
known, when a loss means divergence, and what a row holds. Times are seconds of the
submission's clock unless named otherwise.
"""

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

# The longest a launch runs before the host looks again: a signal and the clock wait at
# most this long, and waiting once a second costs the devices nothing measurable.
MAX_LAUNCH_SECONDS = 1.0
# At most this many snapshots between two evaluations: each costs a wait for the devices
# (about 0.4 ms on a GPU) and keeps one copy of the parameters until the next evaluation.
SNAPSHOTS_PER_EVAL_PERIOD = 16


@dataclasses.dataclass(frozen=True)
class Limits:
    """What ends a trial and when it is evaluated: the workload's budget and evaluation
    period, and the trial's settings."""

    budget: float  # max_allowed_runtime_sec of submission time
    eval_period: float  # eval_period_time_sec of wall time between evaluations
    eval_every_steps: int | None = None  # a step cadence instead of the period
    max_steps: int | None = None
    stop_at_target: bool = True
    target_resolution: float | None = None  # keep snapshots to resolve time to target


@dataclasses.dataclass
class Counters:
    """Where a trial is: all a checkpoint needs besides the train state."""

    global_start_time: float
    global_step: int = 0
    submission_time: float = 0.0
    eval_time: float = 0.0
    wall_time: float = 0.0
    train_loss_sum: float = 0.0
    train_loss_count: int = 0
    goal_reached: bool = False
    time_to_target: float | None = None
    steps_to_target: int | None = None
    time_to_target_resolution: float | None = None
    last_eval_submission_time: float = 0.0
    is_time_remaining: bool = True
    num_evals: int = 0
    last_eval_step: int = -1
    last_row: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Point:
    """A trial at one step: what a row or a snapshot says of it besides its metrics."""

    global_step: int
    submission_time: float
    is_time_remaining: bool
    train_loss_sum: float  # since the last evaluation
    train_loss_count: int


def point(c: Counters) -> Point:
    return Point(
        c.global_step, c.submission_time, c.is_time_remaining, c.train_loss_sum, c.train_loss_count
    )


def keep_going(c: Counters, limits: Limits) -> bool:
    """Budget left, target not reached (or not stopping at it), `max_steps` not reached."""
    return (
        c.is_time_remaining
        and not (c.goal_reached and limits.stop_at_target)
        and (limits.max_steps is None or c.global_step < limits.max_steps)
    )


def charge(c: Counters, seconds: float, losses: Sequence[float], budget: float) -> int | None:
    """A launch of `len(losses)` steps that took `seconds`, charged to the submission.

    A non-finite loss ends the trial at that step, as one step at a time would: the steps
    after it are taken back with their share of the launch's time. Returns that step's
    index in the launch, or None when every loss is finite."""
    first = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
    taken = len(losses) if first is None else first + 1
    c.submission_time += seconds if first is None else seconds * taken / len(losses)
    c.global_step += taken
    c.train_loss_count += taken
    c.train_loss_sum += float(sum(losses[:taken]))
    c.is_time_remaining = c.submission_time < budget
    return first


def charge_steps(c: Counters, seconds: float, num_steps: int, budget: float) -> None:
    """`num_steps` steps (or none: a submission's preparation for an evaluation) that
    took `seconds`, charged to the submission; their losses unknown (AlgoPerf's
    `update_params` reports none)."""
    c.submission_time += seconds
    c.global_step += num_steps
    c.is_time_remaining = c.submission_time < budget


def launch_size(
    global_step: int,
    limits: Limits,
    *,
    seconds_per_step: float,
    seconds_left: float,
    seconds_to_check: float | None,
) -> int:
    """Steps in the next launch: up to the next step-cadence evaluation and `max_steps`;
    at the last launch's pace, up to the next time-based check (the launch ends at it or
    just past it) and within MAX_LAUNCH_SECONDS. Near the budget's end a launch takes half
    the time left at that pace, so that one whose steps run up to twice as slow still
    ends within it, and the last launches are a step each: a trial ends within one step
    of its budget, as one step at a time would. One step until a launch has set the pace."""
    if seconds_per_step <= 0:
        return 1
    sizes = [int(min(seconds_left / 2, MAX_LAUNCH_SECONDS) / seconds_per_step)]
    if seconds_to_check is not None:
        sizes.append(math.ceil(seconds_to_check / seconds_per_step))
    if limits.eval_every_steps:
        sizes.append(limits.eval_every_steps - global_step % limits.eval_every_steps)
    if limits.max_steps is not None:
        sizes.append(limits.max_steps - global_step)
    return max(1, min(sizes))


def dispatches(global_step: int, num_steps: int, steps_per_epoch: int, fused: int) -> list[int]:
    """`num_steps` from `global_step` as programs of `fused` steps or of one, none crossing
    an epoch's end (the host draws each epoch's order)."""
    sizes: list[int] = []
    end = global_step + num_steps
    while global_step < end:
        epoch_end = (global_step // steps_per_epoch + 1) * steps_per_epoch
        in_epoch = min(end, epoch_end) - global_step
        sizes += [fused] * (in_epoch // fused) + [1] * (in_epoch % fused)
        global_step += in_epoch
    return sizes


def program_length(
    steps_per_dispatch: int, steps_per_epoch: int, limits: Limits, most: int | None
) -> int:
    """`steps_per_dispatch`, cut to the longest run a program can have (an epoch,
    `max_steps`, the step cadence), so that no program is compiled in vain, and to `most`
    (the longest that compiles in seconds, where there is one)."""
    bounds = [steps_per_epoch, limits.max_steps, limits.eval_every_steps, most]
    return min([steps_per_dispatch, *(bound for bound in bounds if bound)])


def evaluation_due(limits: Limits, global_step: int, seconds_since_eval: float) -> bool:
    if limits.eval_every_steps:
        return global_step % limits.eval_every_steps == 0
    return seconds_since_eval >= limits.eval_period


def snapshots_wanted(c: Counters, limits: Limits) -> bool:
    """Snapshots resolve the first crossing under a time cadence, until it is found."""
    return bool(limits.target_resolution) and not (limits.eval_every_steps or c.goal_reached)


def next_snapshot_time(submission_time: float, limits: Limits) -> float:
    """r/2 times the submission time later (so that a launch that overshoots it by as much
    again still keeps within r), and at most SNAPSHOTS_PER_EVAL_PERIOD an evaluation
    period."""
    floor = limits.eval_period / SNAPSHOTS_PER_EVAL_PERIOD
    return submission_time + max((limits.target_resolution or 0.0) / 2 * submission_time, floor)


def seconds_to_check(
    limits: Limits, seconds_since_eval: float, seconds_to_snapshots: Iterable[float]
) -> float | None:
    """Until the next time-based evaluation or snapshot; None under a step cadence."""
    if limits.eval_every_steps:
        return None
    return max(min([limits.eval_period - seconds_since_eval, *seconds_to_snapshots]), 0.0)


def train_loss(at: Point, mark: tuple[float, int]) -> float:
    """The mean training loss of the steps between the last row (`mark`: its loss sums)
    and `at`."""
    loss_sum, count = mark
    return (at.train_loss_sum - loss_sum) / max(at.train_loss_count - count, 1)


def counts_toward_target(submission_time: Any, budget: Any) -> Any:
    """Whether an evaluation at `submission_time` may reach the target: only one made while
    time remained (AlgoPerf's scoring), not the last one after the budget ran out. Numbers
    or arrays alike: the trial's loop, the summary and `compare` decide by this one rule."""
    return submission_time < budget


def evaluated(c: Counters, at: Point, on_target: bool) -> None:
    """An evaluation at `at`: the first on target sets the time to target, known to within
    1 - (the evaluation before) / (this one)."""
    if on_target and not c.goal_reached:
        c.goal_reached, c.steps_to_target = True, at.global_step
        c.time_to_target = at.submission_time
        c.time_to_target_resolution = 1 - c.last_eval_submission_time / at.submission_time
    c.last_eval_submission_time = at.submission_time
    c.num_evals += 1
    c.last_eval_step = at.global_step


def row(
    c: Counters,
    at: Point,
    metrics: dict[str, float],
    *,
    steps_per_epoch: int,
    batch_size: int,
) -> dict[str, Any]:
    """The row of an evaluation at `at`, after `evaluated`."""
    return {
        "global_step": at.global_step,
        "epoch": at.global_step / steps_per_epoch,
        "accumulated_submission_time": at.submission_time,
        "accumulated_eval_time": c.eval_time,
        "wall_time": c.wall_time,
        "global_start_time": c.global_start_time,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "goal_reached": c.goal_reached,
        "is_time_remaining": at.is_time_remaining,
        **metrics,
    }
