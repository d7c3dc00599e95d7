"""The contract between a workload and a submission, after AlgoPerf's ``spec.py``.

A workload says what to learn and how well is good enough; a submission says how
to learn it. Both are frozen dataclasses whose fields are their config node, so
equal configs give equal (hashable) objects and the runner can reuse one compiled
step across trials. The methods that run on the device are pure JAX and are
traced inside ``jax.pmap`` over the axis ``DEVICE_AXIS``.
"""

import abc
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DEVICE_AXIS = "devices"

Params = Any  # a pytree of arrays
OptimizerState = Any  # a pytree of arrays, hyperparameters included
Metrics = dict[str, float]


class Batch(NamedTuple):
    inputs: jax.Array
    labels: jax.Array


class HostSplit(NamedTuple):
    """One split in host memory, as compact as stored: `Workload.preprocess` runs on the devices."""

    inputs: np.ndarray
    labels: np.ndarray


class Splits(NamedTuple):
    train: HostSplit
    validation: HostSplit
    test: HostSplit


class InputStream(NamedTuple):
    """The training split resident on each device, read in this epoch's order."""

    inputs: jax.Array  # [num_examples, ...]
    labels: jax.Array  # [num_examples]
    order: jax.Array  # [num_examples], a permutation drawn once per epoch

    def batch(self, global_step: jax.Array, global_batch_size: int) -> Batch:
        """This device's shard of the global batch at `global_step`.

        The global batch is the same for every device count, so runs on 1 or N
        devices follow the same trajectory.
        """
        per_device = global_batch_size // lax.axis_size(DEVICE_AXIS)
        steps_per_epoch = self.order.shape[0] // global_batch_size
        start = (global_step % steps_per_epoch) * global_batch_size
        start = start + lax.axis_index(DEVICE_AXIS) * per_device
        indices = lax.dynamic_slice_in_dim(self.order, start, per_device)
        return Batch(jnp.take(self.inputs, indices, axis=0), jnp.take(self.labels, indices))


class Workload(abc.ABC):
    """What to learn: data, model, loss, evaluation, budget and target."""

    name: ClassVar[str]
    # Fields that say how a trial runs, not what its compiled programs compute (the
    # traced methods must not read them): trials differing only in them share programs.
    RUN_FIELDS: ClassVar[tuple[str, ...]] = (
        "target_metric",
        "target_value",
        "max_allowed_runtime_sec",
        "eval_period_time_sec",
        "eval_batch_size",
    )
    target_metric: str
    target_value: float
    max_allowed_runtime_sec: float
    eval_period_time_sec: float
    eval_batch_size: int

    @abc.abstractmethod
    def load_splits(self) -> Splits:
        """Train, validation and test in host memory (prepares the data on first use)."""

    @abc.abstractmethod
    def init_params(self, rng: jax.Array) -> Params: ...

    def preprocess(self, inputs: jax.Array) -> jax.Array:
        """Stored examples to model inputs, on the devices: fused into each training step's
        gather, and run once over the evaluation splits."""
        return inputs

    @abc.abstractmethod
    def apply_model(self, params: Params, inputs: jax.Array) -> jax.Array:
        """Logits for a batch of preprocessed inputs."""

    @abc.abstractmethod
    def loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        """Per-example losses."""

    @abc.abstractmethod
    def eval_sums(self, params: Params, batch: Batch, mask: jax.Array) -> dict[str, jax.Array]:
        """Masked sums of per-example metrics over one eval batch (mask 0 = padding)."""

    def program_key(self) -> "Workload":
        """This workload with its run fields at their defaults: the compile-cache key."""
        defaults = {
            f.name: f.default
            for f in dataclasses.fields(self)
            if f.name in self.RUN_FIELDS and f.default is not dataclasses.MISSING
        }
        return dataclasses.replace(self, **defaults)

    @property
    def target_higher_is_better(self) -> bool:
        return not self.target_metric.endswith("loss")

    def has_reached_goal(self, metrics: Mapping[str, float]) -> bool:
        """The target metric at or past the target; a non-finite value (a workload's
        broken metric) never is, or an infinite accuracy would win a sweep's score."""
        value = metrics[self.target_metric]
        if not math.isfinite(value):
            return False
        if self.target_higher_is_better:
            return value >= self.target_value
        return value <= self.target_value


class Submission(abc.ABC):
    """How to learn: the optimizer, its update and the choice of each batch."""

    hparams_schema: ClassVar[type]  # a dataclass; the `hparams` node is checked against it

    batch_size: int

    def get_batch_size(self, workload_name: str) -> int:
        del workload_name  # one global batch size per submission config
        return self.batch_size

    @abc.abstractmethod
    def init_optimizer_state(
        self, workload: Workload, params: Params, hparams: Any, rng: jax.Array
    ) -> OptimizerState:
        """The optimizer state, with the hyperparameters in it as arrays.

        Keeping them as traced values lets trials that differ only in
        hyperparameters share one compiled step. The steps see them nowhere else, so a
        value that leaves this state as the default leaves it is refused before the data
        loads (`runner.refuse_unused_hparams`).
        """

    @abc.abstractmethod
    def update_params(
        self,
        workload: Workload,
        params: Params,
        optimizer_state: OptimizerState,
        batch: Batch,
        rng: jax.Array,
    ) -> tuple[Params, OptimizerState, jax.Array]:
        """One training step on this device's shard; returns the mean loss over all devices."""

    def data_selection(
        self,
        workload: Workload,
        input_stream: InputStream,
        params: Params,
        optimizer_state: OptimizerState,
        global_step: jax.Array,
        rng: jax.Array,
    ) -> Batch:
        """The next batch of this epoch's random order."""
        del params, optimizer_state, rng
        return input_stream.batch(global_step, self.get_batch_size(workload.name))
