"""SIGINT, SIGTERM and SIGHUP: one handler, and the phase of the run that says what a
signal does.

Each phase is a context manager; the innermost one open decides. The handler takes each
signal's place as a phase begins (unless it holds it already) and gives back what it
replaced as that phase ends:
- `exiting(before, record)`: nothing trains (imports, composing, loading data, compiling):
  `record(signum)` (a few milliseconds: a record saying `interrupted`), one line, and the
  process ends at once with 128 + signal (raising inside TensorFlow's or XLA's C++ could
  crash the process). The line says what is left to do: the innermost open sweep's
  `stopped(signum)`, or "nothing to resume.".
- `interrupts_noted()`: a trial trains: a signal is a flag, which the trial loop looks at
  between launches (`check`, as orbax's `reached_preemption` is polled) and raises as
  TrialInterrupted; the loop then records a last row and a checkpoint, and the trial
  records `interrupted`. SLURM's warning signal (`warning_signal`) is noted too.
- `sweeping(stopped)`: a sweep launches its trials: a signal while no trial of this
  process trains ends the process as `exiting` does, after `stopped(signum)` (the
  launcher's workers stopped, the report written), which says what is left.
Which signals the command received is its run context's (`received`): a launcher's worker
that one stopped starts no further job.
"""

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from aeff import context
from aeff.errors import TrialInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def warning_signal() -> int | None:
    """In a submitit job (`hydra/launcher=slurm`), the signal by which SLURM warns of a time
    limit or preemption (submitit's `--signal`: USR2 unless SUBMITIT_PREEMPT_SIGNAL says
    otherwise); None elsewhere."""
    if "SUBMITIT_FOLDER" not in os.environ:  # set by submitit where it runs a job
        return None
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, f"SIG{name}", signal.SIGUSR2)


class _Phase:
    """What a signal does while the phase is the innermost one that takes it (a plain class,
    as `aeff.context.Run` is, for `python -m aeff`'s first instant)."""

    def __init__(
        self,
        before: str | None,  # ends the process "before <this>"; None: the signal is noted
        record: Callable[[int], None] | None = None,  # what to record before it ends
        stopped: Callable[[int], str] | None = None,  # a sweep's: stop it; what is left
        signals: tuple[int, ...] = SIGNALS,
    ) -> None:
        self.before, self.record, self.stopped, self.signals = before, record, stopped, signals
        self.pending: list[int] = []  # noted, not yet raised


# The phases open in this process, innermost last: the handler is the process's, as
# the operating system's table of handlers is (a run context is a command's).
_phases: list[_Phase] = []


def _handle(signum: int, frame: Any) -> None:
    context.current().received.append(signum)
    phase = next((p for p in reversed(_phases) if signum in p.signals), None)
    if phase is None:  # its phase ended, and what it replaced is not back yet
        return
    if phase.before is None:
        phase.pending.append(signum)
    else:
        _exit(signum, phase)


def _exit(signum: int, phase: _Phase) -> None:
    left = "nothing to resume."
    with contextlib.suppress(Exception):  # a record that cannot be written: exit anyway
        if phase.record is not None:
            phase.record(signum)
    with contextlib.suppress(Exception):
        sweeps = [p.stopped for p in _phases if p.stopped is not None]
        if sweeps:
            left = sweeps[-1](signum)
    name = signal.Signals(signum).name
    sys.stderr.write(f"aeff: stopped by {name} before {phase.before}; {left}\n")
    sys.stderr.flush()
    os._exit(128 + signum)


@contextlib.contextmanager
def _open(phase: _Phase) -> Iterator[_Phase]:
    """The phase open for the block, the handler in place for its signals (signals are the
    main thread's: a phase opened in another thread only says what a signal does)."""
    replaced = {}
    if threading.current_thread() is threading.main_thread():
        for signum in phase.signals:
            if signal.getsignal(signum) is not _handle:
                replaced[signum] = signal.signal(signum, _handle)
    _phases.append(phase)
    try:
        yield phase
    finally:
        _phases.remove(phase)
        for signum, previous in replaced.items():
            signal.signal(signum, previous)


def exiting(before: str, record: Callable[[int], None] | None = None) -> Any:
    """Within the block a signal ends the process at once: `record(signum)`, one line
    ("aeff: stopped by SIGTERM before <before>; <what is left>"), exit status 128 + signal."""
    return _open(_Phase(before, record))


def sweeping(stopped: Callable[[int], str]) -> Any:
    """Within the block (a sweep launching its trials) a signal while no trial of this
    process trains calls `stopped(signum)` and ends the process at once, saying what it
    returns; a trial's own phases say it too when they end the process."""
    return _open(_Phase("the sweep ended", stopped=stopped))


@contextlib.contextmanager
def interrupts_noted() -> Iterator[None]:
    """Within the block, a signal is a flag (`check` raises it as TrialInterrupted): the
    trial loop looks between launches, which last at most about a second, so that a
    launch, a row or a checkpoint is never cut short. Every signal is noted; the first
    one is the one raised (a sweep's parent passes on the Ctrl-C its workers got too).
    SLURM's warning signal is noted too: the trial stops at a checkpoint, then submitit
    requeues the job (`aeff.slurm.end_stopped_job`)."""
    warning = warning_signal()
    signals = SIGNALS if warning is None else (*SIGNALS, warning)
    with _open(_Phase(None, signals=signals)):
        yield


def check() -> None:
    """Raise TrialInterrupted for the first signal noted in the open blocks, if one was."""
    for phase in _phases:
        if phase.pending:
            raise TrialInterrupted(phase.pending[0])


def received() -> int | None:
    """The first signal this command received since `forget_received`, or None."""
    signals = context.current().received
    return signals[0] if signals else None


def was_received(signum: int) -> bool:
    """Whether this command received `signum` since `forget_received` (a second signal
    is noted while the first one stops the trial)."""
    return signum in context.current().received


def forget_received() -> None:
    """A new sweep in this process (tests run several): earlier signals stop nothing."""
    context.current().received.clear()
