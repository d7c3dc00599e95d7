"""What a trial's records cost: the share of a default trial's wall time (goal: under 1%).

Runs the default trial (MNIST, Adam, stop at 0.97) in this process through
`aeff.trial.train_and_evaluate`, with every write of the run dir's owner
(`RunDir.begin`, `append`, `end`) and the facts gathered for it (environment,
packages, system samples) timed. Usage:

    python benchmarks/records_overhead.py [OVERRIDE ...]     e.g. workload.data_dir=...
"""

import functools
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from aeff import trial
from aeff.cli.app import compose_config
from aeff.records import environment, system
from aeff.records.run_dir import RunDir

COSTS: dict[str, list[float]] = defaultdict(list)


def timed(owner: object, name: str, label: str) -> None:
    """Replace `owner.name` with a version that notes each call's duration under `label`."""
    function = getattr(owner, name)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            COSTS[label].append(time.perf_counter() - start)

    setattr(owner, name, wrapper)


def main() -> None:
    cfg = compose_config(sys.argv[1:])
    timed(RunDir, "begin", "start")
    timed(trial, "packages_text", "start")
    timed(environment, "facts", "start")
    timed(RunDir, "append", "row")
    timed(system, "sample", "sample")
    timed(RunDir, "end", "end")
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        trial.train_and_evaluate(cfg, Path(run_dir))
        wall = time.perf_counter() - start
    start_cost, end_cost = sum(COSTS["start"]), sum(COSTS["end"])
    rows = [row + sample for row, sample in zip(COSTS["row"], COSTS["sample"], strict=False)]
    total = start_cost + sum(rows) + end_cost
    print(f"default trial wall time (load, compile, train, evals, records): {wall:.2f} s")
    print(f"evaluations (metrics.csv rows): {len(rows)}")
    print(f"start records: {start_cost * 1e3:.1f} ms; end: {end_cost * 1e3:.1f} ms")
    print(f"one row with its system sample: mean {statistics.mean(rows) * 1e3:.2f} ms")
    print(f"one system-metrics sample: median {statistics.median(COSTS['sample']) * 1e3:.2f} ms")
    print(f"records share of the trial's wall time: {total / wall:.2%} (goal < 1%)")


if __name__ == "__main__":
    main()
