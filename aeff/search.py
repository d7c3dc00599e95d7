"""Search spaces and their quasi-random samples (scrambled Halton or Sobol, scipy.stats.qmc).

A space maps dotted config keys to a range `{min, max, scale: linear|log, type:
float|int}` or a choice `{values: [...]}`; its nesting spells the key:
`{"hparams": {"lr": {"min": 1e-4, "max": 1e-2, "scale": "log"}}}`.
"""

import dataclasses
import logging
import math
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import qmc

from aeff.errors import ConfigError

log = logging.getLogger(__name__)

# A sweep's trials are planned and written before the first one runs: 10**6 took 34 s,
# 2 GB of memory and a 271 MB sweep_plan.json, a typo more likely than a study.
MAX_TRIALS = 100_000

SPEC_KEYS = {"min", "max", "scale", "type", "values", "points"}


@dataclass(frozen=True)
class Dimension:
    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    values: tuple[Any, ...] = ()
    # A list of whole points (AlgoPerf's external tuning): trial i takes point i, each a
    # mapping of the names under `key` to values.
    points: tuple[dict[str, Any], ...] = ()

    def without(self, pinned: set[str]) -> "Dimension":
        """This dimension less the keys the command line pins."""
        points = tuple(
            {k: v for k, v in point.items() if f"{self.key}.{k}" not in pinned}
            for point in self.points
        )
        return dataclasses.replace(self, points=points)

    def value(self, u: float) -> Any:
        """The point of this dimension at `u` in [0, 1)."""
        if self.values:
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        if self.integer:  # every integer in [low, high] equally likely
            return int(min(math.floor(self.low + u * (self.high - self.low + 1)), self.high))
        if self.log:
            return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return float(self.low + u * (self.high - self.low))  # not numpy's: its repr is no number


def parse_space(space: Mapping[str, Any], prefix: str = "") -> list[Dimension]:
    """The dimensions of a (nested) space, with errors that name the key."""
    dimensions = []
    for name, spec in space.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(spec, Mapping) and not set(spec) <= SPEC_KEYS:
            dimensions.extend(parse_space(spec, key))
        elif isinstance(spec, Mapping):
            dimensions.append(_dimension(key, spec))
        else:
            raise ConfigError(
                f"search_space.{key}: expected {{min, max[, scale, type]}} or {{values}}, "
                f"got {spec!r}."
            )
    return dimensions


def _dimension(key: str, spec: Mapping[str, Any], where: str = "") -> Dimension:
    where = where or f"search_space.{key}"
    if "points" in spec:
        points = spec["points"]
        if not isinstance(points, list | tuple) or not points or set(spec) != {"points"}:
            raise ConfigError(f"{where}: `points` must be a non-empty list, alone.")
        for name in points[0]:
            _choices(f"{where}.{name}", [point.get(name) for point in points])
        return Dimension(key, points=tuple(dict(point) for point in points))
    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list | tuple) or not values or set(spec) != {"values"}:
            raise ConfigError(f"{where}: `values` must be a non-empty list, alone.")
        return Dimension(key, values=_choices(where, values))
    if "min" not in spec or "max" not in spec:
        raise ConfigError(f"{where}: a range needs both `min` and `max`.")
    scale, kind = spec.get("scale", "linear"), spec.get("type", "float")
    if scale not in ("linear", "log") or kind not in ("float", "int"):
        raise ConfigError(f"{where}: scale must be linear or log, type float or int.")
    for bound in ("min", "max"):
        if _kind(spec[bound]) != "number":  # "1e-5" too: a number is written unquoted
            raise ConfigError(
                f"{where}: min and max must be numbers, without quotes: {bound}={spec[bound]!r}."
            )
    low, high = float(spec["min"]), float(spec["max"])
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{where}: need finite min <= max, got min={low}, max={high}.")
    if scale == "log" and low <= 0:
        raise ConfigError(f"{where}: a log range must lie above zero, got min={low}.")
    if kind == "int" and (scale == "log" or low != int(low) or high != int(high)):
        raise ConfigError(f"{where}: an int range needs integer min and max on a linear scale.")
    return Dimension(key, low, high, log=scale == "log", integer=kind == "int")


def interval(key: str, low: float, high: float, tags: Collection[str] = ()) -> Dimension:
    """A command line's `key=interval(low,high)` (`tag(log, interval(...))` on a log
    scale): a float range sampled with the search space's dimensions. Another tag is
    refused: it would be sampled on a linear scale unnoticed."""
    text = f"interval({low!r}, {high!r})"
    named = ", ".join(sorted(tags))
    where = f"{key}=tag({named}, {text})" if tags else f"{key}={text}"
    if unknown := sorted(set(tags) - {"log"}):
        raise ConfigError(
            f"{where}: unknown tag {', '.join(unknown)}: only log is read "
            f"(tag(log, {text}) samples on a log scale)."
        )
    spec = {"min": low, "max": high, "scale": "log" if "log" in tags else "linear"}
    return _dimension(key, spec, where)


