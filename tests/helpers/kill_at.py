"""`python -m aeff`, SIGKILL-ed by itself at one chosen moment of the trial.

    python kill_at.py MOMENT OVERRIDE ...

MOMENT is one of:
  metadata        metadata.json's first version written to its temporary file, not yet
                  renamed into place
  csv_row         the third row of metrics.csv written, not yet fsync-ed
  checkpoint      the first checkpoint written to orbax's temporary folder, not yet
                  renamed into place
  final_metadata  the final status written to its temporary file, not yet renamed
"""

import os
import signal
import sys
from collections import Counter
from pathlib import Path

calls: Counter = Counter()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_when(function_name: str, condition) -> None:
    """Wrap os.<function_name> so the process dies just before a call that meets `condition`."""
    real = getattr(os, function_name)

    def wrapper(*args, **kwargs):
        if condition(*args):
            die()
        return real(*args, **kwargs)

    setattr(os, function_name, wrapper)


def nth(key: str, n: int) -> bool:
    calls[key] += 1
    return calls[key] == n


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


MOMENTS = {
    "metadata": (
        "replace",
        lambda src, dst: str(dst).endswith("metadata.json") and nth("metadata", 1),
    ),
    "csv_row": ("fsync", lambda fd: fd_path(fd).endswith("metrics.csv") and nth("csv", 3)),
    "checkpoint": ("rename", lambda src, dst: "orbax-checkpoint-tmp" in str(src)),
    "final_metadata": (
        "replace",
        lambda src, dst: (
            str(dst).endswith("metadata.json") and '"end_datetime"' in Path(src).read_text()
        ),
    ),
}

if __name__ == "__main__":
    moment, overrides = sys.argv[1], sys.argv[2:]
    kill_when(*MOMENTS[moment])
    from aeff.cli.app import main

    sys.argv = ["aeff", *overrides]
    main()
