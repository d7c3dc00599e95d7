"""Every trial's metrics.csv below a folder, in one table."""

import io
import logging
from pathlib import Path

import pandas as pd

from aeff.errors import ConfigError
from aeff.logging.files import complete_lines, write_text_atomically
from aeff.logging.run_dir import METRICS, read_rows

COMBINED = "all_metrics.csv"

log = logging.getLogger(__name__)


def read_metrics(path: Path, as_text: bool = False) -> pd.DataFrame:
    """One metrics.csv; an unreadable one is named in a warning and left out."""
    try:
        text = complete_lines(path)
        if not text:
            return pd.DataFrame()
        read_rows(path)  # the checks resume makes: whole rows under a global_step header
        frame = pd.read_csv(io.StringIO(text), dtype=str if as_text else None)
    except (ConfigError, OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        log.warning("Left out %s: %s", path, error)
        return pd.DataFrame()
    frame.insert(0, "run_dir", str(path.parent.resolve()))
    return frame


def load_metrics(path: Path, as_text: bool = False) -> pd.DataFrame:
    """All rows of the metrics.csv files at or below `path` (a CSV, run dir or sweep dir).

    `as_text` keeps every value exactly as written (no int-to-float widening).
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob(METRICS))
    # Earlier attempts, moved aside under dot folders by a resume, are not trials.
    files = [f for f in files if not any(p.startswith(".") for p in f.relative_to(path).parts)]
    frames = [f for f in (read_metrics(file, as_text) for file in files) if not f.empty]
    return pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()


def folder_of(path: Path) -> Path:
    """PATH, or the folder of the file PATH: where the results tools write."""
    return path if path.is_dir() else path.parent


def nonempty_metrics(path: Path, as_text: bool = False) -> pd.DataFrame:
    """`load_metrics`, refusing a PATH below which there are no rows."""
    frame = load_metrics(path, as_text)
    if frame.empty:
        raise ConfigError(
            f"no {METRICS} with complete rows at or below {path}: give a run dir, a sweep "
            f"dir or a {METRICS}."
        )
    return frame


def concatenate_csvs(path: str | Path) -> Path:
    """Write `all_metrics.csv` into PATH (a file's folder): every trial's rows, columns
    unioned, run dir kept."""
    path = Path(path)
    frame = nonempty_metrics(path, as_text=True)
    out = folder_of(path) / COMBINED
    write_text_atomically(out, frame.to_csv(index=False))  # two at once: no shared temp file
    return out
