"""Sweeps: K trials that differ only in hyperparameters, in one process.

Each trial's cost beyond its training steps and evaluations (set-up, records,
compilation) after the first, and the K-trial wall time against K times one trial's
training time. Goal: at most 0.5 s per trial after the first, one compilation.

    python benchmarks/sweep_overhead.py [K] [OVERRIDE ...]
"""

import sys
import tempfile
import time
from pathlib import Path

from aeff.cli.app import compose_config
from aeff.trial import train_and_evaluate


def main() -> None:
    k = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    overheads, training, compiles = [], [], []
    sweep_start = time.perf_counter()
    for index in range(k):
        lr = 1e-3 * (1 + index)
        cfg = compose_config(
            [
                f"hparams.lr={lr}",
                "rng_seed=0",
                "max_steps=500",
                "eval_every_steps=100",
                *sys.argv[2:],
            ]
        )
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as run_dir:  # each trial writes its records
            result = train_and_evaluate(cfg, Path(run_dir))
        wall = time.perf_counter() - start
        spent = result.accumulated_submission_time + result.accumulated_eval_time
        training.append(spent)
        overheads.append(wall - spent)
        compiles.append(result.compile_time)
    sweep_wall = time.perf_counter() - sweep_start
    print("trial  wall-minus-training(s)  compile(s)")
    for index, (overhead, compile_time) in enumerate(zip(overheads, compiles, strict=True)):
        print(f"{index:5d}  {overhead:22.2f}  {compile_time:10.2f}")
    later = overheads[1:]
    print(
        f"{k}-trial wall time: {sweep_wall:.2f} s; {k} x one trial's training: "
        f"{k * training[0]:.2f} s; ratio {sweep_wall / (k * training[0]):.2f}"
    )
    print(f"overhead per trial after the first: max {max(later):.2f} s (goal <= 0.5 s)")


if __name__ == "__main__":
    main()
