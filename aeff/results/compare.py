"""Comparing training algorithms with AlgoPerf's scoring (`python -m aeff.results compare`).

The numerics are pure functions of tables, after AlgoPerf's `scoring/performance_profile.py`,
`score_submissions.py` and `compute_speedups.py` (mlcommons/algorithmic-efficiency at
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

`read_trials` is the one part that reads files: it turns run dirs' records into the
trials table and their evaluations. `write_comparison` writes the report files.
"""

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from aeff.algoperf import submission as algoperf_submission
from aeff.algoperf.submission import submission_name
from aeff.errors import ConfigError
from aeff.records.files import inert, write_text_atomically
from aeff.records.run_dir import FINISHED, METADATA, status_of
from aeff.records.sweep_dir import PLAN, STUDIES_PLAN
from aeff.results import (
    plain_text,
    pyplot,
    read_rows,
    record_of,
    short,
    trial_dirs,
)
from aeff.training.rules import counts_toward_target

log = logging.getLogger(__name__)

TABLE = "compare.csv"  # time to target per (submission, workload), both clocks
STUDIES = "studies.csv"  # each study's best trial and its time
SPEEDUPS = "speedups.csv"
PROFILES = "performance_profiles.csv"
PROFILES_PLOT = "performance_profiles.png"
SCORES = "scores.csv"

CLOCKS = {"time": "accumulated_submission_time", "steps": "global_step"}
TIME, STEPS = CLOCKS["time"], CLOCKS["steps"]
STUDY_KEYS = ["submission", "workload", "study"]
# One value per workload, or the times are not comparable.
SAME_FOR_A_WORKLOAD = (
    "workload.target_metric",
    "workload.target_value",
    "workload.max_allowed_runtime_sec",
    "max_steps",
    "workload_path_sha256",
)
REQUIRED = ("workload", "submission._target_", *SAME_FOR_A_WORKLOAD[:3])
TOO_SLOW = 4  # AlgoPerf: a time over 4x the fastest counts as not reaching the target
MIN_TAU, MAX_TAU, NUM_POINTS = 1.0, 4.0, 100  # AlgoPerf's leaderboard


# --- The numerics: pure functions of tables ---------------------------------------------


def higher_is_better(metric: str) -> bool:
    """aeff's rule (`spec.Workload.target_higher_is_better`): a loss is lowered."""
    return not metric.endswith("loss")


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


# --- Reading the records -----------------------------------------------------------------


