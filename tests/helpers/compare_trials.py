"""Trials written by hand for `python -m aeff.results compare`, and the same trials in the
dataframe shape AlgoPerf's scoring reads."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ADAM = "aeff.submissions.adam.Adam"
NESTEROV = "aeff.submissions.nesterov.Nesterov"
# workload -> (target metric, target value, budget in seconds of submission time)
WORKLOADS = {
    "mnist": ("validation.accuracy", 0.97, 60.0),
    "mnist_loss": ("validation.loss", 0.3, 30.0),
}


@dataclasses.dataclass
class Trial:
    """One trial's record: `rows` are its evaluations, (global_step, submission time,
    target metric's value)."""

    submission: str
    workload: str
    study: int | None
    rows: list[tuple[int, float, float]]
    status: str = "completed"
    sweep: str | None = "sweep"  # its sweep's folder under the root; None: a run alone
    record: dict[str, Any] = dataclasses.field(default_factory=dict)  # more record keys


def write_trials(root: Path, trials: list[Trial]) -> dict[str, Trial]:
    """Each trial as a job of its sweep under `root`, or alone in `root/alone<n>` (run dir
    -> trial)."""
    written, jobs = {}, {}
    for trial in trials:
        job = jobs[trial.sweep] = jobs.get(trial.sweep, -1) + 1
        sweep_dir = None if trial.sweep is None else root / trial.sweep
        run_dir = root / f"alone{job}" if sweep_dir is None else sweep_dir / str(job)
        write_trial(run_dir, trial, sweep_dir, job)
        written[str(run_dir.resolve())] = trial
    return written


def write_trial(run_dir: Path, trial: Trial, sweep_dir: Path | None, job: int) -> None:
    metric, target, budget = WORKLOADS[trial.workload]
    run_dir.mkdir(parents=True)
    metadata = {
        "status": trial.status,
        "workload": trial.workload,
        "submission._target_": trial.submission,
        "workload.target_metric": metric,
        "workload.target_value": target,
        "workload.max_allowed_runtime_sec": budget,
        "max_steps": None,
        "sweep_dir": str(sweep_dir.resolve()) if sweep_dir else "",
        **({"hydra.job.num": job} if sweep_dir else {}),
        "rng_seed": 7,
        **({"global_step": trial.rows[-1][0]} if trial.rows else {}),
        **({} if trial.study is None else {"study": trial.study, "search_seed": 3}),
        **trial.record,
    }
    (run_dir / "metadata.json").write_text(json.dumps(metadata))
    lines = [f"{step},{time},{value},0.5\n" for step, time, value in trial.rows]
    header = f"global_step,accumulated_submission_time,{metric},train.loss\n"
    (run_dir / "metrics.csv").write_text(header + "".join(lines))


def algoperf_frames(table: pd.DataFrame, written: dict[str, Trial]) -> dict[str, pd.DataFrame]:
    """The trials of aeff's trials `table` (in its order) as AlgoPerf's scoring reads them:
    one row per trial, its evaluations as arrays (metric `validation/accuracy`, times
    `score`, steps `global_step`), per submission. AlgoPerf records only the evaluations
    made while time remained; a trial that did not finish is no result (aeff's rule), so
    its values are NaN."""
    frames: dict[str, list[dict]] = {}
    for row in table.sort_values("order").itertuples():
        trial = written[row.run_dir]
        metric, _, budget = WORKLOADS[trial.workload]
        rows = np.array([r for r in trial.rows if r[1] < budget], dtype=float).reshape(-1, 3)
        values = rows[:, 2] if row.finished else np.full(len(rows), np.nan)
        frames.setdefault(row.submission, []).append(
            {
                "workload": trial.workload,
                "study": row.study,
                "trial": (row.run_dir, "experiment"),
                metric.replace(".", "/"): values,
                "score": rows[:, 1],
                "accumulated_submission_time": rows[:, 1],
                "global_step": rows[:, 0],
            }
        )
    return {name: pd.DataFrame(rows) for name, rows in frames.items()}


def algoperf_setup(module: Any) -> None:
    """AlgoPerf's module globals for WORKLOADS (its registry's part, set by the caller)."""
    module.BASE_WORKLOADS = sorted(WORKLOADS)
    module.NUM_BASE_WORKLOADS = len(WORKLOADS)
    module.METRICS_AND_TARGETS = {
        name: (metric.replace(".", "/"), target) for name, (metric, target, _) in WORKLOADS.items()
    }
    module.MAX_BUDGETS = {name: budget for name, (_, _, budget) in WORKLOADS.items()}
