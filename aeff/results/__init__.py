"""Reading trials back: the summary, plots, and a sweep's report (summary.csv, sweep.json;
`report.html` from `report.py`), written into the sweep dir `aeff.records.sweep_dir` names.
`python -m aeff.results` is its command line (`__main__.py`).
"""

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeff.algoperf.submission import submission_name
from aeff.errors import ConfigError
from aeff.records.concat import load_metrics, nonempty_metrics
from aeff.records.files import inert, write_json_atomically, write_text_atomically
from aeff.records.run_dir import (
    DAMAGED,
    FINISHED,
    METADATA,
    METRICS,
    UNRECORDED,
    began_unrecorded,
    damage,
    read_metadata,
    status_of,
)
from aeff.records.secrets import redact
from aeff.records.sweep_dir import (
    PLAN,
    REPORT,
    STUDIES,
    STUDY_PREFIX,
    SUMMARY,
    plan_record,
    read_plan,
)
from aeff.training.rules import counts_toward_target

log = logging.getLogger(__name__)

NOT_STARTED = "not started"  # a planned trial with no record: the sweep was stopped before it
UNREADABLE = "unreadable"  # a trial whose metadata.json cannot be read
FOREIGN = "foreign"  # a planned job's dir holding the record of another run
FAILED = "failed"
# Not failures: a trial that ran with logging=off (UNRECORDED) is a result nobody kept, and
# resuming it would only train it again.
NOT_FAILED = (*FINISHED, UNRECORDED)


# Row columns that hold the user's own values or the config's texts: any text is theirs.
TEXT_COLUMNS = ("run_dir", "framework", "workload", "hparams.", "meta.", "workload.", "submission.")


NAMED = "damaged_named"  # the rows' attrs: the trials `numbers_only` named in a warning


def read_rows(path: Path, required: bool = False) -> pd.DataFrame:
    """The rows at or below `path` as every results tool reads them (`load_metrics`, or
    `nonempty_metrics` when `required`), with `numbers_only`'s cells left out."""
    return numbers_only(nonempty_metrics(path) if required else load_metrics(path))


