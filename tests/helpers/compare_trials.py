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
    `score`, steps `global_step`), per submission, its workload named with its framework
    (`mnist_jax`), as AlgoPerf's `scoring_utils` expects. AlgoPerf records only the evaluations
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
                "workload": f"{trial.workload}_jax",
                "study": row.study,
                "trial": (row.run_dir, "experiment"),
                metric.replace(".", "/"): values,
                "score": rows[:, 1],
                "accumulated_submission_time": rows[:, 1],
                "global_step": rows[:, 0],
            }
        )
    return {name: pd.DataFrame(rows) for name, rows in frames.items()}


def known_trials() -> list[Trial]:
    """2 submissions x 2 workloads x 3 studies, with a tie, a study that misses the target,
    a target reached only past the budget and a failed study. mnist: accuracy >= 0.97 in
    60 s; mnist_loss: loss <= 0.3 in 30 s."""
    adam, nesterov = {"submission": ADAM, "sweep": "adam"}, {"submission": NESTEROV, "sweep": "nag"}
    mnist, loss = {"workload": "mnist"}, {"workload": "mnist_loss"}
    return [
        # Study 0: both on target at their second evaluation; the first trial wins the tie
        # although the second got there sooner (AlgoPerf picks by evaluation index).
        Trial(**adam, **mnist, study=0, rows=[(100, 10.0, 0.9), (200, 20.0, 0.97)]),
        Trial(**adam, **mnist, study=0, rows=[(100, 8.0, 0.9), (200, 16.0, 0.975)]),
        # Study 1: the fewest evaluations win, not the least time.
        Trial(**adam, **mnist, study=1, rows=[(100, 10.0, 0.9), (300, 24.0, 0.971)]),
        Trial(**adam, **mnist, study=1, rows=[(150, 25.0, 0.98)]),
        # Study 2: one trial never reaches it, the other only past the budget: inf.
        Trial(**adam, **mnist, study=2, rows=[(100, 12.0, 0.5), (200, 24.0, 0.6)]),
        Trial(**adam, **mnist, study=2, rows=[(100, 12.0, 0.5), (500, 61.0, 0.99)]),
        Trial(**nesterov, **mnist, study=0, rows=[(100, 5.0, 0.97)]),
        Trial(**nesterov, **mnist, study=1, rows=[(100, 6.0, 0.9), (200, 12.0, 0.98)]),
        # A failed study: its trial failed, so its rows are no result.
        Trial(**nesterov, **mnist, study=2, rows=[(100, 4.0, 0.99)], status="failed"),
        Trial(**adam, **loss, study=0, rows=[(50, 3.0, 0.5), (100, 6.0, 0.3)]),
        Trial(**adam, **loss, study=1, rows=[(50, 3.0, 0.29)]),
        Trial(**adam, **loss, study=2, rows=[(50, 3.0, 0.5), (100, 6.0, 0.4)]),
        Trial(**nesterov, **loss, study=0, rows=[(50, 2.0, 0.31), (100, 4.0, 0.35)]),
        Trial(**nesterov, **loss, study=1, rows=[(50, 10.0, 0.4)]),
        Trial(**nesterov, **loss, study=2, rows=[(50, 2.0, 0.2)]),
    ]


def random_trials(seed: int) -> list[Trial]:
    """Trials of 2-3 submissions on both workloads, 1-3 studies of 1-4 trials each, with
    coarse times and values so that ties, misses and evaluations past the budget occur."""
    rng = np.random.default_rng(seed)
    trials = []
    for submission in [ADAM, NESTEROV, "aeff.submissions.sgd.SGD"][: rng.integers(2, 4)]:
        for workload, (metric, target, budget) in WORKLOADS.items():
            sign = -1 if metric.endswith("loss") else 1
            for study in range(rng.integers(1, 4)):
                for _ in range(rng.integers(1, 5)):
                    steps = np.cumsum(rng.integers(1, 4, size=rng.integers(1, 6))) * 100
                    times = steps / 100 * rng.choice([budget / 8, budget / 4, budget / 2])
                    values = target + sign * rng.choice([-0.02, -0.01, 0.0, 0.01], size=len(steps))
                    rows = list(zip(steps.tolist(), times.tolist(), values.tolist(), strict=True))
                    status = "failed" if rng.random() < 0.1 else "completed"
                    sweep = submission.rpartition(".")[2]
                    trials.append(Trial(submission, workload, study, rows, status, sweep))
    return trials


# Each case: trials, then compare's clock, scale and max_tau. max_tau None is AlgoPerf's
# largest finite ratio: 1 when no ratio is larger, which gives both an empty range of tau
# (NaN scores, numpy's warning).
KNOWN_CASES = [("time", "linear", 4.0), ("steps", "linear", 4.0), ("time", "log", 4.0)]
KNOWN_CASES.append(("time", "log", None))
RANDOM_CASES = [("time", "linear", 4.0), ("steps", "log", None)]


def scoring_cases() -> dict[str, tuple[list[Trial], str, str, float | None]]:
    """The trials and settings on which aeff's scores are checked against AlgoPerf's, by a
    name that says them: `known/time/linear/4.0`, `random3/steps/log/None`."""
    cases = {}
    for name, trials in [("known", known_trials())] + [
        (f"random{seed}", random_trials(seed)) for seed in range(6)
    ]:
        for clock, scale, max_tau in KNOWN_CASES if name == "known" else RANDOM_CASES:
            cases[f"{name}/{clock}/{scale}/{max_tau}"] = (trials, clock, scale, max_tau)
    return cases


def cell(table: pd.DataFrame, submission: str, workload: str) -> pd.Series:
    """The row of `submission` on `workload` in a table of the comparison."""
    (row,) = table[(table["submission"] == submission) & (table["workload"] == workload)].index
    return table.loc[row]
