"""`python -m aeff.results export mlflow|tensorboard PATH`: trials into the tools one browses.

Imported by that command alone, and MLflow and TensorBoard only inside its functions: a
trial and the other results commands never load them (optional extras:
`pip install "aeff[mlflow]"`, `"aeff[tensorboard]"`). The command reads the records
(`aeff.results.summary`, `load_metrics`) and hands them here; this module only writes.

Each trial becomes one MLflow run (params: its config; metrics by step; tags: status,
seed, workload, submission, labels, run dir; artifacts: its record and the user's
files), or one TensorBoard run (scalars by step, and a row of the HPARAMS table).
Exporting again replaces what changed and keeps what did not: never a duplicate.
"""

import datetime
import fcntl
import hashlib
import importlib.util
import json
import logging
import math
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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

log = logging.getLogger(__name__)

RUN_DIR_TAG = "run_dir"  # finds a trial's run again on the next export
EXPORTED_TAG = "aeff.exported"  # what was exported: set last, so a half-exported run is redone
RUN_STATUS = {"completed": "FINISHED", "diverged": "FINISHED", "interrupted": "KILLED"}
ARTIFACTS = ".mlartifacts"  # a local MLflow store's files, in the exported folder
EVENTS = "events.out.tfevents"  # TensorBoard reads files whose names hold this


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


def seconds(iso: Any) -> float | None:
    """An ISO time from metadata.json in seconds since the epoch (None: none recorded)."""
    try:
        return datetime.datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


# MLflow ---------------------------------------------------------------------------------


def default_tracking_uri(folder: Path) -> str:
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}"


def to_mlflow(trials: list[Trial], folder: Path, uri: str) -> str:
    """Each trial as an MLflow run in experiment `folder`'s absolute path at `uri`; a run
    already exported unchanged is kept, one whose trial moved on is replaced."""
    # A server that does not answer is named within seconds, not after MLflow's 7 retries
    # over minutes, each a warning line (the user's own settings win).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    quiet("mlflow", "alembic", "urllib3")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    quiet("mlflow", "alembic", "urllib3")  # MLflow sets its own level as it is imported
    counts = {"exported": 0, "replaced": 0, "unchanged": 0}
    try:
        with store_lock(uri, folder), unsynced(uri == default_tracking_uri(folder)):
            client = MlflowClient(tracking_uri=uri)
            experiment_id = mlflow_experiment(client, folder, uri)
            existing = runs_by_dir(client, experiment_id)
            names = run_names(trials)
            for trial, name in zip(trials, names, strict=True):
                counts[mlflow_trial(client, experiment_id, trial, existing, name)] += 1
    except (MlflowException, SQLAlchemyError, OSError) as error:
        done = sum(counts.values())
        raise ConfigError(
            f"export mlflow --tracking-uri {uri}: MLflow refused it after {done} of "
            f"{len(trials)} trials ({first_line(error)}); give a store it can open and "
            f"write, e.g. {default_tracking_uri(folder)}."
        ) from None
    summary = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    return f"{trials_text(trials)} in MLflow ({summary}): experiment {folder.resolve()} at {uri}"


def lock_path(uri: str, folder: Path) -> Path:
    """The file whose lock an export into `uri` holds: beside a SQLite store's file (two
    exports making one new store raced on its tables), else in the exported folder (a
    server's store: two exports of one folder would each add its trials)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///").split("?")[0]).with_suffix(".db.aeff-lock")
    return folder / ".aeff-export.lock"


@contextmanager
def store_lock(uri: str, folder: Path) -> Iterator[None]:
    """One export at a time into a store (the next one waits, then finds the trials
    exported: `unchanged`). An flock: the kernel drops it if the exporter dies."""
    path = lock_path(uri, folder)
    with path.open("a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("export mlflow: waiting for another export into %s to end.", uri)
            fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


@contextmanager
def unsynced(own: bool) -> Iterator[None]:
    """SQLite without an fsync at each commit (`PRAGMA synchronous=OFF`), in aeff's own
    store alone (`SWEEP/mlflow.db`, made again by exporting again): MLflow commits several
    times a run, and each fsync waited on a shared disk. A crash of this process loses
    nothing; one of the machine mid-export may damage that file (remove it, export again).
    A store the user named is left as SQLite keeps it."""
    if not own:
        yield
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def off(connection: Any, _: Any) -> None:
        if isinstance(connection, sqlite3.Connection):
            connection.execute("PRAGMA synchronous=OFF")

    event.listen(Engine, "connect", off)
    try:
        yield
    finally:
        event.remove(Engine, "connect", off)


def mlflow_experiment(client: Any, folder: Path, uri: str) -> str:
    """The sweep's experiment (named by its absolute path), made if new."""
    name = str(folder.resolve())
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # A local store's artifacts beside the sweep, not in ./mlruns of wherever this ran; in
    # a dot folder, as earlier attempts are, so that their copies of metadata.json are
    # never taken for trials (results.trial_dirs).
    local = uri.startswith(("sqlite:", "file:", "/"))
    where = (folder / ARTIFACTS).resolve().as_uri() if local else None
    return client.create_experiment(name, artifact_location=where)


