"""The Hydra callback that writes metadata.json, config_resolved.yaml and packages.txt.

It keeps nothing in memory between hooks: each hook reads what it needs from the
run dir, so it works the same whichever process or host a launcher runs a job on.
"""

import datetime
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from aeff.logging import environment, system
from aeff.logging.files import read_json, write_json_atomically, write_text_atomically
from aeff.logging.flatten import flatten
from aeff.logging.packages import packages_text, redact

METADATA = "metadata.json"


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
    return record


def update_metadata(directory: Path, **values: Any) -> None:
    path = directory / METADATA
    write_json_atomically(path, {**read_json(path), **values})


def record_end(directory: Path, status: str, **values: Any) -> None:
    """Rewrite metadata.json with the final status, end time and wall time."""
    metadata = read_json(directory / METADATA)
    write_json_atomically(
        directory / METADATA,
        {
            **metadata,
            "status": status,
            "end_datetime": datetime.datetime.now().astimezone().isoformat(),
            "wall_time_sec": time.time() - metadata["start_time"],
            **values,
        },
    )


def record_error(directory: Path, error: BaseException, status: str = "failed") -> None:
    record_end(
        directory,
        status,
        error_type=type(error).__name__,
        error_message=str(error),
        traceback="".join(traceback.format_exception(error)),
    )


class RecordsCallback(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        system.prime()
        hydra_cfg = HydraConfig.get()
        directory = run_dir()
        directory.mkdir(parents=True, exist_ok=True)
        job_cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
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
            directory / "config_resolved.yaml", OmegaConf.to_yaml(job_cfg, resolve=True)
        )
        if config.logging.packages:
            write_text_atomically(
                directory / "packages.txt", packages_text(bool(config.logging.os_packages))
            )

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        directory = run_dir()
        if read_json(directory / METADATA)["status"] != "running":
            return  # the app already recorded how the trial ended
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
