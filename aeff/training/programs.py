"""The compiled pieces of a trial, pmap-ed over every local device.

Each factory is cached on its (hashable, frozen) workload and submission, so the
trials of a sweep that differ only in hyperparameters reuse one compilation.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from aeff.spec import (
    DEVICE_AXIS,
    Batch,
    HostSplit,
    InputStream,
    OptimizerState,
    Params,
    Submission,
    Workload,
)


class TrainState(NamedTuple):
    global_step: jax.Array
    params: Params
    optimizer_state: OptimizerState
    model_state: Any  # the model's own (BatchNorm's running statistics); {} for most

    @property
    def variables(self) -> tuple[Params, Any]:
        """What an evaluation reads: the parameters and the model state."""
        return self.params, self.model_state


class EvalSplit(NamedTuple):
    """A split cut into [devices, batches, batch] with a mask over the padding."""

    batches: Batch
    mask: jax.Array


def device_mesh() -> Mesh:
    return Mesh(np.array(jax.local_devices()), (DEVICE_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """One copy of every leaf on every device, laid out as pmap expects."""
    sharding = NamedSharding(mesh, PartitionSpec(DEVICE_AXIS))
    size = mesh.devices.size

    def put(leaf: Any) -> jax.Array:
        # Host arrays are broadcast as numpy views: one copy, no device op to compile.
        xp = np if isinstance(leaf, np.ndarray) else jnp
        leaf = xp.asarray(leaf)
        return jax.device_put(xp.broadcast_to(leaf, (size, *leaf.shape)), sharding)

    return jax.tree.map(put, tree)


def reshard(tree: Any, mesh: Mesh) -> Any:
    """`tree`'s leaves [devices, ...] laid out as pmap expects (after indexing, say)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(DEVICE_AXIS)))


