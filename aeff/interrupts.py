"""SIGINT, SIGTERM and SIGHUP as an exception, so a trial stops between Python statements.

The runner then records a last row and a checkpoint, with further signals held off
until the checkpoint is on disk; the trial records `interrupted` and the app exits
with the shell's code for the signal.
"""

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from aeff.errors import TrialInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# Signals raised but not yet acted on: a handler's exception raised inside a callback
# that swallows exceptions (a garbage-collection hook of JAX's, say) is lost, so the
# trial loop also checks this list between launches (`raise_pending`).
_pending: list[int] = []


@contextlib.contextmanager
def _handled(handler: Any) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def interrupts_raised() -> Iterator[None]:
    """Turn the signals into TrialInterrupted."""

    def handler(signum: int, frame: Any) -> None:
        _pending.append(signum)
        raise TrialInterrupted(signum)

    try:
        with _handled(handler):
            yield
    finally:
        _pending.clear()


def raise_pending() -> None:
    """Raise TrialInterrupted for a signal whose exception was swallowed on its way."""
    if _pending:
        raise TrialInterrupted(_pending[0])


@contextlib.contextmanager
def interrupts_held() -> Iterator[list[int]]:
    """Note the signals instead of raising them, so the block (a checkpoint on the way out)
    finishes; yields the list they are noted in."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)

    with _handled(handler):
        yield received
