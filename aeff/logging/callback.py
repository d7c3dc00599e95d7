"""The Hydra callback that writes metadata.json, config_resolved.yaml and packages.txt.

It keeps nothing in memory between hooks but the run dir's lock (liveness.py): each
hook reads what it needs from the run dir, so it works the same whichever process or
host a launcher runs a job on. A record that cannot be written is logged, never
raised: the trial's own outcome decides how the job ends.
"""

import datetime
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from aeff.config import ConfigError, check_trial
from aeff.logging import environment, liveness, system
from aeff.logging.files import (
    RecordsError,
    read_json,
    remove_stale_temporaries,
    write_json_atomically,
    write_text_atomically,
)
from aeff.logging.flatten import flatten
from aeff.logging.packages import packages_text, redact

log = logging.getLogger(__name__)

METADATA = "metadata.json"
RECORDS = (METADATA, "config_resolved.yaml", "packages.txt", liveness.LOCK)

# What this process may discard (`discard_untrained`): the single run's dir when it
# was new, and the dirs it wrote start records into.
_new_run_dirs: set[Path] = set()
_recorded_dirs: set[Path] = set()


def run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def job_num() -> int:
    """The job's index in its sweep; 0 for a single run."""
    return OmegaConf.select(HydraConfig.get().job, "num", default=0)


def config_record(cfg: DictConfig) -> dict[str, Any]:
    """The config keys that metadata.json and every metrics row carry."""
    record = {"workload": HydraConfig.get().runtime.choices.get("workload")}
    for node in ("workload", "submission", "hparams", "meta"):
        if node in cfg:
            record.update(flatten(cfg[node], node))
    return {k: redact(v) if isinstance(v, str) else v for k, v in record.items()}


def update_metadata(directory: Path, **values: Any) -> None:
    path = directory / METADATA
    write_json_atomically(path, {**read_json(path), **values})


def record_end(directory: Path, status: str, **values: Any) -> None:
    """Rewrite metadata.json with the final status, end time and wall time."""
    path = directory / METADATA
    if not path.exists():
        return  # a bad command line: no records were started
    metadata = read_json(path)
    try:
        write_json_atomically(
            path,
            {
                **metadata,
                "status": status,
                "end_datetime": datetime.datetime.now().astimezone().isoformat(),
                "wall_time_sec": time.time() - metadata["start_time"],
                **values,
            },
        )
    except RecordsError as error:
        log.error("The trial ended %s, but %s", status, error)


def record_error(directory: Path, error: BaseException, status: str = "failed") -> None:
    record_end(
        directory,
        status,
        error_type=type(error).__name__,
        error_message=str(error),
        traceback="".join(traceback.format_exception(error)),
    )


def discard_untrained(directory: Path) -> bool:
    """Remove the records of a trial that never trained, and its dir if only Hydra's is left.

    So a bad command line leaves nothing that looks like a trial. Only what this
    process wrote goes: an earlier trial's records in a reused run dir stay. Returns
    whether it discarded; a trial with metrics or a checkpoint keeps everything.
    """
    if (directory / "metrics.csv").exists() or (directory / "checkpoints").exists():
        return False
    liveness.release(directory)
    if directory in _recorded_dirs:
        for name in RECORDS:
            (directory / name).unlink(missing_ok=True)
    if directory in _new_run_dirs and all(
        p.name == ".hydra" or p.suffix == ".log" for p in directory.iterdir()
    ):
        shutil.rmtree(directory)
    return True


def exit_unless_writable(directory: Path) -> None:
    """Stop before Hydra writes anything when the output folder cannot be written.

    A callback's exceptions only become warnings in Hydra, so this exits.
    """
    existing = directory.absolute()
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        print(
            f"aeff: cannot write the output folder {directory} ({existing} is not writable): "
            "choose another with hydra.run.dir=... (or hydra.sweep.dir=... for -m).",
            file=sys.stderr,
        )
        sys.exit(2)


class RecordsCallback(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        directory = Path(os.path.abspath(config.hydra.run.dir))  # as Hydra makes it
        exit_unless_writable(directory)
        if not directory.exists():
            _new_run_dirs.add(directory)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_unless_writable(Path(config.hydra.sweep.dir))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra_cfg = HydraConfig.get()
        directory = run_dir()
        job_cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        try:
            check_trial(job_cfg, directory)
        except ConfigError:
            if hydra_cfg.mode.name != "MULTIRUN":
                return  # the app reports it; a bad command line leaves no records
        if liveness.hold(directory):  # no other live process writes here
            remove_stale_temporaries(directory)
        _recorded_dirs.add(directory)
        try:
            self._write_start_records(config, job_cfg, directory)
        except RecordsError as error:
            log.error("%s", error)

    @staticmethod
    def _write_start_records(config: DictConfig, job_cfg: DictConfig, directory: Path) -> None:
        system.prime()
        hydra_cfg = HydraConfig.get()
        metadata = {
            "status": "running",
            "datetime": datetime.datetime.now().astimezone().isoformat(),
            "start_time": time.time(),
            "log_dir": str(directory),
            "hydra.overrides": [redact(o) for o in hydra_cfg.overrides.task],
            "hydra.job.num": job_num(),
            "sweep_dir": str(Path(hydra_cfg.sweep.dir).resolve())
            if hydra_cfg.mode.name == "MULTIRUN"
            else "",
            "rng_seed": config.get("rng_seed"),
            **environment.facts(Path(hydra_cfg.runtime.cwd), bool(config.logging.record_hostname)),
            **config_record(job_cfg),
        }
        write_json_atomically(directory / METADATA, metadata)
        write_text_atomically(
            directory / "config_resolved.yaml", redact(OmegaConf.to_yaml(job_cfg, resolve=True))
        )
        if config.logging.packages:
            write_text_atomically(
                directory / "packages.txt", packages_text(bool(config.logging.os_packages))
            )

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        directory = run_dir()
        path = directory / METADATA
        try:
            if path.exists() and read_json(path)["status"] == "running":
                self._record_job_end(directory, job_return)
        finally:
            liveness.release(directory)

    @staticmethod
    def _record_job_end(directory: Path, job_return: JobReturn) -> None:
        if job_return.status == JobStatus.COMPLETED:
            result = job_return.return_value
            record_end(
                directory,
                result["status"],
                goal_reached=result["goal_reached"],
                time_to_target=result["time_to_target"],
                global_step=result["global_step"],
                rng_seed=result["rng_seed"],
                **{f"final.{k}": v for k, v in result["final_metrics"].items()},
            )
        else:
            error = job_return._return_value  # the exception; .return_value would re-raise it
            record_error(directory, error)
