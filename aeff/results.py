"""`python -m aeff.results concat|plot|summary PATH`: combine, draw and summarise trials.

PATH is a run dir, a sweep dir (or any folder above them) or, for `plot`, a CSV.
This module owns a sweep dir's own files: the plan the sweeper writes before its
first trial, and the report (summary.csv, sweep.json) written after the last.
"""

import argparse
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeff import errors
from aeff.errors import AeffError, ConfigError
from aeff.logging.concat import concatenate_csvs, folder_of, load_metrics, nonempty_metrics
from aeff.logging.files import inert, write_json_atomically, write_text_atomically
from aeff.logging.run_dir import (
    DAMAGED,
    FINISHED,
    METADATA,
    UNRECORDED,
    began_unrecorded,
    damage,
    read_metadata,
    status_of,
)
from aeff.logging.secrets import redact

log = logging.getLogger(__name__)

PLAN = "sweep_plan.json"
SWEEP_CONFIG = "multirun.yaml"  # the sweep's composed config, credentials redacted
SUMMARY = "summary.csv"
REPORT = "sweep.json"
NOT_STARTED = "not started"  # a planned trial with no record: the sweep was stopped before it
UNREADABLE = "unreadable"  # a trial whose metadata.json cannot be read
FOREIGN = "foreign"  # a planned job's dir holding the record of another run
FAILED = "failed"
# Not failures: a trial that ran with logging=off (UNRECORDED) is a result nobody kept, and
# resuming it would only train it again.
NOT_FAILED = (*FINISHED, UNRECORDED)


def write_plan(sweep_dir: Path, jobs: list[list[str]]) -> None:
    """Every trial the sweep will run, as its overrides (credentials redacted), before
    the first one starts."""
    write_json_atomically(sweep_dir / PLAN, {"num_trials": len(jobs), "jobs": redacted(jobs)})


def redacted(jobs: list[list[str]]) -> list[list[str]]:
    return [[redact(override) for override in job] for job in jobs]


def write_sweep_config(sweep_dir: Path, yaml_text: str) -> None:
    write_text_atomically(sweep_dir / SWEEP_CONFIG, yaml_text)


def read_plan(sweep_dir: Path) -> list[list[str]] | None:
    path = sweep_dir / PLAN
    if not path.exists():
        return None
    try:
        jobs = json.loads(path.read_text())["jobs"]
        if not all(isinstance(job, list) and all(isinstance(o, str) for o in job) for job in jobs):
            raise TypeError
        return jobs
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{path} is unreadable ({type(error).__name__}): restore it, or start the sweep "
            "again in another hydra.sweep.dir."
        ) from None


def trial_dirs(path: Path) -> list[Path]:
    """The run dirs at or below `path`: a sweep's planned jobs in order, else every dir
    with a record (earlier attempts, under dot folders, left out)."""
    plan = read_plan(path)
    if plan is not None:
        return [path / str(job) for job in range(len(plan))]
    found = [
        p.parent
        for p in Path(path).rglob(METADATA)
        if not any(part.startswith(".") for part in p.relative_to(path).parts)
    ]
    return sorted(found, key=lambda d: tuple(int(p) if p.isdigit() else -1 for p in d.parts))


def foreign(job_dir: Path, job: int, metadata: Mapping[str, Any]) -> str | None:
    """Why the record in a sweep's job dir is another run's, or None when it is that job's:
    a run aimed there by hand (`hydra.run.dir=`) records no sweep, or another job."""
    if "sweep_dir" not in metadata:  # no record, or none aeff wrote
        return None
    if metadata["sweep_dir"] and metadata.get("hydra.job.num") == job:
        return None
    return (
        f"{job_dir / METADATA} is the record of another run ({metadata.get('command')}), "
        f"not of job {job} of this sweep: move {job_dir} aside, then resume the sweep."
    )


