"""One trial: AlgoPerf's budget, evaluation and target rules around the compiled steps.

`prepare` loads the data, initialises the state and compiles the programs before the
clock starts; `TrialLoop` runs the loop. Only data selection and the update count against
the budget; evaluations are timed separately, and records and checkpoints not at all.

The host waits for the devices once per launch: a launch queues the compiled steps up to
the next thing the host must do (an evaluation, a snapshot, the budget's end, at the
last launch's pace), so the devices do not idle between steps.
"""

import dataclasses
import functools
import inspect
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
    steps_to_target: int | None = None
    time_to_target_resolution: float | None = None
    last_eval_submission_time: float = 0.0
    is_time_remaining: bool = True
    num_evals: int = 0
    last_eval_step: int = -1
    last_row: dict[str, Any] = dataclasses.field(default_factory=dict)


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


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The parameters at a point between evaluations, evaluated only if the target turns out
    to have been crossed before the next evaluation; the loss sums count from the last one."""

    global_step: int
    submission_time: float
    is_time_remaining: bool
    train_loss_sum: float
    train_loss_count: int
    params: Any


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
    steps_per_dispatch: int
    single_step: Callable
    fused_steps: Callable
    evaluate: Callable
    compile_time: float

    @property
    def steps_per_epoch(self) -> int:
        """Whole batches in the training split (an epoch's last partial batch is dropped)."""
        return self.num_train // self.batch_size

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
    steps_per_dispatch: int,
    max_steps: int | None = None,
    eval_every_steps: int | None = None,
    clock: Clock = time.perf_counter,
) -> Prepared:
    """Check the hyperparameters and the batch against the devices and data, put both on
    the devices, compile."""
    refuse_unused_hparams(workload, submission, hparams)
    mesh, batch_size, splits = checked_layout(workload, submission)
    state, step_rng = initial_state(workload, submission, hparams, rng_seed)
    state, step_rng = steps.replicate((state, step_rng), mesh)
    stream, eval_splits = device_data(workload, splits, mesh)
    num_train = len(splits.train.labels)
    steps_per_dispatch = program_length(
        steps_per_dispatch, num_train // batch_size, max_steps, eval_every_steps
    )
    programs = workload.program_key()  # a budget or target of its own compiles nothing
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
        steps_per_dispatch=steps_per_dispatch,
        single_step=single_step,
        fused_steps=fused_steps,
        evaluate=evaluate,
        compile_time=clock() - compile_start,
    )


def checked_layout(workload: Workload, submission: Submission) -> tuple[Any, int, Splits]:
    """The devices' mesh, the batch size and the splits, once the batch is known to divide
    over the devices and to fit in the training split."""
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
    return mesh, batch_size, splits


def initial_state(
    workload: Workload, submission: Submission, hparams: Any, rng_seed: int
) -> tuple[steps.TrainState, jax.Array]:
    """The train state at step 0 and the key of the steps, drawn from `rng_seed`."""
    init_rng, optimizer_rng, step_rng = jax.random.split(jax.random.key(rng_seed), 3)
    params = steps.init_params(workload.program_key())(init_rng)
    optimizer_state = submission.init_optimizer_state(workload, params, hparams, optimizer_rng)
    return steps.TrainState(jnp.int32(0), params, optimizer_state), step_rng


def refuse_unused_hparams(workload: Workload, submission: Submission, hparams: Any) -> None:
    """Refuse a hyperparameter whose value leaves the optimizer state as its default does.

    The compiled steps see the hyperparameters only through the state (`update_params`
    gets no others), so such a value trains as the default while the records name it: an
    optimizer built without `optax.inject_hyperparams`, say. Each value that differs from
    its default must change the state (a group refuses a change of its structure: its
    states are stacked). Checked on the host's CPU, on stand-in parameters of the model's
    shapes, before any data is loaded.
    """
    changed = [f for f in dataclasses.fields(hparams) if _differs_from_default(hparams, f)]
    if not changed:
        return
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        shapes = jax.eval_shape(workload.init_params, jax.random.key(0))
        params = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes)

        def state_with(values: Any) -> Any:
            return submission.init_optimizer_state(workload, params, values, jax.random.key(0))

        given = state_with(hparams)
        for f in changed:
            default = _default(f)
            try:
                baseline = state_with(dataclasses.replace(hparams, **{f.name: default}))
            except ConfigError:  # the default is refused beside the other values: no baseline
                continue
            if _same_state(given, baseline):
                raise ConfigError(_unused_message(submission, f.name, hparams))


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _differs_from_default(hparams: Any, f: dataclasses.Field) -> bool:
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        return False  # no default to compare with
    return bool(getattr(hparams, f.name) != _default(f))


