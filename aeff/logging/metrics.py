"""metrics.csv: one row per evaluation, appended whole, with the host's state at that moment."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from aeff.logging import system
from aeff.logging.callback import METADATA, config_record, job_num, run_dir, update_metadata
from aeff.logging.files import append_csv_row, csv_header

METRICS = "metrics.csv"


class MetricsCsv:
    """An `on_eval` callback for the runner; `static` columns repeat on every row."""

    def __init__(self, directory: Path, static: Mapping[str, Any], system_metrics: bool) -> None:
        self.path = directory / METRICS
        self.static = dict(static)
        self.system_metrics = system_metrics
        self.columns = csv_header(self.path)  # continue an existing file with its columns

    def __call__(self, row: Mapping[str, Any]) -> None:
        full = {**self.static, **row, **(system.sample() if self.system_metrics else {})}
        if self.columns is None:
            self.columns = list(full)
        append_csv_row(self.path, self.columns, full)

    @classmethod
    def for_run(cls, cfg: DictConfig, rng_seed: int) -> "MetricsCsv":
        """The writer for the current Hydra job; notes the seed in metadata.json too."""
        directory = run_dir()
        if (directory / METADATA).exists():
            update_metadata(directory, rng_seed=rng_seed)
        static = {
            "framework": "jax",
            "run_idx": job_num(),
            "rng_seed": rng_seed,
            **config_record(cfg),
        }
        return cls(directory, static, cfg.logging.system_metrics)
