"""A researcher's own code and search spaces, from files anywhere on disk.

`load_class(path, base)` imports a Python file under a name made from its resolved
path (so every process of a sweep gives it the same name) and returns the one
concrete `base` subclass it defines. `read_search_space(path)` reads a JSON or YAML
space, in aeff's format or AlgoPerf's. Every problem is a ConfigError naming the
file and what is missing. Each file is read once per command (`contents`, kept in its
run context, `aeff.context`): the module runs, its sha256 is recorded and its copy is
written from those bytes, so an edit while a sweep runs changes none of them.
"""

import dataclasses
import hashlib
import importlib.util
import inspect
import io
import json
import linecache
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from omegaconf import OmegaConf

from aeff import context
from aeff.errors import ConfigError

# AlgoPerf's hyperparameter names, where aeff's differ.
ALGOPERF_NAMES = {
    "learning_rate": "lr",
    "one_minus_beta1": "one_minus_beta_1",
    "beta1": "beta_1",
    "beta2": "beta_2",
}


def contents(path: Path, key: str) -> bytes:
    """The file's bytes, read once per command (its run context's `files`); `key` names
    the setting."""
    read, resolved = context.current().files, Path(path).expanduser().resolve()
    if resolved not in read:
        try:
            read[resolved] = resolved.read_bytes()
        except OSError as error:
            raise ConfigError(f"{key}={path}: {error.strerror}.") from None
    return read[resolved]


def sha256(path: Path, key: str) -> str:
    """The sha256 of the bytes this process runs or reads the file from."""
    return hashlib.sha256(contents(path, key)).hexdigest()


def module_name(path: Path) -> str:
    resolved = Path(path).expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return f"aeff_user_{resolved.stem.replace('-', '_')}_{digest}"


def load_module(path: Path, key: str) -> ModuleType:
    """The file as a module (imported once per process); `key` names the setting."""
    path = Path(path).expanduser()
    name = module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such file.")
    if path.suffix != ".py":
        raise ConfigError(f"{key}={path} is not a Python file: its name must end in .py.")
    source, filename = contents(path, key), str(path.resolve())
    # Compiled from the bytes read once (not re-read by an import loader), and kept for
    # tracebacks: the lines shown are those that ran, even after an edit.
    text = source.decode(errors="replace")
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    module = importlib.util.module_from_spec(
        importlib.util.spec_from_loader(name, loader=None, origin=filename)
    )
    module.__file__ = filename
    sys.modules[name] = module
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    except (Exception, SystemExit) as error:  # a script's sys.exit too: not the process's end
        del sys.modules[name]
        raise ConfigError(
            f"{key}={path} does not import: {type(error).__name__}: {error}{_hint(error)}"
        ) from None
    return module


def classes_in(module: ModuleType, base: type) -> list[type]:
    """The subclasses of `base` that the module itself defines."""
    return [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if c.__module__ == module.__name__ and issubclass(c, base) and c is not base
    ]


def load_class(path: Path, base: type, key: str) -> type:
    """The one concrete dataclass subclass of `base` that the file defines."""
    module = load_module(path, key)
    defined = classes_in(module, base)
    concrete = [c for c in defined if not inspect.isabstract(c)]
    what = f"{key}={path}"
    if not defined and base.__name__ == "Submission":
        raise ConfigError(
            f"{what} defines no submission: neither a subclass of aeff's Submission nor "
            "AlgoPerf's functions (get_batch_size, init_optimizer_state, update_params, "
            "data_selection); see docs/writing-a-submission.md."
        )
    if not defined:
        raise ConfigError(f"{what} defines no subclass of aeff's {base.__name__}.")
    if not concrete:
        missing = sorted(set().union(*(c.__abstractmethods__ for c in defined)))
        raise ConfigError(f"{what}: {defined[0].__name__} lacks {', '.join(missing)}.")
    if len(concrete) > 1:
        names = ", ".join(c.__name__ for c in concrete)
        raise ConfigError(f"{what} defines {len(concrete)} {base.__name__}s ({names}): keep one.")
    (cls,) = concrete
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"{what}: {cls.__name__} must be a @dataclasses.dataclass(frozen=True).")
    schema = getattr(cls, "hparams_schema", None)
    if base.__name__ == "Submission" and not dataclasses.is_dataclass(schema):
        raise ConfigError(f"{what}: {cls.__name__}.hparams_schema must name a dataclass.")
    if base.__name__ == "Submission" and _without_model_state(cls.update_params):
        raise ConfigError(
            f"{what}: {cls.__name__}.update_params(workload, params, optimizer_state, batch, "
            "rng) is the contract before model states: it takes the model state after the "
            "optimizer state and returns it after it too, (params, optimizer_state, "
            "model_state, loss); see docs/writing-a-submission.md."
        )
    return cls


def _without_model_state(update_params: Any) -> bool:
    """An `update_params` written to the contract before model states (five named
    arguments besides `self`, none of them `model_state`)."""
    names = list(inspect.signature(update_params).parameters)
    return len(names) == 6 and "model_state" not in names


