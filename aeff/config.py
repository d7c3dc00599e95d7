"""A trial's config checked, kept free of JAX so bad input fails in a second.

Hydra types the top-level keys at compose time (`aeff.schema`). Each workload and
submission types its own node with a dataclass named by the node's ``_target_``;
:func:`build` checks a node against it, and `check_trial` runs every check that needs no
data or device, before any data or device is touched. Its `Trial` holds the built
objects, the flat `record` of config values and the `identity` a resume must match.
"""

import dataclasses
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra.utils
import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aeff import user_files
from aeff.algoperf import submission as algoperf_submission
from aeff.errors import ConfigError
from aeff.records.flatten import flatten
from aeff.records.secrets import redact_record
from aeff.schema import OBJECTIVES, TrialConfig, require

# The one-value checks, also where users' own schemas import them from
# (docs/writing-a-submission.md) and the sweeper asks for `config.is_count`.
from aeff.schema import is_count as is_count
from aeff.schema import require_folder as require_folder
from aeff.schema import require_fraction as require_fraction
from aeff.schema import require_learning_rate as require_learning_rate
from aeff.schema import require_positive_finite as require_positive_finite
from aeff.schema import require_unit_interval as require_unit_interval


def structured(schema: type, values: Any, key: str = "") -> Any:
    """`values` as an instance of dataclass `schema`, typed by OmegaConf; errors name `key`."""
    prefix = f"{key}." if key else ""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)
    except ConfigError as error:
        raise ConfigError(f"{prefix}{error}") from None
    except OmegaConfBaseException as error:
        sub_key = getattr(error, "full_key", "") or ""
        message = str(error).splitlines()[0]
        if "not in" in message:  # an unknown key: say which ones exist
            names = ", ".join(f.name for f in dataclasses.fields(schema))
            message = f"{message}; the keys of {key or 'the config'} are: {names}"
        raise ConfigError(f"{prefix}{sub_key}: {message}") from None


def build(node: Any, key: str) -> Any:
    """Instantiate the dataclass that `node["_target_"]` names, with `node`'s other keys."""
    values = dict(
        OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    )
    target = values.pop("_target_", None)
    if not target:
        raise ConfigError(f"{key} has no _target_: choose an option of the {key} config group.")
    try:
        schema = hydra.utils.get_class(target)
    except Exception as error:
        raise ConfigError(f"{key}._target_={target!r} cannot be imported: {error}") from None
    return structured(schema, values, key)


def validate_trial(cfg: DictConfig) -> TrialConfig:
    """The top-level keys, typed and range-checked; component nodes stay plain dicts."""
    refuse_unknown_keys(TrialConfig, {k: v for k, v in cfg.items() if k != "hydra"})
    refuse_environment_labels(cfg)
    return structured(TrialConfig, cfg)


def refuse_environment_labels(cfg: DictConfig) -> None:
    """A label that reads an environment variable (`${oc.env:...}`) is refused: labels are
    recorded in every file and row, and no environment variable is (it may hold a secret)."""
    meta = OmegaConf.select(cfg, "meta")
    if not isinstance(meta, DictConfig):
        return
    for key, value in flatten(OmegaConf.to_container(meta, resolve=False), "meta").items():
        if isinstance(value, str) and "oc.env" in value:
            raise ConfigError(
                f"{key}={value} reads an environment variable: labels are recorded, "
                "environment variables are not (they may hold secrets); give the value "
                "itself, or leave the label out."
            )


