"""The shared step of submissions that are an optax optimizer with injected hyperparameters."""

import abc
import dataclasses
from typing import Any

import jax
import optax
from jax import lax

from aeff.spec import (
    DEVICE_AXIS,
    Batch,
    ForwardPassMode,
    OptimizerState,
    Params,
    Submission,
    Workload,
)


@dataclasses.dataclass(frozen=True)
class OptaxSubmission(Submission):
    batch_size: int = 0  # the top-level `batch_size`, validated there

    @staticmethod
    @abc.abstractmethod
    def optimizer(hparams: Any) -> optax.GradientTransformation:
        """An optimizer made with `optax.inject_hyperparams`, from validated hparams."""

    def init_optimizer_state(
        self, workload: Workload, params: Params, hparams: Any, rng: jax.Array
    ) -> OptimizerState:
        del workload, rng
        return self.optimizer(hparams).init(params)

    def update_params(
        self,
        workload: Workload,
        params: Params,
        optimizer_state: OptimizerState,
        model_state: Any,
        batch: Batch,
        rng: jax.Array,
    ) -> tuple[Params, OptimizerState, Any, jax.Array]:
        def mean_loss(p: Params) -> tuple[jax.Array, Any]:
            inputs = {"inputs": batch.inputs}
            logits, new_state = workload.model_fn(
                p, inputs, model_state, ForwardPassMode.TRAIN, rng, update_batch_norm=True
            )
            return workload.loss(logits, batch.labels).mean(), new_state

        (loss, model_state), grads = jax.value_and_grad(mean_loss, has_aux=True)(params)
        loss, grads = lax.pmean((loss, grads), DEVICE_AXIS)
        # `inject_hyperparams` reads the traced values in the state, so the schema's
        # defaults serve as placeholders here.
        optimizer = self.optimizer(self.hparams_schema())
        updates, optimizer_state = optimizer.update(grads, optimizer_state, params)
        return optax.apply_updates(params, updates), optimizer_state, model_state, loss
