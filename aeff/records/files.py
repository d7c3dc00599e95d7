"""Crash-safe writes: JSON replaced atomically, CSV rows appended whole and fsync-ed.

A failed write (a full disk, a read-only folder) raises RecordsError, naming the
file, and leaves the file as it was.
"""

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aeff.errors import RecordsError


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Readers see the old file or the new one, never a mix. A NaN or infinite number (a
    diverged trial's loss) becomes null: JSON has no word for it."""
    text = json.dumps(finite(data), indent=2, sort_keys=True, default=str, allow_nan=False)
    write_text_atomically(path, text)


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float inside it replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (`=HYPERLINK(...)`), quoted with a
    leading apostrophe, as OWASP advises for CSV; numbers are left alone."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def write_text_atomically(path: Path, text: str | bytes) -> None:
    """`text` (or bytes, written as they are) into `path`, whole or not at all."""
    tmp_name = None
    try:
        with tempfile.NamedTemporaryFile(
            "wb" if isinstance(text, bytes) else "w",
            dir=path.parent,
            prefix=f".{path.name}.",
            suffix=".tmp",
            delete=False,
        ) as tmp:
            tmp_name = tmp.name
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)  # temporary files are private; records are not
        os.replace(tmp_name, path)
    except OSError as error:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise RecordsError(path, error) from error


def remove_stale_temporaries(directory: Path) -> None:
    """The temporary files of writes that a kill interrupted before they were published."""
    for path in directory.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def csv_header(path: Path) -> list[str] | None:
    """The columns of an existing CSV, or None when it has no complete header."""
    try:
        with path.open(newline="") as file:
            first = file.readline()
    except FileNotFoundError:
        return None
    return next(csv.reader([first])) if first.endswith("\n") else None


def append_csv_row(path: Path, columns: list[str], row: Mapping[str, Any]) -> None:
    """Append one row (and the header, first) with a single write, then fsync.

    A kill at any moment leaves only complete lines: the line is written in one
    `write` of an O_APPEND file and fsync-ed before the next. A write that fails
    part-way (a full disk) is cut back off before the error is raised.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    if csv_header(path) is None:
        writer.writeheader()
    writer.writerow({k: inert(v) for k, v in row.items()})
    data = buffer.getvalue().encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise RecordsError(path, error) from error
    size = os.fstat(fd).st_size
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise RecordsError(path, error) from error
    finally:
        os.close(fd)


def complete_lines(path: Path) -> str:
    """The file without a half-written last line (a writer may be mid-row), as written:
    a carriage return inside a value stays one."""
    with path.open(newline="") as file:
        text = file.read()
    return text if text.endswith("\n") else text[: text.rfind("\n") + 1]


def cut_torn_line(path: Path) -> None:
    """Drop a half-written last line, left by a crash of the machine, before appending."""
    if not path.exists():
        return
    try:
        data = path.read_bytes()
        if (end := data.rfind(b"\n") + 1) < len(data):
            os.truncate(path, end)
    except OSError as error:
        raise RecordsError(path, error) from error