def run_names(trials: list[Trial]) -> list[str]:
    """Each trial's run name: the overrides that tell it from the other trials exported
    (`hparams.lr=0.003`), all of a lone trial's, else its path below PATH (`0`)."""
    overrides = [[str(o) for o in t.metadata.get("hydra.overrides") or []] for t in trials]
    common = set.intersection(*map(set, overrides)) if len(trials) > 1 else set()
    names = [" ".join(o for o in mine if o not in common) for mine in overrides]
    return [redact(name)[:MAX_NAME] or t.name for name, t in zip(names, trials, strict=True)]


MAX_NAME = 250  # characters of a run name shown in MLflow's table


def mlflow_trial(
    client: Any,
    experiment_id: str,
    trial: Trial,
    existing: Mapping[str, list[Any]],
    name: str,
) -> str:
    """The trial's run made, or replaced (its trial moved on), or kept: which, in a word."""
    earlier = existing.get(str(trial.run_dir), [])
    fingerprint = trial.fingerprint()
    if len(earlier) == 1 and earlier[0].data.tags.get(EXPORTED_TAG) == fingerprint:
        if earlier[0].info.run_name != name:  # exported by an aeff that named it `0`
            client.update_run(earlier[0].info.run_id, name=name)
        return "unchanged"
    for run in earlier:  # MLflow keeps a deleted run in its trash until `mlflow gc`
        client.delete_run(run.info.run_id)
    mlflow_run(client, experiment_id, trial, fingerprint, name)
    return "replaced" if earlier else "exported"


def first_line(error: Exception) -> str:
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def runs_by_dir(client: Any, experiment_id: str) -> dict[str, list[Any]]:
    """The experiment's live runs by the run dir they were exported from."""
    found: dict[str, list[Any]] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=50_000, page_token=token)
        for run in page:
            found.setdefault(run.data.tags.get(RUN_DIR_TAG), []).append(run)
        token = page.token
        if not token:
            return found


