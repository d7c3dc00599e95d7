"""Credentials out of every record and console line: `redact`, and a logging filter.

Caught: the user-info part of a URL (`https://user:token@host`, a raw `@` in the
password included, also after a path has folded `//` into `/`), and the values of
query parameters whose names say they are secret (`?token=`, `access_token=`,
`sig=`, `api_key=`, `password=` ...).
"""

import logging
import re

USER_INFO = re.compile(r"(?<=:/)(/?)[^/\s'\"]*@")
SECRET_PARAMETER = re.compile(
    r"(?i)([?&;][\w.-]*(?:token|key|secret|sig|signature|password|passwd|pwd|auth|credential)"
    r"[\w.-]*=)[^&#\s'\"]+"
)


def redact(text: str) -> str:
    """`https://user:token@host/x?sig=abc` -> `https://***@host/x?sig=***`."""
    return SECRET_PARAMETER.sub(r"\1***", USER_INFO.sub(r"\1***@", text))


class RedactingFilter(logging.Filter):
    """For a logging handler: every message it emits, credentials redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True
