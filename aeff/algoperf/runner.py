"""An AlgoPerf submission trained under aeff's rules, as AlgoPerf's runner drives it.

Each step calls the submission's own `data_selection` and `update_params` from the host,
once, with the global batch sharded over every device (its own jitted step runs as it
would under AlgoPerf); `prepare_for_eval` precedes each evaluation. The clock (aeff's
`Loop`) covers those calls and nothing else; the data, keys and evaluation are aeff's, so
a trial sees the same batches in the same order under either contract.

AlgoPerf's `update_params` reports no loss: an AlgoPerf trial's rows have no `train.loss`,
and a non-finite evaluation metric ends it `diverged` at that evaluation.
"""

import dataclasses
import inspect
import math
import time
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from aeff.algoperf.jax_sharding_utils import BATCH_AXIS
from aeff.algoperf.submission import AlgoPerfSubmission
from aeff.spec import Splits, Workload
from aeff.training import programs, rules
from aeff.training.loop import Loop
from aeff.training.members import LoopTrial
from aeff.training.prepare import Clock, checked_layout

# jit's word, once per compiled step on a CPU, where buffers cannot be donated: AlgoPerf's
# submissions donate theirs, which a GPU honours.
DONATION_WARNING = "Some donated buffers were not usable"


class HostState(NamedTuple):
    """One trial's state between AlgoPerf's calls: global arrays, replicated."""

    global_step: int
    params: Any
    model_state: Any
    optimizer_state: Any  # the submission's own: arrays, and functions of its choosing

    @property
    def variables(self) -> tuple[Any, Any]:
        return self.params, self.model_state


class Calls:
    """A trial's calls of its submission's functions, with aeff's data and keys."""

    def __init__(
        self,
        workload: Workload,
        submission: AlgoPerfSubmission,
        hparams: Any,
        rng_seed: int,
        splits: Splits,
        batch_size: int,
    ) -> None:
        self.workload, self.submission, self.hparams = workload, submission, hparams
        self.module, self.rng_seed, self.batch_size = submission.module, rng_seed, batch_size
        self.mesh = Mesh(jax.devices(), (BATCH_AXIS,))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        self.replicated = replicated
        self.train = jax.device_put((splits.train.inputs, splits.train.labels), replicated)
        self.num_train = len(splits.train.labels)
        self.gather = jax.jit(
            self._batch, out_shardings=NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS))
        )
        self.param_types = workload.model_params_types
        self.eval_results: list[tuple[int, dict[str, float]]] = []
        self.queue_position = 0
        # Several CPU "devices" share the cores: two steps in flight, each with its own
        # all-reduce over the devices, could hold the threads each other's needs (seen: 4
        # devices on 2 loaded cores, XLA's 40 s rendezvous timeout). A GPU's run unawaited.
        self.wait_each_step = jax.default_backend() == "cpu" and len(jax.devices()) > 1
        self.takes_train_state = (
            "train_state" in inspect.signature(self.module.update_params).parameters
        )

    def _batch(self, train: tuple[jax.Array, jax.Array], indices: jax.Array) -> dict:
        inputs, labels = train
        batch = jnp.take(inputs, indices, axis=0)
        return {"inputs": self.workload.preprocess(batch), "targets": jnp.take(labels, indices)}

    def queue(self, position: int) -> Iterator[dict[str, jax.Array]]:
        """The global batches from the `position`-th on, each epoch in aeff's order."""
        steps_per_epoch = self.num_train // self.batch_size
        order = None
        while True:
            epoch, within = divmod(position, steps_per_epoch)
            if order is None or within == 0:
                order = programs.epoch_order(self.rng_seed, epoch * steps_per_epoch, self.num_train)
            self.queue_position = position = position + 1
            yield self.gather(
                self.train, order[within * self.batch_size : (within + 1) * self.batch_size]
            )

    def initial(self, rng: jax.Array) -> tuple[HostState, jax.Array]:
        """The state at step 0 and the key of the steps, from the trial's key (as aeff's)."""
        init_rng, optimizer_rng, step_rng = jax.random.split(rng, 3)
        params, model_state = jax.jit(self.workload.init_model_fn)(init_rng)
        params, model_state = jax.device_put((params, model_state), self.replicated)
        with self.submission.calling("init_optimizer_state"):
            optimizer_state = self.module.init_optimizer_state(
                self.workload, params, model_state, self.hparams, jax.random.key_data(optimizer_rng)
            )
        return HostState(0, params, model_state, optimizer_state), step_rng

    def step(
        self, state: HostState, queue: Iterator, step_rng: jax.Array, train_state: dict
    ) -> HostState:
        """`data_selection`, then `update_params`: one step, as AlgoPerf's runner takes it."""
        selection_rng, update_rng = _step_keys(step_rng, state.global_step)
        with self.submission.calling("data_selection"):
            batch = self.module.data_selection(
                workload=self.workload,
                input_queue=queue,
                optimizer_state=state.optimizer_state,
                current_param_container=state.params,
                model_state=state.model_state,
                hyperparameters=self.hparams,
                global_step=state.global_step,
                rng=selection_rng,
            )
        extra = {"train_state": train_state} if self.takes_train_state else {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=DONATION_WARNING)
            return self._call("update_params", state, 1, batch=batch, rng=update_rng, **extra)

    def prepare_for_eval(self, state: HostState, step_rng: jax.Array) -> HostState:
        """The submission's `prepare_for_eval`, where it has one."""
        if not hasattr(self.module, "prepare_for_eval"):
            return state
        _, eval_rng = _step_keys(step_rng, state.global_step)
        return self._call("prepare_for_eval", state, 0, rng=eval_rng)

    def _call(self, function: str, state: HostState, steps: int, **arguments: Any) -> HostState:
        """`update_params` or `prepare_for_eval` with the arguments both take, and the state
        it returns, `steps` later."""
        with self.submission.calling(function):
            returned = getattr(self.module, function)(
                workload=self.workload,
                current_param_container=state.params,
                current_params_types=self.param_types,
                model_state=state.model_state,
                hyperparameters=self.hparams,
                loss_type=self.workload.loss_type,
                optimizer_state=state.optimizer_state,
                eval_results=self.eval_results,
                global_step=state.global_step,
                **arguments,
            )
        optimizer_state, params, model_state = self.submission.returned(
            function, returned, 3, "(optimizer_state, params, model_state)"
        )
        return HostState(state.global_step + steps, params, model_state, optimizer_state)


