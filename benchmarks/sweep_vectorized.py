"""Vectorized sweeps: K trials in one program, against one trial alone, measured in one run.

1. Aggregate throughput: the group program's examples/s over K training trials (the
   default's steps per dispatch, launches queued, no evaluation), `vmap`-ed and with the
   trials one after another, against one trial's plain-JAX loop (throughput.py's limit)
   and one trial's own program. Goal on one H200: >= 6x the plain loop at K=64.
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

from aeff.cli.app import compose_config
from aeff.config import check_trial
from aeff.training import programs
from aeff.training.loop import limits_of
from aeff.training.prepare import prepare

DISPATCHES = 50
ROUNDS = 3


def best_rate(launch, state, examples: int) -> float:
    """Examples/s of DISPATCHES launches queued then waited for, the best of ROUNDS."""
    best = 0.0
    for _ in range(ROUNDS):
        current, start = state, time.perf_counter()
        for _ in range(DISPATCHES):
            current = launch(current)
        jax.block_until_ready(current)
        best = max(best, DISPATCHES * examples / (time.perf_counter() - start))
    return best


def program_rates(trial, k: int) -> dict[str, float]:
    """Examples/s of one trial's fused program, and of K trials' in one group program,
    `vmap`-ed and one after another."""
    settings, hparams, workload = trial.settings, trial.hparams, trial.workload
    limits = limits_of(workload)
    per_dispatch = settings.steps_per_dispatch
    alone = prepare(
        workload, trial.submission, [hparams], [0], limits, steps_per_dispatch=per_dispatch
    )
    size = alone.batch_size * alone.steps_per_dispatch
    _, fused, _ = alone.programs()
    one = programs.replicate(np.ones(1, bool), alone.mesh)
    rates = {
        "one trial": best_rate(
            lambda s: fused(s, alone.stream, alone.step_rng, one)[0], alone.state, size
        )
    }
    values = [dataclasses.replace(hparams, lr=1e-3 * (1 + i / k)) for i in range(k)]
    p = prepare(
        workload, trial.submission, values, list(range(k)), limits, steps_per_dispatch=per_dispatch
    )
    active = programs.replicate(np.ones(k, bool), p.mesh)
    program_key = workload.program_key()
    for name, vectorized in (("vmap", True), ("one after another", False)):
        program = programs.train_steps(
            program_key, trial.submission, p.steps_per_dispatch, k, vectorized
        )
        rates[name] = best_rate(
            lambda s, f=program: f(s, p.stream, p.step_rng, active)[0], p.state, k * size
        )
    return rates


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
    rates = program_rates(trial, k)
    chosen = "one after another" if programs.one_at_a_time() else "vmap"
    print(f"devices: {jax.local_device_count()} x {jax.devices()[0].platform}")
    print(f"one trial's plain loop: {limit:,.0f} examples/s")
    print(f"one trial's aeff program: {rates['one trial']:,.0f} examples/s")
    for name in ("vmap", "one after another"):
        rate = rates[name]
        print(
            f"K={k} in one program, {name}{' (chosen here)' if name == chosen else ''}: "
            f"{rate:,.0f} examples/s in all, {rate / limit:.2f}x one trial's plain loop, "
            f"{rate / rates['one trial']:.2f}x its aeff program"
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
