"""MNIST classification with AlgoPerf's MLP (784-128 sigmoid-10), and variants of it.

The variants change what AlgoPerf's workload variants change (the activation, the
depth, the target metric), each with its own name and a target measured with the
reference algorithm (docs/comparing-algorithms.md), so that a comparison over
workloads has more than one workload to go on.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from aeff.schema import require, require_folder, require_positive_finite, require_unit_interval
from aeff.spec import (
    DEVICE_AXIS,
    Batch,
    ForwardPassMode,
    HostSplit,
    Params,
    Splits,
    Workload,
    is_training,
)
from aeff.workloads.mnist_data import load_mnist

# What an evaluation reports, as `MnistWorkload.metric_names` derives it from the splits
# and metrics it declares; train.loss is the mean training loss since the last one.
METRIC_NAMES = (
    "train.loss",
    "validation.loss",
    "validation.accuracy",
    "test.loss",
    "test.accuracy",
)


NUM_TRAIN_IMAGES, NUM_TEST_IMAGES = 60_000, 10_000

ACTIVATIONS = {"sigmoid": nn.sigmoid, "relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu}


class Mlp(nn.Module):
    hidden_width: int
    num_hidden_layers: int = 1
    activation: str = "sigmoid"
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        for _ in range(self.num_hidden_layers):
            x = ACTIVATIONS[self.activation](nn.Dense(self.hidden_width)(x))
        return nn.Dense(self.num_classes)(x)


@dataclass(frozen=True)
class MnistWorkload(Workload):
    name: ClassVar[str] = "mnist"
    algoperf_name: ClassVar[str] = "mnist"
    step_hint: ClassVar[int] = 7813  # AlgoPerf's MNIST workload's
    RUN_FIELDS: ClassVar[tuple[str, ...]] = (
        *Workload.RUN_FIELDS,
        "data_dir",
        "idx_dir",
        "split_seed",
        "num_validation",
    )
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("data_dir", "idx_dir")
    # Each evaluated split's mean loss and accuracy (higher is better); the console shows
    # the validation loss besides the target metric.
    eval_metrics: ClassVar[dict[str, bool]] = {"loss": False, "accuracy": True}
    console_metrics: ClassVar[tuple[str, ...]] = ("validation.loss",)

    data_dir: str | None = None
    idx_dir: str | None = None
    split_seed: int = 0
    num_validation: int = 10_000
    pixel_mean: float = 0.1307  # of pixels / 255
    pixel_std: float = 0.3081
    hidden_width: int = 128
    num_hidden_layers: int = 1
    activation: str = "sigmoid"
    eval_batch_size: int = 10_000
    target_metric: str = "validation.accuracy"
    target_value: float = 0.97
    max_allowed_runtime_sec: float = 60.0
    eval_period_time_sec: float = 0.5

    def __post_init__(self) -> None:
        require(
            0 < self.num_validation < NUM_TRAIN_IMAGES,
            "num_validation",
            "an integer in (0, 60000)",
            self.num_validation,
        )
        # Bounded by what the data and a machine allow: a typo such as 1e11 would
        # otherwise ask numpy for hundreds of GiB before anything says why.
        for key, most in (
            ("hidden_width", 1 << 16),
            ("num_hidden_layers", 64),
            ("eval_batch_size", 60_000),
        ):
            value = getattr(self, key)
            require(0 < value <= most, key, f"an integer in [1, {most}]", value)
        for key in ("max_allowed_runtime_sec", "eval_period_time_sec", "pixel_std"):
            require_positive_finite(key, getattr(self, key))
        # A mean of pixels / 255 lies in [0, 1]: inf or nan made every input nan, a trial
        # that "diverged" at its first step, and 127 (pixels, not / 255) is a typo.
        require_unit_interval("pixel_mean", self.pixel_mean)
        require(
            self.activation in ACTIVATIONS,
            "activation",
            f"one of {tuple(ACTIVATIONS)}",
            self.activation,
        )
        require(
            self.target_metric in self.metric_names,
            "target_metric",
            f"one of {self.metric_names}",
            self.target_metric,
        )
        # A target outside what its metric can be is reached at the first evaluation (an
        # accuracy of 0 or less) or never (above 1, a loss of 0 or less): either way the
        # trial's time to target would measure nothing.
        if self.target_metric.endswith("accuracy"):
            ok, allowed = 0 < self.target_value <= 1, "a number in (0, 1]"
        else:
            ok, allowed = 0 < self.target_value < np.inf, "a finite number > 0"
        require(ok, "target_value", f"{allowed} for {self.target_metric}", self.target_value)
        require(self.split_seed >= 0, "split_seed", "an integer >= 0", self.split_seed)
        for key in self.PATH_FIELDS:  # a URL would become a local folder `https:`
            value = getattr(self, key)
            require("://" not in (value or ""), key, "a local folder, not a URL", value)
            require_folder(key, value)
        idx_dir = Path(self.idx_dir or ".").expanduser()  # read, never made
        require(idx_dir.is_dir(), "idx_dir", "null or a folder of MNIST's IDX files", self.idx_dir)

    def load_splits(self) -> Splits:
        arrays = load_mnist(
            Path(self.data_dir) if self.data_dir else None,
            Path(self.idx_dir) if self.idx_dir else None,
        )
        order = np.random.default_rng(self.split_seed).permutation(len(arrays.train_labels))
        validation, train = order[: self.num_validation], order[self.num_validation :]
        return Splits(
            train=self._split(arrays.train_images[train], arrays.train_labels[train]),
            validation=self._split(
                arrays.train_images[validation], arrays.train_labels[validation]
            ),
            test=self._split(arrays.test_images, arrays.test_labels),
        )

    def _split(self, images: np.ndarray, labels: np.ndarray) -> HostSplit:
        """The stored bytes, with a channel axis: `preprocess` normalises them.

        Kept as uint8, the splits take a quarter of the memory and of the copy to the
        devices; normalising them on the host took 0.6-1.3 s of a 3 s start-up.
        """
        return HostSplit(images[..., None], labels.astype(np.int32))

    def init_params(self, rng: jax.Array) -> Params:
        return self._model().init(rng, jnp.zeros((1, 28, 28, 1)))["params"]

    def preprocess(self, inputs: jax.Array) -> jax.Array:
        """Bytes / 255, standardised."""
        return (inputs.astype(jnp.float32) / 255.0 - self.pixel_mean) / self.pixel_std

    def apply_model(self, params: Params, inputs: jax.Array) -> jax.Array:
        return self._model().apply({"params": params}, inputs)

    def _model(self) -> Mlp:
        return Mlp(self.hidden_width, self.num_hidden_layers, self.activation)

    def loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    def smoothed_loss(self, logits: jax.Array, labels: jax.Array, smoothing: Any) -> jax.Array:
        """Cross-entropy against one-hot labels smoothed towards uniform by `smoothing`."""
        targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
        return optax.softmax_cross_entropy(logits, targets)

    # The sizes and statistics AlgoPerf's workload API names.
    @property
    def num_train_examples(self) -> int:
        return NUM_TRAIN_IMAGES - self.num_validation

    @property
    def num_validation_examples(self) -> int:
        return self.num_validation

    @property
    def num_test_examples(self) -> int:
        return NUM_TEST_IMAGES

    @property
    def train_mean(self) -> float:
        return self.pixel_mean

    @property
    def train_stddev(self) -> float:
        return self.pixel_std

    def eval_sums(
        self, params: Params, model_state: Any, batch: Batch, mask: jax.Array
    ) -> dict[str, jax.Array]:
        inputs = {"inputs": batch.inputs}
        logits, _ = self.model_fn(params, inputs, model_state, ForwardPassMode.EVAL, None, False)
        correct = jnp.argmax(logits, axis=-1) == batch.labels
        return {
            "loss": jnp.sum(self.loss(logits, batch.labels) * mask),
            "accuracy": jnp.sum(correct * mask),
        }


# Variants, after AlgoPerf's: the model or the target changes, and so does the name, so
# that records and comparisons never take one for another. Their targets are what the
# reference (Adam, conf/submission/adam.yaml) reached: docs/comparing-algorithms.md.
@dataclass(frozen=True)
class MnistReluWorkload(MnistWorkload):
    name: ClassVar[str] = "mnist_relu"
    activation: str = "relu"
    target_value: float = 0.975


@dataclass(frozen=True)
class MnistDeepWorkload(MnistWorkload):
    name: ClassVar[str] = "mnist_deep"
    num_hidden_layers: int = 3


@dataclass(frozen=True)
class MnistLossWorkload(MnistWorkload):
    name: ClassVar[str] = "mnist_loss"
    target_metric: str = "validation.loss"
    target_value: float = 0.112


def _bound(axis_name: str) -> bool:
    """Whether `axis_name` is an axis of the program being traced (aeff's pmap), not of a
    program that has none (an AlgoPerf submission's jit)."""
    try:
        lax.axis_size(axis_name)
    except NameError:
        return False
    return True


def dropout(x: jax.Array, rate: Any, rng: jax.Array) -> jax.Array:
    """Inverted dropout whose rate may be traced (AlgoPerf's submissions pass it into their
    jitted step); flax's takes a Python number only."""
    keep = 1.0 - rate
    kept = jax.random.bernoulli(rng, keep, x.shape)
    return jnp.where(kept, x / jnp.maximum(keep, 1e-6), 0.0)


class ConvNet(nn.Module):
    """Two 3x3 convolutions with BatchNorm, ReLU and 2x2 max-pooling, dropout, a dense head."""

    width: int
    momentum: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, axis_name: str | None) -> jax.Array:
        for features in (self.width, 2 * self.width):
            x = nn.Conv(features, (3, 3), use_bias=False)(x)
            x = nn.BatchNorm(
                use_running_average=not train, momentum=self.momentum, axis_name=axis_name
            )(x)
            x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        return x.reshape((x.shape[0], -1))


@dataclass(frozen=True)
class MnistConvWorkload(MnistWorkload):
    """A small convolutional net with model state (BatchNorm's running statistics, updated
    in training mode, used in evaluation) and randomness (dropout, from the step's key):
    AlgoPerf's workload API exercised for real. BatchNorm's batch statistics are the
    global batch's on any number of devices; dropout's masks are drawn per device."""

    name: ClassVar[str] = "mnist_conv"
    conv_width: int = 8
    batch_norm_momentum: float = 0.9
    dropout_rate: float = 0.1  # aeff's own submissions'; AlgoPerf's pass their own
    target_value: float = 0.97

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            0 < self.conv_width <= 1024, "conv_width", "an integer in [1, 1024]", self.conv_width
        )
        require_unit_interval("batch_norm_momentum", self.batch_norm_momentum)
        require(0 <= self.dropout_rate < 1, "dropout_rate", "a number in [0, 1)", self.dropout_rate)

    def _features(self) -> ConvNet:
        return ConvNet(self.conv_width, self.batch_norm_momentum)

    def init_model_fn(self, rng: jax.Array) -> tuple[Params, Any]:
        features_rng, head_rng = jax.random.split(rng)
        x = jnp.zeros((1, 28, 28, 1))
        variables = self._features().init(features_rng, x, train=False, axis_name=None)
        head = nn.Dense(10).init(head_rng, jnp.zeros((1, 7 * 7 * 2 * self.conv_width)))
        params = {**variables["params"], "Dense_0": head["params"]}
        return params, {"batch_stats": variables["batch_stats"]}

    def init_params(self, rng: jax.Array) -> Params:
        return self.init_model_fn(rng)[0]

    def apply_model(self, params: Params, inputs: jax.Array) -> jax.Array:
        raise NotImplementedError("mnist_conv has a model state: call model_fn")

    def model_fn(
        self,
        params: Params,
        augmented_and_preprocessed_input_batch: Any,
        model_state: Any,
        mode: Any,
        rng: jax.Array,
        update_batch_norm: bool,
        dropout_rate: Any = None,
    ) -> tuple[jax.Array, Any]:
        inputs = augmented_and_preprocessed_input_batch["inputs"]
        train = is_training(mode)
        axis_name = DEVICE_AXIS if _bound(DEVICE_AXIS) else None
        variables = {"params": {k: v for k, v in params.items() if k != "Dense_0"}, **model_state}
        if train:
            x, updates = self._features().apply(
                variables, inputs, train=True, axis_name=axis_name, mutable=["batch_stats"]
            )
            model_state = {**model_state, **updates} if update_batch_norm else model_state
            if axis_name is not None:  # each device its own mask
                rng = jax.random.fold_in(rng, lax.axis_index(axis_name))
            rate = self.dropout_rate if dropout_rate is None else dropout_rate
            x = dropout(x, rate, rng)
        else:
            x = self._features().apply(variables, inputs, train=False, axis_name=axis_name)
        return nn.Dense(10).apply({"params": params["Dense_0"]}, x), model_state
