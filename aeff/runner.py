"""One trial: AlgoPerf's budget, evaluation and target rules around the compiled steps.

`prepare` loads the data, initialises the state and compiles the programs before the
clock starts; `TrialLoop` runs the loop. Only data selection and the update count against
the budget; evaluations are timed separately, and records and checkpoints not at all.
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
from aeff.errors import ConfigError, TrialInterrupted
from aeff.interrupts import interrupts_held, raise_pending
from aeff.progress import Progress
from aeff.spec import InputStream, Splits, Submission, Workload

log = logging.getLogger(__name__)

EvalRow = dict[str, Any]
Clock = Callable[[], float]


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


@dataclasses.dataclass
class Prepared:
    """A trial ready to train: data and state on the devices, programs compiled."""

    workload: Workload
    rng_seed: int
    mesh: Any
    state: steps.TrainState
    stream: InputStream
    step_rng: jax.Array
    eval_splits: dict[str, steps.EvalSplit]
    batch_size: int
    num_train: int
    steps_per_epoch: int
    steps_per_dispatch: int
    single_step: Callable
    fused_steps: Callable
    evaluate: Callable
    compile_time: float

    def shuffled(self, stream: InputStream, epoch_start: int) -> InputStream:
        order = steps.epoch_order(self.rng_seed, epoch_start, self.num_train)
        return stream._replace(order=steps.replicate(order, self.mesh))


@functools.cache
def load_splits(workload: Workload) -> Splits:
    """Once per process and workload: the trials of a sweep share the host arrays."""
    return workload.load_splits()


def prepare(
    workload: Workload,
    submission: Submission,
    hparams: Any,
    rng_seed: int,
    *,
    steps_per_dispatch: int = 8,
    max_steps: int | None = None,
    eval_every_steps: int | None = None,
    clock: Clock = time.perf_counter,
) -> Prepared:
    """Check the batch against the devices and data, put both on the devices, compile."""
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

    programs = workload.program_key()  # a budget or target of its own compiles nothing
    init_rng, optimizer_rng, step_rng = jax.random.split(jax.random.key(rng_seed), 3)
    params = steps.init_params(programs)(init_rng)
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
    single_step = steps.train_steps(programs, submission, 1)
    fused_steps = steps.train_steps(programs, submission, steps_per_dispatch)
    evaluate = steps.evaluate(programs)
    compile_start = clock()
    jax.block_until_ready(
        (
            single_step(state, stream, step_rng),
            fused_steps(state, stream, step_rng),
            evaluate(state.params, eval_splits["validation"]),
        )
    )
    return Prepared(
        workload=workload,
        rng_seed=rng_seed,
        mesh=mesh,
        state=state,
        stream=stream,
        step_rng=step_rng,
        eval_splits=eval_splits,
        batch_size=batch_size,
        num_train=num_train,
        steps_per_epoch=steps_per_epoch,
        steps_per_dispatch=steps_per_dispatch,
        single_step=single_step,
        fused_steps=fused_steps,
        evaluate=evaluate,
        compile_time=clock() - compile_start,
    )


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
    clock: Clock = time.perf_counter,
) -> TrialResult:
    """`prepare`, then `TrialLoop.run`: the whole trial in one call (tests, benchmarks)."""
    prepared = prepare(
        workload,
        submission,
        hparams,
        rng_seed,
        steps_per_dispatch=steps_per_dispatch,
        max_steps=max_steps,
        eval_every_steps=eval_every_steps,
        clock=clock,
    )
    return TrialLoop(
        prepared, stop_at_target, max_steps, eval_every_steps, on_eval, checkpoints, clock
    ).run()


class TrialLoop:
    """Train until the target, the budget or `max_steps`; evaluate on schedule and at the end.

    With `checkpoints`, save at evaluations and on the way out of an exception (a signal
    turned into one, say), and continue from the checkpoint of step `resume_from`. A
    launch of several steps never crosses an epoch, a step-cadence evaluation or
    `max_steps`, so step counts and step-cadence evaluations are as one step at a time;
    time-cadence evaluations wait for the launch to end.
    """

    def __init__(
        self,
        prepared: Prepared,
        stop_at_target: bool = True,
        max_steps: int | None = None,
        eval_every_steps: int | None = None,
        on_eval: Callable[[EvalRow], None] | None = None,
        checkpoints: TrialCheckpoints | None = None,
        clock: Clock = time.perf_counter,
        resume_from: int | None = None,
    ) -> None:
        self.p = prepared
        self.resume_from = resume_from
        self.workload = prepared.workload
        self.stop_at_target = stop_at_target
        self.max_steps = max_steps
        self.eval_every_steps = eval_every_steps
        self.on_eval = on_eval
        self.checkpoints = checkpoints
        self.clock = clock
        self.state, self.stream = prepared.state, prepared.stream
        self.counters = Counters(global_start_time=time.time())
        self.progress = Progress(self.workload.max_allowed_runtime_sec)
        self.last_eval_end = -math.inf
        self.seconds_per_step = 0.0
        self.row_pending = False

    def run(self) -> TrialResult:
        self._restore()
        self.start = self.clock() - self.counters.wall_time
        try:
            status = self._train()
            if self.counters.last_eval_step != self.counters.global_step:
                self._evaluate()  # the final evaluation
        except BaseException as error:
            self._stop(error)
            raise
        finally:
            self.progress.clear()
        return self._result(status)

    def _restore(self) -> None:
        """Continue from the checkpoint of step `resume_from`, if one is given."""
        if self.resume_from is None:
            return
        restored = self.checkpoints.restore(unreplicated(self.state), self.resume_from)
        self.state = steps.replicate(restored[0], self.p.mesh)
        self.counters = Counters(**restored[1])
        log.info("Resumed from the checkpoint at step %d.", self.counters.global_step)
        step = self.counters.global_step
        self.stream = self.p.shuffled(self.stream, step - step % self.p.steps_per_epoch)

    def _keep_going(self) -> bool:
        c = self.counters
        return (
            c.is_time_remaining
            and not (c.goal_reached and self.stop_at_target)
            and (self.max_steps is None or c.global_step < self.max_steps)
        )

    def _train(self) -> str:
        while self._keep_going():
            raise_pending()
            losses = self._launch()
            if not np.isfinite(losses).all():
                self._end_at_divergence(losses)
                return "diverged"
            if self._evaluation_due():
                self._evaluate()
            self.progress.update(self.counters.global_step, self.counters.submission_time)
        return "completed"

    def _launch(self) -> np.ndarray:
        """One launch of training steps, charged to the submission; their losses."""
        c, p = self.counters, self.p
        num_steps = dispatch_size(
            p.steps_per_dispatch,
            c.global_step,
            p.steps_per_epoch,
            self.eval_every_steps,
            self.max_steps,
            seconds_left=self.workload.max_allowed_runtime_sec - c.submission_time,
            seconds_per_step=self.seconds_per_step,
        )
        step_start = self.clock()
        if c.global_step % p.steps_per_epoch == 0:
            self.stream = p.shuffled(self.stream, c.global_step)
        program = p.fused_steps if num_steps == p.steps_per_dispatch else p.single_step
        new_state, losses = program(self.state, self.stream, p.step_rng)
        jax.block_until_ready(new_state)
        step_time = self.clock() - step_start
        self.seconds_per_step = step_time / num_steps
        c.submission_time += step_time
        self.state, c.global_step = new_state, c.global_step + num_steps
        losses = np.asarray(losses)[0]
        c.train_loss_sum += float(losses.sum())
        c.train_loss_count += num_steps
        c.is_time_remaining = c.submission_time < self.workload.max_allowed_runtime_sec
        return losses

    def _end_at_divergence(self, losses: np.ndarray) -> None:
        """End the trial at the launch's first non-finite loss, as one step at a time would:
        the steps after it are taken back, with their share of the launch's time."""
        c = self.counters
        first = int(np.argmin(np.isfinite(losses)))
        extra = len(losses) - first - 1
        c.global_step -= extra
        c.submission_time -= extra * self.seconds_per_step
        c.train_loss_count -= extra
        c.is_time_remaining = c.submission_time < self.workload.max_allowed_runtime_sec
        log.warning("Diverged: training loss %s at step %d.", losses[first], c.global_step)

    def _evaluation_due(self) -> bool:
        if self.eval_every_steps:
            return self.counters.global_step % self.eval_every_steps == 0
        return self.clock() - self.last_eval_end >= self.workload.eval_period_time_sec

    def _evaluate(self) -> None:
        """Evaluate both splits, check the target, log a row and hand it to `on_eval`."""
        c = self.counters
        eval_start = self.clock()
        metrics = {"train.loss": c.train_loss_sum / max(c.train_loss_count, 1)}
        for name, split in self.p.eval_splits.items():
            means = jax.device_get(self.p.evaluate(self.state.params, split))
            metrics.update({f"{name}.{metric}": float(v[0]) for metric, v in means.items()})
        c.eval_time += self.clock() - eval_start
        if not c.goal_reached and self.workload.has_reached_goal(metrics):
            c.goal_reached, c.time_to_target = True, c.submission_time
        c.wall_time = self.clock() - self.start
        c.last_row = {
            "global_step": c.global_step,
            "epoch": c.global_step / self.p.steps_per_epoch,
            "accumulated_submission_time": c.submission_time,
            "accumulated_eval_time": c.eval_time,
            "wall_time": c.wall_time,
            "global_start_time": c.global_start_time,
            "steps_per_epoch": self.p.steps_per_epoch,
            "batch_size": self.p.batch_size,
            "goal_reached": c.goal_reached,
            "is_time_remaining": c.is_time_remaining,
            **metrics,
        }
        c.num_evals += 1
        c.last_eval_step = c.global_step
        c.train_loss_sum, c.train_loss_count = 0.0, 0
        self.progress.clear()
        log.info(
            "step %d | submission %.2fs | eval %.2fs | %s %.4f | validation loss %.4f",
            c.global_step,
            c.submission_time,
            c.eval_time,
            self.workload.target_metric,
            metrics[self.workload.target_metric],
            metrics["validation.loss"],
        )
        self._hand_out_row()
        if self.checkpoints is not None and self.checkpoints.due():
            self._save()
        self.last_eval_end = self.clock()

    def _hand_out_row(self) -> None:
        """`on_eval(last_row)`; `_stop` hands it out again if a signal cut it short."""
        self.row_pending = self.on_eval is not None
        if self.row_pending:
            self.on_eval(self.counters.last_row)
            self.row_pending = False

    def _save(self) -> None:
        self.counters.wall_time = self.clock() - self.start
        self.checkpoints.save(unreplicated(self.state), dataclasses.asdict(self.counters))

    def _stop(self, error: BaseException) -> None:
        """On the way out: a last row where a signal stopped the trial, then a checkpoint of
        the work done; further signals wait until both are written."""
        self.counters.global_step = int(np.asarray(self.state.global_step)[0])
        with interrupts_held() as held:
            interrupted = isinstance(error, TrialInterrupted)
            try:
                if interrupted and self.counters.last_eval_step != self.counters.global_step:
                    self._evaluate()
                elif interrupted and self.row_pending:
                    self._hand_out_row()
            except Exception as late:
                log.warning("No last row on the way out: %s", late)
            if self.checkpoints is not None:
                try:
                    self._save()
                    if interrupted:
                        error.checkpoint_step = self.counters.global_step
                except Exception as late:  # a full disk, say: report the first error
                    log.warning("No checkpoint on the way out: %s", late)
        if held:
            log.warning("Signal received while saving; the checkpoint was finished first.")

    def _result(self, status: str) -> TrialResult:
        c = self.counters
        return TrialResult(
            status=status,
            goal_reached=c.goal_reached,
            time_to_target=c.time_to_target,
            global_step=c.global_step,
            accumulated_submission_time=c.submission_time,
            accumulated_eval_time=c.eval_time,
            wall_time=self.clock() - self.start,
            compile_time=self.p.compile_time,
            num_evals=c.num_evals,
            rng_seed=self.p.rng_seed,
            final_metrics={k: v for k, v in c.last_row.items() if "." in k},
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
    pace (the first dispatch is one step), so a trial overruns its budget by at most
    one step, as unfused.
    """
    until = [steps_per_epoch - global_step % steps_per_epoch]
    if eval_every_steps:
        until.append(eval_every_steps - global_step % eval_every_steps)
    if max_steps is not None:
        until.append(max_steps - global_step)
    fits = min(until) >= steps_per_dispatch
    # Until one launch has set the pace (seconds_per_step 0), steps go one at a time.
    in_budget = 0 < steps_per_dispatch * seconds_per_step <= seconds_left
    return steps_per_dispatch if fits and in_budget else 1


def unreplicated(tree: Any) -> Any:
    """The first device's copy of a replicated pytree."""
    return jax.tree.map(lambda x: x[0], tree)
