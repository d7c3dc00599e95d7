"""Ctrl-C to exit: how long a training trial takes to stop with its last row and checkpoint.

Runs `python -m aeff` as a user would (a long budget, no stop at the target), waits for
its second row, sends SIGINT, and times the process from the signal to its exit; the
median of ROUNDS runs. With --tree DIR, the aeff found in DIR runs (another checkout,
for a before-and-after comparison in one run).

    python benchmarks/signal_latency.py [--tree DIR] [OVERRIDE ...]
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 5


def rows_written(run_dir: Path) -> int:
    try:
        return max(len((run_dir / "metrics.csv").read_text().splitlines()) - 1, 0)
    except FileNotFoundError:
        return 0


def one_stop(tree: Path | None, overrides: list[str]) -> float:
    """Seconds from SIGINT to the exit of a trial that has written two rows."""
    env = {**os.environ, **({"PYTHONPATH": str(tree)} if tree else {})}
    with tempfile.TemporaryDirectory() as cwd:
        run_dir = Path(cwd) / "run"
        args = [
            "workload.max_allowed_runtime_sec=600",
            "stop_at_target=false",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ]
        process = subprocess.Popen(
            [sys.executable, "-m", "aeff", *args],
            cwd=tree or cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while rows_written(run_dir) < 2:
            if process.poll() is not None:
                sys.exit(f"the trial ended before its second row (status {process.returncode})")
            time.sleep(0.01)
        start = time.perf_counter()
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=120)
        seconds = time.perf_counter() - start
    if status != 128 + signal.SIGINT:
        sys.exit(f"the trial exited with status {status}, not {128 + signal.SIGINT}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=None)
    options, overrides = parser.parse_known_args()
    times = [one_stop(options.tree, overrides) for _ in range(ROUNDS)]
    where = options.tree or "this checkout"
    print(
        f"SIGINT to exit ({where}): median {statistics.median(times):.3f} s, "
        f"max {max(times):.3f} s over {ROUNDS} trials"
    )


if __name__ == "__main__":
    main()
