"""`report.html`: a sweep on one self-contained page (no network needed to open it).

The summary table (sortable by any column), every trial's curve of the target metric
with the target, time to target against each hyperparameter that varies, the best trial
with the command that runs it again, and the trials that failed or diverged with their
errors. Figures are PNGs inside the page; the only script sorts the table.
"""

import base64
import html
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeff.records.environment import RERUN_REPRODUCES
from aeff.records.run_dir import UNRECORDED, read_metadata
from aeff.records.sweep_dir import HTML_REPORT, SWEEP_CONFIG, write_html
from aeff.results.plots import curves, plain_text, pyplot
from aeff.results.rows import read_rows
from aeff.results.summary import NOT_STARTED
from aeff.results.sweep_report import write_studies_report, write_sweep_report
from aeff.results.text import seconds, short

TABLE_COLUMNS = (  # the table's first columns; every hyperparameter and label follows
    "run_dir",
    "status",
    "time_to_target",
    "steps_to_target",
    "best_target_metric",
    "global_step",
)
# Click a column's header to sort by it; again to reverse. Numbers sort as numbers.
SORT_SCRIPT = """
document.querySelectorAll("table.trials").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.classList.add("sortable");
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var up = th.dataset.order !== "up";
      th.dataset.order = up ? "up" : "down";
      function key(row) {
        var text = row.cells[column].textContent, value = parseFloat(text);
        return isNaN(value) ? text : value;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), order = typeof x === typeof y ? (x < y ? -1 : x > y) :
          (typeof x === "number" ? -1 : 1);
        return up ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""
STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th.sortable { cursor: pointer; background: #f0f0f0; }
td.text { text-align: left; }
pre { background: #f6f6f6; padding: 0.6em; white-space: pre-wrap; }
img { max-width: 100%; }
"""


def write_reports(
    sweep_dir: Path, ended: Mapping[int, str | None] | None = None
) -> tuple[pd.DataFrame, dict, Path]:
    """`summary.csv`, `sweep.json` and `report.html`, from the sweep's rows read once (a
    second reading of 10,000 trials' rows took seconds); `ended`: see `summary.summary`."""
    metrics = read_rows(sweep_dir)
    table, report = write_sweep_report(sweep_dir, ended, metrics)
    return table, report, write_html_report(sweep_dir, table, report, metrics)


def write_html_report(
    sweep_dir: Path, table: pd.DataFrame, report: dict, metrics: pd.DataFrame | None = None
) -> Path:
    """`report.html` in the sweep dir, from the sweep's summary `table` and `report`, and
    its rows (read here unless given)."""
    metrics = read_rows(sweep_dir) if metrics is None else metrics
    sections = [
        f"<h1>Sweep {html.escape(str(sweep_dir))}</h1>",
        counts(table, report),
        best_trial(report),
        figures(metrics, table, sweep_dir),
        failures(table),
        "<h2>Every trial</h2>",
        trials_table(table, sweep_dir),
    ]
    return write_page(sweep_dir, "aeff sweep", sections)


def write_studies_reports(
    sweep_dir: Path, studies: list[tuple[Path, dict]]
) -> tuple[pd.DataFrame, dict, Path]:
    """A sweep of studies' own `studies.csv` and `sweep.json` (`write_studies_report`)
    and its `report.html`: the median time to target, each study's best trial and a link
    to each study's own page."""
    table, report = write_studies_report(sweep_dir, studies)
    rows = "".join(
        "<tr>"
        + cell(row.study)
        + cell(row.search_seed)
        + cell(row.time_to_target)
        + cell(row.steps_to_target)
        + cell(row.num_reached_target)
        + cell(row.num_trials)
        + cell(row.num_failed)
        + f"<td class='text'><a href='{html.escape(Path(row.study_dir).name)}/{HTML_REPORT}'>"
        f"{html.escape(Path(row.study_dir).name)}</a></td></tr>"
        for row in table.itertuples()
    )
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "study",
            "search seed",
            "time to target",
            "steps to target",
            "reached the target",
            "trials",
            "failed",
            "its report",
        )
    )
    sections = [
        f"<h1>Sweep of {report['num_studies']} studies {html.escape(str(sweep_dir))}</h1>",
        f"<p>Median time to target over the studies of each one's best time to target: "
        f"<b>{seconds(report['median_time_to_target'])}</b> (inf: the median study missed "
        f"the target). {report['num_trials']} trials of {report['num_planned']} planned, "
        f"{len(report['failed'])} failed.</p>",
        f"<table class='trials'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>",
    ]
    return table, report, write_page(sweep_dir, "aeff sweep of studies", sections)


def write_page(sweep_dir: Path, title: str, sections: list[str]) -> Path:
    """`report.html` in `sweep_dir`: `sections` on one page (`write_html` redacts it)."""
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{STYLE}</style></head><body>\n"
        + "\n".join(sections)
        + f"\n<script>{SORT_SCRIPT}</script>\n</body></html>\n"
    )
    return write_html(sweep_dir, page)


def counts(table: pd.DataFrame, report: dict) -> str:
    by_status = table["status"].value_counts() if len(table) else pd.Series(dtype=int)
    listed = ", ".join(f"{n} {html.escape(str(status))}" for status, n in by_status.items())
    best = report["best_time_to_target"]
    return (
        f"<p>{report['num_planned']} planned trials: {listed or 'none'}. "
        f"{report['num_reached_target']} reached the target; best time to target: "
        f"<b>{seconds(best)}</b>.</p>"
    )


