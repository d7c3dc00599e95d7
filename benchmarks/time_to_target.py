"""Time to target: the default trial's submission time to validation accuracy 0.97.

python benchmarks/time_to_target.py [OVERRIDE ...]     Median over seeds 0, 1, 2.
"""

import statistics
import sys

from hydra import compose, initialize_config_module

from aeff import config
from aeff.app import prepare, run


def main() -> None:
    config.register()
    times = []
    for seed in (0, 1, 2):
        with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"rng_seed={seed}", *sys.argv[1:]])
        result = run(prepare(cfg))
        times.append(result["time_to_target"])
        print(
            f"seed {seed}: time to target {result['time_to_target']} s, "
            f"{result['global_step']} steps"
        )
    reached = [t for t in times if t is not None]
    median = statistics.median(reached) if len(reached) == len(times) else None
    print(f"median time to target over 3 seeds: {median} s")


if __name__ == "__main__":
    main()
