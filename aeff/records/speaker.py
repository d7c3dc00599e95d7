"""Which trial a log line is about, where one process works for several (a group).

The vectorized launcher writes each line into the log of the trial it is about, and a
line about none of them (`None`) into every one.
"""

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

SPEAKER: contextvars.ContextVar[Any] = contextvars.ContextVar("aeff_speaker", default=None)


@contextlib.contextmanager
def speaking(tag: Any) -> Iterator[None]:
    """Log lines in the block are about the trial `tag`."""
    token = SPEAKER.set(tag)
    try:
        yield
    finally:
        SPEAKER.reset(token)
