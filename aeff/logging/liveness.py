"""Whether a trial whose metadata says `running` still runs: a lock its process holds.

The kernel drops an flock when its process dies, `kill -9` included, so a free lock
under a `running` status means the trial was interrupted. Where the file system has
no flock (some cluster file systems), the status stays as recorded.
"""

import fcntl
import os
from pathlib import Path

LOCK = ".aeff.lock"

_held: dict[Path, int] = {}


def hold(directory: Path) -> bool:
    """Lock `directory` for this process until `release` or exit; whether it could."""
    try:
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # an unwritable run dir: writing the records will say so
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by another live process, or no flock here
        os.close(fd)
        return False
    _held[directory] = fd
    return True


def release(directory: Path) -> None:
    fd = _held.pop(directory, None)
    if fd is not None:
        os.close(fd)


def is_running(directory: Path) -> bool | None:
    """True while some process holds the lock, False once none does, None if unknown."""
    try:
        fd = os.open(directory / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False  # the lock is made before metadata.json, so its process never ran
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
