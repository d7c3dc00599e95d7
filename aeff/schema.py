"""The config's schema: the top-level keys' dataclasses, and the checks of one value.

Hydra types the top-level keys at compose time (`TrialConfig`, stored as ``aeff_schema``);
each component (a workload, a submission, its hyperparameters) types its own node with a
dataclass whose `__post_init__` refuses a bad value in one line with the checks below
(`require`, `require_positive_finite`, ...). No JAX: bad input fails in a second.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aeff.errors import ConfigError


@dataclass
class LoggingConfig:
    """Switches of the records writer (aeff/records); see conf/logging/."""

    enabled: bool = True
    system_metrics: bool = True  # cpu.*, mem.*, gpu.* ... columns in metrics.csv
    packages: bool = True  # packages.txt
    os_packages: bool = True  # OS packages in packages.txt (dpkg-query or rpm)
    record_hostname: bool = False


SEARCH_METHODS = ("halton", "sobol")


@dataclass
class SearchConfig:
    """How the aeff sweeper samples `search_space` (see aeff/search.py)."""

    num_trials: int | None = None
    seed: int = 0
    method: str = "halton"  # or sobol
    # Independent studies of the trials, each with its own search seed. Any, not int: the
    # sweeper refuses a value that is not a positive integer in one line (Hydra's own
    # conversion error is a block of lines).
    num_studies: Any = 1
    study: int = 0  # set by the sweeper: the trial's study (0-based)

    def __post_init__(self) -> None:
        require(
            self.num_trials is None or self.num_trials > 0,
            "search.num_trials",
            "null or a positive integer",
            self.num_trials,
        )
        require(
            is_count(self.num_studies), "search.num_studies", "a positive integer", self.num_studies
        )
        require(self.study >= 0, "search.study", "a non-negative integer", self.study)
        require(
            self.method in SEARCH_METHODS, "search.method", f"one of {SEARCH_METHODS}", self.method
        )


# `objective=`: the one number a job returns to a sweeper that optimises (Optuna's):
# time_to_target (the budget where the target was missed) or final.<metric>.
OBJECTIVES = ("time_to_target",)


@dataclass
class DevicesConfig:
    """Which local devices a trial uses (aeff/devices.py)."""

    per_trial: int | None = None  # GPUs per parallel trial on one host; null: all
    ids: list[int] | None = None  # GPU ids to share out; null: all that NVML sees

    def __post_init__(self) -> None:
        require(
            self.per_trial is None or self.per_trial > 0,
            "devices.per_trial",
            "null or a positive integer",
            self.per_trial,
        )


@dataclass
class CheckpointConfig:
    """Orbax checkpoints in the run dir (aeff/training/checkpoints.py); `resume=true`
    continues one."""

    enabled: bool = True
    interval_sec: float = 30.0  # wall time between checkpoints taken at evaluations
    keep: bool = False  # keep the last checkpoint of a trial that finished

    def __post_init__(self) -> None:
        require_positive_finite("checkpoint.interval_sec", self.interval_sec)


@dataclass
class TrialConfig:
    workload: Any = None
    submission: Any = None
    hparams: dict[str, Any] = field(default_factory=dict)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    meta: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = 0  # null: an AlgoPerf submission's own get_batch_size
    rng_seed: int | None = None
    stop_at_target: bool = True
    max_steps: int | None = None
    eval_every_steps: int | None = None
    steps_per_dispatch: int = 8
    target_resolution: float | None = 0.05  # time to target within this fraction of itself
    search_space: dict[str, Any] = field(default_factory=dict)
    search: SearchConfig = field(default_factory=SearchConfig)
    resume: bool = False  # sweeps: skip the trials whose records say finished
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    compilation_cache_dir: str | None = None  # JAX's persistent cache; null: off
    submission_path: str | None = None  # a Python file defining the submission
    workload_path: str | None = None  # a Python file defining the workload
    tuning_search_space: str | None = None  # a JSON or YAML search space (sweeps)
    objective: str | None = None  # what a job returns to such a sweeper: see OBJECTIVES

    def __post_init__(self) -> None:
        require(
            self.batch_size is None or self.batch_size > 0,
            "batch_size",
            "a positive integer",
            self.batch_size,
        )
        require(
            self.objective is None
            or self.objective in OBJECTIVES
            or self.objective.startswith("final."),
            "objective",
            f"null, {', '.join(OBJECTIVES)} or final.<metric>",
            self.objective,
        )
        require(
            self.rng_seed is None or 0 <= self.rng_seed < 2**32,
            "rng_seed",
            "null or an integer in [0, 2**32)",
            self.rng_seed,
        )
        for key in ("max_steps", "eval_every_steps"):
            value = getattr(self, key)
            require(value is None or value > 0, key, "null or a positive integer", value)
        require(
            self.steps_per_dispatch > 0,
            "steps_per_dispatch",
            "a positive integer",
            self.steps_per_dispatch,
        )
        require(
            self.target_resolution is None or 0 < self.target_resolution < 1,
            "target_resolution",
            "null or a number in (0, 1)",
            self.target_resolution,
        )
        require_folder("compilation_cache_dir", self.compilation_cache_dir)  # JAX: no word


def require(ok: bool, key: str, allowed: str, value: Any) -> None:
    """Raise a ConfigError naming `key` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}.")


def is_count(value: Any) -> bool:
    """A positive integer (not a boolean, which Python counts as one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def require_folder(key: str, value: str | None) -> None:
    """A setting naming a folder (made if need be) or null: a file there is refused."""
    folder = Path(value or "").expanduser()
    require(not folder.is_file(), key, "null or a folder, not a file", value)


def require_positive_finite(key: str, value: float) -> None:
    require(math.isfinite(value) and value > 0, key, "a finite number > 0", value)


MAX_LEARNING_RATE = 100.0  # far above any that trains; 1e30 trained to a loss of 1e31


def require_learning_rate(key: str, value: float) -> None:
    """A learning rate that can train: in (0, 100]. Larger ones are typos (`1e30` for
    `1e-3`) that ended `completed` with an astronomic, finite loss."""
    require(
        math.isfinite(value) and 0 < value <= MAX_LEARNING_RATE,
        key,
        f"a number in (0, {MAX_LEARNING_RATE:g}]",
        value,
    )


def require_unit_interval(key: str, value: float) -> None:
    require(math.isfinite(value) and 0 <= value <= 1, key, "a number in [0, 1]", value)


def require_fraction(key: str, value: float) -> None:
    require(math.isfinite(value) and 0 <= value < 1, key, "a number in [0, 1)", value)
