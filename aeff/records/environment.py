"""Facts about the machine and the code, for metadata.json."""

import importlib.metadata
import os
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from aeff.records import system
from aeff.records.secrets import redact

AEFF_SOURCE = Path(__file__).resolve().parents[1]  # the aeff package folder


def _git(*args: str, cwd: Path) -> str | None:
    """git's answer in `cwd`, or None when it is no git work tree (or git is missing)."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return redact(out.stdout.strip()) if out.returncode == 0 else None


def git_state(directory: Path, label: str) -> dict[str, Any]:
    """`<label>_git_commit_hash`, `_branch`, `_dirty`; all None outside a git work tree."""
    commit = _git("rev-parse", "HEAD", cwd=directory)
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=directory)
    return {
        f"{label}_git_commit_hash": commit,
        f"{label}_git_branch": _git("rev-parse", "--abbrev-ref", "HEAD", cwd=directory),
        f"{label}_git_dirty": None if commit is None or status is None else bool(status),
    }


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def jax_facts() -> dict[str, Any]:
    """Recorded once the trial has chosen its devices (starting JAX fixes them)."""
    import jax

    devices = jax.local_devices()
    return {
        "jax_version": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_device_count": len(devices),
        "jax_devices": [str(device) for device in devices],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }


def facts(cwd: Path, record_hostname: bool) -> dict[str, Any]:
    """Everything but JAX's devices, which the trial adds (jax_facts)."""
    cwd_git = git_state(cwd, "cwd")  # where the command ran
    record = {
        "python_version": platform.python_version(),
        "python_compiler": platform.python_compiler(),
        "os_platform": platform.platform(),
        "cwd": str(cwd),
        **cwd_git,
        # AlgoPerf's keys (its experiment guide's metadata.json): the working directory's
        # git state, as its logger records it.
        "git_branch": cwd_git["cwd_git_branch"],
        "git_commit_hash": cwd_git["cwd_git_commit_hash"],
        "aeff_version": importlib.metadata.version("aeff"),
        "aeff_source": str(AEFF_SOURCE),
        **git_state(AEFF_SOURCE, "aeff"),  # aeff's own code: a checkout when installed editable
        "cpu_model_name": cpu_model_name(),
        "cpu_count": psutil.cpu_count(),
        **system.gpu_facts(),
        "command": [redact(arg) for arg in sys.argv],
    }
    if record_hostname:
        record["hostname"] = socket.gethostname()
    return record


# Overrides that shape a sweep or a run's place, not the trial: a re-run drops them.
NOT_THE_TRIALS = ("hydra.", "hydra/", "rng_seed=", "resume=", "search.", "search_space=")
NOT_THE_TRIALS += ("hparams_search=", "objective=")
# Added by aeff itself to a command line with submission_path= (workload_path=): the re-run
# gets them again from the path, and refuses them typed beside it.
ADDED_BY_AEFF = ("submission=from_file", "workload=from_file")


# Said wherever the command is shown (report.html, the docs).
RERUN_REPRODUCES = (
    "It trains the same trial: at each step both runs evaluated, every loss and metric is "
    "the same (same seed, data order and programs). Evaluations fall on a wall-clock schedule, "
    "so the steps evaluated, and the time and steps to target, may differ by up to one "
    "evaluation period."
)


def rerun_command(overrides: list[str], rng_seed: int, options: Sequence[str] = ()) -> str:
    """`python -m aeff` with Hydra's config options (`--config-dir`...), the trial's own
    overrides (sampled values at full precision) and its seed: one run of this trial alone,
    from the folder the record's `cwd` names."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith(NOT_THE_TRIALS)]
    kept = [o for o in kept if o not in ADDED_BY_AEFF]
    return shlex.join(["python", "-m", "aeff", *options, *kept, f"rng_seed={rng_seed}"])
