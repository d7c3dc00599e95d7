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
| `.aeff.lock` | `Lock`: held by the owning process, its pid and host inside |

The record's status moves once: running -> completed | diverged | failed | interrupted.
A `running` record whose lock no process holds was killed: `status_of` says
`interrupted`. A finished record whose metrics.csv does not end at its last step (rows cut,
replaced or deleted since) is `damaged`: reports count it failed, and a resume trains it
again from step 0, its records moved aside. Nothing here knows Hydra: the run dir is
passed in.
"""

import csv
import datetime
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import psutil

from aeff.errors import ConfigError, RecordsError, RunDirBusy
from aeff.records.files import (
    append_csv_row,
    complete_lines,
    csv_header,
    cut_torn_line,
    remove_stale_temporaries,
    write_json_atomically,
    write_text_atomically,
)

log = logging.getLogger(__name__)

METADATA = "metadata.json"
METRICS = "metrics.csv"
CONFIG = "config_resolved.yaml"
PACKAGES = "packages.txt"
CHECKPOINTS = "checkpoints"
ATTEMPTS = ".attempts"
HYDRA = ".hydra"  # copies of Hydra's composed config, written once the trial is accepted
LOCK = ".aeff.lock"
# Copies of the files a trial's code and space came from, by the setting that named them.
COPIES = {"submission_path": "submission", "workload_path": "workload"}
COPIES["tuning_search_space"] = "search_space"
RECORDS = (METADATA, METRICS, CONFIG, PACKAGES)
LABELS = "meta."  # a record's keys that are the user's labels (`+meta.study=...`)

FINISHED = ("completed", "diverged")  # divergence is a result, not a failure
ENDED = (*FINISHED, "failed", "interrupted")
DAMAGED = "damaged"  # finished, but its rows changed since (status_of)
# A trial that began with logging=off: `.hydra/` (written by `begin`) and no metadata.json, so
# how it ended is nowhere on disk (its sweep's report takes it from what the launcher returned).
UNRECORDED = "unrecorded"
ROWS_DIGEST = "metrics_sha256"  # a finished trial's metadata.json: its metrics.csv's sha256


class Lock:
    """An flock on `<dir>/.aeff.lock`: one live process owns the dir until it exits.

    The kernel drops the lock on any death, `kill -9` included, so a dead owner's dir
    can be taken over (resume). Where the file system has no flock, ownership cannot be
    enforced: a warning says so and the run goes on.
    """

    _held: ClassVar[dict[Path, int]] = {}  # dirs this process owns -> the lock's fd

    @classmethod
    def acquire(cls, directory: Path) -> None:
        """Own `directory` (idempotent), or raise RunDirBusy naming the owner."""
        if directory in cls._held:
            return
        path = directory / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RecordsError(path, error) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirBusy(
                f"{directory} is in use by {cls.owner(directory)}: wait for it to end, or "
                "choose another hydra.run.dir (hydra.sweep.dir for -m)."
            ) from None
        except OSError as error:
            log.warning("No flock in %s (%s): its ownership cannot be checked.", directory, error)
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
        cls._held[directory] = fd

    @classmethod
    def release(cls, directory: Path) -> None:
        fd = cls._held.pop(directory, None)
        if fd is not None:
            os.close(fd)

    @staticmethod
    def owner(directory: Path) -> str:
        try:
            return (directory / LOCK).read_text().strip() or "another process"
        except OSError:
            return "another process"

    @staticmethod
    def held_by(process: psutil.Process) -> bool:
        """Whether `process` holds a run dir's lock open (it owns the dir: a trial runs)."""
        try:
            return any(Path(file.path).name == LOCK for file in process.open_files())
        except psutil.Error:
            return False  # ended

    @staticmethod
    def is_held(directory: Path) -> bool | None:
        """True while some process holds the lock, False once none does, None if unknown."""
        try:
            fd = os.open(directory / LOCK, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None
        finally:
            os.close(fd)
        return False


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


@dataclass(frozen=True)
class Attempt:
    """What a trial starting in a run dir continues: its attempt number, seed, checkpoint."""

    number: int = 0
    rng_seed: int | None = None  # the recorded seed, which a resume keeps
    checkpoint_step: int | None = None  # continue from this checkpoint
    move_aside: bool = False  # the earlier attempt's records go to .attempts/<n>/


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
        """What this trial continues; refuses a trial that would mix with an earlier one.

        `identity` holds the values that make a trial this trial (metadata.json keeps it
        under "identity"); a resume must match it, and the seed when one is given. Its
        `labels` (`meta.*` keys) too: every row of a trial carries them, so a resume that
        changes, adds or removes one would leave rows that disagree.
        """
        earlier, moved = self._earlier_record()
        checkpoint = latest_checkpoint_step(self.checkpoints)
        if not resume:
            if earlier is not None or checkpoint is not None or (self.path / METRICS).exists():
                raise ConfigError(
                    f"{self.path} holds an earlier trial: add resume=true to continue it, "
                    "or choose another hydra.run.dir."
                )
            return Attempt(rng_seed=rng_seed)
        if earlier is None:
            if checkpoint is not None:
                raise ConfigError(
                    f"{self.path} holds a checkpoint but no {METADATA} (logging=off?), so "
                    "which trial it holds cannot be checked: start afresh in another dir."
                )
            if (self.path / METRICS).exists():
                raise ConfigError(
                    f"{self.path} holds {METRICS} but no {METADATA}, so which trial its rows "
                    f"are of cannot be checked: restore {METADATA}, or start afresh in "
                    "another dir."
                )
            return Attempt(rng_seed=rng_seed)  # nothing recorded: a first attempt
        if not self.write_records:
            raise ConfigError(f"{self.path} holds records: resume it with logging=default.")
        status = status_of(self.path, earlier)
        if status in FINISHED:
            raise ConfigError(f"{self.path} holds a trial that ended {status}: nothing to resume.")
        number = int(earlier.get("attempt", 0))
        if "identity" not in earlier:  # it failed before it began: nothing to continue
            return Attempt(number + 1, rng_seed, move_aside=not moved)
        self._refuse_another_trial(earlier, identity, rng_seed, labels or {})
        seed = earlier.get("rng_seed")
        if status == DAMAGED:  # its checkpoints continue rows that are lost: from step 0
            log.warning("%s", damage(self.path, earlier))
            return Attempt(number + 1, seed, move_aside=not moved)
        if checkpoint is None:
            return Attempt(number + 1, seed, move_aside=not moved)
        if not checkpointing:
            raise ConfigError(
                f"{self.path} holds a checkpoint of step {checkpoint}: resume it with "
                "checkpoint.enabled=true."
            )
        return Attempt(number, seed, checkpoint_step=checkpoint)

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

    def _refuse_another_trial(
        self,
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
                f"resume=true continues only the same trial, but {self.path} recorded "
                f"{', '.join(differences)}: run with the recorded values, or choose another "
                "hydra.run.dir."
            )

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


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """A metrics.csv's header and complete rows, as csv reads them (a value may hold any
    character, U+2028 included, and be long); an unreadable file is named."""
    try:
        text = complete_lines(path)
    except (OSError, UnicodeDecodeError) as error:
        raise unreadable(path, error) from None
    return parse_rows(text, path)


def parse_rows(text: str, path: Path) -> tuple[list[str], list[list[str]]]:
    """`read_rows` of the complete lines `text`, read from `path`."""
    csv.field_size_limit(2**31 - 1)
    try:
        header, *rows = csv.reader(io.StringIO(text, newline=""))
        step = header.index("global_step")
        for row in rows:
            int(row[step])
            if len(row) != len(header):
                raise ValueError(f"a row of {len(row)} fields under {len(header)} columns")
    except (csv.Error, ValueError, IndexError) as error:
        raise unreadable(path, error) from None
    return header, rows


def unreadable(path: Path, error: Exception) -> ConfigError:
    return ConfigError(
        f"{path} is unreadable ({type(error).__name__}: {error}): move it aside, or "
        "choose another hydra.run.dir."
    )


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def last_global_step(path: Path) -> int:
    """The step of the last complete row of a metrics.csv, or -1."""
    if not path.exists() or not complete_lines(path):
        return -1
    header, rows = read_rows(path)
    return int(rows[-1][header.index("global_step")]) if rows else -1


def differing(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """`key=recorded (now value)` for each key whose value differs between the two."""
    return [
        f"{key}={recorded.get(key)!r} (now {now.get(key)!r})"
        for key in sorted(set(recorded) | set(now))
        if recorded.get(key) != now.get(key)
    ]
