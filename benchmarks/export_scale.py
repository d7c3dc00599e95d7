"""`export mlflow` and `export tensorboard` of a sweep of N trials of 20 rows each.

Builds the sweep as `results_scale.py` does (copies of one real trial, each with its own
learning rate; `config_resolved.yaml` copied too, as a trial's second artifact), then
times, each in this process: the first MLflow export into the sweep's own SQLite store,
the second (every run unchanged), and the TensorBoard export. Checkout another commit and
run it again to compare.

    python benchmarks/export_scale.py [N] [OVERRIDE ...]
"""

import shutil
import sys
import tempfile
from pathlib import Path

from results_scale import copied_sweep, timed

from aeff.records.run_dir import CONFIG
from aeff.results import __main__ as cli


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        trial, sweep = copied_sweep(folder, n, sys.argv[2:])
        for job in range(n):
            shutil.copyfile(trial / CONFIG, sweep / str(job) / CONFIG)
        seconds = {
            "mlflow, first": timed("mlflow", lambda: cli.main(["export", "mlflow", str(sweep)])),
            "mlflow, again": timed("again", lambda: cli.main(["export", "mlflow", str(sweep)])),
            "tensorboard": timed("tb", lambda: cli.main(["export", "tensorboard", str(sweep)])),
        }
        size = (sweep / "mlflow.db").stat().st_size
    print(f"\n{n} trials of 20 rows, one process (mlflow.db: {size / 1e6:.0f} MB):")
    for what, spent in seconds.items():
        print(f"  export {what:16s} {spent:7.2f} s, {1000 * spent / n:.2f} ms a trial")


if __name__ == "__main__":
    main()
