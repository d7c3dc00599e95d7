"""One trial: AlgoPerf's budget, evaluation and target rules around the compiled steps.

Only data selection and the update count against the budget; compilation happens
before the clock starts, and evaluations are timed separately.
"""

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aeff import steps
from aeff.checkpoints import TrialCheckpoints
from aeff.config import ConfigError
from aeff.interrupts import TrialInterrupted
from aeff.progress import Progress
from aeff.spec import InputStream, Splits, Submission, Workload

log = logging.getLogger(__name__)

EvalRow = dict[str, Any]


@dataclasses.dataclass
class Counters:
    """Where the loop is: all a checkpoint needs besides the train state."""

    global_start_time: float
    global_step: int = 0
    submission_time: float = 0.0
    eval_time: float = 0.0
    wall_time: float = 0.0
    train_loss_sum: float = 0.0
    train_loss_count: int = 0
    goal_reached: bool = False
    time_to_target: float | None = None
    is_time_remaining: bool = True
    num_evals: int = 0
    last_eval_step: int = -1
    last_row: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrialResult:
    status: str  # "completed", or "diverged" when the loss became NaN or infinite
    goal_reached: bool
    time_to_target: float | None  # submission time at the first evaluation on target
    global_step: int
    accumulated_submission_time: float
    accumulated_eval_time: float
    wall_time: float
    compile_time: float  # spent before the clock started, not charged to the budget
    num_evals: int
    rng_seed: int
    final_metrics: dict[str, float]


@functools.cache
def load_splits(workload: Workload) -> Splits:
    """Once per process and workload: the trials of a sweep share the host arrays."""
    return workload.load_splits()