def refuse_unknown_keys(schema: type, node: Any, prefix: str = "") -> None:
    """Keys added with `+` that `schema` does not have (OmegaConf's merge lets them in)."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        if key not in fields:
            where = f"{prefix}{key}"
            raise ConfigError(
                f"unknown key {where!r}: the keys of {prefix.rstrip('.') or 'the config'} are "
                f"{', '.join(fields)} (labels go under meta., e.g. +meta.study=...)."
            )
        if dataclasses.is_dataclass(fields[key].type) and isinstance(node[key], DictConfig):
            refuse_unknown_keys(fields[key].type, node[key], f"{prefix}{key}.")


# Top-level keys that metadata.json and every metrics row carry besides the nodes.
RECORDED_KEYS = (
    "batch_size",
    "stop_at_target",
    "max_steps",
    "eval_every_steps",
    "target_resolution",
)
USER_FILES = ("submission_path", "workload_path", "tuning_search_space")
# metadata.json's key for whether the target metric is reached at or above the target
# (true) or at or below it (false), as the workload declares its metrics' directions.
TARGET_DIRECTION = "workload.target_higher_is_better"


def workload_path_keys(cfg: DictConfig) -> tuple[str, ...]:
    """The keys of the fields the config's workload declares paths (its `PATH_FIELDS`);
    none while its class cannot be imported (a user's file, before the trial loads it:
    the trial's checks then say what is wrong)."""
    try:
        cls = hydra.utils.get_class(OmegaConf.select(cfg, "workload._target_"))
    except Exception:
        return ()
    return tuple(f"workload.{name}" for name in getattr(cls, "PATH_FIELDS", ()))


@dataclass(frozen=True)
class Trial:
    workload: Any  # an aeff.spec.Workload
    submission: Any  # an aeff.spec.Submission
    hparams: Any
    settings: TrialConfig
    record: dict[str, Any]  # the config's flat keys for metadata.json and metrics.csv

    @property
    def metadata(self) -> dict[str, Any]:
        """What metadata.json holds of the config: the record, and the direction of the
        target metric (`TARGET_DIRECTION`), which results compare trials by."""
        return {**self.record, TARGET_DIRECTION: self.workload.target_higher_is_better}

    @property
    def files(self) -> dict[str, tuple[Path, bytes]]:
        """setting -> (path, bytes) of each user file: the bytes this process runs and
        hashed, for the run dir's copies."""
        return {
            k: (Path(path).expanduser(), user_files.contents(path, k))
            for k in USER_FILES
            if (path := getattr(self.settings, k))
        }

    @property
    def labels(self) -> dict[str, Any]:
        """The `+meta.*` labels, as recorded: a resume must keep them."""
        return {k: v for k, v in self.record.items() if k.startswith("meta.")}

    @property
    def identity(self) -> dict[str, Any]:
        """What makes this trial this trial: a resume must match it. Where the data and
        files live does not change the trial (a file's sha256 does); all else recorded does."""
        paths = {f"workload.{name}" for name in self.workload.PATH_FIELDS}
        return {
            k: v
            for k, v in self.record.items()
            if not k.startswith("meta.") and k not in {*paths, *USER_FILES}
        }


def check_trial(cfg: DictConfig) -> Trial:
    """Every check that needs no data and no device, so bad input fails in a second."""
    settings = validate_trial(cfg)
    for key, node in (("submission_path", "submission"), ("workload_path", "workload")):
        if path := getattr(settings, key):
            check_file_node(Path(path), key, node, getattr(settings, node).get("_target_"))
    workload = build(settings.workload, "workload")
    check_target(workload)
    check_objective(settings.objective, workload)
    submission = build({**settings.submission, "batch_size": settings.batch_size}, "submission")
    if algoperf_submission.is_target(settings.submission.get("_target_")):
        submission, hparams, settings = algoperf_trial(submission, workload, settings)
    else:
        require(settings.batch_size is not None, "batch_size", "a positive integer", None)
        hparams = structured(submission.hparams_schema, settings.hparams, "hparams")
    values = getattr(hparams, "_asdict", lambda: hparams)()  # an AlgoPerf namedtuple's too
    refuse_what_float32_cannot_hold(flatten(values, "hparams"))
    files = {k: Path(v).expanduser().resolve() for k in USER_FILES if (v := getattr(settings, k))}
    record = {
        "workload": workload.name,
        **{key: getattr(settings, key) for key in RECORDED_KEYS},
        **flatten(settings.workload, "workload"),
        **flatten(settings.submission, "submission"),
        # as checked: the schema's defaults included; an AlgoPerf submission's by its names
        **flatten(values, "hparams"),
        **flatten(settings.meta, "meta"),
        **{k: str(path) for k, path in files.items()},
        **{f"{k}_sha256": user_files.sha256(path, k) for k, path in files.items()},
    }
    return Trial(workload, submission, hparams, settings, redact_record(record))


def algoperf_trial(submission: Any, workload: Any, settings: TrialConfig) -> tuple:
    """An AlgoPerf submission with its module, its hyperparameters as AlgoPerf gives them,
    and the settings it trains with: its own batch size unless `batch_size=` is given, and
    no snapshots (its `prepare_for_eval` precedes every evaluation: time to target is the
    first evaluation on target, as AlgoPerf's)."""
    require(
        bool(settings.submission_path),
        "submission",
        "an AlgoPerf submission given as submission_path=<its file>",
        settings.submission.get("_target_"),
    )
    path = Path(settings.submission_path).expanduser()
    submission = submission.of_file(path, user_files.load_module(path, "submission_path"))
    hparams = algoperf_submission.hyperparameters(settings.hparams)
    batch_size = submission.get_batch_size(workload.algoperf_name or workload.name)
    settings = dataclasses.replace(settings, batch_size=batch_size, target_resolution=None)
    return dataclasses.replace(submission, batch_size=batch_size), hparams, settings


# The smallest normal float32: JAX computes in float32, and XLA flushes subnormals to zero.
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def refuse_what_float32_cannot_hold(values: dict[str, Any]) -> None:
    """A float hyperparameter that float32 holds as 0 or infinity (`hparams.lr=5e-324`,
    `epsilon=1e-300`): the trial would train with that, not the value recorded."""
    for key, value in values.items():
        size = abs(value) if isinstance(value, float) and math.isfinite(value) else 1.0
        if value and not FLOAT32_TINY <= size <= FLOAT32_MAX:
            raise ConfigError(
                f"{key}={value!r} is not allowed: the optimizer state holds it as "
                f"float32, which has no such value (it would train with "
                f"{'0' if size < FLOAT32_TINY else 'inf'}); give a value between "
                f"{FLOAT32_TINY:.3g} and {FLOAT32_MAX:.3g} in size, or 0."
            )


def check_target(workload: Any) -> None:
    """A target metric the workload reports, with the direction it declares for it."""
    require(
        workload.target_metric in workload.metric_directions,
        "workload.target_metric",
        f"one of {', '.join(workload.metric_names)} (the metrics {type(workload).__name__} "
        "declares, each with its direction, in eval_metrics)",
        workload.target_metric,
    )


def check_objective(objective: str | None, workload: Any) -> None:
    """`objective=final.<metric>` names a metric the workload reports (its `metric_names`)."""
    names = workload.metric_names
    if objective and objective.startswith("final."):
        choices = ", ".join(f"final.{name}" for name in names)
        require(
            objective.removeprefix("final.") in names,
            "objective",
            f"{', '.join(OBJECTIVES)} or one of {choices}",
            objective,
        )


def class_in_file(path: Path, key: str, node: str) -> type:
    """The Submission or Workload class that the file `key` names defines; for an AlgoPerf
    submission file (its functions, no class), `AlgoPerfSubmission`."""
    from aeff import algoperf, spec  # JAX: imported only when a file brings code

    if node == "workload":
        return user_files.load_class(path, spec.Workload, key)
    algoperf.provide()  # `from algoperf import spec` in the file
    module = user_files.load_module(path, key)
    if algoperf_submission.is_algoperf(module) and not user_files.classes_in(
        module, spec.Submission
    ):
        algoperf_submission.check_module(module, f"{key}={path}")
        return algoperf_submission.AlgoPerfSubmission
    return user_files.load_class(path, spec.Submission, key)


def check_file_node(path: Path, key: str, node: str, target: str | None) -> None:
    """Import the file (so `target` resolves in any process) and check that `target`
    names its class: `python -m aeff submission_path=F` makes the node say so."""
    expected = user_files.node_of(class_in_file(path, key, node))["_target_"]
    require(target == expected, f"{node}._target_", f"the class of {key}={path}", target)


def draw_seed() -> int:
    return secrets.randbits(31)


def unique_suffix() -> str:
    """Keeps two runs started in the same second, on any host, out of one directory."""
    return f"{os.getpid()}-{secrets.token_hex(2)}"
