"""How a trial ends: the errors aeff reports, and the one mapping to record and exit status.

An `AeffError` is reported as one line (its message names what is wrong and what to
do) and exits with status 2. `TrialInterrupted` derives from BaseException, so no
`except Exception` on the way out (Hydra's job runner, a library's retry loop) can
swallow a signal. `record_status` and `exit_status` are the only places that map an
ending to what `metadata.json` says and what the process returns.
"""

import signal
from pathlib import Path

EXIT_FAILED_TRIALS = 1  # a sweep in which a trial failed; also Hydra's own usage errors
EXIT_BAD_INPUT = 2  # an AeffError: bad config, data, run dir or records


class AeffError(Exception):
    """An error reported as its message alone, without a traceback."""

    exit_status = EXIT_BAD_INPUT


class ConfigError(AeffError, ValueError):
    """A config value that cannot run; the message names the key and what is allowed."""


class DataError(AeffError, RuntimeError):
    """The data cannot be loaded; the message says which file and what to do."""


class RunDirBusy(AeffError):
    """Another live process owns the run dir (or sweep dir)."""


class RecordsError(AeffError, OSError):
    """A record could not be written; the message names the file and what to do."""

    def __init__(self, path: Path, error: Exception) -> None:
        reason = getattr(error, "strerror", None) or error
        super().__init__(
            getattr(error, "errno", None),
            f"cannot write {path}: {reason}. The records written before "
            "are intact; free space, fix the permissions, or choose another output folder "
            "(hydra.run.dir, hydra.sweep.dir).",
        )

    def __str__(self) -> str:
        return self.strerror  # without OSError's "[Errno N]" prefix


class TrialExited(RuntimeError):
    """The trial's own code (a submission's, a workload's) called sys.exit: a crash of that
    trial. As a SystemExit it would pass every `except Exception` and end the process, or
    a whole sweep, with the status it gave, 0 included."""

    def __init__(self, code: object) -> None:
        super().__init__(
            f"the trial's code called sys.exit({code!r}); a submission or workload must "
            "raise an exception instead"
        )
        self.code = code

    def __reduce__(self) -> tuple:  # as parallel launchers hand it back: from its code
        return TrialExited, (self.code,)


class TrialInterrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP stopped the trial; its record says `interrupted`."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.checkpoint_step: int | None = None  # set when a checkpoint was saved on the way out
        self.recorded = False  # set when the trial's record says `interrupted`


class SweepFailed(BaseException):
    """A sweep that ended without a result of every planned trial (`failed`: the run dirs of
    those that failed or did not run), or that its sweeper refused or stopped (`error`, said
    already in one line). A BaseException, as Hydra's `run_and_report` would print an
    Exception's traceback and exit 1: it reaches the app, which exits with `exit_status`."""

    def __init__(self, failed: list[str], error: BaseException | None = None) -> None:
        super().__init__(f"{len(failed)} trials failed or did not run")
        self.failed = list(failed)
        self.error = error


def crash_of(error: BaseException) -> BaseException:
    """`error` as a trial's ending is recorded and raised: a SystemExit as the TrialExited
    it is (caused by it), any other error as it is."""
    if not isinstance(error, SystemExit):
        return error
    exited = TrialExited(error.code)
    exited.__cause__ = error
    return exited


def record_status(error: BaseException | None, result_status: str = "completed") -> str:
    """What metadata.json says of a trial that ended with `error` (None: it returned)."""
    if error is None:
        return result_status  # completed or diverged: divergence is a result
    if isinstance(error, TrialInterrupted):
        return "interrupted"
    return "failed"


def exit_status(error: BaseException | None) -> int:
    """What the process returns: 0, 2 for an AeffError, 128 + signal, else 1."""
    if error is None:
        return 0
    if isinstance(error, TrialInterrupted):
        return 128 + error.signum  # the shell's convention: 130 SIGINT, 143 SIGTERM
    if isinstance(error, SweepFailed):  # as what stopped it; else its failed trials
        return EXIT_FAILED_TRIALS if error.error is None else exit_status(error.error)
    if isinstance(error, AeffError):
        return error.exit_status
    return EXIT_FAILED_TRIALS