def _same_state(a: Any, b: Any) -> bool:
    """The same structure, shapes, dtypes and values (a NaN equal to a NaN)."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    for x, y in zip(map(_host, jax.tree.leaves(a)), map(_host, jax.tree.leaves(b)), strict=True):
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        if not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
            return False
    return True


def _host(leaf: Any) -> np.ndarray:
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


def _unused_message(submission: Submission, name: str, hparams: Any) -> str:
    cls = type(submission)
    try:
        where = f" ({inspect.getsourcefile(cls)})"
    except TypeError:  # a class without a file
        where = ""
    return (
        f"hparams.{name}={getattr(hparams, name)!r} changes nothing in {cls.__name__}'s "
        f"optimizer state{where}, so the trial would train as with the default: "
        "hyperparameters reach the steps only as arrays in that state. Build the optimizer "
        "with optax.inject_hyperparams, and make a setting that is no number a field of the "
        "submission, not a hyperparameter (see docs/writing-a-submission.md)."
    )


def device_data(
    workload: Workload, splits: Splits, mesh: Any
) -> tuple[InputStream, dict[str, steps.EvalSplit]]:
    """The training split in its natural order and the evaluation splits, on the devices."""
    train = splits.train
    order = np.arange(len(train.labels), dtype=np.int32)
    stream = steps.replicate(InputStream(train.inputs, train.labels, order), mesh)
    eval_splits = {
        name: steps.shard_for_eval(split, workload, mesh)
        for name, split in (("validation", splits.validation), ("test", splits.test))
    }
    return stream, eval_splits


# The longest a launch runs before the host looks again: a signal and the clock wait at
# most this long, and waiting once a second costs the devices nothing measurable.
MAX_LAUNCH_SECONDS = 1.0
# At most this many snapshots between two evaluations: each costs a wait for the devices
# (about 0.4 ms on a GPU) and keeps one copy of the parameters until the next evaluation.
SNAPSHOTS_PER_EVAL_PERIOD = 16


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
    target_resolution: float | None = None,
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
        prepared,
        stop_at_target,
        max_steps,
        eval_every_steps,
        on_eval,
        checkpoints,
        clock,
        target_resolution=target_resolution,
    ).run()


class TrialLoop:
    """Train until the target, the budget or `max_steps`; evaluate on schedule and at the end.

    With `checkpoints`, save at evaluations and on the way out of an exception (a signal
    turned into one, say), and continue from the checkpoint of step `resume_from`.
    Programs never cross an epoch, a step-cadence evaluation or `max_steps`, so step
    counts and step-cadence evaluations are as one step at a time; time-based ones come
    at the end of the launch that reaches them.

    With `target_resolution` r (and a time cadence), the parameters are also kept at
    snapshots, each r/2 times the submission time after the last evaluated point; when
    an evaluation finds the target reached, the snapshots since the one before are
    evaluated in order up to the first on target. Time to target is then known to within
    r of its value; the result says how closely it was (`time_to_target_resolution`).
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
        target_resolution: float | None = None,
    ) -> None:
        self.p = prepared
        self.resume_from = resume_from
        self.workload = prepared.workload
        self.stop_at_target = stop_at_target
        self.max_steps = max_steps
        self.eval_every_steps = eval_every_steps
        self.target_resolution = target_resolution
        self.on_eval = on_eval
        self.checkpoints = checkpoints
        self.clock = clock
        self.state, self.stream = prepared.state, prepared.stream
        self.counters = Counters(global_start_time=time.time())
        self.progress = Progress(self.workload.max_allowed_runtime_sec)
        self.last_eval_end = -math.inf
        self.seconds_per_step = 0.0
        self.snapshots: list[Snapshot] = []
        self.next_snapshot_time = 0.0
        self.loss_mark = (0.0, 0)  # the train loss sums at the last row
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
                return "diverged"
            if self._evaluation_due():
                self._evaluate()
            elif self._snapshot_due():
                self._snapshot()
            self.progress.update(self.counters.global_step, self.counters.submission_time)
        return "completed"

    def _launch(self) -> np.ndarray:
        """The steps up to the next check, queued and then waited for once, charged to the
        submission; their losses. A signal waits for the launch to be charged, so that the
        trial's state and the counters that describe it change together (Python would
        handle it only once the wait returns in any case)."""
        c, num_steps = self.counters, self._launch_size()
        with interrupts_held() as held:
            step_start = self.clock()
            state, stream, losses = self._queue(c.global_step, self.state, self.stream, num_steps)
            jax.block_until_ready(state)
            step_time = self.clock() - step_start
            losses = np.concatenate([loss[0] for loss in jax.device_get(losses)])
            finite = np.isfinite(losses)
            if not finite[:-1].all():  # diverged before the launch's last step
                state, stream = self._take_back(int(np.argmin(finite)) + 1)
            self.state, self.stream = state, stream
            self._account(step_time, losses)
            if not finite.all():
                self._end_at_divergence(losses)
        if held:
            raise TrialInterrupted(held[0])
        return losses

    def _queue(
        self, step: int, state: Any, stream: InputStream, num_steps: int
    ) -> tuple[Any, InputStream, list[jax.Array]]:
        """`num_steps` steps from `step` as programs queued on the devices: the state and
        stream after them, and their losses."""
        p, losses = self.p, []
        for size in dispatches(step, num_steps, p.steps_per_epoch, p.steps_per_dispatch):
            if step % p.steps_per_epoch == 0:
                stream = p.shuffled(stream, step)
            program = p.fused_steps if size == p.steps_per_dispatch else p.single_step
            state, loss = program(state, stream, p.step_rng)
            losses.append(loss)
            step += size
        return state, stream, losses

    def _account(self, step_time: float, losses: np.ndarray) -> None:
        """A launch of `len(losses)` steps that took `step_time`, charged to the submission."""
        c = self.counters
        self.seconds_per_step = step_time / len(losses)
        c.submission_time += step_time
        c.train_loss_count += len(losses)
        c.global_step += len(losses)
        c.train_loss_sum += float(losses.sum())
        c.is_time_remaining = c.submission_time < self.workload.max_allowed_runtime_sec

    def _launch_size(self) -> int:
        c = self.counters
        return launch_size(
            c.global_step,
            self.eval_every_steps,
            self.max_steps,
            seconds_per_step=self.seconds_per_step,
            seconds_left=self.workload.max_allowed_runtime_sec - c.submission_time,
            seconds_to_check=self._seconds_to_check(),
        )

    def _seconds_to_check(self) -> float | None:
        """Until the next time-based evaluation or snapshot; None under a step cadence."""
        if self.eval_every_steps:
            return None
        seconds = self.workload.eval_period_time_sec - (self.clock() - self.last_eval_end)
        if self._snapshots_wanted():
            seconds = min(seconds, self.next_snapshot_time - self.counters.submission_time)
        return max(seconds, 0.0)

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

    def _take_back(self, num_steps: int) -> tuple[Any, InputStream]:
        """The state and stream after the launch's first `num_steps` steps, up to the step
        that diverged, not at its end: run again, off the clock, so that the last row and
        checkpoint hold the state that diverged (as a group's program, which stops the
        trial there)."""
        step = self.counters.global_step
        state, stream, _ = self._queue(step, self.state, self.stream, num_steps)
        jax.block_until_ready(state)
        return state, stream

    def _evaluation_due(self) -> bool:
        if self.eval_every_steps:
            return self.counters.global_step % self.eval_every_steps == 0
        return self.clock() - self.last_eval_end >= self.workload.eval_period_time_sec

    def _snapshots_wanted(self) -> bool:
        return bool(self.target_resolution) and not (
            self.eval_every_steps or self.counters.goal_reached
        )

    def _snapshot_due(self) -> bool:
        due = self.counters.submission_time >= self.next_snapshot_time
        return due and self._snapshots_wanted()

    def _point(self) -> Snapshot:
        c = self.counters
        return Snapshot(
            c.global_step,
            c.submission_time,
            c.is_time_remaining,
            c.train_loss_sum,
            c.train_loss_count,
            self.state.params,
        )

    def _snapshot(self) -> None:
        self.snapshots.append(self._point())
        self._schedule_snapshot()

    def _schedule_snapshot(self) -> None:
        """The next snapshot: r/2 times the submission time later (so that a launch that
        overshoots it by as much again still keeps within r), and at most
        SNAPSHOTS_PER_EVAL_PERIOD of them an evaluation period."""
        if self.target_resolution:
            now = self.counters.submission_time
            floor = self.workload.eval_period_time_sec / SNAPSHOTS_PER_EVAL_PERIOD
            self.next_snapshot_time = now + max(self.target_resolution / 2 * now, floor)

    def _evaluate(self) -> None:
        """Evaluate the current parameters, and if they are the first on target, the
        snapshots before them up to the first on target; a row each. Then a checkpoint
        if one is due."""
        c, current = self.counters, self._point()
        metrics = self._measure(current.params)
        if self.snapshots and self.workload.has_reached_goal(
            {"train.loss": self._train_loss(current), **metrics}
        ):
            self._refine()
        self._record(current, metrics)
        self.snapshots.clear()
        c.train_loss_sum, c.train_loss_count, self.loss_mark = 0.0, 0, (0.0, 0)
        if self.checkpoints is not None and self.checkpoints.due():
            self._save()
        self.last_eval_end = self.clock()
        self._schedule_snapshot()

    def _refine(self) -> None:
        """The snapshots since the last evaluation, in order, up to the first on target."""
        while self.snapshots and not self.counters.goal_reached:
            snapshot = self.snapshots.pop(0)  # a row at most once, signals or not
            self._record(snapshot, self._measure(snapshot.params))

    def _measure(self, params: Any) -> dict[str, float]:
        """Both splits' metrics; the time it takes is evaluation time."""
        eval_start = self.clock()
        metrics = {}
        for name, split in self.p.eval_splits.items():
            means = jax.device_get(self.p.evaluate(params, split))
            metrics.update({f"{name}.{metric}": float(v[0]) for metric, v in means.items()})
        self.counters.eval_time += self.clock() - eval_start
        return metrics

    def _train_loss(self, point: Snapshot) -> float:
        """The mean training loss of the steps since the last row."""
        loss_sum, count = self.loss_mark
        return (point.train_loss_sum - loss_sum) / max(point.train_loss_count - count, 1)

    def _record(self, point: Snapshot, metrics: dict[str, float]) -> None:
        """Check the target at `point`, log its row and hand it to `on_eval`."""
        c = self.counters
        metrics = {"train.loss": self._train_loss(point), **metrics}
        if not c.goal_reached and self.workload.has_reached_goal(metrics):
            c.goal_reached, c.time_to_target = True, point.submission_time
            c.steps_to_target = point.global_step
            c.time_to_target_resolution = 1 - c.last_eval_submission_time / point.submission_time
        c.last_eval_submission_time = point.submission_time
        c.wall_time = self.clock() - self.start
        c.last_row = {
            "global_step": point.global_step,
            "epoch": point.global_step / self.p.steps_per_epoch,
            "accumulated_submission_time": point.submission_time,
            "accumulated_eval_time": c.eval_time,
            "wall_time": c.wall_time,
            "global_start_time": c.global_start_time,
            "steps_per_epoch": self.p.steps_per_epoch,
            "batch_size": self.p.batch_size,
            "goal_reached": c.goal_reached,
            "is_time_remaining": point.is_time_remaining,
            **metrics,
        }
        self.loss_mark = (point.train_loss_sum, point.train_loss_count)
        c.num_evals += 1
        c.last_eval_step = point.global_step
        self.progress.clear()
        log.info(
            "step %d | submission %.2fs | eval %.2fs | %s %.4f | validation loss %.4f",
            point.global_step,
            point.submission_time,
            c.eval_time,
            self.workload.target_metric,
            metrics[self.workload.target_metric],
            metrics["validation.loss"],
        )
        self._hand_out_row()

    def _hand_out_row(self) -> None:
        """`on_eval(last_row)`; `_stop` hands it out again if a signal cut it short."""
        self.row_pending = self.on_eval is not None
        if self.row_pending:
            self.on_eval(self.counters.last_row)
            self.row_pending = False

    def _save(self) -> None:
        self.counters.wall_time = self.clock() - self.start
        self.checkpoints.save(self._own_state(), dataclasses.asdict(self.counters))

    def _own_state(self) -> steps.TrainState:
        """This trial's train state, one replica."""
        return unreplicated(self.state)

    def _stop(self, error: BaseException) -> None:
        """On the way out: a last row where a signal stopped the trial, then a checkpoint of
        the work done; further signals wait until both are written."""
        with interrupts_held() as held:
            interrupted = isinstance(error, TrialInterrupted)
            try:
                if interrupted and self.row_pending:
                    self._hand_out_row()
                if interrupted and self.counters.last_eval_step != self.counters.global_step:
                    self._evaluate()
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
            steps_to_target=c.steps_to_target,
            time_to_target_resolution=c.time_to_target_resolution,
            global_step=c.global_step,
            accumulated_submission_time=c.submission_time,
            accumulated_eval_time=c.eval_time,
            wall_time=self.clock() - self.start,
            compile_time=self.p.compile_time,
            num_evals=c.num_evals,
            rng_seed=self.p.rng_seed,
            final_metrics={k: v for k, v in c.last_row.items() if "." in k},
        )