@jax.jit
def _step_keys(step_rng: jax.Array, global_step: int) -> tuple[jax.Array, jax.Array]:
    """The step's data-selection and update keys, as aeff's own steps draw theirs, in
    AlgoPerf's raw form."""
    selection, update = jax.random.split(jax.random.fold_in(step_rng, global_step))
    return jax.random.key_data(selection), jax.random.key_data(update)


@dataclasses.dataclass
class Prepared:
    """One AlgoPerf trial ready to train: what `Loop` reads of `prepare.Prepared`."""

    workload: Workload
    submission: AlgoPerfSubmission
    rng_seeds: list[int]
    mesh: Any  # the evaluation's (aeff's pmap-ed program)
    calls: Calls
    state: HostState
    step_rng: jax.Array
    eval_splits: dict[str, programs.EvalSplit]
    batch_size: int
    num_train: int
    compile_time: float
    steps_per_dispatch: int = 1  # AlgoPerf's step is called once per step
    stream: Any = None

    @property
    def steps_per_epoch(self) -> int:
        return self.num_train // self.batch_size

    @property
    def size(self) -> int:
        return 1

    def programs(self, size: int | None = None) -> tuple[None, None, Any]:
        return None, None, programs.evaluate(self.workload.program_key(), 1)


def prepare(
    workload: Workload,
    submission: AlgoPerfSubmission,
    hparams: list[Any],
    rng_seeds: list[int],
    limits: rules.Limits,
    *,
    steps_per_dispatch: int,
    clock: Clock = time.perf_counter,
) -> Prepared:
    """The trial's data, state and evaluation on the devices; its step and evaluation
    compiled by running each once on a copy of the state, off the clock."""
    del steps_per_dispatch, limits  # one call per step
    [values], [seed] = hparams, rng_seeds
    mesh, batch_size, splits = checked_layout(workload, submission)  # refused in one line
    calls = Calls(workload, submission, values, seed, splits, batch_size)
    state, step_rng = calls.initial(jax.random.key(seed))
    prepared = Prepared(
        workload=workload,
        submission=submission,
        rng_seeds=[seed],
        mesh=mesh,
        calls=calls,
        state=state,
        step_rng=step_rng,
        eval_splits={
            name: programs.shard_for_eval(split, workload, mesh)
            for name, split in workload.evaluated_splits(splits).items()
        },
        batch_size=batch_size,
        num_train=calls.num_train,
        compile_time=0.0,
    )
    start = clock()
    copy = jax.tree.map(lambda x: jnp.copy(x) if isinstance(x, jax.Array) else x, state)
    warmed = calls.step(copy, calls.queue(0), step_rng, {})
    warmed = calls.prepare_for_eval(warmed, step_rng)
    jax.block_until_ready(evaluate(prepared, warmed))
    calls.eval_results.clear()
    calls.queue_position = 0
    prepared.compile_time = clock() - start
    return prepared


