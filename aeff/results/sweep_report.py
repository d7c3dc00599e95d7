"""What a sweep's report files say: `summary.csv` (`summary.summary`'s table) and
`sweep.json` (the best trial and AlgoPerf's score of a sweep, or of a sweep of studies the
median over them, with `studies.csv`). Computed here from the trials read back; written by
the sweep dir's owner, `aeff.records.sweep_dir`. `report.html` is `report.py`'s."""

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeff.records import sweep_dir as sweep_record
from aeff.records.files import inert
from aeff.records.run_dir import FINISHED, UNRECORDED
from aeff.results.summary import NOT_FAILED, NOT_STARTED, summary

log = logging.getLogger(__package__)


def write_sweep_report(
    sweep_dir: Path,
    ended: Mapping[int, str | None] | None = None,
    metrics: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict]:
    """`summary.csv` and `sweep.json`: every trial, the best one and AlgoPerf's score.
    `ended`: see `summary.summary`; `metrics`: the sweep's rows, read here unless given."""
    table = summary(sweep_dir, ended, metrics)
    report = sweep_report(table, sweep_record.plan_record(sweep_dir) or {})
    sweep_record.write_summary(sweep_dir, as_csv(table))
    sweep_record.write_report(sweep_dir, report)
    return table, report


def sweep_report(table: pd.DataFrame, plan: Mapping[str, Any]) -> dict[str, Any]:
    """sweep.json of the summary `table` and the sweep's `plan`.

    The score is the least time to target over the finished trials that reached it
    (none if no trial did); divergence is a result; failure, interruption, damage and a
    planned trial that never started are not, whatever their rows say. A trial that ran
    unrecorded (logging=off) has no result and is no failure.
    """
    finished = table[table["status"].isin(FINISHED)] if len(table) else table
    reached = finished.dropna(subset=["time_to_target"]) if "time_to_target" in table else table[:0]
    best = reached.loc[reached["time_to_target"].idxmin()] if len(reached) else None
    started = table[table["status"] != NOT_STARTED] if len(table) else table
    return {
        "num_trials": len(started),
        "num_planned": len(table),  # a row for every planned trial
        "num_reached_target": len(reached),
        "num_unrecorded": int((table["status"] == UNRECORDED).sum()) if len(table) else 0,
        "failed": [row.run_dir for row in table.itertuples() if row.status not in NOT_FAILED],
        "best_time_to_target": None if best is None else float(best["time_to_target"]),
        "score": None if best is None else float(best["time_to_target"]),  # the same: see docs
        "best_trial": None if best is None else plain(best),
        "measured_under_sharing": sharing_note(plan.get("sharing"), table),
        "study": plan.get("study", 0),
        "search_seed": plan.get("search_seed"),
    }


def sharing_note(parallel: str | None, table: pd.DataFrame) -> str | None:
    """sweep.json's `measured_under_sharing`: the plan's note of trials run at once, and of
    trials whose host was busy with other work (`busy_host`), said once as a warning."""
    busy = int(table["host_busy"].fillna(False).astype(bool).sum()) if "host_busy" in table else 0
    notes = [parallel] if parallel else []
    if busy:
        notes.append(
            f"{busy} of {len(table)} trials ran while other processes kept the host's cores "
            "busy (summary.csv's host_busy)"
        )
        log.warning(
            "%s: their clocks counted waits for a core, so their times to target do not "
            "compare with a quiet machine's. Run sweeps on a host with a core to spare.",
            notes[-1],
        )
    return "; ".join(notes) or None


def write_studies_report(
    sweep_dir: Path, studies: list[tuple[Path, dict]]
) -> tuple[pd.DataFrame, dict]:
    """`studies.csv` and the sweep dir's `sweep.json` from each study's (folder, sweep.json)."""
    table = studies_table(studies)
    report = studies_report(table, studies)
    sweep_record.write_studies(sweep_dir, as_csv(table))
    sweep_record.write_report(sweep_dir, report)
    return table, report


def studies_table(studies: list[tuple[Path, dict]]) -> pd.DataFrame:
    """studies.csv: each study's best trial and its time to target (inf when no trial of
    it reached the target), from each study's (folder, sweep.json)."""
    rows = []
    for folder, report in studies:
        best = report["best_trial"] or {}
        rows.append(
            {
                "study": report["study"],
                "search_seed": report["search_seed"],
                "time_to_target": math.inf if report["score"] is None else report["score"],
                "steps_to_target": best.get("steps_to_target"),
                "best_run_dir": best.get("run_dir"),
                "num_planned": report["num_planned"],
                "num_trials": report["num_trials"],
                "num_reached_target": report["num_reached_target"],
                "num_failed": len(report["failed"]),
                "study_dir": str(Path(folder).resolve()),
            }
        )
    return pd.DataFrame(rows)


def studies_report(table: pd.DataFrame, studies: list[tuple[Path, dict]]) -> dict[str, Any]:
    """AlgoPerf's score of a workload tuned in studies: the median over the studies of
    each one's time (`table`; inf, written null in JSON, when the median study missed it)."""
    median = float(np.median(table["time_to_target"])) if len(table) else math.inf
    sharing = [r["measured_under_sharing"] for _, r in studies if r["measured_under_sharing"]]
    return {
        "num_studies": len(table),
        "median_time_to_target": median,  # null when infinite (write_json_atomically)
        "score": median,  # the same: see docs
        "score_rule": "median over studies of each study's least time to target",
        "studies": [plain(row) for _, row in table.iterrows()],
        "num_trials": sum(r["num_trials"] for _, r in studies),
        "num_planned": sum(r["num_planned"] for _, r in studies),
        "num_reached_target": sum(r["num_reached_target"] for _, r in studies),
        "num_unrecorded": sum(r["num_unrecorded"] for _, r in studies),
        "failed": [run_dir for _, r in studies for run_dir in r["failed"]],
        "measured_under_sharing": sharing[0] if sharing else None,
    }


def as_csv(table: pd.DataFrame) -> str:
    """A table as its CSV file holds it: no index, a text a spreadsheet would run inert."""
    return table.map(inert).to_csv(index=False)


def plain(row: pd.Series) -> dict[str, Any]:
    """A table row as JSON takes it, every float whole (pandas' `to_json` keeps 10
    digits: 0.0025968668 for the 0.002596866783593736 a trial ran with); NaN as null."""
    values = {key: value.item() if hasattr(value, "item") else value for key, value in row.items()}
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}
