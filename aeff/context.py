"""The run context: what one command (`python -m aeff ...`) knows about itself.

`app.main` begins one for its command (`begin`) before anything reads it; a process that
runs trials without `main` (a launcher's worker, a script calling `aeff.trial`) has one
made when it first asks (`current`). It holds:
- `typed`: the command line's arguments as typed (before `with_user_files` adds options),
  for the commands that resume or finish a run;
- `files`: each user file's bytes as the command first read them (`aeff.user_files`), so
  what runs, what is hashed and what is copied are one version;
- `options`: the config group options its user files made (`from_file`), the only ones
  `app.register` leaves in Hydra's store;
- `received`: the signals it received (`aeff.interrupts`): a worker a signal stopped
  starts no further job, and SLURM's warning signal asks for a requeue.
How a signal is handled (the phase) is the process's, as its handlers are: `aeff.interrupts`.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


class Run:
    """One command's state. A plain class: `python -m aeff` imports this module before its
    signal handler is in place, and importing dataclasses took 7-32 ms more (-X importtime,
    on a loaded 2-core machine)."""

    def __init__(self, typed: list[str] | None = None) -> None:
        self.typed = typed  # None: sys.argv's, as a worker or a script has them
        self.files: dict[Path, bytes] = {}
        self.options: dict[str, dict[str, Any]] = {}
        self.received: list[int] = []


_current: Run | None = None


def begin(typed: list[str] | None = None) -> Run:
    """A new command's context, the one `current` returns from now on: nothing read,
    nothing received."""
    global _current
    _current = Run(typed=None if typed is None else list(typed))
    return _current


def current() -> Run:
    """This command's context (begun now if no `begin` did)."""
    return _current if _current is not None else begin()