def evaluate(p: Prepared, state: HostState) -> dict[str, Any]:
    """Metrics of both splits, by aeff's evaluation program (the same as aeff's own trials')."""
    host = jax.tree.map(lambda x: np.asarray(x)[None], state.variables)
    stacked = programs.replicate(host, p.mesh)
    _, _, program = p.programs()
    return {name: program(stacked, split) for name, split in p.eval_splits.items()}


class HostLoop(Loop):
    """`Loop` for one AlgoPerf trial: each launch calls the submission once per step; each
    evaluation is preceded by its `prepare_for_eval`, charged as submission time."""

    def __init__(
        self,
        prepared: Prepared,
        members: list,
        limits: rules.Limits,
        clock: Clock = time.perf_counter,
    ) -> None:
        super().__init__(prepared, members, limits, clock)
        self.calls = prepared.calls
        self.queue = self.calls.queue(0)

    def _restore(self) -> None:
        [trial] = self.trials
        if trial.member.resume_from is None:
            return
        saved, counters = trial.member.checkpoints.restore(
            self._own_state(trial), trial.member.resume_from
        )
        trial.counters = rules.Counters(**counters)
        leaves, structure = jax.tree.flatten(self.state.optimizer_state)
        arrays = iter(saved["optimizer_state"])
        leaves = [next(arrays) if _is_array(leaf) else leaf for leaf in leaves]
        replicated = self.calls.replicated
        self.state = HostState(
            trial.counters.global_step,
            jax.device_put(saved["params"], replicated),
            jax.device_put(saved["model_state"], replicated),
            jax.tree.unflatten(
                structure, [jax.device_put(x, replicated) if _is_array(x) else x for x in leaves]
            ),
        )
        self.queue = self.calls.queue(int(saved["queue_position"]))

    def _own_state(self, trial: LoopTrial) -> dict[str, Any]:
        """The arrays of the state (the submission's functions aside) and the queue's place."""
        return {
            "params": self.state.params,
            "model_state": self.state.model_state,
            "optimizer_state": [
                x for x in jax.tree.leaves(self.state.optimizer_state) if _is_array(x)
            ],
            "queue_position": np.asarray(self.calls.queue_position, np.int64),
        }

    def _launch(self) -> None:
        [trial] = self.running
        num_steps = self._launch_size()
        start = self.clock()
        try:
            state = self.state
            for _ in range(num_steps):
                state = self.calls.step(state, self.queue, self.step_rng, self._train_state(trial))
                if self.calls.wait_each_step:
                    jax.block_until_ready(state.params)
            jax.block_until_ready((state.params, state.model_state, state.optimizer_state))
        except Exception as error:
            self._fail(trial, error)
            return
        seconds = self.clock() - start
        self.state, self.evaluated = state, None
        self.seconds_per_step = seconds / num_steps
        rules.charge_steps(trial.counters, seconds, num_steps, self.limits.budget)

    def _train_state(self, trial: LoopTrial) -> dict[str, Any]:
        """AlgoPerf's `train_state`, for a submission whose `update_params` takes it."""
        c = trial.counters
        return {
            "accumulated_submission_time": c.submission_time,
            "accumulated_eval_time": c.eval_time,
            "validation_goal_reached": c.goal_reached,
            "is_time_remaining": c.is_time_remaining,
            "training_complete": False,
        }

    def _evaluate(self, trial: LoopTrial) -> None:
        """`prepare_for_eval` (charged), then aeff's evaluation; a non-finite metric ends
        the trial `diverged`."""
        start = self.clock()
        self.state = self.calls.prepare_for_eval(self.state, self.step_rng)
        jax.block_until_ready(jax.tree.leaves((self.state.params, self.state.model_state)))
        rules.charge_steps(trial.counters, self.clock() - start, 0, self.limits.budget)
        self.evaluated = None
        super()._evaluate(trial)
        row = trial.counters.last_row
        self.calls.eval_results.append(
            (
                trial.counters.global_step,
                {k.replace(".", "/"): v for k, v in row.items() if "." in k},
            )
        )
        evaluated = tuple(f"{split}." for split in self.workload.eval_splits)
        if trial in self.running and not all(
            math.isfinite(v) for k, v in row.items() if k.startswith(evaluated)
        ):
            self._end(trial, "diverged")

    def _measure(self, trial: LoopTrial, params: Any, slot: int) -> dict[str, float]:
        start = self.clock()
        metrics = {}
        for name, values in jax.device_get(evaluate(self.p, self.state)).items():
            metrics.update(
                {f"{name}.{metric}": float(value[0][0]) for metric, value in values.items()}
            )
        trial.counters.eval_time += self.clock() - start
        return metrics

    def _train_metrics(self, trial: LoopTrial, at: rules.Point) -> dict[str, float]:
        return {}  # AlgoPerf's update_params reports no loss


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray)