def summary(path: Path, ended: Mapping[int, str | None] | None = None) -> pd.DataFrame:
    """One row per trial: hyperparameters, status, best target metric, time to target.

    `ended`: how the launcher said the jobs it ran ended, by job number (None: returned,
    else the error's line); it tells how a trial with no record (logging=off) ended.
    """
    metrics = load_metrics(path)
    planned = (Path(path) / PLAN).exists()  # trial_dirs reads and checks it
    rows = []
    for run_dir in trial_dirs(Path(path)):
        row = {"run_dir": str(run_dir.resolve())}
        try:
            metadata = read_metadata(run_dir)
        except ConfigError as error:  # an unreadable record: say which, go on with the others
            log.warning("%s", error)
            rows.append({**row, "status": UNREADABLE, "error": str(error)})
            continue
        if metadata is None:
            rows.append({**row, **unrecorded_status(run_dir, (ended or {}), planned)})
            continue
        row["status"] = status_of(run_dir, metadata)
        row["workload"] = metadata.get("workload")
        row["submission"] = str(metadata.get("submission._target_", "")).rpartition(".")[2]
        row.update({k: v for k, v in metadata.items() if k.startswith(("hparams.", "meta."))})
        trial = metrics[metrics["run_dir"] == row["run_dir"]] if "run_dir" in metrics else metrics
        target = metadata.get("workload.target_metric")
        row["target_metric"] = target
        best = None
        if target and len(trial) and target in trial:
            values = trial[target]
            best = values.min() if target.endswith("loss") else values.max()
        row["best_target_metric"] = best
        crossed = first_crossing(trial)
        row["time_to_target"], row["steps_to_target"], row["time_to_target_resolution"] = crossed
        row["global_step"] = trial["global_step"].max() if len(trial) else 0
        if metadata.get("error_message"):
            row["error"] = metadata["error_message"]
        if row["status"] == DAMAGED:
            row["error"] = damage(run_dir, metadata)
            log.warning("%s", row["error"])
        if planned and (why := foreign(run_dir, int(run_dir.name), metadata)):
            row["status"], row["error"] = FOREIGN, why
            log.warning("%s", why)
        rows.append(row)
    return pd.DataFrame(rows)


def unrecorded_status(run_dir: Path, ended: Mapping[int, str | None], planned: bool) -> dict:
    """The status of a trial without a record: `failed` (with its error) or `unrecorded`
    when its launcher returned it, else `unrecorded` if it began (logging=off), else
    `not started`."""
    job = int(run_dir.name) if planned else None
    if job in ended:
        error = ended[job]
        return {"status": UNRECORDED} if error is None else {"status": FAILED, "error": error}
    return {"status": UNRECORDED if began_unrecorded(run_dir) else NOT_STARTED}


def first_crossing(trial: pd.DataFrame) -> tuple[float | None, int | None, float | None]:
    """The submission time and step of the first row on target, and how closely the row
    before it brackets the crossing: 1 - its time / that time (1 for the first row)."""
    if not {"goal_reached", "accumulated_submission_time"} <= set(trial):
        return None, None, None  # rows written by hand, say: no crossing to find
    reached = (trial["goal_reached"].astype(str) == "True").to_numpy()
    if not any(reached):
        return None, None, None
    i = int(np.argmax(reached))
    times = trial["accumulated_submission_time"].to_numpy(dtype=float)
    before = times[i - 1] if i else 0.0
    return float(times[i]), int(trial["global_step"].iloc[i]), float(1 - before / times[i])


def as_text(table: pd.DataFrame, root: Path) -> str:
    """The summary for a terminal: run dirs relative to `root`, missing values as '-'."""
    if table.empty:
        return "(no trials)"
    shown = table.copy()
    shown["run_dir"] = [os.path.relpath(d, root) for d in shown["run_dir"]]
    if "error" in shown:
        shown["error"] = shown["error"].str.slice(0, 60)
    shown = shown.astype(object).where(shown.notna(), "-")  # None and NaN alike
    return shown.to_string(index=False, formatters=dict.fromkeys(shown, short))


def short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_sweep_report(
    sweep_dir: Path, ended: Mapping[int, str | None] | None = None
) -> tuple[pd.DataFrame, dict]:
    """`summary.csv` and `sweep.json`: every trial, the best one and AlgoPerf's score.

    The score is the least time to target over the finished trials that reached it
    (none if no trial did); divergence is a result; failure, interruption, damage and a
    planned trial that never started are not, whatever their rows say. A trial that ran
    unrecorded (logging=off) has no result and is no failure. `ended`: see `summary`.
    """
    table = summary(sweep_dir, ended)
    write_text_atomically(sweep_dir / SUMMARY, table.map(inert).to_csv(index=False))
    finished = table[table["status"].isin(FINISHED)] if len(table) else table
    reached = finished.dropna(subset=["time_to_target"]) if "time_to_target" in table else table[:0]
    best = reached.loc[reached["time_to_target"].idxmin()] if len(reached) else None
    started = table[table["status"] != NOT_STARTED] if len(table) else table
    report = {
        "num_trials": len(started),
        "num_planned": len(table),  # a row for every planned trial
        "num_reached_target": len(reached),
        "num_unrecorded": int((table["status"] == UNRECORDED).sum()) if len(table) else 0,
        "failed": [row.run_dir for row in table.itertuples() if row.status not in NOT_FAILED],
        "score": None if best is None else float(best["time_to_target"]),
        "best_trial": None if best is None else json.loads(best.to_json()),
    }
    write_json_atomically(sweep_dir / REPORT, report)
    return table, report


