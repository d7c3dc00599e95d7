"""What a trial's records cost: the share of a default trial's wall time (goal: under 1%).

Runs the default trial (MNIST, Adam, stop at 0.97) in this process with the
metrics.csv writer timed around every row, and times the job-start and job-end
records (environment facts, packages.txt, metadata.json) on their own. Usage:

    python benchmarks/records_overhead.py [OVERRIDE ...]     e.g. workload.data_dir=...
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_module

from aeff import config
from aeff.app import prepare, run
from aeff.logging import environment, system
from aeff.logging.callback import record_end
from aeff.logging.files import write_json_atomically, write_text_atomically
from aeff.logging.metrics import MetricsCsv
from aeff.logging.packages import packages_text


def timed(function, *args):
    start = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - start


def main() -> None:
    config.register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        trial = prepare(compose(config_name="config", overrides=sys.argv[1:]))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        system.prime()
        start_cost = 0.0
        facts, seconds = timed(environment.facts, Path.cwd(), False)
        start_cost += seconds
        start_cost += timed(environment.jax_facts)[1]
        text, seconds = timed(packages_text, True)
        start_cost += seconds
        start_cost += timed(write_text_atomically, directory / "packages.txt", text)[1]
        metadata = {"status": "running", "start_time": time.time(), **facts}
        start_cost += timed(write_json_atomically, directory / "metadata.json", metadata)[1]

        writer = MetricsCsv(directory, {"framework": "jax", "rng_seed": trial.rng_seed}, True)
        row_costs: list[float] = []

        def timed_writer(row):
            row_costs.append(timed(writer, row)[1])

        trial_start = time.perf_counter()
        result = run(trial, on_eval=timed_writer)
        trial_wall = time.perf_counter() - trial_start
        end_cost = timed(record_end, directory, result["status"])[1]
        samples = [timed(system.sample)[1] for _ in range(20)]

    total = start_cost + sum(row_costs) + end_cost
    print(f"default trial wall time (load, compile, train, evals): {trial_wall:.2f} s")
    print(f"evaluations (metrics.csv rows): {len(row_costs)}")
    print(f"job start records: {start_cost * 1e3:.1f} ms; job end: {end_cost * 1e3:.1f} ms")
    print(
        f"one row: mean {statistics.mean(row_costs) * 1e3:.2f} ms, "
        f"max {max(row_costs) * 1e3:.2f} ms"
    )
    print(f"one system-metrics sample: median {statistics.median(samples) * 1e3:.2f} ms")
    print(f"records share of the trial's wall time: {total / trial_wall:.2%} (goal < 1%)")


if __name__ == "__main__":
    main()
