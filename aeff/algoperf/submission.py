"""An AlgoPerf JAX submission file as aeff holds it: told apart from aeff's own contract
by what it defines, checked before anything runs, and its hyperparameters given as
AlgoPerf gives them (a namedtuple with the search space's own names).

Every mistake a user will make is one line naming the file (`ConfigError`): a PyTorch
submission, a file that defines neither contract or only part of AlgoPerf's, a
hyperparameter the trial does not give, a call that returns the wrong thing.
"""

import collections
import contextlib
import dataclasses
import inspect
import re
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aeff.errors import ConfigError

# What AlgoPerf's runner calls; `prepare_for_eval` is optional (older submissions lack it).
FUNCTIONS = ("get_batch_size", "init_optimizer_state", "update_params", "data_selection")
TARGET = "aeff.algoperf.submission.AlgoPerfSubmission"


def display_name(path: str) -> str:
    """An AlgoPerf submission's name from its file: its stem, or for AlgoPerf's
    `<algorithm>/jax/submission.py` layout, the algorithm's folder (`adamw`)."""
    parts = Path(path).parts
    if Path(path).stem == "submission" and len(parts) >= 3:
        return parts[-3] if parts[-2] in ("jax", "pytorch") else parts[-2]
    return Path(path).stem


def submission_name(record: Mapping[str, Any]) -> str:
    """How results name a trial's submission: its class (`Adam`); an AlgoPerf file's name."""
    target = str(record.get("submission._target_", ""))
    if is_target(target) and record.get("submission_path"):
        return display_name(str(record["submission_path"]))
    return target.rpartition(".")[2]


def is_target(target: Any) -> bool:
    """Whether a `submission._target_` names an AlgoPerf submission."""
    return target == TARGET


def is_algoperf(module: types.ModuleType) -> bool:
    """Whether the module defines any of AlgoPerf's submission functions."""
    return any(inspect.isfunction(getattr(module, name, None)) for name in FUNCTIONS)


def check_module(module: types.ModuleType, what: str) -> None:
    """A JAX submission with all of AlgoPerf's functions, or one line saying what is not."""
    torch = [
        name
        for name, value in vars(module).items()
        if (getattr(value, "__name__", "") if inspect.ismodule(value) else "").split(".")[0]
        == "torch"
        or str(getattr(value, "__module__", "")).split(".")[0] == "torch"
    ]
    if torch:
        raise ConfigError(
            f"{what} is a PyTorch submission (it imports torch as {torch[0]}): aeff runs "
            "AlgoPerf's JAX submissions; give the file of its jax/ folder."
        )
    missing = [name for name in FUNCTIONS if not inspect.isfunction(getattr(module, name, None))]
    if missing:
        raise ConfigError(
            f"{what} defines part of AlgoPerf's submission API but not {', '.join(missing)}: "
            f"AlgoPerf's contract is {', '.join(FUNCTIONS)} (and optionally prepare_for_eval)."
        )


@dataclasses.dataclass(frozen=True)
class AlgoPerfSubmission:
    """An AlgoPerf submission's module; `batch_size` null: its `get_batch_size` decides."""

    batch_size: int | None = None
    path: str = ""  # set by `of_file`, not config: where its one-line errors point
    module: Any = dataclasses.field(default=None, compare=False, repr=False)

    def of_file(self, path: Path, module: types.ModuleType) -> "AlgoPerfSubmission":
        return dataclasses.replace(self, path=str(path), module=module)

    def get_batch_size(self, workload_name: str) -> int:
        if self.batch_size:
            return self.batch_size
        with self.calling("get_batch_size"):
            size = self.module.get_batch_size(workload_name)
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ConfigError(
                f"submission_path={self.path}: get_batch_size({workload_name!r}) returned "
                f"{size!r}, not a positive integer."
            )
        return size

    @contextlib.contextmanager
    def calling(self, function: str) -> Iterator[None]:
        """Errors a user makes, raised by the submission's `function`, in one line."""
        try:
            yield
        except AttributeError as error:
            missing = re.fullmatch(r"'Hyperparameters' object has no attribute '(\w+)'", str(error))
            if not missing:
                raise
            name = missing.group(1)
            raise ConfigError(
                f"submission_path={self.path}: {function} reads hyperparameters.{name}, which "
                f"this trial does not give: add {name} to tuning_search_space= or give "
                f"+hparams.{name}=<value>."
            ) from None
        except ValueError as error:
            if function != "get_batch_size":
                raise
            raise ConfigError(
                f"submission_path={self.path}: get_batch_size raised {error}: give batch_size=N."
            ) from None

    def returned(self, function: str, value: Any, size: int, what: str) -> Any:
        """`value`, if it is the tuple of `size` the contract asks of `function`."""
        if not isinstance(value, tuple) or len(value) != size:
            got = f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__
            raise ConfigError(
                f"submission_path={self.path}: {function} returned {got}; AlgoPerf's contract "
                f"returns {what}."
            )
        return value


def hyperparameters(values: Mapping[str, Any]) -> tuple:
    """AlgoPerf's `hyperparameters`: a namedtuple of the trial's `hparams.*`, by their own
    names (`learning_rate`, `one_minus_beta1`, ...)."""
    for name, value in values.items():
        if not name.isidentifier():
            raise ConfigError(f"hparams.{name}: a hyperparameter's name must be an identifier.")
        if not isinstance(value, int | float | str | bool):
            raise ConfigError(
                f"hparams.{name}={value!r} is not allowed: expected a number, a string or a "
                "boolean."
            )
    return collections.namedtuple("Hyperparameters", list(values))(**values)
