"""AlgoPerf's own scoring, imported from an AlgoPerf checkout (by default the folder
`shared/algoperf` beside the repository), run on trials in the shape it reads; and the
answers it gave, kept in tests/data/algoperf_scoring.json. The project holds no AlgoPerf
code: `load` imports AlgoPerf's files where they are, and `make_algoperf_scoring.py`
(beside this file) writes the answers again from them."""

import contextlib
import dataclasses
import functools
import importlib
import io
import json
import pickle
import re
import sys
import tempfile
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd

from helpers.compare_trials import WORKLOADS

ALGOPERF = Path(__file__).resolve().parents[2] / ".." / "shared" / "algoperf"
ANSWERS = Path(__file__).resolve().parents[1] / "data" / "algoperf_scoring.json"
# Where the answers came from (AlgoPerf's version, the files that gave them).
SOURCE = {
    "repository": "mlcommons/algorithmic-efficiency",
    "commit": "2c90454fc05d5bdf3598b0c7651e611f132a7060",
    "files": [
        "scoring/performance_profile.py",
        "scoring/scoring_utils.py",
        "scoring/compute_speedups.py",
    ],
}


@dataclasses.dataclass
class Scoring:
    """AlgoPerf's scoring modules: `profile` is scoring/performance_profile.py, `speedups`
    scoring/compute_speedups.py where the checkout has it (../shared/algoperf does not)."""

    profile: types.ModuleType
    speedups: types.ModuleType | None


def workload_registry() -> dict[str, types.ModuleType]:
    """Modules that stand in for AlgoPerf's workload registry
    (`algoperf/workloads/workloads.py`, which ../shared/algoperf does not hold and which
    names AlgoPerf's workloads, not aeff's): aeff's test workloads and their targets, as
    `scoring_utils.get_workload_metrics_and_targets` reads them from a workload object."""

    def import_workload(workload_path, workload_class_name, **_) -> Any:
        metric, target, _budget = WORKLOADS[workload_class_name]
        return types.SimpleNamespace(
            target_metric_name=metric.partition(".")[2], validation_target_value=target
        )

    registry = types.ModuleType("algoperf.workloads.workloads")
    registry.WORKLOADS = {
        name: {"workload_path": name, "workload_class_name": name} for name in WORKLOADS
    }
    registry.BASE_WORKLOADS = sorted(WORKLOADS)
    registry.get_base_workload_name = lambda name: name  # no held-out variants
    registry.import_workload = import_workload
    package = types.ModuleType("algoperf.workloads")
    package.__path__ = []
    package.workloads = registry
    return {"algoperf.workloads": package, "algoperf.workloads.workloads": registry}


@functools.cache
def load(folder: Path) -> Scoring:
    """AlgoPerf's scoring from the checkout `folder`, imported once per process (importing
    compute_speedups.py twice would define its absl flags twice). What the import adds to
    sys.path and sys.modules is taken away again, so that a later `import algoperf`
    finds what it would have found."""
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    stand_ins = workload_registry()
    # algoperf/__init__.py imports its _version.py, which a package build writes: an empty
    # package of that name where none is imported already.
    if "algoperf" not in sys.modules:
        stand_ins["algoperf"] = types.ModuleType("algoperf")
        stand_ins["algoperf"].__path__ = []
    sys.modules.update(stand_ins)
    # compute_speedups.py imports performance_profile as a top-level module.
    sys.path[:0] = [str(folder), str(folder / "scoring")]
    try:
        # Its import restyles every later figure of the process; scoring_utils.py's regexes
        # are not raw strings (Python's DeprecationWarning, invalid escape sequence).
        with mpl.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", SyntaxWarning)
            profile = importlib.import_module("scoring.performance_profile")
            has_speedups = (folder / "scoring" / "compute_speedups.py").is_file()
            speedups = importlib.import_module("compute_speedups") if has_speedups else None
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            if name.partition(".")[0] in {"algoperf", "scoring"} or name in {
                "performance_profile",
                "compute_speedups",
            }:
                del sys.modules[name]
    # rho's denominator: the workloads compared, as aeff's (docs/comparing-algorithms.md).
    profile.NUM_BASE_WORKLOADS = len(WORKLOADS)
    if speedups is not None:
        speedups.MAX_BUDGETS = {name: budget for name, (_, _, budget) in WORKLOADS.items()}
    return Scoring(profile, speedups)


@contextlib.contextmanager
def numpy_trapz() -> Iterator[None]:
    """performance_profile.py integrates with `np.trapz`, an alias of `np.trapezoid` that
    numpy 2.4 removed (2.0-2.3 warn that it is deprecated): the alias while it runs."""
    if hasattr(np, "trapz"):
        yield
        return
    np.trapz = np.trapezoid
    try:
        yield
    finally:
        del np.trapz


def answers(
    scoring: Scoring,
    frames: dict[str, pd.DataFrame],
    clock: str,
    scale: str,
    max_tau: float | None,
) -> dict[str, Any]:
    """AlgoPerf's time matrix, performance profiles, scores and (on the time clock, where
    the checkout has compute_speedups.py) the speedups of every other submission over the
    first, for the trials `frames` (compare_trials.algoperf_frames), as JSON data."""
    profile = scoring.profile
    column = {"time": "score", "steps": "global_step"}[clock]
    times = pd.concat(
        [profile.get_workloads_time_to_target(f, name, column) for name, f in frames.items()]
    )
    with tempfile.TemporaryDirectory() as out:  # it writes time_to_targets.csv there
        profiles = profile.compute_performance_profiles(
            frames, column, max_tau=max_tau, scale=scale, output_dir=out
        )
    with numpy_trapz():
        scores = profile.compute_leaderboard_score(profiles, normalize=True)["score"]
    found = {
        "times": split(times.sort_index()),
        "profiles": split(profiles.sort_index()),
        "scores": split(scores.sort_index().to_frame()),
    }
    if clock == "time" and scoring.speedups is not None:
        base, *others = sorted(frames)
        module = scoring.speedups
        found["speedups"] = {other: speedup(module, frames, base, other) for other in others}
    return found


def speedup(module: types.ModuleType, frames: dict, base: str, other: str) -> dict[str, Any]:
    """compute_speedups.py's `compute_speedup`, run as its command line would run it: the
    trials pickled, its flags set, the per-workload speedups read from the CSV it saves and
    the mean from the line it prints."""
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):
        Path("results.pkl").write_bytes(pickle.dumps(frames))
        argv = ["compute_speedups", "--results_txt=results.pkl", f"--base={base}"]
        module.FLAGS([*argv, f"--comparison={other}", "--save_results"])
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            module.compute_speedup()
        (saved,) = Path().glob(f"{other}_vs_{base}_speedup_*.csv")
        merged = pd.read_csv(saved, index_col=0, float_precision="round_trip")
    mean = re.search(rf"Average speedup of {other} compared to {base}: (\S+) ", printed.getvalue())
    return {"speedup": merged["speedup"].to_dict(), "mean": float(mean.group(1))}


def split(frame: pd.DataFrame) -> dict[str, list]:
    """A frame as JSON data: its index, columns and rows."""
    return {
        "index": frame.index.tolist(),
        "columns": frame.columns.tolist(),
        "data": frame.to_numpy().tolist(),
    }


def unsplit(data: dict[str, list]) -> pd.DataFrame:
    return pd.DataFrame(data["data"], index=data["index"], columns=data["columns"])


def stored_answers() -> dict[str, Any]:
    """The answers kept in tests/data (Python's JSON: inf is Infinity, NaN NaN)."""
    return json.loads(ANSWERS.read_text())
