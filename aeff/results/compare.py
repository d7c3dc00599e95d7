"""`python -m aeff.results compare`'s result: its lines on what the scores rest on (trials
that did not finish, clocks shared unequally, nothing reached), its table on the console
and its files in --out (the tables, the performance profiles' plot). The scoring is
`scoring.py`'s; the trials table `trials_table.py`'s."""

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from aeff.errors import ConfigError
from aeff.records.files import inert, write_text_atomically
from aeff.records.run_dir import METADATA
from aeff.records.sweep_dir import PLAN, STUDIES_PLAN
from aeff.results.plots import plain_text, pyplot
from aeff.results.scoring import CLOCKS, STEPS, TIME
from aeff.results.text import short

TABLE = "compare.csv"  # time to target per (submission, workload), both clocks
STUDIES = "studies.csv"  # each study's best trial and its time
SPEEDUPS = "speedups.csv"
PROFILES = "performance_profiles.csv"
PROFILES_PLOT = "performance_profiles.png"
SCORES = "scores.csv"


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
