"""Reading a large sweep back: `summary`, `concat` and `plot` of N trials of 20 rows each.

Trains one real trial as job 0 of a sweep (20 evaluations), then copies its records
into a sweep dir of N planned jobs, each with its own learning rate in its record, and
times the three tools on it in this process. Goals on the 2-core development machine,
N = 10,000: summary <= 10 s, plot <= 20 s.

    python benchmarks/results_scale.py [N] [OVERRIDE ...]
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aeff.records.concat import concatenate_csvs
from aeff.records.files import write_json_atomically
from aeff.records.run_dir import METADATA, METRICS
from aeff.records.sweep_dir import write_plan
from aeff.results.plots import plot
from aeff.results.report import write_html_report, write_reports
from aeff.results.sweep_report import write_sweep_report

GOALS = {"summary": 10.0, "plot": 20.0}  # seconds, N = 10,000


def real_trial(folder: Path, overrides: list[str]) -> Path:
    """Job 0 of a real one-trial sweep: 40 steps, a row every 2."""
    command = [sys.executable, "-m", "aeff", "-m", "max_steps=40", "eval_every_steps=2"]
    done = subprocess.run(
        [*command, f"hydra.sweep.dir={folder}", *overrides], capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(done.stderr[-2000:])
    return folder / "0"


def copies(trial: Path, sweep: Path, n: int) -> None:
    """N copies of the trial's records as the N jobs of one sweep."""
    metadata = json.loads((trial / METADATA).read_text())
    rows = (trial / METRICS).read_bytes()
    lrs = [1e-4 * (1 + i % 97) for i in range(n)]
    write_plan(sweep, [[f"hparams.lr={lr:g}"] for lr in lrs])
    for job, lr in enumerate(lrs):
        run_dir = sweep / str(job)
        run_dir.mkdir()
        (run_dir / METRICS).write_bytes(rows)
        record = {**metadata, "hydra.job.num": job, "sweep_dir": str(sweep), "hparams.lr": lr}
        write_json_atomically(run_dir / METADATA, record)


def timed(what: str, call) -> float:
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    print(f"{what}: {seconds:.2f} s", flush=True)
    return seconds


def copied_sweep(folder: Path, n: int, overrides: list[str]) -> tuple[Path, Path]:
    """A real trial trained in `folder/seed` and a sweep dir of `n` copies of it."""
    trial = real_trial(folder / "seed", overrides)
    sweep = folder / "sweep"
    sweep.mkdir()
    timed(f"copying {n} trials", lambda: copies(trial, sweep, n))
    return trial, sweep


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        _, sweep = copied_sweep(folder, n, sys.argv[2:])
        shutil.rmtree(folder / "seed")
        seconds = {
            "summary": timed("summary", lambda: write_sweep_report(sweep)),
            "reports": timed("summary with report.html", lambda: write_reports(sweep)),
            "reports, rows read twice": timed(
                "the same, rows read again for report.html",
                lambda: write_html_report(sweep, *write_sweep_report(sweep)),
            ),
            "concat": timed("concat", lambda: concatenate_csvs(sweep)),
            "plot": timed(
                "plot", lambda: plot(sweep, "global_step", "validation.accuracy", sweep / "p.png")
            ),
        }
    print(f"\n{n} trials of 20 rows, one process:")
    for what, spent in seconds.items():
        goal = GOALS.get(what)
        against = f" (goal at 10,000 trials: <= {goal:g} s)" if goal else ""
        print(f"  {what:24s} {spent:6.2f} s, {1000 * spent / n:.2f} ms a trial{against}")


if __name__ == "__main__":
    main()
