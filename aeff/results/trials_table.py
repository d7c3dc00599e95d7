"""The trials table `scoring` reads, from the records at or below the folders compared:
one row per trial (its workload, submission, study, status, target and budget), matched by
what their records say, and each trial's evaluations of its own target metric."""

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aeff.algoperf import submission as algoperf_submission
from aeff.algoperf.submission import submission_name
from aeff.errors import ConfigError
from aeff.records.run_dir import FINISHED, status_of
from aeff.results.rows import read_rows, record_of, target_higher_is_better, trial_dirs
from aeff.results.scoring import STEPS, TIME

log = logging.getLogger(__name__)

# One value per workload, or the times are not comparable.
SAME_FOR_A_WORKLOAD = (
    "workload.target_metric",
    "workload.target_value",
    "workload.max_allowed_runtime_sec",
    "max_steps",
    "workload_path_sha256",
)
REQUIRED = ("workload", "submission._target_", *SAME_FOR_A_WORKLOAD[:3])


def read_trials(
    dirs: Iterable[Path], names: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials table and their evaluations from the records at or below `dirs`.

    Trials are matched by what their records say: the workload, the submission (its class
    and its file's sha256), the study. A trial belongs to study `study` of the sweep that
    records it, or, where its record has no `study`, to the study of every trial of its
    sweep (`sweep_dir`); a trial run alone is a study of its own. A trial found below two
    of `dirs` counts once.
    """
    dirs = [Path(folder) for folder in dirs]
    records: dict[Path, Mapping[str, Any]] = {}
    found_in: dict[Path, int] = {}  # which of `dirs` each trial was found in first
    evals = []
    for number, folder in enumerate(dirs):
        found = [(d.resolve(), record_of(d)[0]) for d in trial_dirs(folder)]
        new = {d: m for d, m in found if m is not None and d not in records}
        for run_dir, metadata in new.items():
            if all(metadata.get(key) is not None for key in REQUIRED):
                records[run_dir], found_in[run_dir] = metadata, number
            else:
                log.warning(
                    "compare: left out %s: its record names no workload or target.", run_dir
                )
        metrics = read_rows(folder)
        if not metrics.empty:
            evals.append(metrics[metrics["run_dir"].isin({str(d) for d in new})])
    if not records:
        raise ConfigError(
            f"compare: no trial records at or below {', '.join(map(str, dirs))}: give sweep "
            "dirs or run dirs."
        )
    check_comparable(records)
    trials = pd.DataFrame([{**trial_of(d, m), "found_in": found_in[d]} for d, m in records.items()])
    trials = trials.sort_values(["origin", "job", "run_dir"], kind="stable", ignore_index=True)
    trials["order"] = range(len(trials))  # on a tie, the trial its sweep ran first
    trials["submission"] = display_names(trials["submission_key"], names or {})
    metrics = pd.concat(evals, ignore_index=True) if evals else pd.DataFrame()
    return trials, target_values(trials, metrics)


def trial_of(run_dir: Path, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's row in the trials table, from its record."""
    origin = metadata.get("sweep_dir") or str(run_dir)
    study = metadata.get("study")
    status = status_of(run_dir, metadata)
    job = metadata.get("hydra.job.num")
    return {
        "run_dir": str(run_dir),
        "origin": origin,
        "job": job if isinstance(job, int) else -1,
        "workload": metadata["workload"],
        "submission_key": submission_key(metadata),
        "study": origin if study is None else f"{origin}#{study}",
        "status": status,
        "finished": status in FINISHED,
        "target_metric": metadata["workload.target_metric"],
        "target_value": float(metadata["workload.target_value"]),
        "higher_is_better": target_higher_is_better(metadata),
        "budget": float(metadata["workload.max_allowed_runtime_sec"]),
        "max_steps": metadata.get("max_steps"),
        # What shared the trial's clock: its vectorized group, parallel trials.
        "shared_by": (metadata.get("group.size") or 1, metadata.get("parallel_trials") or 1),
    }


def submission_key(metadata: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """What tells submissions apart: the class, and the user file it came from (its
    sha256, and its name for display)."""
    path = metadata.get("submission_path")
    name = None
    if path:  # an AlgoPerf file by its algorithm's name, one of aeff's by its file's
        algoperf = algoperf_submission.is_target(metadata["submission._target_"])
        name = submission_name(metadata) if algoperf else Path(str(path)).name
    return metadata["submission._target_"], metadata.get("submission_path_sha256"), name


def display_names(keys: pd.Series, names: Mapping[str, str]) -> list[str]:
    """A short unique name per submission: its class (`Adam`) or its file's name
    (`my_adam.py`); where two share one, the class's full path or the file's name with
    its sha256's first 8 digits. `names` renames them (short name -> the name to show)."""
    distinct = list(dict.fromkeys(keys))
    shortest = {key: key[2] or key[0].rpartition(".")[2] for key in distinct}
    taken = pd.Series(shortest).value_counts()
    unique = {
        key: name if taken[name] == 1 else (f"{name}@{(key[1] or '')[:8]}" if key[2] else key[0])
        for key, name in shortest.items()
    }
    unknown = sorted(set(names) - set(unique.values()))
    if unknown:
        raise ConfigError(
            f"compare --name {unknown[0]}=...: no submission is called {unknown[0]}; they are "
            f"{', '.join(unique.values())}."
        )
    shown = {key: names.get(name, name) for key, name in unique.items()}
    if len(set(shown.values())) < len(shown):
        raise ConfigError(f"compare --name: two submissions would be called alike: {shown}.")
    return [shown[key] for key in keys]


def check_comparable(records: Mapping[Path, Mapping[str, Any]]) -> None:
    """Refuse trials of one workload with different targets, budgets or models, in one line."""
    first: dict[tuple[str, str], tuple[Any, Path]] = {}
    for run_dir, metadata in records.items():
        # The model and data too (width, depth, splits, ...): the identity's workload keys.
        model = sorted(k for k in metadata.get("identity", {}) if k.startswith("workload."))
        for key in dict.fromkeys([*SAME_FOR_A_WORKLOAD, *model]):
            value = metadata.get("identity", {}).get(key, metadata.get(key))
            seen, where = first.setdefault((metadata["workload"], key), (value, run_dir))
            if value != seen:
                raise ConfigError(
                    f"compare: the trials of workload {metadata['workload']} differ in {key}: "
                    f"{seen!r} ({where}) and {value!r} ({run_dir}); compare trials of one "
                    "workload config, target and budget."
                )


def target_values(trials: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Each trial's evaluations in order: its run dir, its own target metric's value and
    both clocks."""
    if metrics.empty:
        return pd.DataFrame(columns=["run_dir", "value", TIME, STEPS])
    metric_of = trials.set_index("run_dir")["target_metric"]
    rows = metrics[metrics["run_dir"].isin(metric_of.index)].reset_index(drop=True)
    wanted = rows["run_dir"].map(metric_of)
    value = pd.Series(np.nan, index=rows.index)
    for metric in wanted.unique():
        if metric in rows:
            mine = wanted == metric
            value[mine] = pd.to_numeric(rows.loc[mine, metric], errors="coerce")
    clocks = {c: pd.to_numeric(rows.get(c, np.nan), errors="coerce") for c in (TIME, STEPS)}
    return pd.DataFrame({"run_dir": rows["run_dir"], "value": value, **clocks})
