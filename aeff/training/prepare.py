"""Trials ready to train: their data and states on the devices, their programs compiled.

`prepare` does for K >= 1 trials of one workload and submission what must happen before
the clock starts: the batch checked against the devices and data, each trial's state from
its seed and hyperparameters (stacked [devices, trials, ...]), the programs for K trials
compiled. `refuse_unused_hparams` runs first, on the host, before any data is loaded.
"""

import dataclasses
import functools
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aeff.errors import ConfigError
from aeff.spec import InputStream, Splits, Submission, Workload
from aeff.training import programs, rules

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclasses.dataclass
class Prepared:
    """K trials ready to train: stacked states, keys and epoch orders on the devices."""

    workload: Workload
    submission: Submission
    rng_seeds: list[int]
    mesh: Any
    state: programs.TrainState
    stream: InputStream  # the training split, and each trial's order [devices, K, examples]
    step_rng: jax.Array
    eval_splits: dict[str, programs.EvalSplit]
    batch_size: int
    num_train: int
    steps_per_dispatch: int
    compile_time: float

    @property
    def steps_per_epoch(self) -> int:
        """Whole batches in the training split (an epoch's last partial batch is dropped)."""
        return self.num_train // self.batch_size

    @property
    def size(self) -> int:
        return len(self.rng_seeds)

    def programs(self, size: int | None = None) -> tuple[Callable, Callable, Callable]:
        """The one-step, fused and evaluation programs for `size` trials (cached)."""
        key, size = self.workload.program_key(), size or self.size
        return (
            programs.train_steps(key, self.submission, 1, size),
            programs.train_steps(key, self.submission, self.steps_per_dispatch, size),
            programs.evaluate(key, size),
        )

    def shuffled(self, stream: InputStream, seeds: Sequence[int], epoch_start: int) -> Any:
        """Each trial's order of the epoch starting at `epoch_start`, as it has alone."""
        orders = np.stack([programs.epoch_order(s, epoch_start, self.num_train) for s in seeds])
        return stream._replace(order=programs.replicate(orders, self.mesh))


@functools.cache
def load_splits(workload: Workload) -> Splits:
    """Once per process and workload: the trials of a sweep share the host arrays."""
    return workload.load_splits()


def prepare(
    workload: Workload,
    submission: Submission,
    hparams: Sequence[Any],
    rng_seeds: Sequence[int],
    limits: rules.Limits,
    *,
    steps_per_dispatch: int,
    clock: Clock = time.perf_counter,
) -> Prepared:
    """Check each trial's hyperparameters and the batch against the devices and data, put
    both on the devices, compile the programs for these trials."""
    for values in hparams:
        refuse_unused_hparams(workload, submission, values)
    mesh, batch_size, splits = checked_layout(workload, submission)
    pairs = zip(hparams, rng_seeds, strict=True)
    initial = [initial_state(workload, submission, values, seed) for values, seed in pairs]
    if len({jax.tree.structure(state) for state, _ in initial}) > 1:
        raise ConfigError(
            f"{type(submission).__name__}'s optimizer state differs in structure between "
            "these hyperparameters, so they cannot share one program: run this sweep with "
            "another launcher (the default: drop hydra/launcher=vectorized)."
        )
    state, step_rng = jax.tree.map(lambda *xs: jnp.stack(xs), *initial)
    num_train = len(splits.train.labels)
    prepared = Prepared(
        workload=workload,
        submission=submission,
        rng_seeds=list(rng_seeds),
        mesh=mesh,
        state=programs.replicate(state, mesh),
        stream=programs.replicate(_natural_order(splits, len(rng_seeds)), mesh),
        step_rng=programs.replicate(step_rng, mesh),
        eval_splits={
            name: programs.shard_for_eval(split, workload, mesh)
            for name, split in workload.evaluated_splits(splits).items()
        },
        batch_size=batch_size,
        num_train=num_train,
        steps_per_dispatch=_program_length(steps_per_dispatch, num_train // batch_size, limits),
        compile_time=0.0,
    )
    log.info(  # on a CPU, 5-25 s without a warm compilation cache, and no other sign of life
        "Compiling the programs of %d trial%s before the clock starts.",
        len(rng_seeds),
        "" if len(rng_seeds) == 1 else "s",
    )
    start = clock()
    jax.block_until_ready(warm_up(prepared, prepared.state, prepared.stream, prepared.step_rng))
    prepared.compile_time = clock() - start
    return prepared


def _program_length(steps_per_dispatch: int, steps_per_epoch: int, limits: rules.Limits) -> int:
    most = programs.max_fused_steps()
    length = rules.program_length(steps_per_dispatch, steps_per_epoch, limits, most)
    if length == most and most < steps_per_dispatch:
        log.info(
            "steps_per_dispatch=%d: %d steps per program on the %s, where longer ones take "
            "minutes to compile.",
            steps_per_dispatch,
            most,
            jax.default_backend(),
        )
    return length


def _natural_order(splits: Splits, size: int) -> InputStream:
    """The training split in its natural order for each of `size` trials (the loop draws
    each epoch's order as it starts)."""
    train = splits.train
    order = np.broadcast_to(np.arange(len(train.labels), dtype=np.int32), (size, len(train.labels)))
    return InputStream(train.inputs, train.labels, order)


def warm_up(p: Prepared, state: Any, stream: InputStream, step_rng: Any) -> Any:
    """Compile (or load) the programs for `state`'s trials: each run once with every trial
    masked (a trial alone's results are dropped), so nothing changes."""
    size = stream.order.shape[1]
    single, fused, evaluate = p.programs(size)
    masked = programs.replicate(np.zeros(size, bool), p.mesh)
    first_split = next(iter(p.eval_splits.values()))  # the evaluation compiled for its shapes
    return (
        single(state, stream, step_rng, masked),
        fused(state, stream, step_rng, masked),
        evaluate(state.variables, first_split),
    )


def checked_layout(workload: Workload, submission: Submission) -> tuple[Any, int, Splits]:
    """The devices' mesh, the batch size and the splits, once the batch is known to divide
    over the devices and to fit in the training split."""
    mesh = programs.device_mesh()
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
) -> tuple[programs.TrainState, jax.Array]:
    """The train state at step 0 and the key of the steps, drawn from `rng_seed`."""
    init_rng, optimizer_rng, step_rng = jax.random.split(jax.random.key(rng_seed), 3)
    params, model_state = programs.init_model(workload.program_key())(init_rng)
    optimizer_state = submission.init_optimizer_state(workload, params, hparams, optimizer_rng)
    return programs.TrainState(jnp.int32(0), params, optimizer_state, model_state), step_rng


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
