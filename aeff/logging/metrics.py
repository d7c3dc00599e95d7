"""metrics.csv: one row per evaluation, appended whole, with the host's state at that moment."""

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from aeff.logging import environment, system
from aeff.logging.callback import METADATA, config_record, job_num, run_dir, update_metadata
from aeff.logging.files import append_csv_row, complete_lines, csv_header, cut_torn_line

METRICS = "metrics.csv"


def last_global_step(path: Path) -> int:
    """The step of the last complete row, or -1."""
    if not path.exists():
        return -1
    rows = list(csv.DictReader(complete_lines(path).splitlines()))
    return int(rows[-1]["global_step"]) if rows else -1


class MetricsCsv:
    """An `on_eval` callback for the runner; `static` columns repeat on every row."""

    def __init__(self, directory: Path, static: Mapping[str, Any], system_metrics: bool) -> None:
        self.path = directory / METRICS
        cut_torn_line(self.path)
        self.static = dict(static)
        self.system_metrics = system_metrics
        self.columns = csv_header(self.path)  # continue an existing file with its columns
        self.last_step = last_global_step(self.path)

    def __call__(self, row: Mapping[str, Any]) -> None:
        if row["global_step"] <= self.last_step:
            return  # a resumed trial redoing steps it had already recorded
        self.last_step = row["global_step"]
        full = {**self.static, **row, **(system.sample() if self.system_metrics else {})}
        if self.columns is None:
            self.columns = list(full)
        append_csv_row(self.path, self.columns, full)

    @classmethod
    def for_run(cls, cfg: DictConfig, rng_seed: int) -> "MetricsCsv":
        """The writer for this Hydra job; adds the seed and JAX devices to metadata.json."""
        directory = run_dir()
        if (directory / METADATA).exists():
            update_metadata(directory, rng_seed=rng_seed, **environment.jax_facts())
        static = {
            "framework": "jax",
            "run_idx": job_num(),
            "rng_seed": rng_seed,
            **config_record(cfg),
        }
        return cls(directory, static, cfg.logging.system_metrics)
