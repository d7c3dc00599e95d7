"""What the loop takes and gives back: a trial as a `Member`, its result.

A `Member` is one trial as `aeff.training.loop.Loop` takes it (its hyperparameters and
seed, and where its rows, checkpoints and ending go); `LoopTrial` is the loop's
bookkeeping of it; its `Outcome` is a `TrialResult`, or the error that ended it.
"""

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from aeff.training import rules
from aeff.training.checkpoints import TrialCheckpoints


@dataclasses.dataclass
class TrialResult:
    status: str  # "completed", or "diverged" when the loss became NaN or infinite
    goal_reached: bool
    time_to_target: float | None  # submission time at the first evaluation on target
    steps_to_target: int | None  # its step: the same on any hardware
    # 1 - (the evaluation before it) / time_to_target: the target was crossed in between
    time_to_target_resolution: float | None
    global_step: int
    accumulated_submission_time: float
    accumulated_eval_time: float
    wall_time: float
    compile_time: float  # spent before the clock started, not charged to the budget
    num_evals: int
    rng_seed: int
    final_metrics: dict[str, float]


Outcome = TrialResult | BaseException


@dataclasses.dataclass
class Member:
    """One trial as the loop takes it: its hyperparameters and seed, and where its rows,
    checkpoints and ending go."""

    hparams: Any
    rng_seed: int
    on_eval: Callable[[dict[str, Any]], None] | None = None
    on_end: Callable[[Outcome], None] | None = None
    checkpoints: TrialCheckpoints | None = None
    resume_from: int | None = None  # the step of the checkpoint to continue from
    tag: Any = None  # what its log lines are marked with (aeff.records.speaker)


class LoopTrial:
    """A member's bookkeeping in the loop."""

    def __init__(self, index: int, member: Member) -> None:
        self.index, self.slot, self.member = index, index, member
        self.counters = rules.Counters(global_start_time=time.time())
        self.snapshots: list[tuple[rules.Point, Any, int]] = []  # with (params, slot)
        self.next_snapshot_time = 0.0
        self.loss_mark = (0.0, 0)  # the train loss sums at the last row
        self.start = 0.0

    def result(self, status: str, wall_time: float, compile_time: float) -> TrialResult:
        """The trial's result as it ends `status`."""
        c = self.counters
        return TrialResult(
            status=status,
            goal_reached=c.goal_reached,
            time_to_target=c.time_to_target,
            steps_to_target=c.steps_to_target,
            time_to_target_resolution=c.time_to_target_resolution,
            global_step=c.global_step,
            accumulated_submission_time=c.submission_time,
            accumulated_eval_time=c.eval_time,
            wall_time=wall_time,
            compile_time=compile_time,
            num_evals=c.num_evals,
            rng_seed=self.member.rng_seed,
            final_metrics={k: v for k, v in c.last_row.items() if "." in k},
        )
