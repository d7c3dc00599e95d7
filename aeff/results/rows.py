"""The one reader of trials' records every results tool uses: the run dirs at or below a
folder (`trial_dirs`), each one's metadata.json (`record_of`), their rows (`read_rows`,
a cell that should hold a number and does not left out, its trial named once), and
whether a trial's target metric is better higher (`target_higher_is_better`).
"""

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeff.errors import ConfigError
from aeff.records.concat import load_metrics, nonempty_metrics
from aeff.records.run_dir import METADATA, METRICS, read_metadata
from aeff.records.secrets import redact
from aeff.records.sweep_dir import STUDY_PREFIX, read_plan

log = logging.getLogger(__package__)  # aeff.results: the results tools' warnings, one name

# Row columns that hold the user's own values or the config's texts: any text is theirs.
TEXT_COLUMNS = ("run_dir", "framework", "workload", "hparams.", "meta.", "workload.", "submission.")


NAMED = "damaged_named"  # the rows' attrs: the trials `numbers_only` named in a warning

TARGET_METRIC = "workload.target_metric"
# Whether the target metric is better higher, as the workload declared it (in metadata.json
# and every row); a record written before workloads declared it holds no such key.
TARGET_HIGHER = "workload.target_higher_is_better"


def read_rows(path: Path, required: bool = False) -> pd.DataFrame:
    """The rows at or below `path` as every results tool reads them (`load_metrics`, or
    `nonempty_metrics` when `required`), with `numbers_only`'s cells left out."""
    return numbers_only(nonempty_metrics(path) if required else load_metrics(path))


def numbers_only(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with each cell that should hold a number and does not (a value edited to
    `abc`) as NaN, its trial named in one warning line: a trial whose rows were edited is
    damaged (`status_of` finds it so once it finished), and each tool reads what is left.
    A column should hold numbers when any of its cells does and it is none of TEXT_COLUMNS."""
    damaged: dict[str, tuple[int, str, str]] = {}
    for column in rows.columns:
        if str(column).startswith(TEXT_COLUMNS) or pd.api.types.is_numeric_dtype(rows[column]):
            continue
        numbers = pd.to_numeric(rows[column], errors="coerce")
        bad = rows[column].notna() & numbers.isna()
        if not bad.any() or not numbers.notna().any():
            continue
        for run_dir, cells in rows.loc[bad, ["run_dir", column]].groupby("run_dir", sort=False):
            count, _, _ = damaged.get(run_dir, (0, column, ""))
            damaged[run_dir] = (count + len(cells), column, str(cells[column].iloc[0]))
        rows[column] = numbers
    rows.attrs[NAMED] = set(damaged)  # summary names them no second time
    for run_dir, (count, column, value) in damaged.items():
        log.warning(
            "%s: %d cell(s) that should hold a number do not (%s: %r): the trial's rows were "
            "edited or corrupted; read without them (resume=true trains it again).",
            Path(run_dir) / METRICS,
            count,
            column,
            redact(value)[:40],
        )
    return rows


def trial_dirs(path: Path) -> list[Path]:
    """The run dirs at or below `path`: a sweep's planned jobs in order, else every dir
    with a record (earlier attempts, under dot folders, left out)."""
    plan = read_plan(path)
    if plan is not None:
        return [path / str(job) for job in range(len(plan))]
    found = [
        p.parent
        for p in Path(path).rglob(METADATA)
        if not any(part.startswith(".") for part in p.relative_to(path).parts)
    ]
    return sorted(found, key=numeric_order)


def numeric_order(run_dir: str | Path) -> tuple[int, ...]:
    """A sort key putting job 2 before job 10, and study_2 before study_10."""
    numbers = (p.removeprefix(STUDY_PREFIX) for p in Path(run_dir).parts)
    return tuple(int(p) if p.isdigit() else -1 for p in numbers)


def record_of(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The trial's metadata.json (None: none yet), or why it cannot be read."""
    try:
        return read_metadata(run_dir), None
    except ConfigError as error:
        log.warning("%s", error)
        return None, str(error)


def target_higher_is_better(record: Mapping[str, Any]) -> bool:
    """Whether a trial's target metric is better higher: as its record (metadata.json, or
    one of its rows) says the workload declared it, else, for a record written before
    workloads declared it, by its name (a loss is lowered; anything else is raised)."""
    declared = record.get(TARGET_HIGHER)
    if isinstance(declared, str):  # a row read back among rows without the column
        declared = {"true": True, "false": False}.get(declared.lower())
    if isinstance(declared, bool | np.bool_):  # numpy's: a cell of a column of booleans
        return bool(declared)
    return not str(record.get(TARGET_METRIC)).endswith("loss")
