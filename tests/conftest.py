"""Shared fixtures: the real MNIST files, a tfds data folder prepared once, composed configs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from aeff import config

REPO = Path(__file__).resolve().parents[1]
MNIST_IDX_DIR = Path(os.environ.get("AEFF_MNIST_IDX_DIR", REPO.parent / "shared/datasets/mnist"))
TRIAL_SCRIPT = Path(__file__).with_name("trial_json.py")


@pytest.fixture(scope="session")
def mnist_idx_dir() -> Path:
    if not (MNIST_IDX_DIR / "SHA256SUMS").exists():
        pytest.fail(f"Real MNIST not found at {MNIST_IDX_DIR}; set AEFF_MNIST_IDX_DIR.")
    return MNIST_IDX_DIR


@pytest.fixture(scope="session")
def tfds_data_dir(tmp_path_factory, mnist_idx_dir) -> Path:
    """tfds `mnist` prepared from the real IDX files, once per test session (in a child
    process, so TensorFlow never enters the test process). `AEFF_TFDS_DATA_DIR` names
    one prepared already: where TensorFlow is missing, say, holding aeff's numpy cache."""
    if os.environ.get("AEFF_TFDS_DATA_DIR"):
        return Path(os.environ["AEFF_TFDS_DATA_DIR"])
    data_dir = tmp_path_factory.mktemp("tensorflow_datasets")
    code = (
        "import sys; from pathlib import Path; from aeff.workloads.mnist_data import load_mnist;"
        "load_mnist(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    subprocess.run([sys.executable, "-c", code, data_dir, mnist_idx_dir], check=True)
    return data_dir


@pytest.fixture
def compose_config():
    """Compose the app's config with overrides, as `python -m aeff` would."""
    config.register()

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


def data_overrides(tfds_data_dir: Path, mnist_idx_dir: Path) -> list[str]:
    return [f"workload.data_dir={tfds_data_dir}", f"workload.idx_dir={mnist_idx_dir}"]


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


def run_trial_json(overrides: list[str], devices: int = 1, repeat: int = 1) -> dict:
    """Run trials through the Python API in a child process with `devices` CPU devices."""
    import json

    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    out = subprocess.run(
        [sys.executable, TRIAL_SCRIPT, str(repeat), *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
