"""`python -m aeff.results concat|plot|summary PATH`: combine, draw and summarise trials.

PATH is a run dir, a sweep dir (or any folder above them) or, for `plot`, a CSV.
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from aeff.logging import liveness
from aeff.logging.concat import concatenate_csvs, load_metrics

METADATA = "metadata.json"
FINISHED_STATUSES = ("completed", "diverged")


def _job_order(path: Path) -> tuple:
    """Sweep job dirs in numeric order (2 before 10)."""
    return tuple(int(p) if p.isdigit() else -1 for p in path.parent.parts), str(path)


def trial_status(metadata: dict, run_dir: Path) -> str | None:
    """The recorded status, except that a `running` trial whose process died is `interrupted`."""
    status = metadata.get("status")
    if status == "running" and liveness.is_running(run_dir) is False:
        return "interrupted"
    return status


def summary(path: Path) -> pd.DataFrame:
    """One row per trial: hyperparameters, status, best target metric, time to target."""
    metrics = load_metrics(path)
    rows = []
    for metadata_path in sorted(Path(path).rglob(METADATA), key=_job_order):
        if any(part.startswith(".") for part in metadata_path.relative_to(path).parts):
            continue  # earlier attempts, kept by resume
        metadata = json.loads(metadata_path.read_text())
        run_dir = str(metadata_path.parent.resolve())
        target = metadata.get("workload.target_metric")
        trial = metrics[metrics["run_dir"] == run_dir] if "run_dir" in metrics else metrics
        row = {"run_dir": run_dir, "status": trial_status(metadata, metadata_path.parent)}
        row.update({k: v for k, v in metadata.items() if k.startswith(("hparams.", "meta."))})
        row["target_metric"] = target
        best = None
        if target and len(trial) and target in trial:
            values = trial[target]
            best = values.min() if target.endswith("loss") else values.max()
        row["best_target_metric"] = best
        reached = trial[trial["goal_reached"].astype(str) == "True"] if len(trial) else trial
        row["time_to_target"] = (
            reached["accumulated_submission_time"].iloc[0] if len(reached) else None
        )
        row["global_step"] = trial["global_step"].max() if len(trial) else 0
        rows.append(row)
    return pd.DataFrame(rows)


def write_sweep_report(sweep_dir: Path) -> tuple[pd.DataFrame, dict]:
    """`summary.csv` and `sweep.json`: every trial, the best one and AlgoPerf's score.

    The score is the least time to target over the trials that reached it (none if
    no trial did); divergence is a result, failure and interruption are not.
    """
    table = summary(sweep_dir)
    table.to_csv(sweep_dir / "summary.csv", index=False)
    reached = table.dropna(subset=["time_to_target"]) if len(table) else table
    best = reached.loc[reached["time_to_target"].idxmin()] if len(reached) else None
    report = {
        "num_trials": len(table),
        "num_reached_target": len(reached),
        "failed": [
            row.run_dir for row in table.itertuples() if row.status not in FINISHED_STATUSES
        ],
        "score": None if best is None else float(best["time_to_target"]),
        "best_trial": None if best is None else json.loads(best.to_json()),
    }
    (sweep_dir / "sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    return table, report


def plot(path: Path, x: str, y: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = load_metrics(path)
    if frame.empty or x not in frame or y not in frame:
        raise SystemExit(f"aeff.results plot: no '{x}' and '{y}' columns in metrics below {path}")
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
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    return out


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
    if not args.path.exists():
        parser.error(f"{args.path} does not exist")
    if args.command == "concat":
        print(concatenate_csvs(args.path))
    elif args.command == "plot":
        folder = args.path if args.path.is_dir() else args.path.parent
        print(plot(args.path, args.x, args.y, args.out or folder / f"{args.y}.png"))
    else:
        folder = args.path if args.path.is_dir() else args.path.parent
        frame, report = write_sweep_report(folder)
        print(frame.to_string(index=False))
        print(f"score (least time to target): {report['score']}")


if __name__ == "__main__":
    main()