def run_trial(
    workload: Workload,
    submission: Submission,
    hparams: Any,
    rng_seed: int,
    *,
    stop_at_target: bool = True,
    max_steps: int | None = None,
    eval_every_steps: int | None = None,
    steps_per_dispatch: int = 8,
    on_eval: Callable[[EvalRow], None] | None = None,
    checkpoints: TrialCheckpoints | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TrialResult:
    """Train until the target, the budget or `max_steps`; evaluate on schedule and at the end.

    With `checkpoints`, continue from the latest one, save at evaluations and on the
    way out of an exception (a SIGTERM turned into one, say). `steps_per_dispatch`
    fuses that many steps per launch; a launch never crosses an epoch, a step-cadence
    evaluation or `max_steps`, so step counts and step-cadence evaluations are as one
    step at a time; time-cadence evaluations wait for the launch to end.
    """
    mesh = steps.device_mesh()
    num_devices = mesh.devices.size
    batch_size = submission.get_batch_size(workload.name)
    if batch_size % num_devices:
        raise ConfigError(
            f"batch_size={batch_size} does not divide over the {num_devices} local devices: "
            f"use a multiple of {num_devices}."
        )
    splits = load_splits(workload)
    num_train = len(splits.train.labels)
    if batch_size > num_train:
        raise ConfigError(f"batch_size={batch_size} exceeds the {num_train} training examples.")
    steps_per_epoch = num_train // batch_size

    init_rng, optimizer_rng, step_rng = jax.random.split(jax.random.key(rng_seed), 3)
    params = steps.init_params(workload)(init_rng)
    optimizer_state = submission.init_optimizer_state(workload, params, hparams, optimizer_rng)
    state = steps.replicate(steps.TrainState(jnp.int32(0), params, optimizer_state), mesh)
    stream = steps.replicate(
        InputStream(splits.train.inputs, splits.train.labels, np.arange(num_train, dtype=np.int32)),
        mesh,
    )
    step_rng = steps.replicate(step_rng, mesh)
    eval_splits = {
        name: steps.shard_for_eval(split, workload, mesh)
        for name, split in (("validation", splits.validation), ("test", splits.test))
    }
    # No longer than one launch can ever be, so no program is compiled in vain.
    steps_per_dispatch = min(
        steps_per_dispatch,
        steps_per_epoch,
        max_steps or steps_per_epoch,
        eval_every_steps or steps_per_epoch,
    )
    single_step = steps.train_steps(workload, submission, 1)
    fused_steps = steps.train_steps(workload, submission, steps_per_dispatch)
    evaluate = steps.evaluate(workload)

    def shuffled(stream: InputStream, epoch_start: int) -> InputStream:
        order = steps.epoch_order(rng_seed, epoch_start, num_train)
        return stream._replace(order=steps.replicate(order, mesh))

    compile_start = clock()
    jax.block_until_ready(
        (
            single_step(state, stream, step_rng),
            fused_steps(state, stream, step_rng),
            evaluate(state.params, eval_splits["validation"]),
        )
    )
    compile_time = clock() - compile_start

    counters = Counters(global_start_time=time.time())
    if checkpoints is not None and (restored := checkpoints.restore(unreplicated(state))):
        state = steps.replicate(restored[0], mesh)
        counters = Counters(**restored[1])
        log.info("Resumed from the checkpoint at step %d.", counters.global_step)
        epoch_start = counters.global_step - counters.global_step % steps_per_epoch
        stream = shuffled(stream, epoch_start)
    start = clock() - counters.wall_time
    progress = Progress(workload.max_allowed_runtime_sec)

    def run_evaluation() -> None:
        nonlocal last_eval_end
        eval_start = clock()
        metrics = {"train.loss": counters.train_loss_sum / max(counters.train_loss_count, 1)}
        for name, split in eval_splits.items():
            means = jax.device_get(evaluate(state.params, split))
            metrics.update({f"{name}.{metric}": float(v[0]) for metric, v in means.items()})
        counters.eval_time += clock() - eval_start
        if not counters.goal_reached and workload.has_reached_goal(metrics):
            counters.goal_reached, counters.time_to_target = True, counters.submission_time
        counters.wall_time = clock() - start
        counters.last_row = {
            "global_step": counters.global_step,
            "epoch": counters.global_step / steps_per_epoch,
            "accumulated_submission_time": counters.submission_time,
            "accumulated_eval_time": counters.eval_time,
            "wall_time": counters.wall_time,
            "global_start_time": counters.global_start_time,
            "steps_per_epoch": steps_per_epoch,
            "batch_size": batch_size,
            "goal_reached": counters.goal_reached,
            "is_time_remaining": counters.is_time_remaining,
            **metrics,
        }
        counters.num_evals += 1
        progress.clear()
        log.info(
            "step %d | submission %.2fs | eval %.2fs | %s %.4f | validation loss %.4f",
            counters.global_step,
            counters.submission_time,
            counters.eval_time,
            workload.target_metric,
            metrics[workload.target_metric],
            metrics["validation.loss"],
        )
        if on_eval is not None:
            on_eval(counters.last_row)
        counters.train_loss_sum, counters.train_loss_count = 0.0, 0
        counters.last_eval_step = counters.global_step
        if checkpoints is not None and checkpoints.due():
            checkpoints.save(unreplicated(state), dataclasses.asdict(counters))
        last_eval_end = clock()

    status, last_eval_end, seconds_per_step = "completed", -math.inf, 0.0
    try:
        while (
            counters.is_time_remaining
            and not (counters.goal_reached and stop_at_target)
            and (max_steps is None or counters.global_step < max_steps)
        ):
            num_steps = dispatch_size(
                steps_per_dispatch,
                counters.global_step,
                steps_per_epoch,
                eval_every_steps,
                max_steps,
                seconds_left=workload.max_allowed_runtime_sec - counters.submission_time,
                seconds_per_step=seconds_per_step,
            )
            step_start = clock()
            if counters.global_step % steps_per_epoch == 0:
                stream = shuffled(stream, counters.global_step)
            program = fused_steps if num_steps == steps_per_dispatch else single_step
            new_state, losses = program(state, stream, step_rng)
            jax.block_until_ready(new_state)
            step_time = clock() - step_start
            seconds_per_step = step_time / num_steps
            counters.submission_time += step_time
            state, counters.global_step = new_state, counters.global_step + num_steps
            losses = np.asarray(losses)[0]
            counters.train_loss_sum += float(losses.sum())
            counters.train_loss_count += num_steps
            counters.is_time_remaining = counters.submission_time < workload.max_allowed_runtime_sec
            if not np.isfinite(losses).all():
                status = "diverged"
                first = int(np.argmin(np.isfinite(losses)))
                step = counters.global_step - num_steps + first + 1
                log.warning("Diverged: training loss %s at step %d.", losses[first], step)
                break
            if (
                counters.global_step % eval_every_steps == 0
                if eval_every_steps
                else clock() - last_eval_end >= workload.eval_period_time_sec
            ):
                run_evaluation()
            progress.update(counters.global_step, counters.submission_time)
    except BaseException as error:
        progress.clear()
        counters.global_step = int(np.asarray(state.global_step)[0])
        if isinstance(error, TrialInterrupted) and counters.last_eval_step != counters.global_step:
            try:  # the last row: where the trial stood when it was stopped
                run_evaluation()
            except Exception as late:
                log.warning("No last evaluation on the way out: %s", late)
        if checkpoints is not None:  # keep the work done so far
            counters.wall_time = clock() - start
            try:
                checkpoints.save(unreplicated(state), dataclasses.asdict(counters))
            except Exception as late:  # a full disk, say: report the first error, not this
                log.warning("No checkpoint on the way out: %s", late)
        raise

    if counters.last_eval_step != counters.global_step:
        run_evaluation()
    progress.clear()
    return TrialResult(
        status=status,
        goal_reached=counters.goal_reached,
        time_to_target=counters.time_to_target,
        global_step=counters.global_step,
        accumulated_submission_time=counters.submission_time,
        accumulated_eval_time=counters.eval_time,
        wall_time=clock() - start,
        compile_time=compile_time,
        num_evals=counters.num_evals,
        rng_seed=rng_seed,
        final_metrics={k: v for k, v in counters.last_row.items() if "." in k},
    )


def dispatch_size(
    steps_per_dispatch: int,
    global_step: int,
    steps_per_epoch: int,
    eval_every_steps: int | None,
    max_steps: int | None,
    seconds_left: float,
    seconds_per_step: float,
) -> int:
    """`steps_per_dispatch`, or 1 where a fused dispatch would cross a boundary.

    The boundaries: the epoch's end (the next epoch is reshuffled on the host), the
    next step-cadence evaluation, `max_steps`, and the budget at the last dispatch's
    pace, so a trial overruns its budget by at most one step, as unfused.
    """
    until = [steps_per_epoch - global_step % steps_per_epoch]
    if eval_every_steps:
        until.append(eval_every_steps - global_step % eval_every_steps)
    if max_steps is not None:
        until.append(max_steps - global_step)
    fits = min(until) >= steps_per_dispatch
    in_budget = seconds_left >= steps_per_dispatch * seconds_per_step
    return steps_per_dispatch if fits and in_budget else 1


def unreplicated(tree: Any) -> Any:
    """The first device's copy of a replicated pytree."""
    return jax.tree.map(lambda x: x[0], tree)
