"""Helpers that test modules share (test modules never import one another): paths, running
`python -m aeff` as a user would, and a run dir held by another process. Its modules hold
the rest: trials in-process (`in_process`, `scripted`), records read back (`records`), the
child processes' scripts (`trial_json`, `grouping_json`, `kill_at`) and user files
(`plain_sgd`, `wild_adam`, `job_callbacks`). Fixtures are in conftest.py."""

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aeff.workloads import mnist_data

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent  # scripts, and user files for submission_path=


MNIST_IDX_DIR = mnist_data.bundled_idx_dir()  # the copy the package ships: nothing outside the repo


TRIAL_SCRIPT = HELPERS / "trial_json.py"
GROUPING_SCRIPT = HELPERS / "grouping_json.py"


def shared_trial_scope(fixture_name: str, config: pytest.Config) -> str:
    """The scope of a fixture that trains one trial for several tests: the module, except
    under mutmut (`MUTANT_UNDER_TEST` set), which runs for each mutant only the tests that
    called the mutated code; a shared trial would be credited to the first test alone."""
    return "function" if os.environ.get("MUTANT_UNDER_TEST") else "module"


def data_overrides(data_dir: Path) -> list[str]:
    return [f"workload.data_dir={data_dir}"]


def short_trial_overrides(data_dir: Path) -> list[str]:
    """The overrides of a short trial on MNIST prepared in `data_dir`: 12 steps, a row every
    4, without system metrics, the package list or a compilation cache of its own."""
    return [
        *data_overrides(data_dir),
        "max_steps=12",
        "eval_every_steps=4",
        "batch_size=512",
        "logging.system_metrics=false",
        "logging.packages=false",
        "compilation_cache_dir=null",
    ]


def run_aeff(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300):
    """`python -m aeff ARGS` in `cwd`, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "aeff", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        # A broken records writer only warns inside Hydra; make that fail the run.
        env={**os.environ, "PYTHONWARNINGS": "error:Callback:UserWarning", **(env or {})},
    )


def doc_blocks(doc: Path, section: str) -> list[tuple[str, str]]:
    """The (language, text) of each bash and python block of a doc's section, in order."""
    text = doc.read_text().split(section, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.DOTALL)


def run_bash(
    commands: str, cwd: Path, data_dir: Path, timeout: float = 600, bin_dir: Path | None = None
):
    """A doc's commands in `bash -euo pipefail`, with this Python's `python` first on the
    PATH (or `bin_dir`'s, before it) and MNIST prepared in `data_dir`, as a user would run
    them; must succeed."""
    path = os.pathsep.join([*([str(bin_dir)] if bin_dir else []), os.path.dirname(sys.executable)])
    path = os.pathsep.join([path, os.environ["PATH"]])
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=cwd,
        env={**os.environ, "PATH": path, "TFDS_DATA_DIR": str(data_dir), "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def run_sweep(args: list[str], cwd: Path) -> Path:
    """`python -m aeff -m ARGS` in `cwd`, which must succeed; returns its sweep dir."""
    out = run_aeff(["-m", *args], cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = (cwd / "outputs" / "multirun").glob("*/*")
    return sweep_dir


def start_aeff(args: list[str], cwd: Path) -> subprocess.Popen:
    """`python -m aeff ARGS` in the background, for tests that signal or kill it."""
    return subprocess.Popen(
        [sys.executable, "-m", "aeff", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_trial_json(
    overrides: list[str], devices: int = 1, repeat: int = 1, script: Path = TRIAL_SCRIPT
) -> dict:
    """Run trials through the Python API in a child process with `devices` CPU devices:
    `script` (trial_json.py, or grouping_json.py without `repeat`) prints them as JSON."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    count = [str(repeat)] if script == TRIAL_SCRIPT else []
    out = subprocess.run(
        [sys.executable, script, *count, *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def owned_by_another_process(directory: Path) -> Iterator[subprocess.Popen]:
    """`directory` claimed by a child process (a live owner) until the block ends; then the
    child is SIGKILL-ed, as a crash would end it."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from aeff.records.run_dir import RunDir;"
            "RunDir(Path(sys.argv[1])).claim(); print('held', flush=True); time.sleep(60)",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
