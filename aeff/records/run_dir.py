"""The one owner of a trial's run dir: it locks the dir, writes every record in it, ends it.

The files of a run dir, named here and nowhere else:

| file | written by |
| --- | --- |
| `metadata.json` | `RunDir.begin`, `end`, `record_failure` |
| `metrics.csv` | `RunDir.append` (one row per evaluation) |
| `config_resolved.yaml`, `packages.txt`, `.hydra/` | `RunDir.begin` |
| `submission.py`, `workload.py`, `search_space.json` | `RunDir.begin`: copies of the user's files |
| `checkpoints/` | `aeff.training.checkpoints`, in the dir `RunDir.checkpoints` names |
| `.attempts/<n>/` | `RunDir.begin`: an earlier attempt's records, moved aside by a resume |
| `.aeff.lock` | `aeff.records.lock.Lock` (which names it): held by the owning process |

The record's status moves once: running -> completed | diverged | failed | interrupted.
A `running` record whose lock no process holds was killed: `status_of` says
`interrupted`. A finished record whose metrics.csv does not end at its last step (rows cut,
replaced or deleted since) is `damaged`: reports count it failed, and a resume trains it
again from step 0, its records moved aside. Nothing here knows Hydra: the run dir is
passed in. What a trial does with what the dir holds is `aeff.records.attempt`'s decision;
`aeff.records.rows` reads a metrics.csv back.
"""

import datetime
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aeff.errors import ConfigError, RecordsError
from aeff.records.attempt import Attempt, Found, decide
from aeff.records.files import (
    append_csv_row,
    csv_header,
    cut_torn_line,
    remove_stale_temporaries,
    write_json_atomically,
    write_text_atomically,
)
from aeff.records.lock import LOCK, Lock
from aeff.records.rows import csv_text, last_global_step, read_rows, unreadable

log = logging.getLogger(__name__)

METADATA = "metadata.json"
METRICS = "metrics.csv"
CONFIG = "config_resolved.yaml"
PACKAGES = "packages.txt"
CHECKPOINTS = "checkpoints"
ATTEMPTS = ".attempts"
HYDRA = ".hydra"  # copies of Hydra's composed config, written once the trial is accepted
# Copies of the files a trial's code and space came from, by the setting that named them.
COPIES = {"submission_path": "submission", "workload_path": "workload"}
COPIES["tuning_search_space"] = "search_space"
RECORDS = (METADATA, METRICS, CONFIG, PACKAGES)

FINISHED = ("completed", "diverged")  # divergence is a result, not a failure
ENDED = (*FINISHED, "failed", "interrupted")
DAMAGED = "damaged"  # finished, but its rows changed since (status_of)
# A trial that began with logging=off: `.hydra/` (written by `begin`) and no metadata.json, so
# how it ended is nowhere on disk (its sweep's report takes it from what the launcher returned).
UNRECORDED = "unrecorded"
ROWS_DIGEST = "metrics_sha256"  # a finished trial's metadata.json: its metrics.csv's sha256


def read_metadata(directory: Path) -> dict[str, Any] | None:
    """The record, or None when there is none; an unreadable one is named."""
    path = directory / METADATA
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise unreadable(path, error) from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path} holds no JSON object: move it aside.")
    if record.get("status") not in ("running", *ENDED):
        raise ConfigError(
            f"{path} records no status aeff writes ({record.get('status')!r}, not one of "
            f"running, {', '.join(ENDED)}): move it aside."
        )
    return record


def status_of(directory: Path, metadata: Mapping[str, Any]) -> str | None:
    """The recorded status, except that a `running` trial whose process died is
    `interrupted`, and a finished one whose rows do not end at the last step it records
    (or that records none) `damaged`."""
    status = metadata.get("status")
    if status == "running" and Lock.is_held(directory) is False:
        return "interrupted"
    if status in FINISHED:
        step = metadata.get("global_step")
        if not isinstance(step, int) or _rows_end(directory / METRICS) != step:
            return DAMAGED
        digest = metadata.get(ROWS_DIGEST)  # None: recorded before aeff kept one
        if digest is not None and rows_digest(directory / METRICS) != digest:
            return DAMAGED
    return status


def began_unrecorded(directory: Path) -> bool:
    """Whether a trial began in `directory` without records (logging=off): `begin` wrote
    its `.hydra/` there, and it has no metadata.json."""
    return (directory / HYDRA).is_dir() and not (directory / METADATA).exists()


def damage(directory: Path, metadata: Mapping[str, Any]) -> str:
    """What is wrong with a `damaged` record, and the way out."""
    way_out = "resume=true trains the trial again (the damaged records go to .attempts/)."
    step = metadata.get("global_step")
    if not isinstance(step, int):
        return (
            f"{directory / METADATA} says the trial {metadata['status']} but records no "
            f"last step (global_step: {step!r}): it was edited since. {way_out}"
        )
    last = _rows_end(directory / METRICS)
    if last == step:
        return (
            f"{directory / METRICS} changed since the trial {metadata['status']}: its sha256 "
            f"is not the one {METADATA} records (edited, saved again by another program, or "
            f"corrupted). {way_out}"
        )
    rows = "cannot be read" if last is None else "are gone" if last < 0 else f"end at step {last}"
    return (
        f"{directory / METRICS}: its rows {rows}, but the trial {metadata['status']} at "
        f"step {step}: they were cut or replaced since. {way_out}"
    )


