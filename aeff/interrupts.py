"""SIGINT, SIGTERM and SIGHUP: how each phase of a run ends on them.

Before a trial's records begin (imports, composing, loading data, compiling) there is
nothing to record: `exit_on_signals` ends the process at once with one line and the
shell's code (raising inside TensorFlow's or XLA's C++ could crash the process).
While it trains, `interrupts_noted` turns them into a flag, which the trial loop looks at
between launches (`check`, as orbax's `reached_preemption` is polled) and raises as
TrialInterrupted; the loop then records a last row and a checkpoint, and the trial
records `interrupted`. A process that received one starts no further trial (`received`): a
launcher's worker would otherwise go on to the next job handed to it.
"""

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

from aeff.errors import TrialInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def warning_signal() -> int | None:
    """In a submitit job (`hydra/launcher=slurm`), the signal by which SLURM warns of a time
    limit or preemption (submitit's `--signal`: USR2 unless SUBMITIT_PREEMPT_SIGNAL says
    otherwise); None elsewhere."""
    if "SUBMITIT_FOLDER" not in os.environ:  # set by submitit where it runs a job
        return None
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, f"SIG{name}", signal.SIGUSR2)


def _noted_signals() -> tuple[int, ...]:
    """SIGNALS, and SLURM's `warning_signal`: the trial stops at a checkpoint on it too,
    then submitit requeues the job (`aeff.slurm.end_stopped_job`)."""
    warning = warning_signal()
    return SIGNALS if warning is None else (*SIGNALS, warning)


# Signals noted within `interrupts_noted` and not yet acted on.
_pending: list[int] = []
# Every signal this process received while aeff's handlers were in place (`received`).
_received: list[int] = []


def received() -> int | None:
    """The first signal this process received since `forget_received`, or None."""
    return _received[0] if _received else None


def was_received(signum: int) -> bool:
    """Whether this process received `signum` since `forget_received` (a second signal
    is noted while the first one stops the trial)."""
    return signum in _received


def forget_received() -> None:
    """A new sweep in this process (tests run several): earlier signals stop nothing."""
    _received.clear()


@contextlib.contextmanager
def _handled(handler: Any) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handler) for sig in _noted_signals()}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# What is left to do when a signal ends the process at once: "nothing to resume", or in a
# sweep what its `exit_note` says (its trials stopped, its report written, the command that
# finishes it).
_exit_notes: list[Callable[[int], str]] = []


@contextlib.contextmanager
def exit_note(note: Callable[[int], str]) -> Iterator[None]:
    """Within the block, a signal that ends the process at once calls `note(signum)` and
    says what it returns, not "nothing to resume"."""
    _exit_notes.append(note)
    try:
        yield
    finally:
        _exit_notes.remove(note)


def exit_on_signals(before: str, record: Callable[[int], None] | None = None) -> Any:
    """From now on a signal ends the process at once: `record(signum)` (a few
    milliseconds: the record saying `interrupted`), one line, exit status 128 + signal.
    Returns the handlers it replaced."""

    def handler(signum: int, frame: Any) -> None:
        _received.append(signum)
        left = "nothing to resume."
        with contextlib.suppress(Exception):  # a record that cannot be written: exit anyway
            if record is not None:
                record(signum)
        with contextlib.suppress(Exception):
            if _exit_notes:
                left = _exit_notes[-1](signum)
        name = signal.Signals(signum).name
        sys.stderr.write(f"aeff: stopped by {name} before {before}; {left}\n")
        sys.stderr.flush()
        os._exit(128 + signum)

    return {sig: signal.signal(sig, handler) for sig in SIGNALS}


@contextlib.contextmanager
def exiting_on_signals(before: str, record: Callable[[int], None] | None) -> Iterator[None]:
    """`exit_on_signals` for the block (a trial's preparation), then as before."""
    previous = exit_on_signals(before, record)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def interrupts_noted() -> Iterator[None]:
    """Within the block, a signal is a flag (`check` raises it as TrialInterrupted): the
    trial loop looks between launches, which last at most about a second, so that a
    launch, a row or a checkpoint is never cut short. Every signal is noted; the first
    one is the one raised (a sweep's parent passes on the Ctrl-C its workers got too)."""

    def handler(signum: int, frame: Any) -> None:
        _received.append(signum)
        _pending.append(signum)

    try:
        with _handled(handler):
            yield
    finally:
        _pending.clear()


def check() -> None:
    """Raise TrialInterrupted for the first signal noted in this block, if one was."""
    if _pending:
        raise TrialInterrupted(_pending[0])
