"""aeff's training throughput against the machine's limit, measured in one run.

The limit: the default trial's model, batch and optimizer in plain JAX, data on the
device, many steps fused in one `lax.scan`, no logging, no evaluation. Then aeff's
own: examples per second of submission time over a trial of AEFF_STEPS steps with the
default's evaluations and snapshots, one step per program and several (set
`steps_per_dispatch=` to choose the default's). The measurements alternate over
several rounds and each keeps its best, so that a slow spell of a shared machine
does not fall on one side of the ratio. Goal: aeff at >= 0.85 of the limit.

    python benchmarks/throughput.py [OVERRIDE ...]     e.g. workload.data_dir=...
"""

import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from aeff.cli.app import compose_config
from aeff.config import check_trial
from aeff.training.loop import run_trial

FUSED_STEPS = 500
AEFF_STEPS = 1000
ROUNDS = 3


def limit_measurement(trial) -> Callable[[], float]:
    """Compiles the plain-JAX loop; each call of the result times one run of it."""
    workload, hparams = trial.workload, trial.hparams
    batch_size = trial.submission.get_batch_size(workload.name)
    train = workload.load_splits().train
    inputs, labels = jax.device_put(train.inputs), jax.device_put(train.labels)
    optimizer = trial.submission.optimizer(hparams)
    params = workload.init_params(jax.random.key(0))
    state = (params, optimizer.init(params))
    order = jax.random.permutation(jax.random.key(1), len(train.labels))
    steps_per_epoch = len(train.labels) // batch_size

    def step(state, index):
        params, opt_state = state
        batch = lax.dynamic_slice_in_dim(order, (index % steps_per_epoch) * batch_size, batch_size)

        def loss(p):
            logits = workload.apply_model(p, workload.preprocess(inputs[batch]))
            return workload.loss(logits, labels[batch]).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    @jax.jit
    def fused(state):
        return lax.scan(step, state, jnp.arange(FUSED_STEPS))

    jax.block_until_ready(fused(state))  # compile

    def examples_per_sec() -> float:
        start = time.perf_counter()
        jax.block_until_ready(fused(state))
        return FUSED_STEPS * batch_size / (time.perf_counter() - start)

    return examples_per_sec


def aeff_examples_per_sec(trial, steps_per_dispatch: int) -> float:
    batch_size = trial.submission.get_batch_size(trial.workload.name)
    result = run_trial(
        trial.workload,
        trial.submission,
        trial.hparams,
        0,
        stop_at_target=False,
        max_steps=AEFF_STEPS,
        steps_per_dispatch=steps_per_dispatch,
        target_resolution=trial.settings.target_resolution,
    )
    return AEFF_STEPS * batch_size / result.accumulated_submission_time


def main() -> None:
    trial = check_trial(compose_config(["rng_seed=0", *sys.argv[1:]]))
    measure_limit = limit_measurement(trial)
    default = trial.settings.steps_per_dispatch
    limit, ours = 0.0, dict.fromkeys(sorted({1, default}), 0.0)
    for _ in range(ROUNDS):
        limit = max(limit, measure_limit())
        for k in ours:
            ours[k] = max(ours[k], aeff_examples_per_sec(trial, k))
    print(f"devices: {jax.local_device_count()} x {jax.devices()[0].platform}")
    print(f"limit (plain JAX, {FUSED_STEPS} steps fused in lax.scan): {limit:,.0f} examples/s")
    for k, rate in ours.items():
        label = f"aeff ({k} steps per dispatch{', the default' if k == default else ''})"
        print(f"{label}: {rate:,.0f} examples/s, {rate / limit:.2f} of the limit")
    print(f"aeff / limit: {ours[default] / limit:.2f} (goal >= 0.85)")


if __name__ == "__main__":
    main()