def read_trials(
    dirs: Iterable[Path], names: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials table and their evaluations from the records at or below `dirs`.

    Trials are matched by what their records say: the workload, the submission (its class
    and its file's sha256), the study. A trial belongs to study `study` of the sweep that
    records it, or, where its record has no `study`, to the study of every trial of its
    sweep (`sweep_dir`); a trial run alone is a study of its own. A trial found below two
    of `dirs` counts once.
    """
    dirs = [Path(folder) for folder in dirs]
    records: dict[Path, Mapping[str, Any]] = {}
    found_in: dict[Path, int] = {}  # which of `dirs` each trial was found in first
    evals = []
    for number, folder in enumerate(dirs):
        found = [(d.resolve(), record_of(d)[0]) for d in trial_dirs(folder)]
        new = {d: m for d, m in found if m is not None and d not in records}
        for run_dir, metadata in new.items():
            if all(metadata.get(key) is not None for key in REQUIRED):
                records[run_dir], found_in[run_dir] = metadata, number
            else:
                log.warning(
                    "compare: left out %s: its record names no workload or target.", run_dir
                )
        metrics = read_rows(folder)
        if not metrics.empty:
            evals.append(metrics[metrics["run_dir"].isin({str(d) for d in new})])
    if not records:
        raise ConfigError(
            f"compare: no trial records at or below {', '.join(map(str, dirs))}: give sweep "
            "dirs or run dirs."
        )
    check_comparable(records)
    trials = pd.DataFrame([{**trial_of(d, m), "found_in": found_in[d]} for d, m in records.items()])
    trials = trials.sort_values(["origin", "job", "run_dir"], kind="stable", ignore_index=True)
    trials["order"] = range(len(trials))  # on a tie, the trial its sweep ran first
    trials["submission"] = display_names(trials["submission_key"], names or {})
    metrics = pd.concat(evals, ignore_index=True) if evals else pd.DataFrame()
    return trials, target_values(trials, metrics)


def trial_of(run_dir: Path, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's row in the trials table, from its record."""
    origin = metadata.get("sweep_dir") or str(run_dir)
    study = metadata.get("study")
    status = status_of(run_dir, metadata)
    job = metadata.get("hydra.job.num")
    return {
        "run_dir": str(run_dir),
        "origin": origin,
        "job": job if isinstance(job, int) else -1,
        "workload": metadata["workload"],
        "submission_key": submission_key(metadata),
        "study": origin if study is None else f"{origin}#{study}",
        "status": status,
        "finished": status in FINISHED,
        "target_metric": metadata["workload.target_metric"],
        "target_value": float(metadata["workload.target_value"]),
        "higher_is_better": higher_is_better(metadata["workload.target_metric"]),
        "budget": float(metadata["workload.max_allowed_runtime_sec"]),
        "max_steps": metadata.get("max_steps"),
        # What shared the trial's clock: its vectorized group, parallel trials.
        "shared_by": (metadata.get("group.size") or 1, metadata.get("parallel_trials") or 1),
    }


def submission_key(metadata: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """What tells submissions apart: the class, and the user file it came from (its
    sha256, and its name for display)."""
    path = metadata.get("submission_path")
    name = None
    if path:  # an AlgoPerf file by its algorithm's name, one of aeff's by its file's
        algoperf = algoperf_submission.is_target(metadata["submission._target_"])
        name = submission_name(metadata) if algoperf else Path(str(path)).name
    return metadata["submission._target_"], metadata.get("submission_path_sha256"), name


def display_names(keys: pd.Series, names: Mapping[str, str]) -> list[str]:
    """A short unique name per submission: its class (`Adam`) or its file's name
    (`my_adam.py`); where two share one, the class's full path or the file's name with
    its sha256's first 8 digits. `names` renames them (short name -> the name to show)."""
    distinct = list(dict.fromkeys(keys))
    shortest = {key: key[2] or key[0].rpartition(".")[2] for key in distinct}
    taken = pd.Series(shortest).value_counts()
    unique = {
        key: name if taken[name] == 1 else (f"{name}@{(key[1] or '')[:8]}" if key[2] else key[0])
        for key, name in shortest.items()
    }
    unknown = sorted(set(names) - set(unique.values()))
    if unknown:
        raise ConfigError(
            f"compare --name {unknown[0]}=...: no submission is called {unknown[0]}; they are "
            f"{', '.join(unique.values())}."
        )
    shown = {key: names.get(name, name) for key, name in unique.items()}
    if len(set(shown.values())) < len(shown):
        raise ConfigError(f"compare --name: two submissions would be called alike: {shown}.")
    return [shown[key] for key in keys]


def check_comparable(records: Mapping[Path, Mapping[str, Any]]) -> None:
    """Refuse trials of one workload with different targets, budgets or models, in one line."""
    first: dict[tuple[str, str], tuple[Any, Path]] = {}
    for run_dir, metadata in records.items():
        # The model and data too (width, depth, splits, ...): the identity's workload keys.
        model = sorted(k for k in metadata.get("identity", {}) if k.startswith("workload."))
        for key in dict.fromkeys([*SAME_FOR_A_WORKLOAD, *model]):
            value = metadata.get("identity", {}).get(key, metadata.get(key))
            seen, where = first.setdefault((metadata["workload"], key), (value, run_dir))
            if value != seen:
                raise ConfigError(
                    f"compare: the trials of workload {metadata['workload']} differ in {key}: "
                    f"{seen!r} ({where}) and {value!r} ({run_dir}); compare trials of one "
                    "workload config, target and budget."
                )


def target_values(trials: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Each trial's evaluations in order: its run dir, its own target metric's value and
    both clocks."""
    if metrics.empty:
        return pd.DataFrame(columns=["run_dir", "value", TIME, STEPS])
    metric_of = trials.set_index("run_dir")["target_metric"]
    rows = metrics[metrics["run_dir"].isin(metric_of.index)].reset_index(drop=True)
    wanted = rows["run_dir"].map(metric_of)
    value = pd.Series(np.nan, index=rows.index)
    for metric in wanted.unique():
        if metric in rows:
            mine = wanted == metric
            value[mine] = pd.to_numeric(rows.loc[mine, metric], errors="coerce")
    clocks = {c: pd.to_numeric(rows.get(c, np.nan), errors="coerce") for c in (TIME, STEPS)}
    return pd.DataFrame({"run_dir": rows["run_dir"], "value": value, **clocks})


# --- The comparison and its report ------------------------------------------------------


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


def unfinished(trials: pd.DataFrame) -> str | None:
    """A line on the trials that did not finish, which count as missing the target."""
    left = trials[~trials["finished"]]
    if left.empty:
        return None
    statuses = ", ".join(f"{n} {status}" for status, n in left["status"].value_counts().items())
    return f"{statuses} trials (e.g. {left['run_dir'].iloc[0]}) count as missing the target."


def unequal_clocks(trials: pd.DataFrame, clock: str) -> str | None:
    """A line when, on the time clock, trials ran in groups of different sizes or beside
    different numbers of parallel trials: each was charged what it shared."""
    shared = sorted(set(trials["shared_by"]))
    if clock != "time" or len(shared) < 2:
        return None
    sizes = "; ".join(f"{g} trials per program, {p} at once" for g, p in shared)
    return (
        f"the trials' clocks were shared unequally ({sizes}): their times are not "
        "comparable; --clock steps is."
    )


def nothing_reached(result: Mapping[str, pd.DataFrame], clock: str) -> str | None:
    """A line when no submission reached the target on any workload: every profile is 0,
    and the line says what is missing (the studies that reached it, per cell)."""
    table = result["table"]
    if not len(table) or np.isfinite(table[CLOCKS[clock]]).any():
        return None
    reached = "; ".join(
        f"{row.submission}/{row.workload}: {row.studies_reached} of {row.studies}"
        for row in table.itertuples()
    )
    return (
        "no submission reached the target on any workload, so every profile and leaderboard_score "
        "is 0 "
        f"(studies that reached it: {reached}); a workload's time is the median over its "
        "studies, so more than half of them must reach the target within the budget "
        "(docs/comparing-algorithms.md: the smallest useful comparison)."
    )


def missing_cells(table: pd.DataFrame) -> list[str]:
    """`submission/workload` pairs with no trial: counted as never reaching the target."""
    have = set(zip(table["submission"], table["workload"], strict=True))
    return [
        f"{s}/{w}"
        for s in table["submission"].unique()
        for w in table["workload"].unique()
        if (s, w) not in have
    ]


def check_out(out: Path, dirs: Iterable[Path] = ()) -> None:
    """Refuse to write the report into a trial's run dir (or a folder inside one), onto a
    file, into one of the compared `dirs` or into a sweep dir: its own `studies.csv`,
    `summary.csv`... are not the comparison's to replace."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"compare --out {out}: that is a file; give a folder.")
    if out.resolve() in {Path(folder).resolve() for folder in dirs}:
        raise ConfigError(
            f"compare --out {out}: that is one of the folders compared; give a folder of "
            "its own, e.g. the default ./compare."
        )
    if any((out / name).exists() for name in (PLAN, STUDIES_PLAN)):
        raise ConfigError(
            f"compare --out {out}: that is a sweep dir, whose own files the report would "
            "replace; give a folder of its own, e.g. the default ./compare."
        )
    for folder in (out.resolve(), *out.resolve().parents):
        if (folder / METADATA).exists():
            raise ConfigError(
                f"compare --out {out}: {folder} is a trial's run dir; give a folder outside it."
            )


def write_comparison(
    result: Mapping[str, pd.DataFrame], out: Path, clock: str, scale: str
) -> list[Path]:
    """The report files in `out` (made if missing): the tables and the profiles' plot."""
    check_out(out)
    out = out.resolve()
    try:
        return write_files(result, out, clock, scale)
    except OSError as error:
        raise ConfigError(f"compare --out {out}: cannot write there: {error}.") from None


def write_files(
    result: Mapping[str, pd.DataFrame], out: Path, clock: str, scale: str
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        TABLE: result["table"].rename(columns=SHOWN),
        STUDIES: result["studies"],
        SPEEDUPS: result["speedups"],
        SCORES: result["scores"],
        PROFILES: result["profiles"].rename_axis("submission").reset_index(),
    }
    for name, frame in files.items():
        write_text_atomically(out / name, frame.map(inert).to_csv(index=False))
    plot_profiles(result["profiles"], clock, scale, out / PROFILES_PLOT)
    return [out / name for name in (*files, PROFILES_PLOT)]


def plot_profiles(profiles: pd.DataFrame, clock: str, scale: str, path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    try:
        for submission, rho in profiles.iterrows():
            axes.plot(profiles.columns, rho.to_numpy(), label=plain_text(submission))
        tau = "log10(tau)" if scale == "log" else "tau"
        axes.set_xlabel(f"{tau}: {CLOCKS[clock]} to target over the fastest submission's")
        axes.set_ylabel("fraction of workloads")
        axes.set_ylim(-0.02, 1.02)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
    finally:
        plt.close(figure)


SHOWN = {TIME: "time_to_target", STEPS: "steps_to_target"}  # the table's clocks, as summary's


def as_text(result: Mapping[str, pd.DataFrame], tau_range: str) -> str:
    """The comparison for a terminal: time to target per submission and workload, and each
    submission's score and mean speedup."""
    table, scores = result["table"].rename(columns=SHOWN), result["scores"]
    speedup = scores.columns[-1]
    return "\n".join(
        [
            table.to_string(index=False, formatters=dict.fromkeys(table, short)),
            "",
            scores.to_string(index=False, formatters=dict.fromkeys(scores, short)),
            f"leaderboard_score: the area under the performance profile over tau in [{tau_range}] "
            "(AlgoPerf's leaderboard score; 1: fastest on every workload)",
            f"{speedup}: the geometric mean over the workloads of the ratio to "
            f"{speedup.removeprefix('speedup_over_')}'s time to target (below 1: faster)",
        ]
    )


def as_number(text: str) -> float:
    """A command-line tau: a positive finite number."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value
