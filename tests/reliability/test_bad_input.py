"""Bad command lines: each fails within 5 s, names the key and what is allowed, writes nothing.

Hydra rejects what its composition can see (types of top-level keys, unknown keys and
options) with exit status 1; aeff's own checks (ranges, component nodes, search
spaces, devices) exit with 2.
"""

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import HELPERS, data_overrides, run_aeff

NOT_A_FOLDER = Path(__file__).resolve()  # a file where a folder is wanted, and no Python file
NOT_PYTHON = NOT_A_FOLDER.parents[2] / "pyproject.toml"
PLAIN_SGD = HELPERS / "plain_sgd.py"  # its hparams never reach its state
CASES = [
    # wrong types, one of each kind of field
    ("batch_size=abc", ["batch_size", "could not be converted to Integer"]),
    ("rng_seed=1.5", ["rng_seed", "Integer"]),
    ("stop_at_target=maybe", ["stop_at_target", "not a valid bool"]),
    ("checkpoint.interval_sec=often", ["checkpoint.interval_sec", "Float"]),
    ("devices.ids=abc", ["devices.ids", "ListConfig, list or tuple"]),
    ("workload.target_value=high", ["workload.target_value", "Float"]),
    ("workload.hidden_width=wide", ["workload.hidden_width", "Integer"]),
    ("search.method=grid", ["search.method", "halton", "sobol"]),
    ("hparams.lr=abc", ["hparams.lr", "Float"]),
    # ranges
    ("workload.max_allowed_runtime_sec=0", ["workload.max_allowed_runtime_sec", "> 0"]),
    ("workload.max_allowed_runtime_sec=-5", ["workload.max_allowed_runtime_sec", "> 0"]),
    ("workload.eval_period_time_sec=0", ["workload.eval_period_time_sec", "> 0"]),
    ("workload.eval_period_time_sec=-1", ["workload.eval_period_time_sec", "> 0"]),
    ("workload.eval_batch_size=0", ["workload.eval_batch_size", "[1, 60000]"]),
    ("workload.eval_batch_size=100000000000", ["workload.eval_batch_size", "[1, 60000]"]),
    ("batch_size=0", ["batch_size", "positive integer"]),
    ("batch_size=-8", ["batch_size", "positive integer"]),
    ("batch_size=1022", ["batch_size=1022", "4 local devices", "multiple of 4"]),
    ("max_steps=0", ["max_steps", "positive integer"]),
    ("steps_per_dispatch=0", ["steps_per_dispatch", "positive integer"]),
    ("hparams.lr=nan", ["hparams.lr", "(0, 100]"]),
    ("hparams.lr=inf", ["hparams.lr", "(0, 100]"]),
    ("hparams.lr=-1e-3", ["hparams.lr", "(0, 100]"]),
    ("hparams.lr=1e30", ["hparams.lr", "(0, 100]"]),
    ("hparams.beta_2=1.5", ["hparams.beta_2", "[0, 1)"]),
    ("workload.target_metric=validation.f1", ["workload.target_metric", "validation.accuracy"]),
    ("workload.target_value=1.5", ["workload.target_value", "(0, 1] for validation.accuracy"]),
    ("workload.split_seed=-1", ["workload.split_seed", "integer >= 0"]),
    ("workload.pixel_mean=inf", ["workload.pixel_mean=inf", "[0, 1]"]),  # not a trial diverged
    ("+meta.x=${oc.env:AEFF_UNSET}", ["meta.x=${oc.env:AEFF_UNSET} reads an environment variable"]),
    ("hparams.lr=${oc.env:AEFF_UNSET}", ["Environment variable 'AEFF_UNSET' not found"]),
    ("workload.idx_dir=gs://bucket/mnist", ["workload.idx_dir='gs://bucket/mnist'", "not a URL"]),
    (f"workload.idx_dir={NOT_A_FOLDER}", ["workload.idx_dir=", "a folder, not a file"]),
    ("workload.idx_dir=/no/such/mnist", ["workload.idx_dir='/no/such/mnist'", "IDX files"]),
    (f"submission_path={NOT_PYTHON}", ["not a Python file: its name must end in .py"]),
    (
        f"submission_path={PLAIN_SGD} hparams.lr=0.5",
        ["hparams.lr=0.5 changes nothing", str(PLAIN_SGD), "optax.inject_hyperparams"],
    ),
    # output folders
    ("hydra.run.dir=", ["hydra.run.dir is empty"]),
    ("-m hparams.lr=1e-3,2e-3 hydra.sweep.dir=", ["hydra.sweep.dir is empty"]),
    # unknown names
    ("workload=nope", ["workload/nope", "Available options", "mnist"]),
    ("submission=nope", ["submission/nope", "Available options", "adam"]),
    ("search_space=nope", ["search_space/nope", "Available options", "mnist_adam"]),
    ("-m hydra/launcher=nope", ["hydra/launcher/nope", "Available options", "parallel"]),
    ("unknown_key=1", ["unknown_key", "+unknown_key=1"]),
    ("+hparam.lr=1e-3", ["unknown key 'hparam'", "meta."]),  # Hydra's own advice for a typo
    ("+search.sead=1", ["unknown key 'search.sead'", "seed"]),
    ("+hparams.momentum=0.9", ["momentum", "lr", "epsilon"]),
    # sweeps and search spaces
    (
        "-m search_space=mnist_adam search.num_trials=2 "
        "search_space.hparams.lr.min=1 search_space.hparams.lr.max=0.1",
        ["search_space.hparams.lr", "min <= max"],
    ),
    (
        "-m search_space=mnist_adam search.num_trials=2 search_space.hparams.lr.min=0",
        ["search_space.hparams.lr", "log range", "above zero"],
    ),
    ("-m search_space=mnist_adam search.num_trials=0", ["search.num_trials", "positive"]),
    ("-m search_space=mnist_adam", ["search.num_trials"]),
    ("-m hparams.lr=1e-3,2e-3 hydra.sweep.subdir=lr_${hparams.lr}", ["hydra.sweep.subdir"]),
    (
        "-m hparams.lr=1e-3,2e-3 hydra/launcher=vectorized hydra.launcher.trials_per_program=0",
        ["hydra.launcher.trials_per_program=0: use 1 or more"],
    ),
    ("-m hparams_search=mnist_optuna", ["configures Optuna's sweeper: add hydra/sweeper=optuna"]),
    ("workload.activation=swish", ["workload.activation", "'sigmoid', 'relu'"]),
]