def plot(path: Path, x: str, y: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if out.suffix[1:].lower() not in formats:
        raise ConfigError(f"plot --out {out}: name a file ending in .{', .'.join(formats)}.")
    if not out.parent.is_dir():
        raise ConfigError(f"plot --out {out}: there is no folder {out.parent}; make it first.")
    frame = nonempty_metrics(path)
    missing = [f"--{axis} {column}" for axis, column in (("x", x), ("y", y)) if column not in frame]
    if missing:
        plottable = [c for c in frame if c in UNITS or c.endswith((".loss", ".accuracy"))]
        raise ConfigError(
            f"plot {' '.join(missing)}: no such column in the metrics at or below {path}; "
            f"the steps, times and metrics are {', '.join(plottable)}."
        )
    figure, axes = plt.subplots(figsize=(7, 4.5))
    hparams = [c for c in frame.columns if c.startswith("hparams.")]
    varying = [c for c in hparams if frame[c].nunique() > 1]
    hparams = varying or hparams  # name trials by what tells them apart
    for run_dir, trial in frame.groupby("run_dir", sort=True):
        label = Path(run_dir).name
        if hparams:
            label += " (" + ", ".join(f"{c[8:]}={trial[c].iloc[0]:g}" for c in hparams) + ")"
        axes.plot(trial[x], trial[y], label=label)
    if "workload.target_metric" in frame and (frame["workload.target_metric"] == y).any():
        target = frame.loc[frame["workload.target_metric"] == y, "workload.target_value"].iloc[0]
        axes.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target}")
        values = frame[y][np.isfinite(frame[y])]  # a diverged trial's NaN or inf: not a limit
        if len(values):
            axes.set_ylim(*around_target(values, target, higher_is_better=not y.endswith("loss")))
    axes.set_xlabel(axis_label(x))
    axes.set_ylabel(axis_label(y))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    try:
        figure.savefig(out, dpi=120)
    except OSError as error:
        raise ConfigError(
            f"plot --out {out}: cannot write it: {error.strerror or error}."
        ) from None
    return out


UNITS = {
    "global_step": "step",
    "epoch": "epochs",
    "accumulated_submission_time": "s",
    "accumulated_eval_time": "s",
    "wall_time": "s",
}


def axis_label(column: str) -> str:
    """The column with its unit: `wall_time (s)`, `validation.loss (nats)`."""
    if column in UNITS:
        return f"{column} ({UNITS[column]})"
    if column.endswith(".loss"):
        return f"{column} (nats)"
    if column.endswith(".accuracy"):
        return f"{column} (fraction)"
    return column


def around_target(values: pd.Series, target: float, higher_is_better: bool) -> tuple:
    """Y limits that show the approach to the target, not the first evaluations' climb."""
    margin = 0.1 * abs(target) + 0.02
    if higher_is_better:
        return target - margin, max(values.max(), target) + margin / 5
    return min(values.min(), target) - margin / 5, target + margin


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aeff.results", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    concat = commands.add_parser("concat", help="every metrics.csv below PATH into one CSV")
    concat.add_argument("path", type=Path)
    draw = commands.add_parser("plot", help="a metric against another, one line per trial")
    draw.add_argument("path", type=Path)
    draw.add_argument("--x", default="global_step")
    draw.add_argument("--y", default="validation.loss")
    draw.add_argument("--out", type=Path, default=None, help="default: PATH/<y>.png")
    table = commands.add_parser("summary", help="one row per trial")
    table.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(format="aeff.results: %(message)s")
    if not args.path.exists():
        parser.error(f"{args.path} does not exist")
    try:
        run_command(args)
    except AeffError as error:  # a record it cannot read or write, no rows
        parser.exit(errors.exit_status(error), f"aeff.results: {error}\n")


def run_command(args: argparse.Namespace) -> None:
    folder = folder_of(args.path)
    if args.command == "concat":
        print(concatenate_csvs(args.path))
    elif args.command == "plot":
        print(plot(args.path, args.x, args.y, args.out or folder / f"{args.y}.png"))
    else:
        frame, report = write_sweep_report(folder)
        print(as_text(frame, folder))
        print(f"{report['num_trials']} trials of {report['num_planned']} planned")
        print(f"score (least time to target): {report['score']}")


if __name__ == "__main__":
    main()
