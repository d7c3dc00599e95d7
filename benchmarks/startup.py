"""Start-up: from the command to the first training step, and the whole default trial.

Runs `python -m aeff` as a user would, on prepared data, and reads the times from
the run dir: the first evaluation is logged right after the first launch of training
steps. Goal: the first step within 3 s on a 2-core machine, without TensorFlow imported.

    python benchmarks/startup.py [OVERRIDE ...]     e.g. workload.data_dir=...
"""

import datetime
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def log_time(line: str) -> float:
    stamp = line[1:24]  # [2026-11-28 04:14:14,654]
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def main() -> None:
    with tempfile.TemporaryDirectory() as cwd:
        start = time.time()
        subprocess.run(
            [sys.executable, "-m", "aeff", "rng_seed=0", *sys.argv[1:]],
            cwd=cwd,
            check=True,
            capture_output=True,
        )
        total = time.time() - start
        (run_dir,) = Path(cwd, "outputs").glob("*/*")
        first_step_line = next(
            line
            for line in (run_dir / "aeff.log").read_text().splitlines()
            if re.search(r"\] - step \d+ \|", line)
        )
        rows = (run_dir / "metrics.csv").read_text().splitlines()
        metadata = json.loads((run_dir / "metadata.json").read_text())
    first_step = log_time(first_step_line) - start
    print(
        f"default trial: {metadata['status']}, {len(rows) - 1} evaluations, "
        f"time to target {metadata['time_to_target']:.2f} s"
    )
    print(f"whole default trial, command to exit: {total:.2f} s")
    print(f"command to first training step (and its evaluation): {first_step:.2f} s (goal <= 3 s)")


if __name__ == "__main__":
    main()