# Modules that published submissions import besides AlgoPerf's, and what brings them.
MISSING_MODULE_HINTS = {
    "chex": ' (AlgoPerf\'s NAdamW imports it): pip install -e ".[algoperf]"',
    "torch": ": aeff runs AlgoPerf's JAX submissions; give the file of its jax/ folder",
    "tensorflow_datasets": ': pip install -e ".[tfds]"',
}


def _hint(error: BaseException) -> str:
    """What brings a module the file imports and this environment lacks."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return ""
    top = error.name.split(".")[0]
    if top == "algoperf":
        return (
            ": aeff provides algoperf.spec and algoperf.jax_sharding_utils only; install "
            "AlgoPerf itself for the rest"
        )
    return MISSING_MODULE_HINTS.get(top, f": install the package that provides {top}")


def node_of(cls: type) -> dict[str, Any]:
    """`_target_` and the dataclass's field defaults: a config node for `cls`."""
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.init and f.default is not dataclasses.MISSING
    }
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **defaults}


def read_search_space(path: Path, keep_names: bool = False) -> dict[str, Any]:
    """A space from JSON or YAML, as aeff's dotted keys: AlgoPerf's `{"name": {"min",
    "max", "scaling"}}` and `{"name": {"feasible_points": [...]}}` are read as is, a bare
    name is a hyperparameter (`learning_rate` -> `hparams.lr`; `hparams.learning_rate`
    with `keep_names`, for AlgoPerf's own submissions). AlgoPerf's list of points (its
    external tuning's) is `{"hparams": {"points": [...]}}`: trial i takes point i."""
    path = Path(path).expanduser()
    data = contents(path, "tuning_search_space")
    try:
        text = data.decode()
    except UnicodeDecodeError as error:
        raise ConfigError(f"tuning_search_space={path} is not text: {error.reason}.") from None
    space = _parsed(path, text)
    if isinstance(space, list) and space and all(isinstance(p, dict) and p for p in space):
        points = [_renamed(point, path, keep_names, _point) for point in space]
        return {"hparams": {"points": [_unprefixed(point) for point in points]}}
    if not isinstance(space, dict) or not space:
        raise ConfigError(
            f"tuning_search_space={path}: expected a mapping of names to "
            "{min, max, scaling} or {feasible_points}, or a list of points."
        )
    return _renamed(space, path, keep_names, _spec)


def _renamed(space: dict, path: Path, keep_names: bool, value: Any) -> dict[str, Any]:
    dotted: dict[str, Any] = {}
    for name, spec in space.items():
        key = _dotted(name, keep_names)
        if key in dotted:  # `learning_rate` and `lr`: one would silently replace the other
            raise ConfigError(f"tuning_search_space={path} names {key} twice (as {name}).")
        dotted[key] = value(spec)
    return dotted


def _point(value: Any) -> Any:
    return value


def _unprefixed(point: dict[str, Any]) -> dict[str, Any]:
    """A point's hyperparameters by name (its keys are all `hparams.*`)."""
    for key in point:
        if not key.startswith("hparams."):
            raise ConfigError(f"a point of a list search space sets {key}: only hyperparameters.")
    return {key.removeprefix("hparams."): value for key, value in point.items()}


def _parsed(path: Path, text: str) -> Any:
    """The file's JSON, or its YAML read as Hydra reads `conf/` (`1e-5` a number, as in
    JSON, not YAML 1.1's string). A key given twice in one mapping is refused: both
    readers would keep the last unnoticed."""
    what = f"tuning_search_space={path}"
    try:
        if path.suffix == ".json":
            return json.loads(text, object_pairs_hook=lambda pairs: _unique(pairs, what))
        return OmegaConf.to_container(OmegaConf.load(io.StringIO(text)))
    except ConfigError:  # a ValueError: said as it is
        raise
    except yaml.constructor.ConstructorError as error:
        if (error.problem or "").startswith("found duplicate key"):
            key = error.problem.removeprefix("found duplicate key ")
            line = error.problem_mark.line + 1
            raise ConfigError(
                f"{what} gives the key {key!r} twice (line {line}): keep one."
            ) from None
        raise ConfigError(f"{what} is not valid YAML: {_one_line(error)}") from None
    except (ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"{what} is not valid JSON or YAML: {_one_line(error)}") from None
    except OSError:  # OmegaConf's word for a YAML scalar: refused below
        return None


def _unique(pairs: list[tuple[str, Any]], what: str) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(f"{what} gives the key {key!r} twice: keep one.")
    return dict(pairs)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _dotted(name: str, keep_names: bool = False) -> str:
    if "." in name:
        return name
    return f"hparams.{name if keep_names else ALGOPERF_NAMES.get(name, name)}"


def _spec(spec: Any) -> Any:
    """AlgoPerf's words for a range or a choice, in aeff's."""
    if not isinstance(spec, dict):
        return spec  # search.parse_space names the key and what it expected
    renamed = {"scaling": "scale", "feasible_points": "values"}
    return {renamed.get(k, k): v for k, v in spec.items()}
