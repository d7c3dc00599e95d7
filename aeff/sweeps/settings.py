"""A sweep's settings read from its composed config, checked before anything runs: the search
space chosen (an option of `conf/search_space/` or a `tuning_search_space` file), its keys
against the submission's hyperparameters, the GPUs a trial asks for, the user files it runs
(their sha256, for the plan), and whether its trials share the machine."""

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from aeff import config
from aeff import user_files as files
from aeff.algoperf import submission as algoperf_submission
from aeff.errors import AeffError, ConfigError
from aeff.records import sweep_dir as sweep_record
from aeff.records.secrets import redact

log = logging.getLogger(__name__)


def search_space(cfg: DictConfig) -> dict:
    """The chosen `search_space` option, or the `tuning_search_space` file."""
    chosen, path = cfg.get("search_space"), cfg.get("tuning_search_space")
    if chosen and path:
        raise ConfigError("choose search_space=<name> or tuning_search_space=<file>, not both.")
    if path:  # an AlgoPerf submission's hyperparameters keep the space's names
        algoperf = algoperf_submission.is_target(cfg.submission.get("_target_"))
        return files.read_search_space(Path(path), keep_names=algoperf)
    return OmegaConf.to_container(chosen, resolve=True) if chosen else {}


def check_hparams(cfg: DictConfig, keys: list[str]) -> None:
    """Refuse a space's `hparams.*` key that the submission's schema does not have."""
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        trial = config.check_trial(task)
    except AeffError:
        return  # the trials report what is wrong with the config itself
    if not dataclasses.is_dataclass(trial.hparams):
        return  # an AlgoPerf submission's: the space names them
    known = [f.name for f in dataclasses.fields(trial.hparams)]
    for key in keys:
        if key.startswith("hparams.") and key.removeprefix("hparams.") not in known:
            raise ConfigError(
                f"search space key {key!r}: {type(trial.submission).__name__}'s "
                f"hyperparameters are {', '.join(known)}."
            )


def check_devices(cfg: DictConfig) -> None:
    """`devices.per_trial` GPUs that this host cannot give a trial: refused once."""
    from aeff import devices

    per_trial = OmegaConf.select(cfg, "devices.per_trial", default=None)
    if per_trial:
        ids = OmegaConf.select(cfg, "devices.ids", default=None)
        devices.slots_of(per_trial, list(ids) if ids is not None else devices.visible_gpu_ids())


def user_files(
    cfg: DictConfig, jobs: list[list[str]], value_of: Callable[[str], str]
) -> dict[str, str]:
    """path -> sha256 of each user file the sweep's config or jobs name, as this process
    read it (the bytes its trials here run and record). `value_of`: an override's value as
    Hydra reads it (quotes and escapes removed)."""
    named = {(k, v) for k in config.USER_FILES if (v := cfg.get(k))}
    for job in jobs:
        for override in job:
            key = override.lstrip("+~").partition("=")[0]
            if key in config.USER_FILES and (value := value_of(override)):
                named.add((key, value))
    return {
        redact(str(Path(path).expanduser().resolve())): files.sha256(path, key)
        for key, path in sorted(named)
    }


def warn_of_sharing(cfg: DictConfig, folders: list[Path], parallel: int) -> None:
    """Say, before the first trial, when the `parallel` trials running at once share the
    machine's cores or GPUs, and record it in each plan (`folders`: the sweep's, or its
    studies'): sweep.json then marks the score."""
    from aeff import devices
    from aeff.records import system

    cpus = os.cpu_count() or 1
    per_trial = OmegaConf.select(cfg, "devices.per_trial", default=None)
    note = devices.sharing(parallel, cpus, len(system.gpu_handles()), per_trial)
    for folder in folders:
        sweep_record.record_sharing(folder, note)
    if note:
        log.warning(
            "%s: each trial's clock counts the others' work, so times to target and the "
            "score are measured under sharing (sweep.json says so). For times that "
            "compare, run at most %d at once (hydra.launcher.n_jobs) or give each trial "
            "its own GPUs (devices.per_trial).",
            note,
            cpus,
        )
