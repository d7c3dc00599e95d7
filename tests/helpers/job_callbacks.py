"""A Hydra callback that leaves in each job's output dir what Hydra told it of the job:
`+hydra.callbacks.jobs._target_=helpers.job_callbacks.JobFiles` (with tests/ on PYTHONPATH)."""

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


class JobFiles(Callback):
    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self._write(config, f"start {config.hydra.job.num}")

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        value = job_return._return_value
        kind = type(value).__name__ if isinstance(value, BaseException) else sorted(value)[0]
        self._write(config, f"end {job_return.status.name} {kind}")

    def _write(self, config: Any, line: str) -> None:
        path = Path(config.hydra.runtime.output_dir) / "callbacks.txt"
        with path.open("a") as file:
            file.write(line + "\n")
