"""MNIST classification with AlgoPerf's MLP (784-128 sigmoid-10), and variants of it.

The variants change what AlgoPerf's workload variants change (the activation, the
depth, the target metric), each with its own name and a target measured with the
reference algorithm (docs/comparing-algorithms.md), so that a comparison over
workloads has more than one workload to go on.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aeff.config import require, require_folder, require_positive_finite, require_unit_interval
from aeff.spec import Batch, HostSplit, Params, Splits, Workload
from aeff.workloads.mnist_data import load_mnist

# What an evaluation reports; train.loss is the mean training loss since the last one.
METRIC_NAMES = (
    "train.loss",
    "validation.loss",
    "validation.accuracy",
    "test.loss",
    "test.accuracy",
)


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
    RUN_FIELDS: ClassVar[tuple[str, ...]] = (
        *Workload.RUN_FIELDS,
        "data_dir",
        "idx_dir",
        "split_seed",
        "num_validation",
    )
    # What its evaluations report, known before training (`objective=final.<metric>`).
    metric_names: ClassVar[tuple[str, ...]] = METRIC_NAMES

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
            0 < self.num_validation < 60_000,
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
            self.target_metric in METRIC_NAMES,
            "target_metric",
            f"one of {METRIC_NAMES}",
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
        for key in ("data_dir", "idx_dir"):  # a URL would become a local folder `https:`
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

    def eval_sums(self, params: Params, batch: Batch, mask: jax.Array) -> dict[str, jax.Array]:
        logits = self.apply_model(params, batch.inputs)
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
