"""Credentials out of every record and console line: `redact`, and log records made redacted.

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


def redact_log_records() -> None:
    """Every log record this process makes from now on, credentials redacted as it is made:
    whatever handlers a logging config sets up (Hydra's default, `hydra/job_logging=disabled`,
    a user's own), none can print or write it unredacted."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts", False):
        return

    def redacting_factory(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:  # formatters print this text, made once, instead of their own
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None  # nor can a handler that renders it itself
        return record

    redacting_factory.redacts = True
    logging.setLogRecordFactory(redacting_factory)
