"""A fake clock and scripted MNIST for the trial loop's tests: the compiled code calls back
to advance the clock by STEP_SECONDS per training step and by EVAL_BATCH_SECONDS per
evaluation batch; on_eval (the records) and checkpoints advance it on the host. Every
metric of the n-th evaluation is scripted, so each expected time and step follows from the
rules alone.

The clock and the script are a `Scripted` object, which the workload, the submission and
the checkpoints hold: these helpers keep no state of their own. Programs are cached per
(workload, submission), so trials holding one `Scripted` share compilations: a test module
makes one for its tests, each of which starts it afresh (`Scripted.start`)."""

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from aeff.submissions.adam import Adam, AdamHParams
from aeff.training.loop import run_trial
from aeff.workloads.mnist import MnistWorkload

STEP_SECONDS = 0.25  # per training step, fused or not
EVAL_BATCH_SECONDS = 1.5  # per evaluation batch of either split
ON_EVAL_SECONDS = 100.0  # slow records
CHECKPOINT_SECONDS = 1000.0
EVAL_BATCH_SIZE = 5000
# Validation and test hold 10,000 examples each: two batches per split.
EVAL_SECONDS = EVAL_BATCH_SECONDS * 2 * math.ceil(10_000 / EVAL_BATCH_SIZE)
EVAL_EVERY = 4


def steady_pace(step: int) -> float:
    return STEP_SECONDS


class Scripted:
    """A fake `time.perf_counter` for run_trial (it moves only by `advance`) and the script
    of the evaluations: `values[n]` is every metric of the n-th evaluation (the last one from
    then on), or of the n-th measurement with `by_measurement`; `rows` are the rows handed to
    on_eval in the current trial, `measured` the evaluation batches so far (4 a measurement:
    2 splits of 2 batches), and `pace(n)` the seconds PacedAdam's step n (from 0) takes."""

    def __init__(self) -> None:
        self.start()
        self.measured = 0
        self.by_measurement = False
        self.pace: Callable[[int], float] = steady_pace

    def start(self, values: Sequence[float] = (0.5,)) -> None:
        """A trial's start: the clock at 0, its script, no rows yet."""
        self.now = 0.0
        self.values = list(values)
        self.rows: list[dict] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def value(self) -> np.ndarray:
        """The metric of the evaluation batch being measured now."""
        n = self.measured // 4
        self.measured += 1
        index = n if self.by_measurement else len(self.rows)
        return np.float32(self.values[min(index, len(self.values) - 1)])


@dataclasses.dataclass(frozen=True)
class ScriptedMnist(MnistWorkload):
    """MNIST whose every evaluation batch takes EVAL_BATCH_SECONDS on `scripted`'s clock and
    whose metrics (losses and accuracies alike) follow its script; dyadic values stay exact
    through the mean."""

    eval_batch_size: int = EVAL_BATCH_SIZE
    scripted: Scripted | None = None

    def eval_sums(self, params, model_state, batch, mask):
        jax.debug.callback(functools.partial(self.scripted.advance, EVAL_BATCH_SECONDS))
        # io_callback: called for every batch (a pure one may be hoisted out of the loop)
        value = io_callback(self.scripted.value, jax.ShapeDtypeStruct((), jnp.float32))
        total = value * jnp.sum(mask)
        return {"loss": total, "accuracy": total}


@dataclasses.dataclass(frozen=True)
class TimedAdam(Adam):
    """Adam whose every training step takes STEP_SECONDS on `scripted`'s clock; the loss of
    step `nan_step` (counted from 1, as global_step after it) is NaN, through a NaN batch."""

    batch_size: int = 512
    nan_step: int = 0  # 0: never
    scripted: Scripted | None = None

    def data_selection(self, workload, input_stream, params, optimizer_state, global_step, rng):
        batch = super().data_selection(
            workload, input_stream, params, optimizer_state, global_step, rng
        )
        if not self.nan_step:
            return batch
        poison = jnp.where(global_step + 1 == self.nan_step, jnp.nan, 1.0)
        return batch._replace(inputs=batch.inputs * poison)

    def update_params(self, workload, params, optimizer_state, model_state, batch, rng):
        jax.debug.callback(functools.partial(self.scripted.advance, STEP_SECONDS))
        return super().update_params(workload, params, optimizer_state, model_state, batch, rng)


class SlowCheckpoints:
    """A TrialCheckpoints stand-in: nothing to restore, due at every evaluation, and each
    save takes CHECKPOINT_SECONDS on `clock`."""

    def __init__(self, clock: Scripted) -> None:
        self.clock = clock
        self.saved_steps: list[int] = []

    def restore(self, template):
        return None

    def due(self) -> bool:
        return True

    def save(self, state, progress) -> None:
        self.saved_steps.append(progress["global_step"])
        self.clock.advance(CHECKPOINT_SECONDS)


def trial(workload, script=(0.5,), submission=None, **kwargs):
    """run_trial under the workload's clock with seed 0, an evaluation every EVAL_EVERY
    steps, the n-th evaluation reporting script[n], and records taking ON_EVAL_SECONDS;
    (result, rows)."""
    scripted = workload.scripted
    scripted.start(script)

    def on_eval(row):
        scripted.rows.append(row)
        scripted.advance(ON_EVAL_SECONDS)

    kwargs.setdefault("eval_every_steps", EVAL_EVERY)
    result = run_trial(
        workload,
        submission or TimedAdam(scripted=scripted),
        AdamHParams(),
        0,
        on_eval=on_eval,
        clock=scripted,
        **kwargs,
    )
    return result, list(scripted.rows)


@dataclasses.dataclass(frozen=True)
class PacedAdam(Adam):
    """Adam whose step n takes `scripted.pace(n)` seconds on its clock: steps that slow down
    or vary, as a GPU's may near the end of a budget."""

    batch_size: int = 512
    scripted: Scripted | None = None

    def update_params(self, workload, params, optimizer_state, model_state, batch, rng):
        def advance(step):
            self.scripted.advance(self.scripted.pace(int(step)))

        jax.debug.callback(advance, optimizer_state.count)
        return super().update_params(workload, params, optimizer_state, model_state, batch, rng)
