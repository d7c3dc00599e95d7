"""The contract between a workload and a submission, after AlgoPerf's ``spec.py``.

A workload says what to learn and how well is good enough; a submission says how
to learn it. Both are frozen dataclasses whose fields are their config node, so
equal configs give equal (hashable) objects and the runner can reuse one compiled
step across trials. The methods that run on the device are pure JAX and are
traced inside ``jax.pmap`` over the axis ``DEVICE_AXIS``.
"""

import abc
import dataclasses
import enum
import math
import sys
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from aeff.errors import ConfigError
from aeff.splits import Batch, HostSplit, Splits

DEVICE_AXIS = "devices"

Params = Any  # a pytree of arrays
OptimizerState = Any  # a pytree of arrays, hyperparameters included
Metrics = dict[str, float]


# AlgoPerf's enums and shape type, by its names and values (its `spec.py` at
# mlcommons/algorithmic-efficiency 2c90454f): AlgoPerf's submissions receive these, or the
# real package's where it is installed (`algoperf_type`).
class LossType(enum.Enum):
    SOFTMAX_CROSS_ENTROPY = 0
    SIGMOID_CROSS_ENTROPY = 1
    MEAN_SQUARED_ERROR = 2
    CTC_LOSS = 3
    MEAN_ABSOLUTE_ERROR = 4


class ForwardPassMode(enum.Enum):
    TRAIN = 0
    EVAL = 1


class ParameterType(enum.Enum):
    WEIGHT = 0
    BIAS = 1
    CONV_WEIGHT = 2
    BATCH_NORM_SCALE = 3
    BATCH_NORM_BIAS = 4
    LAYER_NORM_SCALE = 5
    LAYER_NORM_BIAS = 6
    EMBEDDING = 7
    ATTENTION_Q = 8
    ATTENTION_K = 9
    ATTENTION_V = 10
    ATTENTION_OUT = 11
    ATTENTION_QKV = 12
    ATTENTION_KV = 13
    ATTENTION_BIAS = 14


class ShapeTuple:
    """A parameter's shape as one pytree leaf (`.shape_tuple`), as AlgoPerf's."""

    def __init__(self, shape_tuple: tuple[int, ...]) -> None:
        self.shape_tuple = tuple(shape_tuple)

    def __repr__(self) -> str:
        return f"ShapeTuple({self.shape_tuple})"

    def __eq__(self, other: object) -> bool:
        return self.shape_tuple == getattr(other, "shape_tuple", None)

    def __hash__(self) -> int:
        return hash(self.shape_tuple)


def algoperf_type(name: str) -> Any:
    """AlgoPerf's `spec.<name>` as the submissions of this process see it: the installed
    package's where a submission imported it, else aeff's own (above)."""
    return getattr(sys.modules.get("algoperf.spec"), name, globals()[name])


