"""SGD with heavy-ball momentum written to AlgoPerf's JAX submission API (its module-level
functions, its own jitted step over a ('batch',) mesh): the tests' AlgoPerf submission where
AlgoPerf's published files are absent. Written for aeff's tests, after the API alone."""

import jax
import jax.numpy as jnp
import optax
from algoperf import jax_sharding_utils, spec
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


def get_batch_size(workload_name):
    if workload_name == "mnist":
        return 64
    raise ValueError(f"Unsupported workload name: {workload_name}.")


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    del model_params, model_state, rng
    optimizer = optax.sgd(hyperparameters.learning_rate, momentum=hyperparameters.momentum)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape_tuple), workload.param_shapes)
    return jax_sharding_utils.replicate(optimizer.init(zeros)), optimizer.update


def _step(workload, update, model_state, optimizer_state, params, batch, rng, smoothing, dropout):
    def loss_of(p):
        logits, new_state = workload.model_fn(
            p, batch, model_state, spec.ForwardPassMode.TRAIN, rng, True, dropout_rate=dropout
        )
        losses = workload.loss_fn(batch["targets"], logits, batch.get("weights"), smoothing)
        return losses["summed"] / losses["n_valid_examples"], new_state

    (loss, new_state), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    updates, optimizer_state = update(grads, optimizer_state, params)
    return optimizer_state, optax.apply_updates(params, updates), new_state, loss


def update_params(
    workload,
    current_param_container,
    current_params_types,
    model_state,
    hyperparameters,
    batch,
    loss_type,
    optimizer_state,
    eval_results,
    global_step,
    rng,
    train_state=None,
):
    del current_params_types, loss_type, eval_results, train_state
    assert isinstance(global_step, int)
    optimizer_state, update = optimizer_state
    mesh = jax.sharding.Mesh(jax.devices(), ("batch",))
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("batch"))
    step = jax.jit(
        _step,
        static_argnums=(0, 1),
        in_shardings=(replicated, replicated, replicated, sharded, replicated, None, None),
        out_shardings=replicated,
    )
    optimizer_state, params, model_state, _ = step(
        workload,
        update,
        model_state,
        optimizer_state,
        current_param_container,
        batch,
        rng,
        hyperparameters.label_smoothing,
        getattr(hyperparameters, "dropout_rate", 0.0),
    )
    return (optimizer_state, update), params, model_state


def prepare_for_eval(
    workload,
    current_param_container,
    current_params_types,
    model_state,
    hyperparameters,
    loss_type,
    optimizer_state,
    eval_results,
    global_step,
    rng,
):
    return optimizer_state, current_param_container, model_state


def data_selection(
    workload,
    input_queue,
    optimizer_state,
    current_param_container,
    model_state,
    hyperparameters,
    global_step,
    rng,
):
    return next(input_queue)
