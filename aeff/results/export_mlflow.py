"""`python -m aeff.results export mlflow PATH`: each trial as one MLflow run (params: its
config; metrics by step; tags: status, seed, workload, submission, labels, run dir;
artifacts: its record and the user's files), in an experiment named by PATH's absolute
path. Exporting again replaces a run whose trial moved on and keeps one that did not.
MLflow is imported inside the functions that use it."""

import datetime
import fcntl
import logging
import math
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from aeff.errors import ConfigError
from aeff.records.secrets import redact
from aeff.results.export import RUN_DIR_TAG, Trial, as_text, trials_text

log = logging.getLogger(__name__)

EXPORTED_TAG = "aeff.exported"  # what was exported: set last, so a half-exported run is redone
RUN_STATUS = {"completed": "FINISHED", "diverged": "FINISHED", "interrupted": "KILLED"}
ARTIFACTS = ".mlartifacts"  # a local MLflow store's files, in the exported folder


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


def seconds(iso: Any) -> float | None:
    """An ISO time from metadata.json in seconds since the epoch (None: none recorded)."""
    try:
        return datetime.datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None