def _choices(where: str, values: list | tuple) -> tuple[Any, ...]:
    """The points of a choice, once they are all numbers (finite), all strings or all
    booleans, null allowed beside any: a trial's value is one of them, so a point of
    another kind than its key's would fail only when its trial starts. A string that
    reads as a number (`"1e-5"`) is refused too: it was read as that number unnoticed."""
    kinds = {}
    for value in values:
        kind = _kind(value)
        if kind is None:
            raise ConfigError(
                f"{where}: the point {value!r} is not allowed: points are numbers, strings, "
                "true/false or null, not lists or mappings."
            )
        if kind == "number" and not math.isfinite(value):
            raise ConfigError(f"{where}: the point {value!r} is not a finite number.")
        if kind == "string" and _reads_as_number(value):
            raise ConfigError(
                f"{where}: the point {value!r} is a string that reads as a number: write "
                "the number without quotes."
            )
        if kind != "null":
            kinds.setdefault(kind, value)
    if len(kinds) > 1:
        mixed = " and ".join(f"{kind}s ({first!r})" for kind, first in kinds.items())
        raise ConfigError(
            f"{where}: the points mix {mixed}: give all numbers, all strings or all "
            "true/false (null may join any)."
        )
    return tuple(values)


def _kind(value: Any) -> str | None:
    """A point's kind: null, boolean, number or string; None for any other."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: True is an int to Python
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sample(
    dimensions: list[Dimension], num_trials: int, seed: int, method: str = "halton"
) -> list[dict[str, Any]]:
    """`num_trials` points; the same space, seed and method give the same points."""
    if not 1 <= num_trials <= MAX_TRIALS:
        raise ConfigError(
            f"search.num_trials={num_trials}: expected a positive integer, at most {MAX_TRIALS}."
        )
    if method not in ("halton", "sobol"):
        raise ConfigError(f"search.method={method!r}: expected halton or sobol.")
    if not dimensions:  # every key pinned on the command line: trials differ by seed alone
        return [{} for _ in range(num_trials)]
    if listed := [d for d in dimensions if d.points]:
        return _listed(listed[0], len(dimensions), num_trials)
    engine = (qmc.Halton if method == "halton" else qmc.Sobol)(
        d=len(dimensions), scramble=True, seed=np.random.default_rng(seed)
    )
    with warnings.catch_warnings():  # scipy's own warning: said below, naming the settings
        warnings.filterwarnings("ignore", message="The balance properties of Sobol")
        points = engine.random(num_trials)
    if method == "sobol" and num_trials & (num_trials - 1):
        log.warning(
            "search.method=sobol: %d trials is not a power of 2, which Sobol points need to "
            "cover the space evenly (halton needs none).",
            num_trials,
        )
    return [{d.key: d.value(u) for d, u in zip(dimensions, row, strict=True)} for row in points]


def _listed(dimension: Dimension, num_dimensions: int, num_trials: int) -> list[dict[str, Any]]:
    """Trial i at point i of a list space, as AlgoPerf's runner takes them."""
    if num_dimensions > 1:
        raise ConfigError(
            "a list of points names every trial's values: it cannot be sampled together with "
            "ranges (an interval() on the command line, say); pin a value instead."
        )
    if num_trials > len(dimension.points):
        raise ConfigError(
            f"search.num_trials={num_trials}: the search space lists {len(dimension.points)} "
            f"points; use at most {len(dimension.points)} trials."
        )
    return [{dimension.key: point} for point in dimension.points[:num_trials]]


def study_seed(seed: int, study: int) -> int:
    """Study `study`'s seed from a sweep's `seed`: `seed` itself for study 0 (a sweep of one
    study samples as it always did), else numpy's SeedSequence spawned from `seed` with the
    study as its key: distinct streams, a number in [0, 2**32) (an `rng_seed` too)."""
    if study == 0:
        return seed
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"search.seed={seed!r}: studies need a non-negative integer seed.")
    return int(np.random.SeedSequence(seed, spawn_key=(study,)).generate_state(1)[0])


def as_overrides(point: Mapping[str, Any]) -> list[str]:
    """Hydra overrides that reproduce `point` exactly (floats keep every digit; a null
    choice is Hydra's `null`, not the string `None`)."""
    flat = {}
    for key, value in point.items():  # a listed point's values are under its key
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        flat.update({f"{key}.{name}" if name else key: v for name, v in items})
    return [f"{key}={override_text(value)}" for key, value in flat.items()]


def override_text(value: Any) -> str:
    """A point as Hydra reads it back: `repr` (every digit of a float); a string holding
    `${` quoted with it escaped, so that it stays the literal it was in the space, not an
    interpolation of the config."""
    if value is None:
        return "null"
    if isinstance(value, str) and "${" in value:
        return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"
    return repr(value)
