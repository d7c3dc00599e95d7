"""AlgoPerf's scoring of training algorithms, as pure functions of the trials table and
their evaluations (`trials_table.read_trials` builds both from the records; `compare.py`
writes and prints the result).

After AlgoPerf's `scoring/performance_profile.py`, `score_submissions.py` and
`compute_speedups.py` (mlcommons/algorithmic-efficiency at
2c90454fc05d5bdf3598b0c7651e611f132a7060, 2025-09-05; docs/comparing-algorithms.md):

- a trial reaches the target at its first evaluation on target, counted among the
  evaluations made while time remained (AlgoPerf evaluates only then);
- a study's best trial is the one whose first evaluation on target has the least *index*
  (the first trial on a tie), whatever its time; a study no trial of which reaches the
  target takes inf;
- a workload's time is the median over its studies (numpy's, inf included);
- a time over 4x the fastest submission's becomes inf; rho(tau) is the fraction of the
  workloads a submission trained within tau times the fastest one's time; the score is
  the area under rho over [min_tau, max_tau] (trapezoids), divided by that range;
- a speedup is a submission's time over the baseline's per workload, inf taken as the
  budget + 1, averaged as a geometric mean (below 1: faster than the baseline).
"""

import numpy as np
import pandas as pd
from scipy import stats

from aeff.errors import ConfigError
from aeff.training.rules import counts_toward_target

CLOCKS = {"time": "accumulated_submission_time", "steps": "global_step"}
TIME, STEPS = CLOCKS["time"], CLOCKS["steps"]
STUDY_KEYS = ["submission", "workload", "study"]
TOO_SLOW = 4  # AlgoPerf: a time over 4x the fastest counts as not reaching the target
MIN_TAU, MAX_TAU, NUM_POINTS = 1.0, 4.0, 100  # AlgoPerf's leaderboard


