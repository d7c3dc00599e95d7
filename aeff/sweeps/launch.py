"""Handing a sweep's jobs to its launcher: every study's jobs to run, in batches of
consecutive job numbers, and how each job ended as the launcher returned it."""

from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from aeff.records.secrets import redact
from aeff.sweeps import plan
from aeff.sweeps.plan import Study


def launch(launcher: Any, studies: list[Study], max_batch_size: int | None) -> list[JobReturn]:
    """Every study's jobs to run, in batches of consecutive job numbers. A launcher that takes
    several batches at once (the vectorized one's `launch_batches`) gets them together, up to
    `max_batch_size` jobs a call, so that it may group trials of different studies (or either
    side of a finished one). Each study's `ended` notes how its jobs ended."""
    pairs = [(s, batch) for s in studies for batch in plan.batches(s.todo, max_batch_size)]
    returns: list[JobReturn] = []
    if len(pairs) < 2 or not hasattr(launcher, "launch_batches"):
        for study, batch in pairs:
            launched = launcher.launch([study.jobs[i] for i in batch], batch[0])
            returns.extend(launched)
            study.ended.update(endings(batch, launched))
        return returns
    for call in plan.calls([len(batch) for _, batch in pairs], max_batch_size):
        handed = [([pairs[i][0].jobs[j] for j in pairs[i][1]], pairs[i][1][0]) for i in call]
        for i, launched in zip(call, launcher.launch_batches(handed), strict=True):
            study, batch = pairs[i]
            returns.extend(launched)
            study.ended.update(endings(batch, launched))
    return returns


def endings(batch: list[int], returns: list[JobReturn]) -> dict[int, str | None]:
    """How each job of `batch` ended, by job number, as its launcher returned it: None when
    it returned, else its error's first line (a trial with no record, logging=off, has
    nothing else to tell it)."""
    ended: dict[int, str | None] = {}
    for index, returned in zip(batch, returns, strict=False):
        if not isinstance(returned, JobReturn):
            continue  # a launcher that returns something else tells nothing
        if returned.status == JobStatus.COMPLETED:
            ended[index] = None
        elif returned.status == JobStatus.FAILED:
            error = returned._return_value  # the task's exception (`return_value` raises it)
            lines = str(error).strip().splitlines()
            ended[index] = redact(type(error).__name__ + (f": {lines[0]}" if lines else ""))
    return ended
