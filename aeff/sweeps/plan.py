"""The plan of a sweep, as functions of values: its studies (each with its own search seed and
folder), each study's jobs (the command line's grid times the sampled points, a key given on
the command line pinned), the sweep dir's layout checks, how a plan differs from the recorded
one, and the batches the jobs are launched in. Nothing here reads Hydra's state or a file:
the sweeper parses the command line and checks composition, and passes both in.
"""

import dataclasses
import itertools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aeff import config
from aeff.errors import ConfigError
from aeff.records import sweep_dir as sweep_record

if TYPE_CHECKING:
    from aeff.search import Dimension

# Keys that do not change which trial a job is: a resume may set them differently.
NOT_IN_PLAN = ("resume", "hydra", "checkpoint", "devices", "compilation_cache_dir")
JOB_SUBDIR = "${hydra.job.num}"  # each trial in <sweep dir>/<job number>: the plan's order

# `check(values, company)`: each override of `values` composes beside the overrides `company`
# (the sweeper's, through Hydra's config loader), else a ConfigError naming it.
Check = Callable[[list[str], list[str]], None]


@dataclass
class Study:
    """One study of a sweep: its number, search seed, folder (the sweep dir itself when the
    sweep is one study), jobs, the jobs left to run, and how the launched ones ended."""

    index: int
    seed: int
    folder: Path
    jobs: list[list[str]]
    todo: list[int] = dataclasses.field(default_factory=list)
    ended: dict[int, str | None] = dataclasses.field(default_factory=dict)


def check_subdir(subdir: Any) -> None:
    """`hydra.sweep.subdir` must keep each trial in <sweep dir>/<job number>."""
    if subdir != JOB_SUBDIR:
        raise ConfigError(
            f"hydra.sweep.subdir={subdir}: aeff keeps each trial in "
            "<sweep dir>/<job number>, which its reports and resume rely on."
        )


def check_studies(num_studies: Any, study: Any) -> None:
    """`search.num_studies` a count; `search.study` left to the sweeper."""
    if not config.is_count(num_studies):
        raise ConfigError(f"search.num_studies={num_studies!r}: expected an integer >= 1.")
    if study != 0:
        raise ConfigError(
            f"search.study={study}: the sweeper sets each trial's study; give "
            "search.num_studies=S for S studies."
        )


def studies(
    sweep_dir: Path, num_studies: int, seed: int, plan: Callable[[int], list[list[str]]]
) -> list[Study]:
    """The sweep's studies, each with its own search seed and jobs (`plan(seed)`).

    One study is the sweep dir itself, as a sweep always was. Several are folders
    `study_<k>` of it: each job sets `hydra.sweep.dir` to its study's folder (a job's
    overrides win over the command line's), `search.study` and `search.seed` (which
    its records keep), and an `rng_seed` given as a number becomes the study's own.
    """
    from aeff import search

    if num_studies == 1:
        return [Study(0, seed, sweep_dir, plan(seed))]
    made = []
    for k in range(num_studies):
        study_seed = search.study_seed(seed, k)
        folder = sweep_record.study_dir(sweep_dir, k)
        jobs = [in_study(job, k, study_seed, folder) for job in plan(study_seed)]
        made.append(Study(k, study_seed, folder, jobs))
    return made


def job_plan(
    axes: list[list[str]],
    pinned: Collection[str],
    intervals: list["Dimension"],
    space: list["Dimension"],
    search: Mapping[str, Any],
    check: Check = lambda values, company: None,
) -> Callable[[int], list[list[str]]]:
    """The jobs for a search seed: the grid of the command line's `axes` (each key's values as
    overrides), times the sampled points of the search `space`'s dimensions (a key `pinned`
    on the command line left out) and of the command line's `intervals`. `search`: the
    config's `search` settings (num_trials, method, seed). The first sampled point is checked
    to compose (`check`) once, and bad settings are refused now, before any study is planned.
    """
    from aeff import search as sampling  # scipy: imported only by sweeps

    grid = [list(combination) for combination in itertools.product(*axes)]
    dimensions = [d.without(set(pinned)) for d in space if d.key not in pinned] + intervals
    num_trials = search.get("num_trials")
    if not space and not intervals:
        if num_trials is not None:
            raise ConfigError(
                "search.num_trials is set but nothing is sampled: add search_space=<name> "
                "(see conf/search_space/) or a key=interval(low,high) sweep."
            )
        return lambda seed: [list(job) for job in grid]
    if num_trials is None:
        sampled = "search_space is chosen" if space else f"{intervals[0].key} is an interval"
        raise ConfigError(f"{sampled}: set search.num_trials=N.")
    checked = []

    def jobs(seed: int) -> list[list[str]]:
        points = sampling.sample(dimensions, num_trials, seed, search.get("method"))
        if not checked:  # a key the config lacks: the same keys for every seed
            check(sampling.as_overrides(points[0]), grid[0])
            checked.append(True)
        return [job + sampling.as_overrides(point) for job in grid for point in points]

    jobs(search["seed"])
    return jobs


