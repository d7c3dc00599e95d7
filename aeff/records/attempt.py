"""Which attempt a trial starting in a run dir is: the decision, apart from the reading.

`RunDir.attempt` reads what the dir holds (`Found`); `decide` says what the trial does
with it, without touching the disk: start afresh, continue from a checkpoint, or start
again with the earlier attempt moved aside. A dir holding another trial, or a trial that
cannot be checked or kept whole, is refused in one line.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aeff.errors import ConfigError

log = logging.getLogger(__name__)

LABELS = "meta."  # a record's keys that are the user's labels (`+meta.study=...`)


@dataclass(frozen=True)
class Attempt:
    """What a trial starting in a run dir continues: its attempt number, seed, checkpoint."""

    number: int = 0
    rng_seed: int | None = None  # the recorded seed, which a resume keeps
    checkpoint_step: int | None = None  # continue from this checkpoint
    move_aside: bool = False  # the earlier attempt's records go to .attempts/<n>/


@dataclass(frozen=True)
class Found:
    """What a run dir holds as a trial starts in it (read by `RunDir.attempt`)."""

    path: Path
    metadata: Path  # where its record is, or would be
    record: Mapping[str, Any] | None  # the earlier trial's record (the last moved aside)
    moved: bool  # that record is in .attempts/ already
    status: str | None  # its status as read back (`run_dir.status_of`)
    finished: bool  # completed or diverged: nothing to resume
    damage: str | None  # what is wrong with a damaged record
    checkpoint: int | None  # the step of its latest checkpoint
    rows: Path | None  # its metrics.csv, where one exists
    write_records: bool


def decide(
    found: Found,
    identity: Mapping[str, Any],
    rng_seed: int | None,
    resume: bool,
    checkpointing: bool,
    labels: Mapping[str, Any],
) -> Attempt:
    """What this trial continues; refuses a trial that would mix with an earlier one.

    `identity` holds the values that make a trial this trial (metadata.json keeps it
    under "identity"); a resume must match it, and the seed when one is given. Its
    `labels` (`meta.*` keys) too: every row of a trial carries them, so a resume that
    changes, adds or removes one would leave rows that disagree.
    """
    earlier, checkpoint, path = found.record, found.checkpoint, found.path
    if not resume:
        if earlier is not None or checkpoint is not None or found.rows is not None:
            raise ConfigError(
                f"{path} holds an earlier trial: add resume=true to continue it, "
                "or choose another hydra.run.dir."
            )
        return Attempt(rng_seed=rng_seed)
    if earlier is None:
        return _nothing_recorded(found, rng_seed)
    if not found.write_records:
        raise ConfigError(f"{path} holds records: resume it with logging=default.")
    if found.finished:
        raise ConfigError(f"{path} holds a trial that ended {found.status}: nothing to resume.")
    number, aside = int(earlier.get("attempt", 0)), not found.moved
    if "identity" not in earlier:  # it failed before it began: nothing to continue
        return Attempt(number + 1, rng_seed, move_aside=aside)
    _refuse_another_trial(path, earlier, identity, rng_seed, labels)
    seed = earlier.get("rng_seed")
    if found.damage is not None:  # its checkpoints continue rows that are lost: from step 0
        log.warning("%s", found.damage)
        return Attempt(number + 1, seed, move_aside=aside)
    if checkpoint is None:
        return Attempt(number + 1, seed, move_aside=aside)
    if not checkpointing:
        raise ConfigError(
            f"{path} holds a checkpoint of step {checkpoint}: resume it with "
            "checkpoint.enabled=true."
        )
    return Attempt(number, seed, checkpoint_step=checkpoint)


def _nothing_recorded(found: Found, rng_seed: int | None) -> Attempt:
    """A first attempt, unless the dir holds a checkpoint or rows of a trial it has no
    record of (which trial they are of cannot be checked)."""
    record = found.metadata.name
    if found.checkpoint is not None:
        raise ConfigError(
            f"{found.path} holds a checkpoint but no {record} (logging=off?), so "
            "which trial it holds cannot be checked: start afresh in another dir."
        )
    if found.rows is not None:
        raise ConfigError(
            f"{found.path} holds {found.rows.name} but no {record}, so which trial its rows "
            f"are of cannot be checked: restore {record}, or start afresh in another dir."
        )
    return Attempt(rng_seed=rng_seed)


def _refuse_another_trial(
    path: Path,
    earlier: Mapping[str, Any],
    identity: Mapping[str, Any],
    rng_seed: int | None,
    labels: Mapping[str, Any],
) -> None:
    differences = differing(earlier["identity"], identity)
    recorded_labels = {k: v for k, v in earlier.items() if k.startswith(LABELS)}
    differences += differing(recorded_labels, labels)
    if rng_seed is not None and rng_seed != earlier.get("rng_seed"):
        differences.append(f"rng_seed={earlier.get('rng_seed')!r} (now {rng_seed!r})")
    if differences:
        raise ConfigError(
            f"resume=true continues only the same trial, but {path} recorded "
            f"{', '.join(differences)}: run with the recorded values, or choose another "
            "hydra.run.dir."
        )


def differing(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """`key=recorded (now value)` for each key whose value differs between the two."""
    return [
        f"{key}={recorded.get(key)!r} (now {now.get(key)!r})"
        for key in sorted(set(recorded) | set(now))
        if recorded.get(key) != now.get(key)
    ]
