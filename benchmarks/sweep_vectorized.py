"""Vectorized sweeps: K trials in one program, against one trial alone, measured in one run.

1. Aggregate throughput: the group program's examples/s over K training trials (the
   default's steps per dispatch, launches queued, no evaluation) against one trial's
   plain-JAX loop (throughput.py's limit). Goal on one H200: >= 6x at K=64.
2. A sweep, command to exit, through `hydra/launcher=vectorized`: its wall and wall per
   trial; with --against-default, the same sweep through the default launcher. Without
   --steps: K trials sampled from `search_space=mnist_adam`, a budget of 5 s each (goal on
   one H200: 64 trials in <= 15 s). With --steps N: a grid of K learning rates, N steps
   each, an evaluation every N/4, no stop at the target: the same work whatever the
   grouping (goal on a CPU: 8 trials no slower than the default launcher).

    python benchmarks/sweep_vectorized.py K [--against-default] [--steps N] [OVERRIDE ...]
"""

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from throughput import limit_measurement

from aeff import group_loop, steps
from aeff.app import compose_config
from aeff.config import check_trial

DISPATCHES = 50
ROUNDS = 3


def group_examples_per_sec(trial, k: int) -> float:
    """The best of ROUNDS runs of DISPATCHES fused group programs, queued, then waited for."""
    members = [
        group_loop.Member(dataclasses.replace(trial.hparams, lr=1e-3 * (1 + i / k)), i)
        for i in range(k)
    ]
    settings = trial.settings
    group = group_loop.prepare_group(
        trial.workload, trial.submission, members, steps_per_dispatch=settings.steps_per_dispatch
    )
    p = group.prepared
    active = steps.replicate(np.ones(k, bool), p.mesh)
    best = 0.0
    for _ in range(ROUNDS):
        state, start = p.state, time.perf_counter()
        for _ in range(DISPATCHES):
            state, _ = p.fused_steps(state, p.stream, p.step_rng, active)
        jax.block_until_ready(state)
        examples = k * p.batch_size * p.steps_per_dispatch * DISPATCHES
        best = max(best, examples / (time.perf_counter() - start))
    return best


def sweep_wall(args: list[str]) -> float:
    """`python -m aeff -m ARGS`, command to exit, in a fresh dir."""
    with tempfile.TemporaryDirectory() as sweep_dir:
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "aeff", "-m", *args, f"hydra.sweep.dir={sweep_dir}/sweep"],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"the sweep failed:\n{out.stderr[-3000:]}")
    return wall


def sweep_args(k: int, num_steps: int | None, overrides: list[str]) -> list[str]:
    if num_steps is None:
        space = ["search_space=mnist_adam", f"search.num_trials={k}"]
        return [*space, "workload.max_allowed_runtime_sec=5", *overrides]
    grid = ",".join(f"{1e-3 * (1 + i / k):.6g}" for i in range(k))
    every = max(num_steps // 4, 1)
    fixed = [f"max_steps={num_steps}", f"eval_every_steps={every}", "stop_at_target=false"]
    return [f"hparams.lr={grid}", "rng_seed=0", *fixed, *overrides]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("k", type=int, nargs="?", default=8)
    parser.add_argument("--against-default", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    options, overrides = parser.parse_known_args()
    k = options.k
    trial = check_trial(compose_config(["rng_seed=0", *overrides]))
    limit = max(limit_measurement(trial)() for _ in range(ROUNDS))
    aggregate = group_examples_per_sec(trial, k)
    print(f"devices: {jax.local_device_count()} x {jax.devices()[0].platform}")
    print(f"one trial's plain loop: {limit:,.0f} examples/s")
    print(
        f"K={k} in one program: {aggregate:,.0f} examples/s in all, "
        f"{aggregate / limit:.2f}x one trial's plain loop"
    )
    args = sweep_args(k, options.steps, overrides)
    vectorized = sweep_wall([*args, "hydra/launcher=vectorized"])
    print(f"sweep of K={k} (vectorized): wall {vectorized:.1f} s, {vectorized / k:.2f} s a trial")
    if options.against_default:
        default = sweep_wall(args)
        print(
            f"sweep of K={k} (default launcher): wall {default:.1f} s, {default / k:.2f} s a trial"
        )
        print(f"vectorized / default sweep wall: {vectorized / default:.2f}")


if __name__ == "__main__":
    main()