def rows_digest(path: Path) -> str | None:
    """The sha256 of a metrics.csv, or None if it cannot be read."""
    try:
        with path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError:
        return None


def _rows_end(path: Path) -> int | None:
    """The step of a metrics.csv's last row (-1: none), or None if it cannot be read."""
    try:
        return last_global_step(path)
    except (ConfigError, ValueError):  # ValueError: not UTF-8
        return None


def latest_checkpoint_step(directory: Path) -> int | None:
    """The newest saved step in `directory` (orbax names step dirs by number)."""
    if not directory.is_dir():
        return None
    saved = [int(p.name) for p in directory.iterdir() if p.name.isdigit()]
    return max(saved, default=None)


class RunDir:
    """A trial's run dir. `claim` it, check what it holds (`attempt`), `begin` the
    records, `append` rows, `end` them; or `record_failure` for a trial that never began.
    With `write_records=False` (logging=off) it only locks the dir."""

    def __init__(self, path: Path, write_records: bool = True) -> None:
        self.path = Path(os.path.abspath(path))
        self.write_records = write_records
        self.checkpoints = self.path / CHECKPOINTS
        self.status: str | None = None  # None until `begin`, then running, then how it ended
        self._columns: list[str] | None = None
        self._last_step = -1
        self._appending = False  # an append began and did not return (a signal cut it short)

    def claim(self) -> None:
        """Own the dir (made if need be) for the life of this process, or until `release`."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RecordsError(self.path, error) from error
        Lock.acquire(self.path)
        remove_stale_temporaries(self.path)

    def release(self) -> None:
        Lock.release(self.path)

    def attempt(
        self,
        identity: Mapping[str, Any],
        rng_seed: int | None,
        resume: bool,
        checkpointing: bool,
        labels: Mapping[str, Any] | None = None,
    ) -> Attempt:
        """What this trial continues (`attempt.decide`), from what the dir holds."""
        earlier, moved = self._earlier_record()
        status = status_of(self.path, earlier) if earlier is not None else None
        found = Found(
            path=self.path,
            metadata=self.path / METADATA,
            record=earlier,
            moved=moved,
            status=status,
            finished=status in FINISHED,
            damage=damage(self.path, earlier) if status == DAMAGED else None,
            checkpoint=latest_checkpoint_step(self.checkpoints),
            rows=self.path / METRICS if (self.path / METRICS).exists() else None,
            write_records=self.write_records,
        )
        return decide(found, identity, rng_seed, resume, checkpointing, labels or {})

    def _earlier_record(self) -> tuple[dict[str, Any] | None, bool]:
        """The record of the trial this dir holds, and whether it was moved aside already
        (a kill came between moving it and writing the next attempt's)."""
        record = read_metadata(self.path)
        if record is not None or not (self.path / ATTEMPTS).is_dir():
            return record, False
        numbers = [int(p.name) for p in (self.path / ATTEMPTS).iterdir() if p.name.isdigit()]
        if not numbers:
            return None, False
        return read_metadata(self.path / ATTEMPTS / str(max(numbers))), True

    def begin(
        self,
        attempt: Attempt,
        metadata: Mapping[str, Any],
        config_yaml: str,
        packages: str | None,
        hydra_files: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[Path, bytes]] | None = None,
    ) -> None:
        """Start the records: an earlier attempt moved aside (or the rows after the
        checkpoint cut), status `running`, the resolved config, the packages, Hydra's
        composed config (`hydra_files`: name -> YAML, into .hydra/), and a copy of each
        of `files` (setting -> its path and the bytes that ran, see COPIES: the caller
        reads them, once, so the copy is what ran, not the file as it is now); metrics
        to come."""
        if attempt.move_aside:
            self._move_aside(attempt.number - 1)
        if attempt.checkpoint_step is not None:
            self._cut_rows_after(attempt.checkpoint_step, attempt.number)
        self.status = "running"
        if hydra_files:  # Hydra's own, written with logging=off too
            (self.path / HYDRA).mkdir(exist_ok=True)
        for name, text in (hydra_files or {}).items():
            write_text_atomically(self.path / HYDRA / name, text)
        if not self.write_records:
            return
        # A continued trial's record starts afresh (the last ending's error is no longer
        # true), keeping when the trial first started.
        earlier = read_metadata(self.path) if attempt.checkpoint_step is not None else None
        first = (earlier or {}).get("first_datetime", (earlier or {}).get("datetime"))
        write_json_atomically(
            self.path / METADATA,
            {
                **metadata,
                "first_datetime": first or metadata.get("datetime"),
                "status": "running",
                "attempt": attempt.number,
                "resumed_from_step": attempt.checkpoint_step,
                "start_time": time.time(),
            },
        )
        write_text_atomically(self.path / CONFIG, config_yaml)
        if packages is not None:
            write_text_atomically(self.path / PACKAGES, packages)
        for key, (source, content) in (files or {}).items():
            write_text_atomically(self.path / f"{COPIES[key]}{Path(source).suffix}", content)
        cut_torn_line(self.path / METRICS)
        self._columns = csv_header(self.path / METRICS)
        self._last_step = last_global_step(self.path / METRICS)

    def append(self, row: Mapping[str, Any]) -> None:
        """One evaluation's row. The row of the last recorded step again is skipped (a
        signal cut its handing out short); an earlier step is refused."""
        if not self.write_records:
            return
        if self._appending:  # a signal cut the last append short: the file says how far
            cut_torn_line(self.path / METRICS)
            self._last_step = last_global_step(self.path / METRICS)
        if row["global_step"] == self._last_step:
            return
        if row["global_step"] < self._last_step:
            raise RecordsError(
                self.path / METRICS, ValueError(f"step {row['global_step']} was recorded already")
            )
        if self._columns is None:
            self._columns = list(row)
        self._appending = True
        append_csv_row(self.path / METRICS, self._columns, row)
        self._last_step = row["global_step"]
        self._appending = False

    def end(self, status: str, **values: Any) -> None:
        """The final status, once; a record that cannot be written is logged, not raised."""
        if self.status != "running":
            raise RuntimeError(f"cannot end a trial that is {self.status}, not running")
        if status not in ENDED:
            raise ValueError(f"unknown status {status!r}")
        self.status = status
        if not self.write_records:
            return
        if status in FINISHED:  # its rows are final: a later change shows in status_of
            values[ROWS_DIGEST] = rows_digest(self.path / METRICS)
        try:
            record, now = read_metadata(self.path) or {}, time.time()
            write_json_atomically(
                self.path / METADATA,
                {
                    **record,
                    "status": status,
                    "end_datetime": datetime.datetime.now().astimezone().isoformat(),
                    "elapsed_time": now - record.get("start_time", now),
                    **values,
                },
            )
        except (RecordsError, ConfigError) as error:
            log.error("The trial ended %s, but %s", status, error)

    def drop_checkpoints(self) -> None:
        """Remove the checkpoints of a trial that ended (after `end`: a kill before it
        must leave them to resume from)."""
        shutil.rmtree(self.checkpoints, ignore_errors=True)

    def record_failure(self, metadata: Mapping[str, Any], status: str = "failed") -> None:
        """The record of a trial that failed (or was interrupted) before it began. An
        earlier trial's record stays; an earlier failure of the same kind (no identity)
        is replaced."""
        if not self.write_records or self.status is not None:
            return
        try:
            earlier = read_metadata(self.path)
        except ConfigError:
            return  # an unreadable record: left as it is, for its owner to look at
        if earlier is None or "identity" not in earlier:
            write_json_atomically(self.path / METADATA, {**metadata, "status": status})

    def discard_if_unused(self) -> None:
        """Remove the dir when it holds nothing but Hydra's log and the lock (a bad
        command line); an earlier trial's dir keeps everything it had."""
        self.release()
        names = {p.name for p in self.path.iterdir()} if self.path.is_dir() else set()
        if names and names <= {".hydra", LOCK} | {n for n in names if n.endswith(".log")}:
            shutil.rmtree(self.path)

    def _move_aside(self, number: int) -> None:
        """The earlier attempt's records, copies and checkpoints into .attempts/<n>/, n the
        first free number from `number` on."""
        while (self.path / ATTEMPTS / str(number)).exists():
            number += 1
        target = self.path / ATTEMPTS / str(number)
        names = [*RECORDS, CHECKPOINTS, HYDRA]
        names += [p.name for p in self.path.iterdir() if p.stem in COPIES.values()]
        try:
            target.mkdir(parents=True)
            for name in names:
                if (self.path / name).exists():
                    (self.path / name).rename(target / name)
        except OSError as error:
            raise RecordsError(target, error) from error
        log.info("The earlier attempt's records are in %s.", target)

    def _cut_rows_after(self, step: int, number: int) -> None:
        """Rows after the checkpoint are redone: keep them aside, not in the trajectory."""
        path = self.path / METRICS
        if not path.exists():
            return
        header, rows = read_rows(path)
        kept = [row for row in rows if int(row[header.index("global_step")]) <= step]
        if len(kept) == len(rows):
            return
        aside = self.path / ATTEMPTS / f"{number}.rows_after_step_{step}.csv"
        aside.parent.mkdir(exist_ok=True)
        write_text_atomically(aside, csv_text([header, *rows[len(kept) :]]))
        write_text_atomically(path, csv_text([header, *kept]))