def numbers_only(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with each cell that should hold a number and does not (a value edited to
    `abc`) as NaN, its trial named in one warning line: a trial whose rows were edited is
    damaged (`status_of` finds it so once it finished), and each tool reads what is left.
    A column should hold numbers when any of its cells does and it is none of TEXT_COLUMNS."""
    damaged: dict[str, tuple[int, str, str]] = {}
    for column in rows.columns:
        if str(column).startswith(TEXT_COLUMNS) or pd.api.types.is_numeric_dtype(rows[column]):
            continue
        numbers = pd.to_numeric(rows[column], errors="coerce")
        bad = rows[column].notna() & numbers.isna()
        if not bad.any() or not numbers.notna().any():
            continue
        for run_dir, cells in rows.loc[bad, ["run_dir", column]].groupby("run_dir", sort=False):
            count, _, _ = damaged.get(run_dir, (0, column, ""))
            damaged[run_dir] = (count + len(cells), column, str(cells[column].iloc[0]))
        rows[column] = numbers
    rows.attrs[NAMED] = set(damaged)  # summary names them no second time
    for run_dir, (count, column, value) in damaged.items():
        log.warning(
            "%s: %d cell(s) that should hold a number do not (%s: %r): the trial's rows were "
            "edited or corrupted; read without them (resume=true trains it again).",
            Path(run_dir) / METRICS,
            count,
            column,
            redact(value)[:40],
        )
    return rows


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
    return sorted(found, key=numeric_order)


def numeric_order(run_dir: str | Path) -> tuple[int, ...]:
    """A sort key putting job 2 before job 10, and study_2 before study_10."""
    numbers = (p.removeprefix(STUDY_PREFIX) for p in Path(run_dir).parts)
    return tuple(int(p) if p.isdigit() else -1 for p in numbers)


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
    targets = {m.get("workload.target_metric") for _, m, _ in records if m} - {None}
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


def record_of(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The trial's metadata.json (None: none yet), or why it cannot be read."""
    try:
        return read_metadata(run_dir), None
    except ConfigError as error:
        log.warning("%s", error)
        return None, str(error)


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
    target = metadata.get("workload.target_metric")
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


def progress(metrics: pd.DataFrame, targets: set[str]) -> dict[str, dict[str, Any]]:
    """For each run dir in `metrics`: its last step, its best value of each metric in
    `targets` (the least of a loss, the most of anything else) and its first crossing of
    the target (`first_crossings`)."""
    if metrics.empty:
        return {}
    by_trial = metrics.groupby("run_dir", sort=False)
    found = {d: {"global_step": int(s)} for d, s in by_trial["global_step"].max().items()}
    for target in targets & set(metrics.columns):
        best = by_trial[target].min() if target.endswith("loss") else by_trial[target].max()
        for run_dir, value in best.items():
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


def write_sweep_report(
    sweep_dir: Path,
    ended: Mapping[int, str | None] | None = None,
    metrics: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict]:
    """`summary.csv` and `sweep.json`: every trial, the best one and AlgoPerf's score.

    The score is the least time to target over the finished trials that reached it
    (none if no trial did); divergence is a result; failure, interruption, damage and a
    planned trial that never started are not, whatever their rows say. A trial that ran
    unrecorded (logging=off) has no result and is no failure. `ended`: see `summary`.
    """
    table = summary(sweep_dir, ended, metrics)
    plan = plan_record(sweep_dir) or {}
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
        "best_time_to_target": None if best is None else float(best["time_to_target"]),
        "score": None if best is None else float(best["time_to_target"]),  # the same: see docs
        "best_trial": None if best is None else plain(best),
        "measured_under_sharing": sharing_note(plan.get("sharing"), table),
        "study": plan.get("study", 0),
        "search_seed": plan.get("search_seed"),
    }
    write_json_atomically(sweep_dir / REPORT, report)
    return table, report


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
    """`studies.csv` and the sweep dir's `sweep.json` from each study's (folder, sweep.json):
    AlgoPerf's score of a workload tuned in studies: each study's time is its best trial's
    time to target (inf when no trial of it reached the target), the score is the median
    over the studies (inf, written null in JSON, when the median study missed it)."""
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
    table = pd.DataFrame(rows)
    write_text_atomically(sweep_dir / STUDIES, table.map(inert).to_csv(index=False))
    median = float(np.median(table["time_to_target"])) if len(table) else math.inf
    sharing = [r["measured_under_sharing"] for _, r in studies if r["measured_under_sharing"]]
    report = {
        "num_studies": len(rows),
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
    write_json_atomically(sweep_dir / REPORT, report)
    return table, report


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


def plain(row: pd.Series) -> dict[str, Any]:
    """A table row as JSON takes it, every float whole (pandas' `to_json` keeps 10
    digits: 0.0025968668 for the 0.002596866783593736 a trial ran with); NaN as null."""
    values = {key: value.item() if hasattr(value, "item") else value for key, value in row.items()}
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def plot(path: Path, x: str, y: str, out: Path) -> Path:
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if out.suffix[1:].lower() not in formats:
        raise ConfigError(f"plot --out {out}: name a file ending in .{', .'.join(formats)}.")
    if not out.parent.is_dir():
        raise ConfigError(f"plot --out {out}: there is no folder {out.parent}; make it first.")
    figure = curves(read_rows(path, required=True), x, y, path)
    try:
        figure.savefig(out, dpi=120)
    except OSError as error:
        raise ConfigError(
            f"plot --out {out}: cannot write it: {error.strerror or error}."
        ) from None
    finally:
        pyplot().close(figure)
    return out


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only (imported by the tools that draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(frame: pd.DataFrame, x: str, y: str, where: Path) -> Any:
    """A figure of `y` against `x`, one line per trial of `frame` (rows read from `where`),
    with the target when `y` is the workload's target metric."""
    missing = [f"--{axis} {column}" for axis, column in (("x", x), ("y", y)) if column not in frame]
    if missing:
        plottable = [c for c in frame if c in UNITS or c.endswith((".loss", ".accuracy"))]
        raise ConfigError(
            f"plot {' '.join(missing)}: no such column in the metrics at or below {where}; "
            f"the steps, times and metrics are {', '.join(plottable)}."
        )
    if not np.isfinite(pd.to_numeric(frame[y], errors="coerce")).any():
        log.warning("plot: %s has no finite value at or below %s; its lines are empty.", y, where)
    figure, axes = pyplot().subplots(figsize=(7, 4.5))
    draw_trials(figure, axes, frame, x, y)
    if "workload.target_metric" in frame and (frame["workload.target_metric"] == y).any():
        target = frame.loc[frame["workload.target_metric"] == y, "workload.target_value"].iloc[0]
        axes.axhline(
            target, color="black", linestyle="--", linewidth=1, label=plain_text(f"target {target}")
        )
        values = frame[y][np.isfinite(frame[y])]  # a diverged trial's NaN or inf: not a limit
        if len(values):
            axes.set_ylim(*around_target(values, target, higher_is_better=not y.endswith("loss")))
    axes.set_xlabel(axis_label(x))
    axes.set_ylabel(axis_label(y))
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:  # many trials: only the target line, if any
        axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


LEGEND_MAX = 12  # trials named in a legend; 2,000 entries covered the curves


def draw_trials(figure: Any, axes: Any, frame: pd.DataFrame, x: str, y: str) -> None:
    """One line per trial in run-dir order: named in a legend when few, else drawn as one
    collection (10,000 lines in one call) coloured by the first numeric hyperparameter
    that varies, with a colour bar that names it."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LogNorm

    trials = sorted(frame.groupby("run_dir", sort=False), key=lambda t: numeric_order(t[0]))
    hparams = [c for c in frame.columns if c.startswith("hparams.")]
    varying = [c for c in hparams if frame[c].nunique(dropna=False) > 1]
    if len(trials) <= LEGEND_MAX:
        named = varying or hparams  # name trials by what tells them apart
        for run_dir, trial in trials:
            values = ", ".join(f"{c[8:]}={as_value(trial[c].iloc[0])}" for c in named)
            axes.plot(
                trial[x],
                trial[y],
                marker="o" if len(trial) == 1 else None,  # a line of one point draws nothing
                label=plain_text(
                    f"{Path(run_dir).name} ({values})" if named else Path(run_dir).name
                ),
            )
        return
    lines = LineCollection(
        [trial[[x, y]].to_numpy(dtype=float) for _, trial in trials], linewidths=0.8, alpha=0.6
    )
    numeric = [c for c in varying if pd.api.types.is_numeric_dtype(frame[c])]
    if numeric:
        values = np.array([trial[numeric[0]].iloc[0] for _, trial in trials], dtype=float)
        if (values > 0).all() and values.max() > 10 * values.min():  # a log-scaled range
            lines.set_norm(LogNorm())
        lines.set_array(values)
        figure.colorbar(lines, ax=axes, label=plain_text(numeric[0]))
    axes.add_collection(lines)
    axes.autoscale_view()
    axes.set_title(f"{len(trials)} trials", fontsize=9)


UNITS = {
    "global_step": "step",
    "epoch": "epochs",
    "accumulated_submission_time": "s",
    "accumulated_eval_time": "s",
    "wall_time": "s",
}


def plain_text(text: str) -> str:
    """`text` as matplotlib draws it literally: a `$...$` in a run dir's name, a label or
    a hyperparameter is text, not mathtext (whose parser would refuse `$\\frac{1}{$`)."""
    return str(text).replace("$", r"\$")


def axis_label(column: str) -> str:
    """The column with its unit: `wall_time (s)`, `validation.loss (nats)`."""
    if column in UNITS:
        return f"{column} ({UNITS[column]})"
    if column.endswith(".loss"):
        return plain_text(f"{column} (nats)")
    if column.endswith(".accuracy"):
        return plain_text(f"{column} (fraction)")
    return plain_text(column)


def around_target(values: pd.Series, target: float, higher_is_better: bool) -> tuple:
    """Y limits that show the approach to the target, not the first evaluations' climb."""
    margin = 0.1 * abs(target) + 0.02
    if higher_is_better:
        return target - margin, max(values.max(), target) + margin / 5
    return min(values.min(), target) - margin / 5, target + margin
