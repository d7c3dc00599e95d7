"""`python -m aeff.results export tensorboard PATH`: event files, one folder per trial (its
scalars by step and its row of the HPARAMS table), written without TensorFlow. TensorBoard
is imported inside the functions that use it."""

import math
from pathlib import Path
from typing import Any

from aeff.errors import ConfigError
from aeff.results.export import RESULTS, Trial, as_text, trials_text

EVENTS = "events.out.tfevents"  # TensorBoard reads files whose names hold this


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
