"""The results on a terminal: the summary table (`as_text`), a sweep's brief whatever its
size (`brief`), the studies and their median (`studies_text`), and values as a reader
takes them (`short`, `seconds`, `as_value`)."""

import math
import os
from pathlib import Path

import pandas as pd

from aeff.records.run_dir import DAMAGED
from aeff.results.summary import FAILED, FOREIGN, UNREADABLE


def as_text(table: pd.DataFrame, root: Path) -> str:
    """The summary for a terminal: run dirs relative to `root`, missing values as '-'."""
    if table.empty:
        return "(no trials)"
    shown = table.drop(columns=["rerun_command"], errors="ignore")
    shown["run_dir"] = [os.path.relpath(d, root) for d in shown["run_dir"]]
    if "error" in shown:
        shown["error"] = shown["error"].str.slice(0, 60)
    shown = shown.astype(object).where(shown.notna(), "-")  # None and NaN alike
    return shown.to_string(index=False, formatters=dict.fromkeys(shown, short))


CONSOLE_TRIALS = 20  # a sweep's table on the console; a larger one shows its best and counts
PROBLEMS = (FAILED, "interrupted", DAMAGED, UNREADABLE, FOREIGN)


def brief(table: pd.DataFrame, root: Path, what: str = "planned trials") -> str:
    """A sweep's summary (or a folder's: `what`) for the console, short whatever its size:
    the whole table up to CONSOLE_TRIALS trials, else the count of each status and the
    best trials."""
    if len(table) <= CONSOLE_TRIALS:
        return as_text(table, root)
    counts = ", ".join(f"{n} {status}" for status, n in table["status"].value_counts().items())
    reached = table.dropna(subset=["time_to_target"]) if "time_to_target" in table else table[:0]
    best = reached.nsmallest(5, "time_to_target") if len(reached) else reached
    shown = (
        f"the {len(best)} fastest to the target:\n{as_text(best, root)}"
        if len(best)
        else ("no trial reached the target.")
    )
    return f"{len(table)} {what}: {counts}; {shown}"


def count_failed(table: pd.DataFrame) -> int:
    """Trials that ran and did not finish: not those that never started."""
    return int(table["status"].isin(PROBLEMS).sum()) if len(table) else 0


def short(value: object) -> str:
    """A value for a reader: 4 significant digits, a whole number whole (a step count of
    12345 read back as a float is `12345`, not `1.234e+04`)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def as_value(value: object) -> str:
    """A hyperparameter as a config writes it: `0.001`, `cosine`, `null`."""
    return "null" if pd.isna(value) else short(value)


def studies_text(table: pd.DataFrame, report: dict, root: Path) -> str:
    """The studies for a terminal: each one's best trial, and the median over them."""
    shown = table[["study", "search_seed", "time_to_target", "steps_to_target", "best_run_dir"]]
    relative = [os.path.relpath(d, root) if isinstance(d, str) else d for d in shown.best_run_dir]
    shown = shown.assign(best_run_dir=relative)
    shown = shown.astype(object).where(shown.notna(), "-")
    median = report["median_time_to_target"]
    return (
        shown.to_string(index=False, formatters=dict.fromkeys(shown, short))
        + f"\nmedian time to target (over {report['num_studies']} studies of each one's best "
        f"time to target; inf: the median study missed the target): {seconds(median)}"
    )


def seconds(value: float | None) -> str:
    """A time to target for a reader: `1.5 s`, `inf`, `none`."""
    if value is None:
        return "none"
    return short(float(value)) + ("" if math.isinf(value) else " s")