def crossings(trials: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """`trials` with each one's first evaluation on target: its index among the
    evaluations made while time remained (-1: none), and its time and step (inf: none).

    `trials`: one row per trial, with `run_dir`, `finished`, `target_value`,
    `higher_is_better`, `budget`. `evals`: its evaluations in order, with `run_dir`,
    `value` (of the trial's target metric), `accumulated_submission_time`, `global_step`.
    A trial that did not finish reached nothing, whatever its rows say.
    """
    rows = evals.merge(trials[["run_dir", "target_value", "higher_is_better", "budget"]])
    rows = rows[counts_toward_target(rows[TIME], rows["budget"])]
    rows = rows.assign(index=rows.groupby("run_dir", sort=False).cumcount())
    on_target = np.where(
        rows["higher_is_better"],
        rows["value"] >= rows["target_value"],
        rows["value"] <= rows["target_value"],
    )
    firsts = rows[on_target].groupby("run_dir", sort=False)[["index", TIME, STEPS]].first()
    found = trials[["run_dir"]].join(firsts, on="run_dir")
    reached = trials["finished"].to_numpy() & found["index"].notna().to_numpy()
    return trials.assign(
        index=np.where(reached, found["index"], -1).astype(int),
        **{clock: np.where(reached, found[clock], np.inf).astype(float) for clock in (TIME, STEPS)},
    )


def best_trials(crossed: pd.DataFrame) -> pd.DataFrame:
    """One row per study (`STUDY_KEYS`): its best trial, the one whose first evaluation
    on target has the least index, the first in `order` on a tie (AlgoPerf's idxmin of
    argmax), with that trial's time and step; a study none of whose trials reached the
    target has inf for both and no best trial."""
    counts = crossed.groupby(STUDY_KEYS, sort=False).size().rename("trials")
    reached = crossed[crossed["index"] >= 0].sort_values(["index", "order"], kind="stable")
    best = reached.groupby(STUDY_KEYS, sort=False)[["run_dir", "index", TIME, STEPS]].first()
    studies = counts.to_frame().join(best).fillna({TIME: np.inf, STEPS: np.inf, "index": -1})
    return studies.astype({"index": int}).reset_index()


def workload_times(studies: pd.DataFrame) -> pd.DataFrame:
    """One row per (submission, workload): the median over its studies of each clock
    (numpy's median: inf once half the studies, or more, missed the target), the number
    of studies and of those that reached the target."""
    by_workload = studies.groupby(["submission", "workload"], sort=False)
    table = by_workload[[TIME, STEPS]].agg(lambda values: float(np.median(values)))
    table["studies"] = by_workload.size()
    table["studies_reached"] = by_workload["index"].agg(lambda index: int((index >= 0).sum()))
    return table.reset_index()


def time_matrix(table: pd.DataFrame, clock: str) -> pd.DataFrame:
    """Submissions x workloads (sorted, as AlgoPerf sorts them) of `clock`'s time; NaN
    where a submission has no trial of a workload."""
    matrix = table.pivot(index="submission", columns="workload", values=clock)
    return matrix.reindex(sorted(matrix.columns), axis=1)


def ratios_to_fastest(times: pd.DataFrame) -> pd.DataFrame:
    """Each time over the fastest submission's for its workload, after a time over
    `TOO_SLOW` times the fastest becomes inf. Where the ratio is undefined (inf over inf)
    the time stays, as AlgoPerf's `DataFrame.update` leaves it."""
    fastest = times.min(axis=0)
    times = times.mask(times.gt(TOO_SLOW * fastest, axis=1), np.inf)
    ratios = times.div(times.min(axis=0), axis=1)
    return ratios.where(ratios.notna(), times)


def taus(
    ratios: pd.DataFrame,
    min_tau: float = MIN_TAU,
    max_tau: float | None = MAX_TAU,
    num_points: int = NUM_POINTS,
    scale: str = "linear",
) -> np.ndarray:
    """The tau at which rho is taken: `num_points` from `min_tau` to `max_tau`, evenly
    spaced or (scale `log`) log-spaced; max_tau None: the largest finite ratio."""
    if max_tau is None:
        max_tau = ratios.replace([np.inf, np.nan], -1).to_numpy().max()
    if scale == "log":
        return np.logspace(np.log10(min_tau), np.log10(max_tau), num=num_points)
    if scale == "linear":
        return np.linspace(min_tau, max_tau, num=num_points)
    raise ConfigError(f"compare --scale {scale}: give linear or log.")


def performance_profiles(
    times: pd.DataFrame,
    min_tau: float = MIN_TAU,
    max_tau: float | None = MAX_TAU,
    num_points: int = NUM_POINTS,
    scale: str = "linear",
) -> pd.DataFrame:
    """rho(tau) per submission (rows) at each tau (columns; log10(tau) when the scale is
    log): the fraction of the workloads of `times` whose ratio to the fastest is <= tau."""
    ratios = ratios_to_fastest(times)
    points = taus(ratios, min_tau, max_tau, num_points, scale)
    rho = np.stack([(ratios <= tau).sum(axis=1) / times.shape[1] for tau in points], axis=1)
    columns = np.log10(points) if scale == "log" else points
    return pd.DataFrame(rho, index=times.index, columns=columns)


def leaderboard_scores(profiles: pd.DataFrame, normalize: bool = True) -> pd.Series:
    """The area under each submission's profile (trapezoids over its columns), divided by
    the columns' range when `normalize` (AlgoPerf's leaderboard: 1 is fastest on all)."""
    x = profiles.columns.to_numpy(dtype=float)
    scores = np.trapezoid(profiles.to_numpy(dtype=float), x=x, axis=1)
    if normalize:
        scores = scores / (x.max() - x.min())
    return pd.Series(scores, index=profiles.index, name="leaderboard_score")


def speedups(times: pd.DataFrame, baseline: str, ceilings: pd.Series) -> pd.DataFrame:
    """Per (submission, workload): its time and the baseline's, inf taken as the workload's
    ceiling (AlgoPerf: the budget + 1 s), and their ratio (below 1: faster)."""
    capped = times.apply(lambda column: column.replace(np.inf, ceilings[column.name]))
    table = capped.stack(future_stack=True).rename("time").reset_index()
    table["baseline_time"] = table["workload"].map(capped.loc[baseline])
    table["speedup"] = table["time"] / table["baseline_time"]
    return table


def mean_speedups(table: pd.DataFrame) -> pd.Series:
    """Each submission's geometric mean of its speedups over the workloads."""
    return table.groupby("submission", sort=False)["speedup"].agg(stats.gmean)


def compare(
    trials: pd.DataFrame,
    evals: pd.DataFrame,
    baseline: str | None = None,
    clock: str = "time",
    scale: str = "linear",
    max_tau: float | None = MAX_TAU,
) -> dict[str, pd.DataFrame]:
    """Every table of the comparison: `studies`, `table` (both clocks), `profiles` and
    `scores` (with the mean speedup over `baseline`; default: the first DIR's) on
    `clock`, and `speedups`."""
    if clock not in CLOCKS:
        raise ConfigError(f"compare --clock {clock}: give {' or '.join(CLOCKS)}.")
    if max_tau is not None and not max_tau > MIN_TAU:
        raise ConfigError(f"compare --max-tau {max_tau:g}: give more than {MIN_TAU:g}.")
    studies = best_trials(crossings(trials, evals))
    table = workload_times(studies)
    # A workload a submission never ran counts as missed, as a study that missed it: inf.
    times = time_matrix(table, CLOCKS[clock]).fillna(np.inf)
    if baseline is None:  # the first DIR's
        baseline = trials.sort_values(["found_in", "order"])["submission"].iloc[0]
    if baseline not in times.index:
        raise ConfigError(
            f"compare --baseline {baseline}: no such submission; they are {', '.join(times.index)}."
        )
    profiles = performance_profiles(times, max_tau=max_tau, scale=scale)
    gains = speedups(times, baseline, ceilings(trials, clock))
    scores = leaderboard_scores(profiles).to_frame()
    scores[f"speedup_over_{baseline}"] = mean_speedups(gains)
    return {
        "studies": studies,
        "table": table,
        "profiles": profiles,
        "speedups": gains,
        "scores": scores.rename_axis("submission").reset_index(),
    }


def ceilings(trials: pd.DataFrame, clock: str) -> pd.Series:
    """What a speedup takes for a workload's inf: its budget + 1 s (AlgoPerf), or on the
    steps clock its `max_steps` + 1 (inf where the trials set none)."""
    first = trials.groupby("workload").first()
    if clock == "time":
        return first["budget"] + 1
    return pd.to_numeric(first["max_steps"], errors="coerce").add(1).fillna(np.inf)
