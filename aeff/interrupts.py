"""SIGINT, SIGTERM and SIGHUP: how each phase of a run ends on them.

Before a trial's records begin (imports, composing, loading data, compiling) there is
nothing to record: `exit_on_signals` ends the process at once with one line and the
shell's code (raising inside TensorFlow's or XLA's C++ could crash the process).
While it trains, `interrupts_raised` turns them into TrialInterrupted between Python
statements; the runner then records a last row and a checkpoint, with further signals
held off (`interrupts_held`) until the checkpoint is on disk, and the trial records
`interrupted`. A process that received one starts no further trial (`received`): a
launcher's worker would otherwise go on to the next job handed to it.
"""

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from aeff.errors import TrialInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# Signals raised but not yet acted on: a handler's exception raised inside a callback
# that swallows exceptions (a garbage-collection hook of JAX's, say) is lost, so the
# trial loop also checks this list between launches (`raise_pending`).
_pending: list[int] = []
# Every signal this process received while aeff's handlers were in place (`received`).
_received: list[int] = []


def received() -> int | None:
    """The first signal this process received since `forget_received`, or None."""
    return _received[0] if _received else None


def forget_received() -> None:
    """A new sweep in this process (tests run several): earlier signals stop nothing."""
    _received.clear()


@contextlib.contextmanager
def _handled(handler: Any) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
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


_raising: list[bool] = []  # an entry per open `interrupts_raised` block
_holds: list[list[int]] = []  # the signals each open hold has noted, innermost last


@contextlib.contextmanager
def interrupts_raised() -> Iterator[None]:
    """Turn the signals into TrialInterrupted: the first one of the block; later ones are
    noted (a sweep's parent passes on the Ctrl-C its workers got too, and a second
    TrialInterrupted would cut the first one's way out short)."""

    def handler(signum: int, frame: Any) -> None:
        _received.append(signum)
        first = not _pending
        _pending.append(signum)
        if first:
            raise TrialInterrupted(signum)

    _raising.append(True)
    try:
        with _handled(handler):
            yield
    finally:
        _raising.pop()
        _pending.clear()


def raise_pending() -> None:
    """Raise TrialInterrupted for a signal whose exception was swallowed on its way."""
    if _pending:
        raise TrialInterrupted(_pending[0])


@contextlib.contextmanager
def interrupts_held() -> Iterator[list[int]]:
    """Within `interrupts_raised`, note the signals instead of raising them, so that the
    block (a launch being charged, a checkpoint on the way out) finishes; yields the list
    they are noted in. None is lost: a hold within another passes its signals on to it,
    and one noted when the block raises is raised in the error's place. Elsewhere (a
    library call, another thread) the signals keep their own handling."""
    received: list[int] = []
    if not _raising or threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        _received.append(signum)
        received.append(signum)

    _holds.append(received)
    try:
        with _handled(handler):
            yield received
    except Exception as error:
        if received:
            raise TrialInterrupted(received[0]) from error
        raise
    finally:
        _holds.pop()
        if _holds:
            _holds[-1].extend(received)
