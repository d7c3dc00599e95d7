"""`hydra/launcher=vectorized` in-process, as `python -m aeff -m` runs it: which jobs form
groups, what Hydra's callbacks and JobReturns see, each job's log. (test_vectorized_sweeps.py
runs the launcher in processes; in-process, mutmut can credit these tests.)"""

import json
import logging
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from helpers import data_overrides, owned_by_another_process
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback

from aeff.cli import app
from hydra_plugins.aeff_launcher.vectorized_launcher import VectorizedLauncherConf

LRS = ["0.001", "0.002", "0.003", "0.004", "-1"]  # as the sweeper writes them
RECORDER = f"+hydra.callbacks.record._target_={__name__}.Recorder"


class Recorder(Callback):
    """What Hydra's per-job callbacks are told, in the order they are told it, and what
    the launcher returns."""

    calls: ClassVar[list[tuple[str, int]]] = []
    returns: ClassVar[dict[int, JobReturn]] = {}
    launched: ClassVar[list[list[JobReturn]]] = []  # what each launch returned
    task_functions: ClassVar[set] = set()

    def on_job_start(self, config, task_function, **kwargs) -> None:
        Recorder.calls.append(("start", config.hydra.job.num))
        Recorder.task_functions.add(task_function)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        Recorder.calls.append(("end", config.hydra.job.num))
        Recorder.returns[config.hydra.job.num] = job_return


def launcher_hydra_runs() -> type:
    """The launcher class Hydra will instantiate, after its plugin scan. The scan runs once
    a process, at the first `Plugins.instance()`, and executes again every plugin module it
    can list on `sys.path` (the repo root is there under `python -m pytest`, or as the cwd),
    making a new `VectorizedLauncher`: the class this module imported may not be Hydra's,
    and patching it would patch nothing."""
    app.register()
    return Plugins.instance().class_name_to_class[VectorizedLauncherConf._target_]


@pytest.fixture
def sweep(monkeypatch, tmp_path, mnist_data_dir):
    """`python -m aeff -m hydra/launcher=vectorized ARGS` in `tmp_path`, in this process;
    returns its exit status. The sweep dir is `tmp_path/sweep`."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.chdir(tmp_path)
    Recorder.calls, Recorder.returns, Recorder.launched = [], {}, []
    Recorder.task_functions = set()
    launcher = launcher_hydra_runs()
    launch = launcher.launch

    def recorded_launch(self, job_overrides, initial_job_idx):
        Recorder.launched.append(launch(self, job_overrides, initial_job_idx))
        return Recorder.launched[-1]

    monkeypatch.setattr(launcher, "launch", recorded_launch)

    def run(*args: str) -> int:
        typed = ["-m", "hydra/launcher=vectorized", "hydra.sweep.dir=sweep", RECORDER, *args]
        monkeypatch.setattr(sys, "argv", ["aeff", *typed, *data_overrides(mnist_data_dir)])
        try:
            app.main()
            return 0
        except SystemExit as exit:
            return exit.code
        finally:
            GlobalHydra.instance().clear()

    yield run
    for handler in set(root.handlers) - set(handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def metadata(run_dir: Path) -> dict:
    return json.loads((run_dir / "metadata.json").read_text())


def log_of(job_dir: Path) -> list[str]:
    return (job_dir / "aeff.log").read_text().splitlines()


@pytest.mark.slow  # trains whole trials; the fast tier keeps the rules' own tests
def test_each_job_of_a_group_is_a_hydra_job_with_its_own_log(sweep, tmp_path):
    """Jobs 0-2 form a group, in which job 2's run dir is held by another process; job 3
    runs alone (the group's limit), job 4 (a bad lr) too. Hydra's callbacks and JobReturns
    tell each job's own story, as the basic launcher would."""
    with owned_by_another_process(tmp_path / "sweep" / "2"):
        status = sweep(
            f"hparams.lr={','.join(LRS)}",
            "max_steps=2",
            "eval_every_steps=2",
            "hydra.launcher.trials_per_program=3",
        )
    assert status == 1  # a failed trial fails the sweep
    assert Recorder.calls == [
        ("start", 0), ("start", 1), ("start", 2), ("end", 0), ("end", 1), ("end", 2),
        ("start", 3), ("end", 3), ("start", 4), ("end", 4),
    ]  # fmt: skip
    outcomes = {}
    for job, job_return in Recorder.returns.items():
        value = job_return._return_value  # a result's dict, or what ended the job
        failed = isinstance(value, BaseException)
        outcomes[job] = (
            job_return.status.name,
            type(value).__name__ if failed else value["status"],
        )
        assert job_return.hydra_cfg.hydra.job.num == job and "hydra" not in job_return.cfg
        assert job_return.overrides[0] == f"hparams.lr={LRS[job]}"
        assert job_return.working_dir == str(tmp_path)
    assert outcomes == {
        0: ("COMPLETED", "completed"),
        1: ("COMPLETED", "completed"),
        2: ("FAILED", "RunDirBusy"),
        3: ("COMPLETED", "completed"),
        4: ("FAILED", "ConfigError"),
    }
    (task_function,) = Recorder.task_functions  # the app's job function, grouped or not
    assert task_function.aeff_trial_job
    (launched,) = Recorder.launched  # a JobReturn a job, in the jobs' order
    assert [id(r) for r in launched] == [id(Recorder.returns[job]) for job in range(5)]
    # one task name, grouped or not: Hydra's, after the module of `hydra.main`
    assert {r.task_name for r in Recorder.returns.values()} == {"app"}
    groups = {job: metadata(tmp_path / "sweep" / str(job)).get("group.id") for job in (0, 1, 3)}
    assert groups == {0: "0-2", 1: "0-2", 3: None}
    for job in (0, 1):
        log = log_of(tmp_path / "sweep" / str(job))
        assert log[0].endswith("] - 3 trials in one program: jobs 0, 1, 2")
        named = [line.split(" - ", 1)[1] for line in log if " - job " in line]
        assert named and all(line.startswith(f"job {job}: ") for line in named), log
        assert not any(f"job {job}: job" in line for line in named)
        assert not any("Records of this trial" in line for line in log)  # job 3's line
    assert not any(" - job " in line for line in log_of(tmp_path / "sweep" / "3"))
    # Hydra's logging as before the launch (`hydra_logging`: one console handler), so the
    # sweeper's last lines are printed once. (Not read with capsys: Hydra's dictConfig closes
    # every handler; absl's, made while pytest's capture was sys.stderr, would close it.)
    assert [type(h) for h in logging.getLogger().handlers] == [logging.StreamHandler]