def is_training(mode: Any) -> bool:
    """`ForwardPassMode.TRAIN`, aeff's or the real package's (compared by name)."""
    return getattr(mode, "name", mode) == "TRAIN"


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
    # Its splits as its metrics name them (`<split>.<metric>`): the one trained on (whose
    # mean loss since the last row is `<train_split>.loss`) and the evaluated ones, fields
    # of `Splits`, in the order of a row's columns.
    train_split: ClassVar[str] = "train"
    eval_splits: ClassVar[tuple[str, ...]] = ("validation", "test")
    # The sums `eval_sums` returns for each evaluated split, each with whether a higher
    # value is better: a target on `<split>.<metric>` is reached at or above it if so,
    # else at or below it (`metric_directions`).
    eval_metrics: ClassVar[Mapping[str, bool]] = {}
    # What each evaluation's console line shows besides the target metric.
    console_metrics: ClassVar[tuple[str, ...]] = ()
    # Its fields that name files or folders: made absolute from where the command ran, and
    # no part of the trial's identity (a resume may find the data elsewhere).
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ()

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
    def eval_sums(
        self, params: Params, model_state: Any, batch: Batch, mask: jax.Array
    ) -> dict[str, jax.Array]:
        """Masked sums of per-example metrics over one eval batch (mask 0 = padding), the
        model in evaluation mode (`model_fn` with `ForwardPassMode.EVAL`)."""

    def program_key(self) -> "Workload":
        """This workload with its run fields at their defaults: the compile-cache key."""
        defaults = {
            f.name: f.default
            for f in dataclasses.fields(self)
            if f.name in self.RUN_FIELDS and f.default is not dataclasses.MISSING
        }
        return dataclasses.replace(self, **defaults)

    @property
    def metric_directions(self) -> dict[str, bool]:
        """Each metric a row reports -> whether a higher value is better, as declared: the
        training loss is lowered; the evaluated splits' metrics are `eval_metrics`'."""
        evaluated = {
            f"{split}.{metric}": higher
            for split in self.eval_splits
            for metric, higher in self.eval_metrics.items()
        }
        return {f"{self.train_split}.loss": False, **evaluated}

    @property
    def metric_names(self) -> tuple[str, ...]:
        """What its evaluations report, known before training (`objective=final.<metric>`)."""
        return tuple(self.metric_directions)

    @property
    def target_higher_is_better(self) -> bool:
        """Whether the target metric is reached at or above the target (else at or below)."""
        directions = self.metric_directions
        if self.target_metric not in directions:
            raise ConfigError(
                f"workload.target_metric={self.target_metric!r} is not allowed: expected one "
                f"of {', '.join(directions)} (the metrics {type(self).__name__} declares, "
                "each with its direction, in eval_metrics)."
            )
        return directions[self.target_metric]

    def evaluated_splits(self, splits: Splits) -> dict[str, HostSplit]:
        """The splits evaluated, by name, in the order of a row's columns."""
        return {name: getattr(splits, name) for name in self.eval_splits}

    # AlgoPerf's workload API, for AlgoPerf's submissions (aeff.algoperf): derived from
    # the methods above, so that both contracts meet one workload.
    step_hint: ClassVar[int] = 0  # AlgoPerf's: the steps its baseline takes in the budget
    loss_type_name: ClassVar[str] = "SOFTMAX_CROSS_ENTROPY"
    metrics_logger: ClassVar[Any] = None
    # The name AlgoPerf's `get_batch_size(workload_name)` is given: a variant of aeff's own
    # (AlgoPerf's submissions know none) answers to its base workload's.
    algoperf_name: ClassVar[str] = ""

    def init_model_fn(self, rng: jax.Array) -> tuple[Params, Any]:
        """The initial parameters and model state (none here: a workload with running
        statistics overrides this)."""
        return self.init_params(rng), {}

    def model_fn(
        self,
        params: Params,
        augmented_and_preprocessed_input_batch: Mapping[str, jax.Array],
        model_state: Any,
        mode: Any,
        rng: jax.Array,
        update_batch_norm: bool,
        dropout_rate: Any = None,
    ) -> tuple[jax.Array, Any]:
        """AlgoPerf's `model_fn`: logits of preprocessed inputs, and the model state."""
        del mode, rng, update_batch_norm, dropout_rate  # a model without dropout or state
        return self.apply_model(params, augmented_and_preprocessed_input_batch["inputs"]), (
            model_state
        )

    def loss_fn(
        self,
        label_batch: jax.Array,
        logits_batch: jax.Array,
        mask_batch: jax.Array | None = None,
        label_smoothing: Any = 0.0,
    ) -> dict[str, jax.Array]:
        """AlgoPerf's `loss_fn`: the summed, counted and per-example (masked) losses."""
        per_example = self.smoothed_loss(logits_batch, label_batch, label_smoothing)
        if mask_batch is None:
            mask_batch = jnp.ones_like(per_example)
        per_example = per_example * mask_batch
        return {
            "summed": jnp.sum(per_example),
            "n_valid_examples": jnp.sum(mask_batch),
            "per_example": per_example,
        }

    def smoothed_loss(self, logits: jax.Array, labels: jax.Array, smoothing: Any) -> jax.Array:
        """Per-example losses with label smoothing; a workload whose `loss` admits none
        says so when asked for it."""
        if not (isinstance(smoothing, int | float) and smoothing == 0):
            raise NotImplementedError(
                f"workload {self.name} has no label smoothing: its loss_fn takes "
                "label_smoothing=0 only"
            )
        return self.loss(logits, labels)

    @property
    def param_shapes(self) -> Any:
        """The parameters' shapes, each a `ShapeTuple` leaf."""
        shape_tuple = algoperf_type("ShapeTuple")
        return jax.tree.map(lambda s: shape_tuple(s.shape), self._param_shapes())

    @property
    def model_params_types(self) -> Any:
        """Each parameter's `ParameterType`, from its layer's and its own name and rank."""
        kinds = algoperf_type("ParameterType")
        return jax.tree_util.tree_map_with_path(
            lambda path, s: kinds[parameter_type(path, len(s.shape))], self._param_shapes()
        )

    def is_output_params(self, param_key: str) -> bool:
        """Whether `param_key` (a top-level key of the parameters) is the output layer's:
        the last dense layer that Flax numbered."""
        layers = list(self._param_shapes())
        dense = [k for k in layers if k.startswith("Dense")] or layers
        return param_key == max(dense, key=_layer_order)

    def _param_shapes(self) -> Any:
        """The parameters' shapes and dtypes, traced once per workload (5 ms each time:
        a submission may read `param_shapes` at every step)."""
        if "_shapes" not in self.__dict__:  # a frozen dataclass's cache, as cached_property's
            shapes = jax.eval_shape(lambda: self.init_model_fn(jax.random.key(0))[0])
            self.__dict__["_shapes"] = shapes
        return self.__dict__["_shapes"]

    @property
    def target_metric_name(self) -> str:
        return self.target_metric.split(".")[-1]

    @property
    def validation_target_value(self) -> float:
        return self.target_value

    @property
    def loss_type(self) -> Any:
        return algoperf_type("LossType")[self.loss_type_name]

    def has_reached_validation_target(self, eval_result: Mapping[str, float]) -> bool:
        return self.has_reached_goal({k.replace("/", "."): v for k, v in eval_result.items()})

    def has_reached_goal(self, metrics: Mapping[str, float]) -> bool:
        """The target metric at or past the target; a non-finite value (a workload's
        broken metric) never is, or an infinite accuracy would win a sweep's score."""
        value = metrics[self.target_metric]
        if not math.isfinite(value):
            return False
        if self.target_higher_is_better:
            return value >= self.target_value
        return value <= self.target_value


