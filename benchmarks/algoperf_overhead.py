"""What aeff costs an AlgoPerf submission: its AdamW through aeff against a plain loop.

AlgoPerf's own AdamW baseline (`../shared/algoperf`, unmodified) trains the default MNIST
workload for STEPS steps (no stop at the target) twice per round: as an aeff trial
(`aeff.trial.train_and_evaluate`, with its records, evaluations and checkpoints), and
driven by a plain loop written here: the same file's `data_selection` and
`update_params` called once per step on the same batches, gathered in the same order
from the same device-resident data, with keys drawn beforehand, no records and no
evaluation. aeff's rate is its recorded one (steps x batch / accumulated_submission_time)
and, apart, over the wall-clock of its training launches. The rounds alternate and each
side keeps its best, so that a slow spell of a shared machine does not fall on one side
of the ratio. Goal: aeff at >= 0.9 of the plain loop.

    python benchmarks/algoperf_overhead.py [OVERRIDE ...]     e.g. workload.data_dir=...
"""

import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from aeff.algoperf import runner
from aeff.cli.app import compose_config
from aeff.config import check_trial
from aeff.training.programs import epoch_order
from aeff.trial import train_and_evaluate

ALGOPERF = Path(__file__).resolve().parents[2] / "shared" / "algoperf"
ADAMW = ALGOPERF / "algorithms" / "archived_paper_baselines" / "adamw"
STEPS = 2000
ROUNDS = 5
SEED = 0


def launch_seconds() -> list[float]:
    """Times every training launch of aeff's AlgoPerf loop, into the returned list."""
    seconds: list[float] = []
    launch = runner.HostLoop._launch

    def timed(self) -> None:
        start = time.perf_counter()
        launch(self)
        seconds.append(time.perf_counter() - start)

    runner.HostLoop._launch = timed
    return seconds


def aeff_rates(cfg, batch_size: int, launches: list[float]) -> tuple[float, float]:
    """Examples per second of one aeff trial: of its submission time, of its launches."""
    launches.clear()
    with tempfile.TemporaryDirectory() as run_dir:
        result = train_and_evaluate(cfg, Path(run_dir))
    assert result.global_step == STEPS, result
    examples = STEPS * batch_size
    return examples / result.accumulated_submission_time, examples / sum(launches)


def plain_measurement(trial):
    """Sets up the plain loop; each call of the result times STEPS steps of it from a
    fresh state."""
    workload, module, hparams = trial.workload, trial.submission.module, trial.hparams
    batch_size = trial.settings.batch_size
    mesh = Mesh(jax.devices(), ("batch",))
    replicated = NamedSharding(mesh, PartitionSpec())
    train = workload.load_splits().train
    data = jax.device_put((train.inputs, train.labels), replicated)
    steps_per_epoch = len(train.labels) // batch_size
    param_types, loss_type = workload.model_params_types, workload.loss_type  # once, as aeff

    def gather(data, indices):
        inputs, labels = data
        return {"inputs": workload.preprocess(inputs[indices]), "targets": labels[indices]}

    gather = jax.jit(gather, out_shardings=NamedSharding(mesh, PartitionSpec("batch")))

    def batches():
        for step in range(STEPS):
            epoch, within = divmod(step, steps_per_epoch)
            if within == 0:
                order = epoch_order(SEED, epoch * steps_per_epoch, len(train.labels))
            yield gather(data, order[within * batch_size : (within + 1) * batch_size])

    def step(state, queue, step, rngs):
        """One step as AlgoPerf's runner takes it: `data_selection`, then `update_params`."""
        optimizer_state, params, model_state = state
        batch = module.data_selection(
            workload, queue, optimizer_state, params, model_state, hparams, step, rngs[0]
        )
        return module.update_params(
            workload,
            params,
            param_types,
            model_state,
            hparams,
            batch,
            loss_type,
            optimizer_state,
            [],
            step,
            rngs[1],
        )

    def examples_per_sec() -> float:
        params, model_state = workload.init_model_fn(jax.random.key(SEED))
        params, model_state = jax.device_put((params, model_state), replicated)
        keys = jax.random.key_data(jax.random.split(jax.random.key(SEED + 1), (STEPS, 2)))
        keys = [(selection, update) for selection, update in keys]  # off the clock
        optimizer_state = module.init_optimizer_state(
            workload, params, model_state, hparams, keys[0][0]
        )
        state = (optimizer_state, params, model_state)
        copy = jax.tree.map(lambda x: jnp.copy(x) if isinstance(x, jax.Array) else x, state)
        jax.block_until_ready(step(copy, batches(), 0, keys[0]))  # compiles, off the clock
        queue = batches()
        start = time.perf_counter()
        for global_step in range(STEPS):
            state = step(state, queue, global_step, keys[global_step])
        jax.block_until_ready(state)
        return STEPS * batch_size / (time.perf_counter() - start)

    return examples_per_sec


def main() -> None:
    if not ADAMW.is_dir():
        print(f"AlgoPerf's published files are not in {ALGOPERF}: nothing to measure.")
        return
    cfg = compose_config(
        [
            f"submission_path={ADAMW / 'jax' / 'submission.py'}",
            f"tuning_search_space={ADAMW / 'tuning_search_space.json'}",
            f"rng_seed={SEED}",
            f"max_steps={STEPS}",
            "stop_at_target=false",
            "logging.packages=false",
            *sys.argv[1:],
        ]
    )
    trial = check_trial(cfg)
    batch_size = trial.settings.batch_size
    # jit's word on a CPU, where the submission's donated buffers cannot be donated
    warnings.filterwarnings("ignore", message=runner.DONATION_WARNING)
    plain = plain_measurement(trial)
    launches = launch_seconds()
    plain_rates, recorded_rates, launch_rates = [], [], []
    for _ in range(ROUNDS):
        plain_rates.append(plain())
        recorded, launched = aeff_rates(cfg, batch_size, launches)
        recorded_rates.append(recorded)
        launch_rates.append(launched)
    best_plain, best_recorded = max(plain_rates), max(recorded_rates)
    print(f"devices: {jax.local_device_count()} x {jax.devices()[0].platform}")
    print(f"AlgoPerf's AdamW on {trial.workload.name}, batch {batch_size}, {STEPS} steps")
    print(f"plain loop: {best_plain:,.0f} examples/s")
    print(f"aeff, by its submission time: {best_recorded:,.0f} examples/s")
    print(f"aeff, by its launches' wall-clock: {max(launch_rates):,.0f} examples/s")
    rounds = ", ".join(f"{a / b:.2f}" for a, b in zip(recorded_rates, plain_rates, strict=True))
    print(f"each round's aeff / plain loop: {rounds}")
    print(f"aeff / plain loop, each at its best: {best_recorded / best_plain:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