def best_trial(report: dict) -> str:
    best = report["best_trial"]
    if best is None:
        return "<h2>Best trial</h2><p>No trial reached the target.</p>"
    metadata = read_metadata(Path(best["run_dir"])) or {}
    hparams = ", ".join(f"{k[8:]}={short(v)}" for k, v in best.items() if k.startswith("hparams."))
    return (
        f"<h2>Best trial</h2><p>{html.escape(best['run_dir'])}: time to target "
        f"{seconds(best['time_to_target'])} at step {int(best['steps_to_target'])} "
        f"({html.escape(hparams)}). Run it again with:</p>"
        f"<pre>{html.escape(metadata.get('rerun_command', ''))}</pre>"
        f"<p>{html.escape(RERUN_REPRODUCES)}</p>"
    )


def figures(metrics: pd.DataFrame, table: pd.DataFrame, sweep_dir: Path) -> str:
    targets = table["target_metric"].dropna().unique() if "target_metric" in table else []
    if metrics.empty or not len(targets):
        return "<h2>Curves</h2><p>No trial has written a row yet.</p>"
    target = targets[0]
    parts = ["<h2>Curves</h2>"]
    x = "accumulated_submission_time"
    if {x, target} <= set(metrics):
        parts.append(png(curves(metrics, x, target, sweep_dir), f"{target} against {x}"))
    hparams = [c for c in table if c.startswith("hparams.") and table[c].nunique() > 1]
    reached = table.dropna(subset=["time_to_target"]) if "time_to_target" in table else table[:0]
    if hparams and len(reached):
        logs = log_scaled(sweep_dir)
        parts.append("<h2>Time to target against each hyperparameter</h2>")
        parts.extend(
            png(scatter(reached, h, h in logs), f"time to target against {h}") for h in hparams
        )
    return "\n".join(parts)


def log_scaled(sweep_dir: Path) -> set[str]:
    """The hyperparameters the sweep sampled on a log scale: its `search_space` (or
    `tuning_search_space` file) ranges with `scale: log`, and the command line's
    `tag(log, interval(...))` (in its `multirun.yaml`); none when it cannot be read."""
    from omegaconf import OmegaConf

    from aeff import search, user_files
    from aeff.errors import AeffError

    try:
        text = (sweep_dir / SWEEP_CONFIG).read_text()
        config = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
        space = config.get("search_space") or {}
        if config.get("tuning_search_space"):
            space = user_files.read_search_space(Path(config["tuning_search_space"]))
        found = {d.key for d in search.parse_space(space) if d.log} if space else set()
    except (OSError, ValueError, TypeError, AttributeError, AeffError):
        return set()
    tagged = re.findall(r"([\w.]+)['\"]?\s*[=:]\s*['\"]?tag\(\s*log", text)
    return found | {key if key.startswith("hparams.") else f"hparams.{key}" for key in tagged}


def scatter(reached: pd.DataFrame, hparam: str, log: bool = False) -> Any:
    """Time to target against `hparam`: on a log axis where the sweep sampled it so, or
    its values span more than a factor of 10."""
    figure, axes = pyplot().subplots(figsize=(5, 3.2))
    values = pd.to_numeric(reached[hparam], errors="coerce")
    if values.notna().all():
        axes.scatter(values, reached["time_to_target"], s=12)
        if (values > 0).all() and (log or values.max() > 10 * values.min()):
            axes.set_xscale("log")
    else:  # strings, booleans, nulls: one column of points per value
        labels = reached[hparam].astype(str).map(plain_text)
        axes.scatter(labels, reached["time_to_target"], s=12)
    axes.set_xlabel(plain_text(hparam))
    axes.set_ylabel("time to target (s)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def png(figure: Any, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot().close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def failures(table: pd.DataFrame) -> str:
    no_error = ["completed", NOT_STARTED, UNRECORDED]
    shown = table[~table["status"].isin(no_error)] if len(table) else table
    if shown.empty:
        return "<h2>Failed and diverged trials</h2><p>None.</p>"
    errors = shown.get("error", pd.Series(index=shown.index, dtype=object))
    rows = "".join(
        f"<tr><td class='text'>{html.escape(str(run_dir))}</td><td class='text'>{status}</td>"
        f"<td class='text'>{html.escape('' if pd.isna(error) else str(error))}</td></tr>"
        for run_dir, status, error in zip(shown["run_dir"], shown["status"], errors, strict=True)
    )
    return (
        "<h2>Failed and diverged trials</h2><table><thead><tr><th>run dir</th><th>status</th>"
        f"<th>error</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def trials_table(table: pd.DataFrame, sweep_dir: Path) -> str:
    if table.empty:
        return "<p>No trials.</p>"
    first = [c for c in TABLE_COLUMNS if c in table]
    rest = [c for c in table if c.startswith(("hparams.", "meta."))]
    shown = table[first + rest].copy()
    shown["run_dir"] = [os.path.relpath(d, sweep_dir) for d in shown["run_dir"]]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = "".join(
        "<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in shown.itertuples(index=False)
    )
    return f"<table class='trials'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "<td>-</td>"
    if isinstance(value, int | float | np.number) and not isinstance(value, bool):
        return f"<td>{short(float(value) if isinstance(value, float) else value)}</td>"
    return f"<td class='text'>{html.escape(str(value))}</td>"
