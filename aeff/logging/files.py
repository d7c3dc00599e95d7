"""Crash-safe writes: JSON replaced atomically, CSV rows appended whole and fsync-ed."""

import csv
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Readers see the old file or the new one, never a mix."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as tmp:
        json.dump(data, tmp, indent=2, sort_keys=True, default=str)
        tmp.flush()
        os.fsync(tmp.fileno())
    _publish(tmp.name, path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def write_text_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as tmp:
        tmp.write(text)
    _publish(tmp.name, path)


def _publish(tmp_name: str, path: Path) -> None:
    os.chmod(tmp_name, 0o644)  # temporary files are private; records are not
    os.replace(tmp_name, path)


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
    `write` of an O_APPEND file and fsync-ed before the next.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    if csv_header(path) is None:
        writer.writeheader()
    writer.writerow(row)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, buffer.getvalue().encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def complete_lines(path: Path) -> str:
    """The file without a half-written last line (a writer may be mid-row)."""
    text = path.read_text()
    return text if text.endswith("\n") else text[: text.rfind("\n") + 1]
