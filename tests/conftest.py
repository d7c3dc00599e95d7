"""Shared fixtures: the real MNIST files, data dirs prepared once, composed configs."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HELPERS, MNIST_IDX_DIR, short_trial_overrides
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from aeff import context
from aeff.cli.app import register
from aeff.workloads import mnist_data


@pytest.fixture(autouse=True)
def a_command_of_its_own() -> None:
    """Each test is a command of its own, as each `python -m aeff` is a process: a new run
    context (`aeff.context`: its command line, the user files it read, the config options
    they made, the signals it received), which `register()` composes with alone."""
    context.begin()


@pytest.fixture(scope="session")
def mnist_idx_dir() -> Path:
    return MNIST_IDX_DIR


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory) -> Path:
    """A data dir where MNIST is prepared from the bundled IDX files, as a first run
    does (a second): later trials load its numpy cache."""
    data_dir = tmp_path_factory.mktemp("mnist_cache")
    mnist_data.load_mnist(data_dir, None)
    return data_dir


@pytest.fixture(scope="session")
def tfds_data_dir(tmp_path_factory) -> Path:
    """tfds `mnist` prepared by tfds itself from the bundled IDX files, once per test
    session (in a child process, so TensorFlow never enters the test process)."""
    if importlib.util.find_spec("tensorflow_datasets") is None:
        pytest.skip("the tfds extra is not installed: pip install -e '.[dev,tfds]'")
    data_dir = tmp_path_factory.mktemp("tensorflow_datasets")
    subprocess.run([sys.executable, HELPERS / "tfds_mnist.py", data_dir], check=True)
    return data_dir


@pytest.fixture
def compose_config():
    """Compose the app's config with overrides, as `python -m aeff` would."""
    register()

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


@pytest.fixture
def next_process(monkeypatch):
    """Call it to have the user's files read afresh, as the next process (a resume, a
    parallel worker) would: aeff reads each file once per command (its run context's)."""
    from aeff import context

    return lambda: monkeypatch.setattr(context.current(), "files", {})


@pytest.fixture
def trial_config(compose_config, mnist_data_dir):
    """A short trial's config (12 steps, a row every 4) with overrides."""

    def make(*overrides: str):
        return compose_config(*short_trial_overrides(mnist_data_dir), *overrides)

    return make


@pytest.fixture
def aeff_in_process(monkeypatch, tmp_path):
    """`python -m aeff ARGS` in this process, in `tmp_path`; returns its exit status. The
    root logger's handlers (Hydra's, per job) are put back as they were."""
    from helpers.in_process import aeff_main, root_logging_kept

    monkeypatch.chdir(tmp_path)
    with root_logging_kept():
        yield lambda *args: aeff_main(monkeypatch, *args)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory) -> Path:
    """One persistent compilation cache for the test session, as `compilation_cache_dir`
    keeps one for a user's trials: tests (and the `python -m aeff` processes they start)
    that build the same program compile it once. Fast tier: 89 s without, 74 s with.
    `JAX_COMPILATION_CACHE_DIR`, where set, is used instead: mutmut's runs share one."""
    from aeff.devices import enable_compilation_cache

    chosen = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    directory = Path(chosen) if chosen else tmp_path_factory.mktemp("jax_cache")
    enable_compilation_cache(directory)
    os.environ.update(
        JAX_COMPILATION_CACHE_DIR=str(directory),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return directory
