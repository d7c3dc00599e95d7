"""Time to target: the default trial's submission time to validation accuracy 0.97.

python benchmarks/time_to_target.py [OVERRIDE ...]     Median over seeds 0, 1, 2.
"""

import statistics
import sys
import tempfile
from pathlib import Path

from aeff.cli.app import compose_config
from aeff.trial import train_and_evaluate


def main() -> None:
    times = []
    for seed in (0, 1, 2):
        cfg = compose_config([f"rng_seed={seed}", *sys.argv[1:]])
        with tempfile.TemporaryDirectory() as run_dir:
            result = train_and_evaluate(cfg, Path(run_dir))
        times.append(result.time_to_target)
        print(f"seed {seed}: time to target {result.time_to_target} s, {result.global_step} steps")
    reached = [t for t in times if t is not None]
    median = statistics.median(reached) if len(reached) == len(times) else None
    print(f"median time to target over 3 seeds: {median} s")


if __name__ == "__main__":
    main()
