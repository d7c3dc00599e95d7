"""The summary: one row per trial (its hyperparameters, status, best target metric, time to
target, whether its host was busy), every planned trial of a sweep included, from its record
and its rows read once (linear in rows)."""

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeff.algoperf.submission import submission_name
from aeff.records.run_dir import DAMAGED, FINISHED, UNRECORDED, began_unrecorded, damage, status_of
from aeff.records.sweep_dir import PLAN, foreign
from aeff.results.rows import (
    NAMED,
    TARGET_METRIC,
    read_rows,
    record_of,
    target_higher_is_better,
    trial_dirs,
)
from aeff.training.rules import counts_toward_target

log = logging.getLogger(__package__)

NOT_STARTED = "not started"  # a planned trial with no record: the sweep was stopped before it
UNREADABLE = "unreadable"  # a trial whose metadata.json cannot be read
FOREIGN = "foreign"  # a planned job's dir holding the record of another run
FAILED = "failed"
# Not failures: a trial that ran with logging=off (UNRECORDED) is a result nobody kept, and
# resuming it would only train it again.
NOT_FAILED = (*FINISHED, UNRECORDED)


def summary(
    path: Path,
    ended: Mapping[int, str | None] | None = None,
    metrics: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per trial: hyperparameters, status, best target metric, time to target.

    `ended`: how the launcher said the jobs it ran ended, by job number (None: returned,
    else the error's line); it tells how a trial with no record (logging=off) ended.

    Linear in rows: every metrics.csv is parsed once, and each figure is found for all
    trials at once (a filter per trial took 96-118 s for 2,000 trials).
    """
    metrics = read_rows(path) if metrics is None else metrics  # rows a caller has read
    planned = (Path(path) / PLAN).exists()  # trial_dirs reads and checks it
    records = [(run_dir, *record_of(run_dir)) for run_dir in trial_dirs(Path(path))]
    targets = {
        str(run_dir.resolve()): (m[TARGET_METRIC], target_higher_is_better(m))
        for run_dir, m, _ in records
        if m and m.get(TARGET_METRIC) is not None
    }
    found = progress(metrics, targets)
    for run_dir in metrics.attrs.get(NAMED, ()):
        found.setdefault(run_dir, {})["named"] = True
    rows = []
    for run_dir, metadata, error in records:
        row = {"run_dir": str(run_dir.resolve())}
        if error:  # an unreadable record: say which, go on with the others
            rows.append({**row, "status": UNREADABLE, "error": error})
        elif metadata is None:
            rows.append({**row, **unrecorded_status(run_dir, ended or {}, planned)})
        else:
            rows.append(trial_row(row, run_dir, metadata, found.get(row["run_dir"], {}), planned))
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


def trial_row(
    row: dict[str, Any],
    run_dir: Path,
    metadata: Mapping[str, Any],
    found: Mapping[str, Any],
    planned: bool,
) -> dict[str, Any]:
    """A started trial's summary row, from its record and what `progress` found in its rows."""
    row["status"] = status_of(run_dir, metadata)
    row["workload"] = metadata.get("workload")
    row["submission"] = submission_name(metadata)
    row.update({k: v for k, v in metadata.items() if k.startswith(("hparams.", "meta."))})
    row["rng_seed"] = metadata.get("rng_seed")
    target = metadata.get(TARGET_METRIC)
    row["target_metric"] = target
    row["best_target_metric"] = found.get(target) if target else None
    crossed = found.get("crossing", (None, None, None))
    row["time_to_target"], row["steps_to_target"], row["time_to_target_resolution"] = crossed
    row["global_step"] = found.get("global_step", 0)
    if "load" in found:
        row["host_busy"] = busy_host(*found["load"], metadata.get("cpu_count"))
    row["rerun_command"] = metadata.get("rerun_command")  # summary.csv's; not on the console
    if metadata.get("error_message"):
        row["error"] = metadata["error_message"]
    if row["status"] == DAMAGED:
        row["error"] = damage(run_dir, metadata)
        if not found.get("named"):  # else numbers_only named it, and the cell
            log.warning("%s", row["error"])
    if planned and (why := foreign(run_dir, int(run_dir.name), metadata)):
        row["status"], row["error"] = FOREIGN, why
        log.warning("%s", why)
    return row


def progress(
    metrics: pd.DataFrame, targets: Mapping[str, tuple[str, bool]]
) -> dict[str, dict[str, Any]]:
    """For each run dir in `metrics`: its last step, its best value of its target metric
    (`targets`: each run dir's, and whether it is better higher) and its first crossing of
    the target (`first_crossings`)."""
    if metrics.empty:
        return {}
    by_trial = metrics.groupby("run_dir", sort=False)
    found = {d: {"global_step": int(s)} for d, s in by_trial["global_step"].max().items()}
    for target, higher in set(targets.values()):
        if target not in metrics:
            continue
        best = by_trial[target].max() if higher else by_trial[target].min()
        for run_dir, value in best.items():
            if targets.get(run_dir) == (target, higher):
                found[run_dir][target] = value
    for run_dir, crossing in first_crossings(metrics).items():
        found[run_dir]["crossing"] = crossing
    if {HOST_CPU, OWN_CPU} <= set(metrics.columns):  # rows written before aeff sampled both
        loads = by_trial[[HOST_CPU, OWN_CPU]].median()
        for run_dir, (host, own) in loads.iterrows():
            found[run_dir]["load"] = (host, own)
    return found


HOST_CPU = "cpu.util.avg_percent_since_last"  # the host's, 0-100 over every core
OWN_CPU = "proc.cpu.cores_since_last"  # the trial's process's, in cores


def busy_host(host_percent: float, own_cores: float, cpus: int | None) -> bool:
    """Whether the trial's host was busy with other work: in its median row, other
    processes used at least half a core while less than half a core was left idle, so
    the trial's clock counted waits for a core (on a quiet machine others use ~0)."""
    if not cpus or not (math.isfinite(host_percent) and math.isfinite(own_cores)):
        return False
    busy = host_percent / 100 * cpus
    return busy - own_cores >= BUSY_CORES and cpus - busy < BUSY_CORES


BUSY_CORES = 0.5


BUDGET = "workload.max_allowed_runtime_sec"  # a column of every row aeff writes


def first_crossings(metrics: pd.DataFrame) -> dict[str, tuple[float, int, float]]:
    """For each run dir whose rows reach the target: the submission time and step of its
    first row on target within the budget, and how closely the row before brackets the
    crossing: 1 - its time / that time (1 for the first row)."""
    if not {"goal_reached", "accumulated_submission_time"} <= set(metrics):
        return {}  # rows written by hand, say: no crossing to find
    run_dirs = metrics["run_dir"].to_numpy()
    times = metrics["accumulated_submission_time"].to_numpy(dtype=float)
    steps = metrics["global_step"].to_numpy()
    on_target = (metrics["goal_reached"].astype(str) == "True").to_numpy()
    if BUDGET in metrics:  # a row after the budget ran out reaches nothing, as in `compare`
        budgets = pd.to_numeric(metrics[BUDGET], errors="coerce").fillna(np.inf).to_numpy()
        on_target = on_target & counts_toward_target(times, budgets)
    reached = np.flatnonzero(on_target)
    firsts = pd.Series(reached).groupby(run_dirs[reached], sort=False).first()
    crossings = {}
    for run_dir, i in firsts.items():
        # A trial's rows are together: the row before is its own unless i is its first.
        before = times[i - 1] if i and run_dirs[i - 1] == run_dir else 0.0
        crossings[run_dir] = (float(times[i]), int(steps[i]), float(1 - before / times[i]))
    return crossings
