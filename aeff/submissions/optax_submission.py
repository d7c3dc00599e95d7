"""The shared step of submissions that are an optax optimizer with injected hyperparameters."""

import abc
import dataclasses
from typing import Any

import jax
import optax
from jax import lax

from aeff.spec import DEVICE_AXIS, Batch, OptimizerState, Params, Submission, Workload


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
        batch: Batch,
        rng: jax.Array,
    ) -> tuple[Params, OptimizerState, jax.Array]:
        del rng

        def mean_loss(p: Params) -> jax.Array:
            return workload.loss(workload.apply_model(p, batch.inputs), batch.labels).mean()

        loss, grads = jax.value_and_grad(mean_loss)(params)
        loss, grads = lax.pmean((loss, grads), DEVICE_AXIS)
        # `inject_hyperparams` reads the traced values in the state, so the schema's
        # defaults serve as placeholders here.
        optimizer = self.optimizer(self.hparams_schema())
        updates, optimizer_state = optimizer.update(grads, optimizer_state, params)
        return optax.apply_updates(params, updates), optimizer_state, loss