def program_length(
    steps_per_dispatch: int,
    steps_per_epoch: int,
    max_steps: int | None,
    eval_every_steps: int | None,
) -> int:
    """`steps_per_dispatch`, cut to the longest run a program can have (an epoch,
    `max_steps`, the step cadence), so that no program is compiled in vain, and to the
    longest that compiles in seconds (`steps.max_fused_steps`)."""
    limits = [steps_per_epoch, max_steps, eval_every_steps]
    longest = min([steps_per_dispatch, *(limit for limit in limits if limit)])
    most = steps.max_fused_steps()
    if most is not None and longest > most:
        log.info(
            "steps_per_dispatch=%d: %d steps per program on the %s, where longer ones take "
            "minutes to compile.",
            steps_per_dispatch,
            most,
            jax.default_backend(),
        )
        return most
    return longest


def launch_size(
    global_step: int,
    eval_every_steps: int | None,
    max_steps: int | None,
    *,
    seconds_per_step: float,
    seconds_left: float,
    seconds_to_check: float | None,
) -> int:
    """Steps in the next launch: up to the next step-cadence evaluation and `max_steps`;
    at the last launch's pace, up to the next time-based check (the launch ends at it or
    just past it), within the budget (so a trial overruns it by at most one step, as one
    step at a time would) and within MAX_LAUNCH_SECONDS. One step until a launch has set
    the pace."""
    if seconds_per_step <= 0:
        return 1
    limits = [int(min(seconds_left, MAX_LAUNCH_SECONDS) / seconds_per_step)]
    if seconds_to_check is not None:
        limits.append(math.ceil(seconds_to_check / seconds_per_step))
    if eval_every_steps:
        limits.append(eval_every_steps - global_step % eval_every_steps)
    if max_steps is not None:
        limits.append(max_steps - global_step)
    return max(1, min(limits))


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


def unreplicated(tree: Any) -> Any:
    """The first device's copy of a replicated pytree."""
    return jax.tree.map(lambda x: x[0], tree)
