"""Plots of trials' rows: a metric against a step or a clock, one line per trial (or one
collection of many, coloured by a hyperparameter), with the target framed when the metric
is the workload's target (`python -m aeff.results plot`, and `report.html`'s curves).
matplotlib is imported by the functions that draw, drawing to files only."""

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeff.errors import ConfigError
from aeff.results.rows import (
    TARGET_METRIC,
    numeric_order,
    read_rows,
    record_of,
    target_higher_is_better,
)
from aeff.results.text import as_value

log = logging.getLogger(__package__)


def plot(path: Path, x: str, y: str, out: Path) -> Path:
    """`y` against `x` for every trial at or below `path`, into the image file `out`."""
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
    if TARGET_METRIC in frame and (frame[TARGET_METRIC] == y).any():
        first = frame[frame[TARGET_METRIC] == y].iloc[0]  # a row of a trial that targets `y`
        target = first["workload.target_value"]
        axes.axhline(
            target, color="black", linestyle="--", linewidth=1, label=plain_text(f"target {target}")
        )
        values = frame[y][np.isfinite(frame[y])]  # a diverged trial's NaN or inf: not a limit
        if len(values):
            record, _ = record_of(Path(first["run_dir"]))  # where the trial declares it
            higher = target_higher_is_better({**first, **(record or {})})
            axes.set_ylim(*around_target(values, target, higher_is_better=higher))
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
