"""A dir's owner: an flock on `<dir>/.aeff.lock`, held by one live process.

Run dirs and sweep dirs alike are owned this way: `RunDir.claim` takes a trial's, the
sweeper its sweep dir's and each study's. The lock file's name is spelled here, beside
its one owner.
"""

import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import ClassVar

import psutil

from aeff.errors import RecordsError, RunDirBusy

log = logging.getLogger(__name__)

LOCK = ".aeff.lock"


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
