"""A fake clock and scripted MNIST for the trial loop's tests: the compiled code calls back
to advance the clock by STEP_SECONDS per training step and by EVAL_BATCH_SECONDS per
evaluation batch; on_eval (the records) and checkpoints advance it on the host. Every
metric of the n-th evaluation is scripted (SCRIPT), so each expected time and step follows
from the rules alone."""

import dataclasses
import functools
import math

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

    def eval_sums(self, params, model_state, batch, mask):
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

    def update_params(self, workload, params, optimizer_state, model_state, batch, rng):
        jax.debug.callback(functools.partial(CLOCK.advance, STEP_SECONDS))
        return super().update_params(workload, params, optimizer_state, model_state, batch, rng)


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


PACE = [lambda step: STEP_SECONDS]  # the seconds step n (counted from 0) takes


@dataclasses.dataclass(frozen=True)
class PacedAdam(Adam):
    """Adam whose step n takes PACE[0](n) seconds on the fake clock: steps that slow down
    or vary, as a GPU's may near the end of a budget."""

    batch_size: int = 512

    def update_params(self, workload, params, optimizer_state, model_state, batch, rng):
        def advance(step):
            CLOCK.advance(PACE[0](int(step)))

        jax.debug.callback(advance, optimizer_state.count)
        return super().update_params(workload, params, optimizer_state, model_state, batch, rng)