def mlflow_run(client: Any, experiment_id: str, trial: Trial, fingerprint: str, name: str) -> None:
    """One trial as one run: made with its tags, its files, its end, then its params and
    metrics in as few `log_batch` calls as MLflow's limits allow, the last one carrying the
    fingerprint (a run without it is exported again). A store spends its time on the
    metrics: one SQL row each, through SQLAlchemy's ORM, and the run's latest values."""
    from mlflow.entities import Param, RunTag
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

    start = trial.metadata.get("start_time") or seconds(trial.metadata.get("datetime"))
    run = client.create_run(
        experiment_id,
        start_time=None if start is None else int(start * 1000),
        tags={k: v[:MAX_TAG_VAL_LENGTH] for k, v in trial.labels().items()},
        run_name=name,
    )
    run_id = run.info.run_id
    for path in trial.artifacts():
        client.log_artifact(run_id, str(path))
    if trial.status != "running":  # a running trial's run stays RUNNING
        end = seconds(trial.metadata.get("end_datetime"))
        client.set_terminated(
            run_id,
            status=RUN_STATUS.get(trial.status, "FAILED"),
            end_time=None if end is None else int(end * 1000),
        )
    params = [Param(k, as_text(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in trial.hparams().items()]
    last = RunTag(EXPORTED_TAG, fingerprint)
    for metrics, some, tags in batches(mlflow_metrics(trial), params, last):
        client.log_batch(run_id, metrics=metrics, params=some, tags=tags)


def batches(metrics: list[Any], params: list[Any], last: Any) -> list[tuple[list, list, list]]:
    """Metrics and params in `log_batch` calls within MLflow's limits (1,000 entities, of
    them at most 100 params and 100 tags), and the tag `last` in the last call alone:
    MLflow's client would chunk them too, but log the tags first."""
    from mlflow.utils.validation import (
        MAX_ENTITIES_PER_BATCH,
        MAX_METRICS_PER_BATCH,
        MAX_PARAMS_TAGS_PER_BATCH,
    )

    calls = []
    while params or metrics or not calls:
        some, params = params[:MAX_PARAMS_TAGS_PER_BATCH], params[MAX_PARAMS_TAGS_PER_BATCH:]
        room = min(MAX_ENTITIES_PER_BATCH - len(some) - 1, MAX_METRICS_PER_BATCH)
        calls.append((metrics[:room], some, []))
        metrics = metrics[room:]
    calls[-1][2].append(last)  # each call kept room for it
    return calls


def mlflow_metrics(trial: Trial) -> list[Any]:
    """Each metric of each row at its step and time, and summary's figures at the last step."""
    from mlflow.entities import Metric

    times = (trial.times * 1000).astype(np.int64).tolist()
    steps = trial.steps.tolist()
    metrics = [
        Metric(column, value, time, step)
        for values, time, step in zip(trial.values.tolist(), times, steps, strict=True)
        for column, value in zip(trial.columns, values, strict=True)
        if not math.isnan(value)  # no value in that row
    ]
    last_step, last_time = (steps[-1], times[-1]) if steps else (0, 0)
    metrics += [Metric(k, float(v), last_time, last_step) for k, v in trial.result.items()]
    return metrics


def quiet(*loggers: str) -> None:
    """The console keeps to aeff's lines: the libraries' own go (their failures reach the
    user as aeff's one line)."""
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)


# TensorBoard ----------------------------------------------------------------------------


def to_tensorboard(trials: list[Trial], logdir: Path) -> str:
    """Event files in `logdir`: one folder per trial (its scalars and its hparams), and the
    HPARAMS table's columns at the top. Each export writes them afresh."""
    try:
        logdir.mkdir(parents=True, exist_ok=True)
        for trial in trials:
            write_events(logdir / trial.name, trial_events(trial))
        write_events(logdir, [experiment_event(trials)])
    except OSError as error:
        raise ConfigError(
            f"export tensorboard --logdir {logdir}: cannot write there: {error.strerror or error}."
        ) from None
    return f"{trials_text(trials)} for TensorBoard: tensorboard --logdir {logdir}"


def write_events(folder: Path, events: list[Any]) -> None:
    """`events` as the only event file in `folder` (the last export's removed): TensorBoard's
    own record format, written without TensorFlow."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{EVENTS}.*"):
        old.unlink()
    version = event_pb2.Event(wall_time=events[0].wall_time, file_version="brain.Event:2")
    temporary = folder / f".{EVENTS}.aeff.tmp"
    with temporary.open("wb") as file:
        writer = RecordWriter(file)
        for event in [version, *events]:
            writer.write(event.SerializeToString())
    temporary.replace(folder / f"{EVENTS}.{int(version.wall_time)}.aeff")


def trial_events(trial: Trial) -> list[Any]:
    """Its hparams (a session of the HPARAMS table), then one event per row with every
    metric, then summary's figures at the last step."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import summary_v2

    start = float(trial.metadata.get("start_time") or 0.0)
    hparams = {k: tensorboard_value(v) for k, v in trial.hparams().items()}
    session = summary_v2.hparams_pb(hparams, trial_id=trial.name, start_time_secs=start)
    events = [event_pb2.Event(wall_time=start, step=0, summary=session)]
    for values, time, step in zip(
        trial.values.tolist(), trial.times.tolist(), trial.steps.tolist(), strict=True
    ):
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=c, simple_value=v)
                for c, v in zip(trial.columns, values, strict=True)
                if not math.isnan(v)
            ]
        )
        events.append(event_pb2.Event(wall_time=time, step=step, summary=summary))
    if trial.result:
        last = events[-1]
        values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in trial.result.items()]
        events.append(
            event_pb2.Event(
                wall_time=last.wall_time, step=last.step, summary=summary_pb2.Summary(value=values)
            )
        )
    return events


def tensorboard_value(value: Any) -> bool | float | str:
    """A config value as the HPARAMS table holds it: a bool, a number or a text."""
    if isinstance(value, (bool, int, float)):
        return value
    return as_text(value)


def experiment_event(trials: list[Trial]) -> Any:
    """The HPARAMS table's columns: every hyperparameter, and each metric's last value
    with summary's figures (time to target first)."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2

    names = sorted({k for t in trials for k in t.hparams()})
    metrics = [k for k in RESULTS if any(k in t.result for t in trials)]
    metrics += sorted({c for t in trials for c in t.columns})
    config = summary_v2.hparams_config_pb(
        hparams=[summary_v2.HParam(n) for n in names],
        metrics=[summary_v2.Metric(m) for m in metrics],
        time_created_secs=config_time(trials),
    )
    return event_pb2.Event(wall_time=config_time(trials), summary=config)


def config_time(trials: list[Trial]) -> float:
    return min(float(t.metadata.get("start_time") or 0.0) for t in trials)