# One of each kind runs in the fast tier; each case is a process of its own (about 1.5 s).
FAST = {
    "hparams.lr=abc",
    "batch_size=1022",
    "+hparam.lr=1e-3",
    "hydra.run.dir=",
    "-m search_space=mnist_adam search.num_trials=0",
}


@pytest.mark.parametrize(
    ("command_line", "messages"),
    [c if c[0] in FAST else pytest.param(*c, marks=pytest.mark.slow) for c in CASES],
    ids=[c[0] for c in CASES],
)
@pytest.mark.slow  # a process each
def test_bad_command_line_fails_fast_and_clearly(command_line, messages, tmp_path, mnist_data_dir):
    start = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "aeff",
            *shlex.split(command_line),
            *data_overrides(mnist_data_dir),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    )
    elapsed = time.monotonic() - start
    assert out.returncode != 0
    # About 1.5 s alone; the bound catches work that must not happen (data, compiling),
    # with room for a loaded machine.
    assert elapsed < 15, f"took {elapsed:.1f} s"
    output = out.stdout + out.stderr  # aeff logs to stdout, Hydra reports to stderr
    for message in messages:
        assert message in output, output[-2000:]
    assert "Traceback" not in output
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not written, f"left {written}"


@pytest.mark.slow  # a process
def test_bad_command_line_in_an_earlier_trials_run_dir_keeps_its_files(tmp_path, mnist_data_dir):
    """The discarding of a bad command line's traces spares what it did not write."""
    run_dir = tmp_path / "earlier"
    (run_dir / ".hydra").mkdir(parents=True)
    earlier = {
        "metadata.json": '{"status": "failed"}',
        "config_resolved.yaml": "batch_size: 1024\n",
        "packages.txt": "jax==0.10.2\n",
        "aeff.log": "an earlier trial's log\n",
        ".hydra/config.yaml": "batch_size: 1024\n",
    }
    for name, text in earlier.items():
        (run_dir / name).write_text(text)
    out = run_aeff(
        ["batch_size=0", f"hydra.run.dir={run_dir}", *data_overrides(mnist_data_dir)],
        tmp_path,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    for name, text in earlier.items():
        if name != ".hydra/config.yaml":  # Hydra rewrites its own
            assert (run_dir / name).read_text().startswith(text), name
