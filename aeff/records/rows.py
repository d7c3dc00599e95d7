"""A metrics.csv read back: its header and whole rows as csv reads them, its last step.

Rows are cut only at whole lines (`files.complete_lines`): a row a kill tore is not
read. Every reader of rows (a run dir's owner, a resume, `concat`) goes through here.
"""

import csv
import io
from pathlib import Path

from aeff.errors import ConfigError
from aeff.records.files import complete_lines


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """A metrics.csv's header and complete rows, as csv reads them (a value may hold any
    character, U+2028 included, and be long); an unreadable file is named."""
    try:
        text = complete_lines(path)
    except (OSError, UnicodeDecodeError) as error:
        raise unreadable(path, error) from None
    return parse_rows(text, path)


def parse_rows(text: str, path: Path) -> tuple[list[str], list[list[str]]]:
    """`read_rows` of the complete lines `text`, read from `path`."""
    csv.field_size_limit(2**31 - 1)
    try:
        header, *rows = csv.reader(io.StringIO(text, newline=""))
        step = header.index("global_step")
        for row in rows:
            int(row[step])
            if len(row) != len(header):
                raise ValueError(f"a row of {len(row)} fields under {len(header)} columns")
    except (csv.Error, ValueError, IndexError) as error:
        raise unreadable(path, error) from None
    return header, rows


def unreadable(path: Path, error: Exception) -> ConfigError:
    return ConfigError(
        f"{path} is unreadable ({type(error).__name__}: {error}): move it aside, or "
        "choose another hydra.run.dir."
    )


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def last_global_step(path: Path) -> int:
    """The step of the last complete row of a metrics.csv, or -1."""
    if not path.exists() or not complete_lines(path):
        return -1
    header, rows = read_rows(path)
    return int(rows[-1][header.index("global_step")]) if rows else -1