def shard_for_eval(split: HostSplit, workload: Workload, mesh: Mesh) -> EvalSplit:
    """`split` preprocessed on the devices, padded with masked examples so any size
    divides into the eval batches.

    Preprocessed once here: inside the evaluation program it took a third of its time.
    """
    num_devices = mesh.devices.size
    per_device_batch = -(-workload.eval_batch_size // num_devices)
    chunk = num_devices * per_device_batch
    size = len(split.labels)
    padded = -(-size // chunk) * chunk
    pad = padded - size
    mask = np.concatenate([np.ones(size, np.float32), np.zeros(pad, np.float32)])
    padding = np.zeros((pad, *split.inputs.shape[1:]), split.inputs.dtype)
    inputs = np.concatenate([split.inputs, padding])
    labels = np.concatenate([split.labels, np.zeros(pad, split.labels.dtype)])

    def layout(array: np.ndarray) -> np.ndarray:
        return array.reshape(num_devices, -1, per_device_batch, *array.shape[1:])

    sharding = NamedSharding(mesh, PartitionSpec(DEVICE_AXIS))
    inputs = preprocess(workload.program_key())(jax.device_put(layout(inputs), sharding))
    return jax.device_put(EvalSplit(Batch(inputs, layout(labels)), layout(mask)), sharding)


@functools.cache
def preprocess(workload: Workload) -> Callable[[jax.Array], jax.Array]:
    return jax.jit(workload.preprocess)


@functools.cache
def init_model(workload: Workload) -> Callable[[jax.Array], tuple[Params, Any]]:
    """The initial parameters and model state, compiled as one program: run eagerly, each
    initializer op compiled on its own."""
    return jax.jit(workload.init_model_fn)


def _step(workload: Workload, submission: Submission) -> Callable:
    """One step of data selection and update, on one device's shard."""

    def step(state: TrainState, stream: InputStream, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.global_step)
        selection_rng, update_rng = jax.random.split(rng)
        batch = submission.data_selection(
            workload,
            stream,
            state.params,
            state.optimizer_state,
            state.global_step,
            selection_rng,
        )
        batch = batch._replace(inputs=workload.preprocess(batch.inputs))
        params, optimizer_state, model_state, loss = submission.update_params(
            workload, state.params, state.optimizer_state, state.model_state, batch, update_rng
        )
        return TrainState(state.global_step + 1, params, optimizer_state, model_state), loss

    return step


def _unroll() -> bool:
    # Unrolled on a CPU, where a loop copied the whole training set into its state at
    # every launch; elsewhere that copy is cheap, and a loop compiles in constant time.
    return jax.default_backend() == "cpu"


# Unrolled steps compile in a time that grows faster than their count: MNIST's at batch
# 16 on the 2-core machine, 1 step in 1.1 s, 8 in 3.1 s, 16 in 4.3 s, 24 in 7.3 s, 32 in
# 16.5 s, 64 in 80 s, 128 in 171 s (once each, the machine shared); a whole epoch (3125,
# for steps_per_dispatch=1000000) compiled for over 240 s at 3.5 GB without a step. 16
# steps already make a launch's cost (0.5-1 ms) small beside theirs (16 x 3.5-4 ms).
MAX_UNROLLED_STEPS = 16


def max_fused_steps() -> int | None:
    """The longest fused program worth compiling: bounded where the steps are unrolled."""
    return MAX_UNROLLED_STEPS if _unroll() else None


@functools.cache
def train_steps(
    workload: Workload,
    submission: Submission,
    num_steps: int,
    size: int,
    vectorized: bool | None = None,
) -> Callable[
    [TrainState, InputStream, jax.Array, jax.Array], tuple[TrainState, jax.Array, jax.Array]
]:
    """`num_steps` steps of data selection and update for `size` trials in one dispatch,
    over their stacked states [devices, trials, ...], epoch orders [devices, trials,
    examples] and keys, sharing the training split; losses [devices, trials, num_steps].
    Everything in it is charged to the submission's time.

    Of several trials, one not `active` [trials] stays as it is, and one stops at the step
    of its first non-finite loss (that step taken, as a trial alone takes it), so that it
    cannot change after it has ended; the trials still active are returned. They are
    `vmap`-ed (`vectorized`), or one after another in the program (None: `vmap` except
    on a CPU, see `one_at_a_time`). A trial alone (`size` 1)
    pays for none of this: its steps run as they are, and the loop ends it at its first
    non-finite loss.
    """
    step = _step(workload, submission)
    if vectorized is None:
        vectorized = not one_at_a_time()

    def alone(state: TrainState, stream: InputStream, rng: jax.Array, active: jax.Array):
        state, rng = jax.tree.map(lambda x: x[0], (state, rng))
        stream = stream._replace(order=stream.order[0])
        if num_steps == 1:
            state, loss = step(state, stream, rng)
            losses = loss[None]
        else:
            state, losses = lax.scan(
                lambda s, _: step(s, stream, rng), state, length=num_steps, unroll=_unroll()
            )
        return jax.tree.map(lambda x: x[None], state), losses[None], active

    def trial(state: TrainState, stream: InputStream, rng: jax.Array, active: jax.Array):
        def masked(carry, _):
            state, alive = carry
            new, loss = step(state, stream, rng)
            state = jax.tree.map(lambda n, o: jnp.where(alive, n, o), new, state)
            return (state, alive & jnp.isfinite(loss)), loss

        (state, active), losses = lax.scan(
            masked, (state, active), length=num_steps, unroll=_unroll()
        )
        return state, losses, active

    def group(state: TrainState, stream: InputStream, rng: jax.Array, active: jax.Array):
        if vectorized:
            in_axes = (0, InputStream(None, None, 0), 0, 0)
            return jax.vmap(trial, in_axes=in_axes)(state, stream, rng, active)
        each = lambda xs: trial(xs[0], stream._replace(order=xs[1]), xs[2], xs[3])  # noqa: E731
        return lax.map(each, (state, stream.order, rng, active))

    return jax.pmap(alone if size == 1 else group, axis_name=DEVICE_AXIS)


def unstack(tree: Any, index: int) -> Any:
    """The trial at `index` of a group's stacked tree [devices, trials, ...], on every device."""
    return jax.tree.map(lambda x: x[:, index : index + 1], tree)


def one_at_a_time() -> bool:
    """A group's trials one after another in its programs, not `vmap`-ed: on a CPU, which
    computes them no faster together. There a group of 4 trained 5-13% faster one after
    another than `vmap`-ed, in each of three runs of `benchmarks/sweep_vectorized.py`;
    its evaluation took 1.06 and 1.5 times as long as the trials' own (measured once)."""
    return jax.default_backend() == "cpu"


def epoch_order(rng_seed: int, global_step: int, num_examples: int) -> np.ndarray:
    """The order of the epoch starting at `global_step`, the same for any device count.

    Drawn on the host with numpy: XLA's sort on a CPU took 30-75 ms for MNIST's
    50,000 examples, numpy takes about 1 ms; it crosses to the devices once per epoch.
    """
    rng = np.random.default_rng([rng_seed, global_step])
    return rng.permutation(num_examples).astype(np.int32)


Variables = tuple[Params, Any]  # the parameters and the model state


def _split_means(workload: Workload) -> Callable[[Variables, EvalSplit], dict[str, jax.Array]]:
    def split_means(variables: Variables, split: EvalSplit) -> dict[str, jax.Array]:
        params, model_state = variables
        per_batch = lax.map(
            lambda xs: workload.eval_sums(params, model_state, xs[0], xs[1]),
            (split.batches, split.mask),
        )
        sums = jax.tree.map(jnp.sum, per_batch)
        sums, count = lax.psum((sums, jnp.sum(split.mask)), DEVICE_AXIS)
        return {name: total / count for name, total in sums.items()}

    return split_means


@functools.cache
def evaluate(
    workload: Workload, size: int, vectorized: bool | None = None
) -> Callable[[Variables, EvalSplit], dict[str, jax.Array]]:
    """Mean metrics over a whole split of `size` trials' stacked parameters and model
    states [devices, trials, ...], each device taking its share of the batches; metrics
    [devices, trials].
    Several trials are `vmap`-ed in one program (`vectorized`), or one trial's at a time
    (None: `vmap` except on a CPU)."""
    means = _split_means(workload)
    if size == 1:
        one = lambda variables, split: jax.tree.map(  # noqa: E731
            lambda x: x[None], means(jax.tree.map(lambda x: x[0], variables), split)
        )
        return jax.pmap(one, axis_name=DEVICE_AXIS)
    if vectorized is None:
        vectorized = not one_at_a_time()
    if vectorized:
        return jax.pmap(jax.vmap(means, in_axes=(0, None)), axis_name=DEVICE_AXIS)
    alone = evaluate(workload, 1)

    def each(variables: Variables, split: EvalSplit) -> dict[str, jax.Array]:
        stacked = [alone(unstack(variables, i), split) for i in range(size)]
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *stacked)

    return each