def in_study(job: list[str], study: int, seed: int, folder: Path) -> list[str]:
    """A job of study `study` (of several): in the study's folder, with the study's number
    and search seed, and an `rng_seed` given as a number made the study's own (study 0
    keeps it), so that trials of different studies train from different seeds."""
    from aeff import search

    values = {"search.seed": str(seed), "search.study": str(study)}
    for override in job:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "rng_seed" and value.isdigit():
            values["rng_seed"] = str(search.study_seed(int(value), study))
    kept = [o for o in job if o.lstrip("+~").partition("=")[0] not in values]
    return [*kept, *(f"{k}={v}" for k, v in values.items()), f"hydra.sweep.dir={quoted(folder)}"]


def quoted(path: Path) -> str:
    """A path as a Hydra override's value: as it is when plain, else single-quoted."""
    text = str(path)
    if re.fullmatch(r"[\w./-]+", text):
        return text
    return "'" + text.replace("'", "\\'") + "'"


def check_layout(sweep_dir: Path, before: int, num_studies: int, resume: bool) -> None:
    """Refuse a sweep dir planned for another number of studies (`before`: 0 when it holds
    no plan; a resume must keep it), and, without resume=true, one that holds a sweep."""
    if before and not resume:
        raise ConfigError(
            f"{sweep_dir} holds a sweep already: add resume=true to finish it, or choose "
            "another hydra.sweep.dir."
        )
    if before and before != num_studies:
        raise ConfigError(
            f"resume=true finishes only the same sweep, but {sweep_dir} planned "
            f"search.num_studies={before} (now {num_studies}): resume with the sweep's own "
            "command line."
        )


def plan_values(job: list[str], ignored: Collection[str] = ()) -> dict[str, str]:
    """A job's overrides as key -> value, without the keys that do not change the trial
    (`NOT_IN_PLAN`, and the keys `ignored`)."""
    values = {}
    for override in job:
        key, _, value = override.lstrip("+~").partition("=")
        if key.split(".")[0].split("/")[0] not in NOT_IN_PLAN and key not in ignored:
            values[key] = value
    return values


def plan_changes(
    planned: list[list[str]], jobs: list[list[str]], ignored: Collection[str] = ()
) -> str:
    """What differs between the recorded plan and this one ('' when nothing does)."""
    if len(planned) != len(jobs):
        return f"{len(planned)} trials (now {len(jobs)})"
    for index, (before, now) in enumerate(zip(planned, jobs, strict=True)):
        before, now = plan_values(before, ignored), plan_values(now, ignored)
        if before != now:
            keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            changes = ", ".join(f"{k}={before.get(k)} (now {now.get(k)})" for k in keys)
            return f"for trial {index}: {changes}"
    return ""


def batches(indices: list[int], max_batch_size: int | None = None) -> list[list[int]]:
    """Runs of consecutive job numbers, at most max_batch_size long."""
    runs: list[list[int]] = []
    for index in indices:
        last = runs[-1] if runs else None
        if last and last[-1] == index - 1 and len(last) < (max_batch_size or 1 << 30):
            last.append(index)
        else:
            runs.append([index])
    return runs


def calls(sizes: list[int], max_batch_size: int | None = None) -> list[list[int]]:
    """Batches (of `sizes` jobs) handed to a launcher together, in order, at most
    max_batch_size jobs a call (a batch larger than that goes alone): their indices."""
    limit, grouped = max_batch_size or 1 << 30, []
    for index, size in enumerate(sizes):
        if grouped and sum(sizes[i] for i in grouped[-1]) + size <= limit:
            grouped[-1].append(index)
        else:
            grouped.append([index])
    return grouped