def parameter_type(path: tuple[Any, ...], rank: int) -> str:
    """The `ParameterType` name of the parameter at `path` of rank `rank`."""
    names = [str(getattr(k, "key", k)) for k in path]
    leaf, layer = names[-1], " ".join(names[:-1])
    if "BatchNorm" in layer:
        return "BATCH_NORM_SCALE" if leaf == "scale" else "BATCH_NORM_BIAS"
    if "LayerNorm" in layer:
        return "LAYER_NORM_SCALE" if leaf == "scale" else "LAYER_NORM_BIAS"
    if leaf == "embedding":
        return "EMBEDDING"
    if leaf == "bias":
        return "BIAS"
    return "CONV_WEIGHT" if rank > 2 else "WEIGHT"


def _layer_order(key: str) -> tuple[int, str]:
    """Flax's `Dense_2` after `Dense_1`: by the number its name ends in."""
    number = key.rsplit("_", 1)[-1]
    return (int(number) if number.isdigit() else -1, key)


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
        loads (`prepare.refuse_unused_hparams`).
        """

    @abc.abstractmethod
    def update_params(
        self,
        workload: Workload,
        params: Params,
        optimizer_state: OptimizerState,
        model_state: Any,
        batch: Batch,
        rng: jax.Array,
    ) -> tuple[Params, OptimizerState, Any, jax.Array]:
        """One training step on this device's shard: the new parameters, optimizer state
        and model state (`workload.model_fn` in `ForwardPassMode.TRAIN` returns it), and
        the mean loss over all devices."""

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
