"""A sweep's settings read from its composed config, checked before anything runs: the search
space chosen (an option of `conf/search_space/` or a `tuning_search_space` file), its keys
against the submission's hyperparameters, and the GPUs a trial asks for."""

import dataclasses
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from aeff import config, user_files
from aeff.algoperf import submission as algoperf_submission
from aeff.errors import AeffError, ConfigError


def search_space(cfg: DictConfig) -> dict:
    """The chosen `search_space` option, or the `tuning_search_space` file."""
    chosen, path = cfg.get("search_space"), cfg.get("tuning_search_space")
    if chosen and path:
        raise ConfigError("choose search_space=<name> or tuning_search_space=<file>, not both.")
    if path:  # an AlgoPerf submission's hyperparameters keep the space's names
        algoperf = algoperf_submission.is_target(cfg.submission.get("_target_"))
        return user_files.read_search_space(Path(path), keep_names=algoperf)
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
