"""SIGINT and SIGTERM as an exception, so a trial stops between Python statements.

The runner then records a last row and a checkpoint; the app records `interrupted`
and exits with the shell's code for the signal.
"""

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class TrialInterrupted(Exception):
    """SIGINT or SIGTERM stopped the trial; its records say `interrupted`."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


@contextlib.contextmanager
def interrupts_raised() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into TrialInterrupted, which Hydra's callbacks see."""

    def handler(signum: int, frame: Any) -> None:
        raise TrialInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
