"""Evaluation: one full validation and test evaluation, and its share of a default trial.

python benchmarks/evaluation.py [OVERRIDE ...]     Goal: under 5% of the wall time.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

from aeff.cli.app import compose_config
from aeff.config import check_trial
from aeff.training import programs
from aeff.trial import train_and_evaluate


def main() -> None:
    cfg = compose_config(["rng_seed=0", "logging=off", *sys.argv[1:]])
    trial = check_trial(cfg)
    workload = trial.workload
    splits = workload.load_splits()
    mesh = programs.device_mesh()
    stacked = jax.tree.map(lambda x: x[None], workload.init_model_fn(jax.random.key(0)))
    params = programs.replicate(stacked, mesh)  # a trial alone: a stack of one
    evaluate = programs.evaluate(workload, 1)
    eval_splits = [
        programs.shard_for_eval(s, workload, mesh) for s in (splits.validation, splits.test)
    ]
    jax.block_until_ready([evaluate(params, s) for s in eval_splits])  # compile
    times = []
    for _ in range(20):
        start = time.perf_counter()
        jax.device_get([evaluate(params, s) for s in eval_splits])
        times.append(time.perf_counter() - start)
    one_eval = statistics.median(times)

    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        result = train_and_evaluate(cfg, Path(run_dir))
        wall = time.perf_counter() - start
    print(f"one validation + test evaluation (20,000 examples): {one_eval * 1e3:.1f} ms")
    print(f"default trial: {result.num_evals} evaluations, {wall:.2f} s wall time")
    print(
        f"evaluation share of the trial's wall time: "
        f"{result.accumulated_eval_time / wall:.1%} (goal < 5%)"
    )


if __name__ == "__main__":
    main()
