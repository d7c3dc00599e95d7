"""Orbax checkpoints of a trial, so a preempted or killed trial continues where it was.

A checkpoint holds the train state and the loop's counters (steps, accumulated
times, goal) as of an evaluation. Saving takes tens of milliseconds, so it happens at
an evaluation only when `interval_sec` of wall time has passed since the last one,
and when the trial is interrupted.
"""

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from aeff.errors import DataError, RecordsError


class TrialCheckpoints:
    def __init__(self, directory: Path, interval_sec: float) -> None:
        self.directory = Path(directory).absolute()
        self.interval_sec = interval_sec
        self._last_save = time.monotonic()
        self._last_saved_step: int | None = None
        self._manager_instance = None

    @property
    def _manager(self):
        """Made on first use: it creates the folder, which should exist only with a save."""
        if self._manager_instance is None:
            import orbax.checkpoint as ocp

            self._manager_instance = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=1, enable_async_checkpointing=False
                ),
            )
        return self._manager_instance

    def due(self) -> bool:
        return time.monotonic() - self._last_save >= self.interval_sec

    def save(self, state: Any, progress: dict[str, Any]) -> None:
        """`state` is one replica (host or device arrays); `progress` is JSON-able.

        A step saved already is skipped: an interrupt right after a checkpoint due at
        an evaluation asks for the same step again.
        """
        if progress["global_step"] == self._last_saved_step:
            return
        import orbax.checkpoint as ocp

        host_state = jax.tree.map(np.asarray, jax.device_get(state))
        try:
            self._manager.save(
                progress["global_step"],
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(host_state), progress=ocp.args.JsonSave(progress)
                ),
                force=True,
            )
            self._manager.wait_until_finished()
        except Exception as error:  # orbax's and tensorstore's own types; a full disk, say
            raise RecordsError(self.directory, error) from error
        self._last_save = time.monotonic()
        self._last_saved_step = progress["global_step"]

    def restore(self, template: Any, step: int) -> tuple[Any, dict[str, Any]]:
        """The checkpoint of `step`, shaped like `template`; a damaged one is named, with
        the way out."""
        import orbax.checkpoint as ocp  # 0.3 s of imports, paid only by a save or a restore

        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore()
                ),
            )
        except Exception as error:  # orbax's, tensorstore's and json's own types
            where = self.directory / str(step)
            raise DataError(
                f"the checkpoint {where} is unreadable ({type(error).__name__}): move it "
                f"aside (mv {where} {self.directory}.broken-{step}); resume=true then "
                "starts the trial again with its seed."
            ) from None
        self._last_saved_step = step
        return restored.state, restored.progress
