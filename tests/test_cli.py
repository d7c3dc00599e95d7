"""`python -m aeff` as a user runs it: from any folder, single runs, sweeps and bad input."""

import json
import re
import signal
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest
from helpers import REPO, data_overrides, run_aeff, run_sweep
from omegaconf import OmegaConf

from aeff import context
from aeff.cli.app import resume_hint
from aeff.errors import ConfigError, TrialInterrupted
from aeff.hydra_job import objective_value, typed_overrides

FINAL_LINE = re.compile(r"(completed|diverged) after (\d+) steps: goal reached (\w+)")


def final_metrics(log_text: str) -> dict[str, float]:
    line = [line for line in log_text.splitlines() if FINAL_LINE.search(line)][-1]
    return {k: float(v) for k, v in re.findall(r"([a-z]+\.[a-z]+) ([0-9.]+)", line)}


@pytest.mark.slow
def test_single_run_trains_on_real_mnist(tmp_path, mnist_data_dir):
    out = run_aeff(
        [
            *data_overrides(mnist_data_dir),
            "workload.max_allowed_runtime_sec=2",
            "stop_at_target=false",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_dir.parent.name)
    assert (run_dir / ".hydra" / "config.yaml").exists()
    log_text = (run_dir / "aeff.log").read_text()  # Hydra's job log, named after the job
    assert log_text.count("validation.accuracy") >= 3  # a line per evaluation
    assert final_metrics(log_text)["validation.accuracy"] >= 0.9
    assert out.stdout.rstrip().splitlines()[-1].endswith(f"Records of this trial: {run_dir}")


@pytest.mark.slow
def test_sweep_gives_one_run_dir_per_trial(tmp_path, mnist_data_dir):
    sweep_dir = run_sweep(
        ["hparams.lr=1e-3,3e-3", "max_steps=20", *data_overrides(mnist_data_dir)],
        tmp_path,
    )
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1"]
    for job, lr in (("0", "0.001"), ("1", "0.003")):
        overrides = (sweep_dir / job / ".hydra" / "overrides.yaml").read_text()
        assert f"hparams.lr={lr}" in overrides
        assert FINAL_LINE.search((sweep_dir / job / "aeff.log").read_text())


def test_overrides_are_kept_as_typed_not_resolved():
    hydra_cfg = OmegaConf.create({"overrides": {"task": ["+meta.x=${oc.env:AEFF_UNSET}"]}})
    assert typed_overrides(hydra_cfg) == ["+meta.x=${oc.env:AEFF_UNSET}"]  # resolving raises


def test_an_interrupted_run_is_told_the_command_that_resumes_it(monkeypatch):
    """Its own command line, each setting once, credentials redacted."""
    typed = ["resume=true", "hydra.run.dir=out", "+meta.src=https://u:pw@host/x"]
    monkeypatch.setattr(context.current(), "typed", typed)
    monkeypatch.setattr(sys, "argv", ["/site/aeff/__main__.py", *typed])
    interrupt = TrialInterrupted(signal.SIGTERM)
    assert resume_hint(interrupt, Path("/w/out")) == (
        "It had not begun training: nothing to resume."
    )
    interrupt.recorded, interrupt.checkpoint_step = True, 8
    assert resume_hint(interrupt, Path("/w/out")) == (
        "A checkpoint of step 8 was saved; this continues it: python -m aeff "
        "+meta.src=https://***@host/x resume=true hydra.run.dir=/w/out"
    )
    interrupt.checkpoint_step = None
    assert resume_hint(interrupt, Path("/w/out")).startswith(
        "No checkpoint was saved; this starts it again with its seed: python -m aeff "
    )


@pytest.mark.slow
def test_default_trial_reaches_the_target_on_two_devices(tmp_path, mnist_data_dir):
    out = run_aeff(
        [*data_overrides(mnist_data_dir), "rng_seed=0"],
        tmp_path,
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    log_text = (run_dir / "aeff.log").read_text()
    assert "goal reached True" in log_text
    assert log_text.count("| validation.accuracy") >= 15
    assert final_metrics(log_text)["validation.accuracy"] >= 0.97


@pytest.mark.slow
def test_runs_started_together_get_their_own_dirs(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "aeff", "--cfg", "hydra", "-p", "hydra.run.dir"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    dirs = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert len(dirs) == 3
    assert all(d.startswith("outputs/") for d in dirs)


def test_console_script_runs_the_same_app(tmp_path):
    aeff = subprocess.run(
        [Path(sys.executable).with_name("aeff"), "--cfg", "job", "-p", "hparams"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    module = run_aeff(["--cfg", "job", "-p", "hparams"], tmp_path, timeout=60)
    assert aeff.returncode == module.returncode == 0
    assert aeff.stdout == module.stdout
    assert "lr: 0.0012" in aeff.stdout


def test_help_explains_aeff_its_groups_and_keys(tmp_path):
    out = run_aeff(["--help"], tmp_path, timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith("aeff: algorithmic-efficiency trials")
    for line in ("submission: adam, nesterov", "workload.max_allowed_runtime_sec", "resume=true"):
        assert line in out.stdout
    for key in ("submission_path=", "workload_path=", "tuning_search_space=", "interval("):
        assert key in out.stdout
    assert "parallel" in out.stdout and "vectorized" in out.stdout and "slurm" in out.stdout
    assert "Powered by Hydra" not in out.stdout


def test_hydras_shell_completion_installs_from_the_script(tmp_path):
    """Hydra prints `python <path>/aeff/__main__.py -sc install=bash`: run as a script, its
    folder comes first on sys.path, where no module of aeff may shadow the standard one."""
    script = REPO / "aeff" / "__main__.py"
    out = subprocess.run(
        [sys.executable, script, "-sc", "install=bash"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "hydra_bash_completion()" in out.stdout


@pytest.mark.slow
def test_hydras_own_logging_options_run_the_trial(tmp_path, mnist_data_dir):
    """`hydra/job_logging=disabled` silences the console; the records are all written."""
    args = ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled", "max_steps=2"]
    out = run_aeff([*args, "hydra.run.dir=run", *data_overrides(mnist_data_dir)], tmp_path)
    assert (out.returncode, out.stdout + out.stderr) == (0, "")
    assert json.loads((tmp_path / "run" / "metadata.json").read_text())["global_step"] == 2


@pytest.mark.slow
def test_regular_install_ships_the_configs_and_data(tmp_path):
    """A wheel (not editable) holds conf/ and the IDX files, and runs from any folder."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path, REPO],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("aeff-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "aeff/conf/config.yaml" in names and "aeff/conf/workload/mnist.yaml" in names
    assert "aeff/workloads/mnist_idx/train-images-idx3-ubyte.gz" in names
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel],
        check=True,
        timeout=300,
    )
    code = (
        "import aeff, aeff.cli.app, aeff.training.loop, aeff.workloads.mnist_data as d;"
        "print(aeff.__file__);"
        "print(d.read_idx_dir(d.bundled_idx_dir()).test_labels.shape)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site)},
        check=True,
    )
    assert out.stdout.splitlines() == [str(site / "aeff" / "__init__.py"), "(10000,)"]
    out = subprocess.run(
        [sys.executable, "-m", "aeff", "submission=nesterov", "--cfg", "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site)},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "aeff.submissions.nesterov.Nesterov" in out.stdout


@pytest.mark.slow
def test_compiled_programs_are_cached_for_the_next_process(tmp_path, mnist_data_dir):
    cache = tmp_path / "jax-cache"
    args = [
        "max_steps=2",
        f"compilation_cache_dir={cache}",
        *data_overrides(mnist_data_dir),
    ]
    assert run_aeff(args, tmp_path).returncode == 0
    entries = set(cache.iterdir())
    assert len(entries) > 10  # the step, the evaluation and the small programs around them
    assert run_aeff(args, tmp_path).returncode == 0
    assert set(cache.iterdir()) == entries  # the second process compiled nothing new


def test_a_jobs_objective_is_its_time_to_target_the_budget_if_missed_or_a_final_metric():
    """What Optuna's sweeper gets (`objective=`): one number a trial."""
    metrics = {"validation.accuracy": 0.97, "validation.loss": 0.1}
    reached = types.SimpleNamespace(time_to_target=4.5, final_metrics=metrics)
    missed = types.SimpleNamespace(time_to_target=None, final_metrics=metrics)
    assert objective_value(reached, "time_to_target", 60.0) == 4.5
    assert objective_value(missed, "time_to_target", 60.0) == 60.0
    assert objective_value(missed, "final.validation.loss", 60.0) == 0.1
    with pytest.raises(ConfigError) as refused:
        objective_value(missed, "final.test.loss", 60.0)
    assert str(refused.value) == (
        "objective=final.test.loss: the trial has no final test.loss; it has "
        "validation.accuracy, validation.loss."
    )


def test_each_command_composes_only_the_options_its_own_files_made(tmp_path):
    """A user's file becomes its group's `from_file` option for its command; `register` is
    idempotent and leaves no earlier command's option in Hydra's store."""
    from hydra.core.config_store import ConfigStore

    from aeff.cli.app import register, with_user_files

    (tmp_path / "mine.py").write_text(
        "import dataclasses\nfrom aeff.submissions.adam import Adam\n\n"
        "@dataclasses.dataclass(frozen=True)\nclass Mine(Adam):\n    pass\n"
    )
    repo = ConfigStore.instance().repo
    context.begin(["submission_path=mine.py"])
    register()
    with_user_files([f"submission_path={tmp_path / 'mine.py'}"])
    register()  # again, as composing does: this command's option stays
    assert repo["submission"]["from_file.yaml"].node.submission._target_.endswith(".Mine")
    context.begin([])  # the next command in this process
    register()
    assert "from_file.yaml" not in repo["submission"]
