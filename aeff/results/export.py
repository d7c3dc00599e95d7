"""`python -m aeff.results export mlflow|tensorboard PATH`: the trials as the exporters take
them (`Trial`: a record, and its rows by step as arrays), and the check that an exporter's
extra is installed. The writers are `export_mlflow.py` and `export_tensorboard.py`.

Imported by that command alone, and MLflow and TensorBoard only inside the writers'
functions: a trial and the other results commands never load them (optional extras:
`pip install "aeff[mlflow]"`, `"aeff[tensorboard]"`). The command reads the records
(`summary.summary`, `rows.read_rows`) and hands them here; the exporters only write.

Each trial becomes one MLflow run (params: its config; metrics by step; tags: status,
seed, workload, submission, labels, run dir; artifacts: its record and the user's
files), or one TensorBoard run (scalars by step, and a row of the HPARAMS table).
Exporting again replaces what changed and keeps what did not: never a duplicate.
"""

import hashlib
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeff.algoperf.submission import submission_name
from aeff.errors import ConfigError
from aeff.records.run_dir import CONFIG, COPIES, METADATA, read_metadata
from aeff.records.secrets import redact, redact_record

# The packages each exporter needs: MLflow's SQLite store needs SQLAlchemy and alembic.
NEEDS = {"mlflow": ("mlflow", "sqlalchemy", "alembic"), "tensorboard": ("tensorboard",)}

STEP = "global_step"
# Row columns that are neither config nor a metric: the step, the clock, bookkeeping.
NOT_METRICS = {STEP, "global_start_time", "wall_time", "run_idx", "steps_per_epoch", "run_dir"}
TIMES = ("accumulated_submission_time", "accumulated_eval_time")  # in metadata.json too
RESULTS = ("best_target_metric", "time_to_target", "steps_to_target")  # summary's figures

RUN_DIR_TAG = "run_dir"  # finds a trial's run again on the next export


@dataclass(frozen=True)
class Trial:
    """One trial as the exporters see it: its record, and its rows by step as arrays."""

    run_dir: Path
    name: str  # its path below PATH: '0', '1', ... in a sweep
    status: str
    metadata: Mapping[str, Any]
    columns: list[str]  # its metric columns (`Rows.of`)
    steps: np.ndarray  # each row's global_step
    times: np.ndarray  # each row's time, seconds since the epoch
    values: np.ndarray  # rows x columns; NaN: no value
    result: Mapping[str, Any]  # summary's figures: best target metric, time to target

    def fingerprint(self) -> str:
        """What the export of this trial depends on: a trial that moved on differs."""
        last = int(self.steps[-1]) if len(self.steps) else None
        state = [self.status, len(self.steps), last, self.metadata]
        return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()

    def hparams(self) -> dict[str, Any]:
        """The config that tells trials apart (metadata.json's `identity`), credentials
        masked (a record edited by hand is exported as it is read)."""
        return redact_record(self.metadata.get("identity") or {})

    def labels(self) -> dict[str, str]:
        """Status, seed, workload, submission, every meta.* label, the run dir, an error."""
        m = self.metadata
        labels = {
            "status": self.status,
            "rng_seed": m.get("rng_seed"),
            "workload": m.get("workload"),
            "submission": submission_name(m),
            RUN_DIR_TAG: str(self.run_dir),
            **{k: v for k, v in m.items() if k.startswith("meta.")},
            "error": m.get("error_message"),  # redacted when recorded
        }
        return {k: redact(as_text(v)) for k, v in redact_record(labels).items() if v is not None}

    def artifacts(self) -> list[Path]:
        """Its record, its resolved config and the copies of the user's files it holds."""
        copies = sorted(p for p in self.run_dir.iterdir() if p.stem in COPIES.values())
        found = [self.run_dir / METADATA, self.run_dir / CONFIG, *copies]
        return [p for p in found if p.is_file()]


def trials_text(trials: list[Trial]) -> str:
    return "1 trial" if len(trials) == 1 else f"{len(trials)} trials"


def as_text(value: Any) -> str:
    """A value as a config writes it: `0.001`, `adam`, `null`, `true`."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def require(tool: str) -> None:
    """Refuse, before any reading, an exporter whose extra is not installed."""
    missing = [name for name in NEEDS[tool] if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"export {tool}: {', '.join(missing)} is not installed: "
            f'pip install "aeff[{tool}]" (in the environment that runs aeff).'
        )


def trials(folder: Path, table: pd.DataFrame, metrics: pd.DataFrame) -> list[Trial]:
    """The trials with a record in `table` (results.summary of `folder`), their rows from
    `metrics` (load_metrics of `folder`); planned trials that never started are left out.

    The rows are turned into arrays once for all trials, then sliced per trial: pandas
    per trial took 20 ms each (1,000 trials: 20 s).
    """
    rows = Rows(metrics)
    found = []
    for row in table.to_dict("records"):
        run_dir = Path(row["run_dir"])
        try:
            metadata = read_metadata(run_dir)
        except ConfigError:  # unreadable: summary named it in a warning
            continue
        if metadata is None:  # planned, never started
            continue
        below = run_dir.is_relative_to(folder.resolve())  # not so: a link out of PATH
        name = run_dir.relative_to(folder.resolve()).as_posix() if below else run_dir.name
        columns, steps, times, values = rows.of(row["run_dir"], metadata)
        found.append(
            Trial(
                run_dir=run_dir,
                name=run_dir.name if name == "." else name,
                status=row["status"],
                metadata=metadata,
                columns=columns,
                steps=steps,
                times=times,
                values=values,
                result={k: row.get(k) for k in RESULTS if pd.notna(row.get(k))},
            )
        )
    if not found:
        raise ConfigError(f"no trial records at or below {folder}: give a sweep dir or a run dir.")
    return found


class Rows:
    """Every trial's rows as arrays: the steps, the times, each numeric column."""

    def __init__(self, metrics: pd.DataFrame) -> None:
        numeric = [
            c
            for c in metrics
            if c not in NOT_METRICS
            and pd.api.types.is_numeric_dtype(metrics[c])
            and not pd.api.types.is_bool_dtype(metrics[c])
        ]
        self.numeric = numeric
        self.values = metrics[numeric].to_numpy(dtype=float)
        self.steps = metrics[STEP].to_numpy(dtype=np.int64) if len(metrics) else np.zeros(0, int)
        clock = {"global_start_time", "wall_time"} <= set(metrics)
        self.times = (
            (metrics["global_start_time"] + metrics["wall_time"]).to_numpy(dtype=float)
            if clock
            else np.full(len(metrics), np.nan)
        )
        self.indices = metrics.groupby("run_dir", sort=False).indices if len(metrics) else {}

    def of(
        self, run_dir: str, metadata: Mapping[str, Any]
    ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """A trial's metric columns (numeric, with a value, not config: those are in its
        metadata.json; the two accumulated times included), and its rows' steps, times
        (its start where a row has none) and values, by step."""
        index = self.indices.get(run_dir, np.zeros(0, dtype=int))
        index = index[np.argsort(self.steps[index], kind="stable")]
        values = self.values[index]
        present = ~np.isnan(values).all(axis=0)
        keep = [
            j
            for j, c in enumerate(self.numeric)
            if present[j] and (c in TIMES or c not in metadata)
        ]
        times = self.times[index]
        times[~np.isfinite(times)] = float(metadata.get("start_time") or 0.0)
        return [self.numeric[j] for j in keep], self.steps[index], times, values[:, keep]
