"""aeff's sweeper, in-process: which jobs, with which values, in which sweep dir; and whole
sweeps with a launcher that writes records by hand: batches, the plan, the
report, bad input, an interrupted or failed sweep and the command that finishes it."""

import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from helpers import owned_by_another_process
from helpers.sweeper import sweeper_on
from hydra.core.plugins import Plugins
from omegaconf import OmegaConf, open_dict

from aeff import context, errors, hydra_job
from aeff.cli.app import with_user_files
from aeff.errors import ConfigError, RunDirBusy, SweepFailed, TrialInterrupted
from aeff.records import sweep_dir as sweep_record
from hydra_plugins.aeff_sweeper.aeff_sweeper import AeffSweeper

LOGGER = "hydra_plugins.aeff_sweeper.aeff_sweeper"


class Launcher:
    """Records each launch and writes each job's record: status and time to target by lr."""

    def __init__(
        self,
        sweep_dir: Path,
        interrupt_at: int | None = None,
        fail_at: int | None = None,
        fail_at_silently: int | None = None,
    ) -> None:
        self.sweep_dir, self.interrupt_at, self.launches = sweep_dir, interrupt_at, []
        self.fail_at, self.fail_at_silently = fail_at, fail_at_silently

    def launch(self, job_overrides, initial_job_idx):
        self.launches.append((initial_job_idx, [list(job) for job in job_overrides]))
        returns = []
        for index, job in enumerate(job_overrides, start=initial_job_idx):
            if index == self.interrupt_at:
                raise TrialInterrupted(signal.SIGINT)
            if index == self.fail_at:  # as joblib's, when the kernel killed a worker
                raise RuntimeError("A worker process was unexpectedly terminated.\nDetails.")
            if index == self.fail_at_silently:
                raise RuntimeError()
            lr = float(dict(o.split("=", 1) for o in job)["hparams.lr"])
            run_dir = self.sweep_dir / str(index)
            run_dir.mkdir(parents=True)
            status = "failed" if lr > 0.25 else "completed"
            record = {
                "status": status,
                "global_step": 10,
                "workload.target_metric": "validation.accuracy",
            }
            (run_dir / "metadata.json").write_text(json.dumps(record))
            (run_dir / "metrics.csv").write_text(
                "global_step,accumulated_submission_time,goal_reached,validation.accuracy\n"
                f"10,{lr * 10},True,0.99\n"
            )
            returns.append(("returned", index))
        return returns


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


@pytest.fixture
def sweeper(tmp_path):
    """An AeffSweeper set up on the composed config, sweeping into `sweep_dir` (tmp_path),
    with a `Launcher` that writes records by hand."""

    def make(
        *overrides: str, sweep_dir: Path | None = None, max_batch_size=None, **launcher
    ) -> AeffSweeper:
        sweep_dir = tmp_path if sweep_dir is None else sweep_dir
        return sweeper_on(
            sweep_dir, list(overrides), Launcher(sweep_dir, **launcher), max_batch_size
        )

    return make


WITH_MOMENTUM = """
import dataclasses
from aeff.submissions.adam import Adam, AdamHParams

@dataclasses.dataclass(frozen=True)
class MomentumHParams(AdamHParams):
    momentum: float = 0.5

@dataclasses.dataclass(frozen=True)
class MomentumAdam(Adam):
    hparams_schema = MomentumHParams
"""


def values(job: list[str], key: str) -> list[float]:
    return [float(o.split("=", 1)[1]) for o in job if o.split("=", 1)[0] == key]


def test_a_key_on_the_command_line_is_pinned_not_sampled(sweeper):
    space = ["search_space=mnist_adam", "search.num_trials=4"]
    jobs = sweeper(*space).job_overrides(["hparams.epsilon=1e-8"])
    assert len(jobs) == 4
    for job in jobs:
        assert values(job, "hparams.epsilon") == [1e-8]  # once, the pinned value
        assert len(values(job, "hparams.lr")) == 1
    assert len({values(job, "hparams.lr")[0] for job in jobs}) == 4


def test_every_grid_point_gets_every_sampled_point(sweeper):
    space = ["search_space=mnist_adam", "search.num_trials=3"]
    jobs = sweeper(*space).job_overrides(["hparams.epsilon=1e-8,1e-5"])
    assert [values(job, "hparams.epsilon")[0] for job in jobs] == [1e-8] * 3 + [1e-5] * 3
    first, second = ([values(job, "hparams.lr")[0] for job in jobs[i : i + 3]] for i in (0, 3))
    assert first == second and len(set(first)) == 3


def test_a_sweep_over_a_config_groups_options_lists_them(sweeper):
    """Hydra's `glob()` reads the group's options from the config loader."""
    assert sweeper().job_overrides(["submission=glob(*)"]) == [
        ["submission=adam"],
        ["submission=nesterov"],
    ]


@pytest.mark.slow  # test_search.py pins the sampling itself
def test_both_sampling_methods_are_used_and_reproducible(sweeper):
    def lrs(method: str) -> list[float]:
        config = ["search_space=mnist_adam", "search.num_trials=4", f"search.method={method}"]
        return [values(job, "hparams.lr")[0] for job in sweeper(*config).job_overrides([])]

    assert lrs("halton") == lrs("halton")
    assert lrs("sobol") == lrs("sobol")
    assert lrs("halton") != lrs("sobol")


def test_a_sweep_dir_with_a_sweep_needs_resume(sweeper, tmp_path):
    jobs = [["hparams.lr=0.001"], ["hparams.lr=0.002"]]
    assert sweeper().jobs_to_run(tmp_path, jobs) == [0, 1]
    assert sweep_record.read_plan(tmp_path) == jobs
    with pytest.raises(ConfigError) as refused:
        sweeper().jobs_to_run(tmp_path, jobs)
    assert str(refused.value) == (  # both ways out
        f"{tmp_path} holds a sweep already: add resume=true to finish it, or "
        "choose another hydra.sweep.dir."
    )


def test_resume_runs_the_unfinished_trials_of_the_same_plan_only(sweeper, tmp_path):
    """Job 3 completed, but its rows were cut since: its record is damaged."""
    jobs = [[f"hparams.lr=0.00{i}"] for i in range(1, 5)]
    sweeper().jobs_to_run(tmp_path, jobs)
    for job, (status, last_row) in enumerate(
        [("completed", 10), ("failed", 5), ("diverged", 10), ("completed", 5)]
    ):
        (tmp_path / str(job)).mkdir()
        record = {"status": status, "global_step": 10}
        (tmp_path / str(job) / "metadata.json").write_text(json.dumps(record))
        (tmp_path / str(job) / "metrics.csv").write_text(f"global_step\n5\n{last_row}\n")
    resume = [[*job, "resume=true", f"hydra.sweep.dir={tmp_path}"] for job in jobs]
    assert sweeper("resume=true").jobs_to_run(tmp_path, resume) == [1, 3]
    changed = [jobs[0], ["hparams.lr=0.004"], *jobs[2:]]
    with pytest.raises(ConfigError, match=r"trial 1: hparams.lr=0.002 \(now 0.004\)"):
        sweeper("resume=true").jobs_to_run(tmp_path, changed)


@pytest.mark.parametrize("key", ["submission_path", "workload_path", "tuning_search_space"])
def test_resume_with_an_edited_user_file_is_refused_as_a_whole(
    sweeper, tmp_path, next_process, key
):
    """Its unstarted trials would run the edit beside the finished trials of the planned
    file: nothing is resumed, nothing written."""
    source = tmp_path / "files" / "mine.py"
    source.parent.mkdir()
    source.write_text("x = 1\n")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    jobs = [[f"{key}={source}", f"hparams.lr=0.00{i}"] for i in (1, 2)]
    sweeper().jobs_to_run(sweep_dir, jobs)
    (sweep_dir / "0").mkdir()
    (sweep_dir / "0" / "metadata.json").write_text(json.dumps({"status": "interrupted"}))
    before = {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()}
    old = hashlib.sha256(source.read_bytes()).hexdigest()
    source.write_text("x = 2\n")
    new = hashlib.sha256(source.read_bytes()).hexdigest()
    next_process()
    with pytest.raises(ConfigError) as refused:
        sweeper("resume=true").jobs_to_run(sweep_dir, jobs)
    assert str(refused.value) == (
        f"resume=true finishes only the same sweep, but {source} changed since {sweep_dir} "
        f"planned it (sha256 {old[:12]}, now {new[:12]}): restore the planned file, or start "
        "the sweep again in another hydra.sweep.dir."
    )
    assert {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()} == before
    source.write_text("x = 1\n")  # restored: the sweep resumes
    next_process()
    assert sweeper("resume=true").jobs_to_run(sweep_dir, jobs) == [0, 1]


def test_resume_naming_another_file_than_the_planned_one_is_refused(sweeper, tmp_path):
    """The same relative path, typed in another folder, is another file."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mine.py").write_text("x = 1\n")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    sweeper().jobs_to_run(sweep_dir, [[f"submission_path={tmp_path / 'a' / 'mine.py'}"]])
    with pytest.raises(ConfigError) as refused:
        sweeper("resume=true").jobs_to_run(sweep_dir, [[f"submission_path={tmp_path}/b/mine.py"]])
    assert str(refused.value) == (
        f"resume=true finishes only the same sweep, but {sweep_dir} planned it with "
        f"{tmp_path / 'a' / 'mine.py'}, which this command does not name: resume with the "
        "sweep's own command line, from the folder it started in."
    )


def test_resume_of_a_plan_without_the_files_sha256_goes_on_with_a_warning(
    sweeper, tmp_path, caplog
):
    """A plan an older aeff wrote records no sha256: a resume cannot check the files."""
    jobs = [[f"submission_path={tmp_path / 'mine.py'}"]]
    (tmp_path / "mine.py").write_text("x = 1\n")
    (tmp_path / "sweep_plan.json").write_text(json.dumps({"num_trials": 1, "jobs": jobs}))
    assert sweeper("resume=true").jobs_to_run(tmp_path, jobs) == [0]
    assert "records no sha256 of the user's files" in caplog.text


def test_resume_with_a_changed_added_or_removed_label_is_refused_naming_it(sweeper, tmp_path):
    """Each job's labels are in its overrides, so in the plan: they stay as planned."""
    jobs = [["+meta.study=A", f"hparams.lr=0.00{i}"] for i in (1, 2)]
    sweeper().jobs_to_run(tmp_path, jobs)
    for labels, named in [
        (["+meta.study=B"], "meta.study=A (now B)"),
        (["+meta.study=A", "+meta.new=1"], "meta.new=None (now 1)"),
        ([], "meta.study=A (now None)"),
    ]:
        changed = [[*labels, job[-1]] for job in jobs]
        with pytest.raises(ConfigError, match=rf"planned for trial 0: {re.escape(named)}:"):
            sweeper("resume=true").jobs_to_run(tmp_path, changed)


def test_resume_is_refused_while_a_trial_of_the_sweep_runs(sweeper, tmp_path):
    jobs = [["hparams.lr=0.001"]]
    sweeper().jobs_to_run(tmp_path, jobs)
    (tmp_path / "0").mkdir()
    with (
        owned_by_another_process(tmp_path / "0") as holder,
        pytest.raises(RunDirBusy, match=f"process {holder.pid}"),
    ):
        sweeper("resume=true").jobs_to_run(tmp_path, jobs)


def test_a_grid_value_that_does_not_compose_is_refused_before_any_trial(sweeper):
    with pytest.raises(ConfigError, match=r"batch_size=abc does not compose"):
        sweeper().job_overrides(["max_steps=8", "batch_size=512,abc,256"])
    with pytest.raises(ConfigError, match=r"hparam\.lr=0\.001 does not compose"):
        sweeper().job_overrides(["hparam.lr=1e-3,2e-3"])


def test_a_grid_over_the_hyperparameter_of_a_users_submission_composes(sweeper, tmp_path):
    """Each value is composed with the job's other overrides, which choose the submission."""
    (tmp_path / "mine.py").write_text(WITH_MOMENTUM)
    typed = with_user_files([f"submission_path={tmp_path / 'mine.py'}"])  # as `main` does
    jobs = sweeper(*typed).job_overrides([*typed, "hparams.momentum=0.9,0.95"])
    assert [values(job, "hparams.momentum") for job in jobs] == [[0.9], [0.95]]


def test_a_search_space_file_in_algoperfs_format_is_sampled_with_aeffs_names(sweeper, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(
        json.dumps(  # AlgoPerf's MNIST development space, as it is
            {
                "learning_rate": {"min": 1e-4, "max": 1e-2, "scaling": "log"},
                "one_minus_beta_1": {"min": 0.9, "max": 0.999, "scaling": "log"},
                "epsilon": {"feasible_points": [1e-8, 1e-5, 1e-3]},
            }
        )
    )
    jobs = sweeper(f"tuning_search_space={space}", "search.num_trials=4").job_overrides([])
    assert len(jobs) == 4
    for job in jobs:
        assert 1e-4 <= values(job, "hparams.lr")[0] <= 1e-2
        assert 0.9 <= values(job, "hparams.one_minus_beta_1")[0] <= 0.999
        assert values(job, "hparams.epsilon")[0] in (1e-8, 1e-5, 1e-3)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"momentum": {"min": 0.1, "max": 0.9}}, "'hparams.momentum': Adam's hyperparameters are"),
        ({"learning_rate": {"min": 1e-2, "max": 1e-4}}, "min <= max"),
        ({"learning_rate": {"min": 1e-2, "max": 1e-1, "scaling": "cubic"}}, "linear or log"),
        (  # a key the config lacks, not only under hparams: refused before any trial
            {"workload.hiden_width": {"min": 64, "max": 128, "type": "int"}},
            r"workload.hiden_width=\d+ does not compose: Could not override",
        ),
        ({"meta.note": {"feasible_points": ["a", "b"]}}, r"meta.note='[ab]' does not compose"),
        (
            {"learning_rate": {"min": 1e-3, "max": 1e-2}, "lr": {"min": 1e-4, "max": 1e-3}},
            r"space.yaml names hparams.lr twice \(as lr\)",
        ),
        (  # found at planning, not when the trial that draws [1, 2] starts
            {"epsilon": {"feasible_points": [1e-8, "abc", None, [1, 2]]}},
            r"search_space.hparams.epsilon: the point \[1, 2\] is not allowed",
        ),
        (
            {"epsilon": {"feasible_points": [1e-8, "abc", None]}},
            r"search_space.hparams.epsilon: the points mix numbers \(1e-08\) and strings",
        ),
        (
            {"learning_rate": {"min": "1e-5", "max": 1e-2}},
            r"search_space.hparams.lr: min and max must be numbers, without quotes: min='1e-5'",
        ),
    ],
)
def test_a_search_space_file_with_a_bad_name_or_range_is_refused(sweeper, tmp_path, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(json.dumps(space))  # JSON is YAML too
    with pytest.raises(ConfigError, match=message):
        sweeper(f"tuning_search_space={path}", "search.num_trials=2").job_overrides([])


def test_setup_takes_hydras_launcher(monkeypatch):
    calls = []

    def instantiate_launcher(self, **kwargs):
        calls.append(kwargs)
        return "the launcher"

    monkeypatch.setattr(Plugins, "instantiate_launcher", instantiate_launcher)
    sweeper = AeffSweeper(max_batch_size=3)
    sweeper.setup(hydra_context="context", task_function="task", config="config")
    assert (sweeper.config, sweeper.hydra_context, sweeper.launcher) == (
        "config",
        "context",
        "the launcher",
    )
    assert calls == [{"hydra_context": "context", "task_function": "task", "config": "config"}]
    assert sweeper.max_batch_size == 3


def test_a_launcher_refusing_its_settings_is_one_line_and_exit_2(monkeypatch, caplog):
    def instantiate_launcher(self, **kwargs):
        try:  # as Hydra's instantiate wraps what the launcher raised
            raise kwargs["config"]
        except Exception as error:
            raise RuntimeError("Error in call to target ...") from error

    monkeypatch.setattr(Plugins, "instantiate_launcher", instantiate_launcher)
    refused = ConfigError("hydra.launcher.trials_per_program=0: use 1 or more.")
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed) as stopped:
        AeffSweeper().setup(hydra_context="context", task_function="task", config=refused)
    assert errors.exit_status(stopped.value) == 2 and messages(caplog) == [str(refused)]
    with pytest.raises(RuntimeError, match="Error in call"):  # anything else is Hydra's to report
        AeffSweeper().setup(hydra_context="context", task_function="task", config=KeyError())


def test_a_sweep_launches_its_plan_in_batches_and_reports(sweeper, tmp_path, capsys, caplog):
    sweep_dir = tmp_path / "new" / "sweep"  # made, parents and all
    made = sweeper(sweep_dir=sweep_dir, max_batch_size=2)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        returns, failed_trials = made.run(["hparams.lr=0.1,0.2,0.3"])
    jobs = [[f"hparams.lr={lr}"] for lr in ("0.1", "0.2", "0.3")]
    assert made.launcher.launches == [(0, jobs[:2]), (2, jobs[2:])]
    assert returns == [("returned", 0), ("returned", 1), ("returned", 2)]
    assert sweep_record.read_plan(sweep_dir) == jobs
    saved = OmegaConf.load(sweep_dir / "multirun.yaml")
    assert saved.hydra.sweep.dir == str(sweep_dir) and saved.workload.split_seed == 0
    report = json.loads((sweep_dir / sweep_record.REPORT).read_text())
    assert report["score"] == 1.0 and report["num_trials"] == 3
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == (
        f"3 trials, 1 failed, best time to target 1 s. Report: "
        f"{sweep_dir / 'summary.csv'}, {sweep_dir / 'sweep.json'}, {sweep_dir / 'report.html'}"
    )
    assert "<table class='trials'>" in (sweep_dir / "report.html").read_text()
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    failed = str(sweep_dir / "2")
    assert messages == [
        ("INFO", f"Sweep of 3 trials in {sweep_dir}: 3 to run"),
        (
            "ERROR",
            f"1 of 3 planned trials failed or did not run: {failed}. Rerun them with resume=true "
            f"hydra.sweep.dir={sweep_dir}",
        ),
    ]
    assert failed_trials == [failed]


def test_a_sweep_with_a_failed_trial_ends_hydras_callbacks_then_fails_with_exit_1(
    sweeper, tmp_path, monkeypatch
):
    """The app reads the failed trials from what the sweep raises; Hydra's callbacks (a
    user's `on_multirun_end`) end the sweep first, as they end one that succeeded."""
    ended = []
    for name, grid in (("ok", "0.1"), ("failed", "0.1,0.3")):
        made = sweeper(sweep_dir=tmp_path / name)
        monkeypatch.setattr(
            made.hydra_context.callbacks, "on_multirun_end", lambda **kw: ended.append(kw)
        )
        if name == "ok":
            assert made.sweep([f"hparams.lr={grid}"]) == [("returned", 0)] and ended == []
            continue
        with pytest.raises(SweepFailed) as stopped:
            made.sweep([f"hparams.lr={grid}"])
    assert errors.exit_status(stopped.value) == 1
    assert stopped.value.failed == [str(tmp_path / "failed" / "1")]
    assert ended == [{"config": made.config, "config_name": "config"}]


def test_a_resumed_sweep_runs_the_rest_and_clears_the_failures(sweeper, tmp_path, caplog):
    assert sweeper().run(["hparams.lr=0.1,0.3,0.2"])[1] == [str(tmp_path / "1")]
    (tmp_path / "1" / "metadata.json").unlink()  # as if it never ran
    (tmp_path / "1" / "metrics.csv").unlink()
    (tmp_path / "1").rmdir()
    again = sweeper("resume=true")
    again.launcher.launch = lambda jobs, index: [("again", index, jobs)]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        returns, failed_trials = again.run(["hparams.lr=0.1,0.3,0.2"])
    assert returns == [("again", 1, [["hparams.lr=0.3"]])]
    assert messages(caplog)[-2:] == [
        f"Sweep of 3 trials in {tmp_path}: 1 to run",
        f"1 of 3 planned trials failed or did not run: {tmp_path / '1'}. "
        f"Rerun them with resume=true hydra.sweep.dir={tmp_path}",
    ]
    assert failed_trials == [str(tmp_path / "1")]  # not started: not a result
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "metadata.json").write_text(
        json.dumps({"status": "completed", "global_step": 10})
    )
    (tmp_path / "1" / "metrics.csv").write_text("global_step\n10\n")
    assert sweeper("resume=true").run(["hparams.lr=0.1,0.3,0.2"])[1] == []


def test_a_job_dir_holding_another_runs_record_stops_a_resume(sweeper, tmp_path, caplog):
    """A run aimed at a job's dir by hand (`hydra.run.dir=<sweep dir>/1`) is not that job:
    the resume names it before running anything."""
    sweeper().run(["hparams.lr=0.1,0.3"])
    command = "python -m aeff hydra.run.dir=sweep/1 hparams.lr=5.0"
    for sweep_dir, job in (("", 0), (str(tmp_path), 0)):  # no sweep's; another job's
        record = {"status": "completed", "sweep_dir": sweep_dir, "hydra.job.num": job}
        (tmp_path / "1" / "metadata.json").write_text(json.dumps({**record, "command": command}))
        again = sweeper("resume=true")
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed) as stopped:
            again.sweep(["hparams.lr=0.1,0.3"])
        assert errors.exit_status(stopped.value) == 2 and again.launcher.launches == []
        assert messages(caplog) == [
            f"{tmp_path / '1' / 'metadata.json'} is the record of another run ({command}), "
            f"not of job 1 of this sweep: move {tmp_path / '1'} aside, then resume the sweep."
        ]


def test_a_resume_with_an_edited_space_exits_2_naming_it_before_any_trial(
    sweeper, tmp_path, caplog, next_process
):
    """The edit changes the sampled values too: the file is named, not the values."""
    space, sweep_dir = tmp_path / "space.json", tmp_path / "sweep"
    space.write_text('{"learning_rate": {"min": 0.01, "max": 0.5, "scaling": "log"}}')
    overrides = [f"tuning_search_space={space}", "search.num_trials=3"]
    with pytest.raises(TrialInterrupted):  # stopped after its first trial
        sweeper(*overrides, sweep_dir=sweep_dir, interrupt_at=1).sweep(overrides[:1])
    before = {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()}
    space.write_text('{"learning_rate": {"min": 0.001, "max": 0.5, "scaling": "log"}}')
    next_process()
    again = sweeper("resume=true", *overrides, sweep_dir=sweep_dir)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed) as stopped:
        again.sweep(overrides[:1])
    assert errors.exit_status(stopped.value) == 2 and again.launcher.launches == []
    (message,) = messages(caplog)
    assert message.startswith(f"resume=true finishes only the same sweep, but {space} changed")
    assert {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "setting, grid, message",
    [
        (
            "search.num_trials=2",
            "hparams.lr=0.1",
            "search.num_trials is set but nothing is sampled: add search_space=<name> "
            "(see conf/search_space/) or a key=interval(low,high) sweep.",
        ),
        (
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
            "hparams.lr=0.1,0.2",
            "hydra.sweep.subdir=${hydra.job.override_dirname}: aeff keeps each trial in "
            "<sweep dir>/<job number>, which its reports and resume rely on.",
        ),
        (
            "devices.per_trial=2 devices.ids=[0]",  # every trial would fail alike
            "hparams.lr=0.1,0.2",
            "devices.per_trial=2 but only 1 GPUs ([0]) are available: lower "
            "devices.per_trial or list more in devices.ids.",
        ),
    ],
)
def test_bad_sweep_input_exits_before_anything_is_written(
    sweeper, tmp_path, caplog, setting, grid, message
):
    sweep_dir = tmp_path / "sweep"
    made = sweeper(*setting.split(), sweep_dir=sweep_dir)
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed) as stopped:
        made.sweep([grid])
    assert errors.exit_status(stopped.value) == 2
    assert messages(caplog) == [message]
    assert not sweep_dir.exists() and made.launcher.launches == []


def test_a_sweep_dir_that_cannot_be_made_is_one_line_and_exit_2(sweeper, tmp_path, caplog):
    (tmp_path / "file").write_text("not a folder")
    made = sweeper(sweep_dir=tmp_path / "file" / "sweep")
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed) as stopped:
        made.sweep(["hparams.lr=0.1"])
    assert errors.exit_status(stopped.value) == 2 and made.launcher.launches == []
    (said,) = messages(caplog)
    assert said.startswith(f"cannot write {tmp_path / 'file' / 'sweep'}: ") and "\n" not in said


def test_the_sweeps_config_is_saved_with_credentials_redacted(sweeper, tmp_path):
    url = "+meta.url='https://user:token@host/x?sig=abc'"
    sweeper(url).sweep(["hparams.lr=0.1"])
    saved = OmegaConf.load(tmp_path / sweep_record.SWEEP_CONFIG)
    assert saved.meta.url == "https://***@host/x?sig=***"
    assert "token" not in (tmp_path / sweep_record.SWEEP_CONFIG).read_text()


@pytest.mark.parametrize(
    "launcher, cpus, shared",
    [
        ({"n_jobs": 4}, 2, "3 trials at once share 2 CPU cores"),  # 3 jobs: 3 at once
        ({"n_jobs": -1}, 2, None),  # joblib's one per core
        ({"n_jobs": 2}, 2, None),
        (
            {"_target_": "x.LocalLauncher", "array_parallelism": 256},
            2,
            "3 trials at once share 2 CPU cores",
        ),
    ],
)
def test_trials_that_share_the_cores_are_said_and_mark_the_score(
    sweeper, tmp_path, monkeypatch, caplog, launcher, cpus, shared
):
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    made = sweeper()
    with open_dict(made.config):
        made.config.hydra.launcher = launcher
    with caplog.at_level(logging.WARNING, logger="aeff.sweeps.settings"):
        made.sweep(["hparams.lr=0.1,0.2,0.25"])
    said = [r.getMessage() for r in caplog.records if r.name == "aeff.sweeps.settings"]
    warned = [m for m in said if "measured under sharing" in m]
    assert [m.split(":")[0] for m in warned] == ([shared] if shared else [])
    assert (
        json.loads((tmp_path / sweep_record.REPORT).read_text())["measured_under_sharing"] == shared
    )
    with open_dict(made.config):  # a resume one at a time: its earlier trials were shared
        made.config.hydra.launcher, made.config.resume = {}, True
    made.sweep(["hparams.lr=0.1,0.2,0.25"])
    assert (
        json.loads((tmp_path / sweep_record.REPORT).read_text())["measured_under_sharing"] == shared
    )


def test_a_second_sweep_into_a_sweep_dir_exits_2(sweeper, tmp_path, caplog):
    sweeper().sweep(["hparams.lr=0.1"])
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed) as stopped:
        sweeper().sweep(["hparams.lr=0.1"])
    assert errors.exit_status(stopped.value) == 2
    assert messages(caplog)[-1].startswith(f"{tmp_path} holds a sweep already")


def test_an_interrupted_sweep_reports_and_says_how_to_finish(
    sweeper, tmp_path, monkeypatch, caplog
):
    context.begin()  # a new command: typed as sys.argv says, not an earlier test's
    argv = ["aeff", "-m", "hparams.lr=0.1,0.2", "+url=https://user:token@host/x"]
    monkeypatch.setattr(sys, "argv", argv)
    made = sweeper(interrupt_at=1)
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(TrialInterrupted):
        made.sweep(["hparams.lr=0.1,0.2"])
    report = json.loads((tmp_path / sweep_record.REPORT).read_text())
    assert report["num_trials"] == 1 and report["num_planned"] == 2
    assert messages(caplog)[-1:] == [
        "Sweep stopped by SIGINT. Finish it with: aeff -m hparams.lr=0.1,0.2 "
        f"+url=https://***@host/x resume=true hydra.sweep.dir={tmp_path}"
    ]


def test_a_failed_launcher_ends_the_sweep_with_a_report_and_one_line(
    sweeper, tmp_path, monkeypatch, caplog
):
    context.begin()  # a new command: typed as sys.argv says, not an earlier test's
    argv = ["aeff", "-m", "hparams.lr=0.1,0.2,0.3", "+url=https://user:token@host/x"]
    monkeypatch.setattr(sys, "argv", argv)
    made = sweeper(max_batch_size=1, fail_at=1)
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed) as stopped:
        made.sweep(["hparams.lr=0.1,0.2,0.3"])
    assert errors.exit_status(stopped.value) == 1
    assert len(made.launcher.launches) == 2  # none after it
    report = json.loads((tmp_path / sweep_record.REPORT).read_text())
    assert report["num_trials"] == 1 and report["num_planned"] == 3
    assert stopped.value.failed == [str(tmp_path / "1"), str(tmp_path / "2")]
    assert messages(caplog)[-1] == (
        "The launcher failed: RuntimeError: A worker process was unexpectedly terminated. "
        "Finish it with: aeff -m hparams.lr=0.1,0.2,0.3 +url=https://***@host/x "
        f"resume=true hydra.sweep.dir={tmp_path}"
    )
    # Resumed as it says, and failing again without a word of its own
    typed = [*argv, "resume=true", f"hydra.sweep.dir={tmp_path}"]
    monkeypatch.setattr(sys, "argv", typed)
    again = sweeper("resume=true", max_batch_size=1, fail_at_silently=1)
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed):
        again.sweep(["hparams.lr=0.1,0.2,0.3"])
    assert messages(caplog)[-1] == (  # the resume's own command, not it twice
        "The launcher failed: RuntimeError. Finish it with: aeff -m "
        f"hparams.lr=0.1,0.2,0.3 +url=https://***@host/x resume=true hydra.sweep.dir={tmp_path}"
    )


@pytest.mark.parametrize("interrupted", [False, True])
def test_submitits_job_pickles_are_removed_once_every_job_returned(sweeper, tmp_path, interrupted):
    job = tmp_path / ".submitit" / "123"
    job.mkdir(parents=True)
    for name in ("123_submitted.pkl", "123_0_result.pkl", "123_0_log.out"):
        (job / name).write_text("the job's overrides, as typed")
    launcher = "hydra/launcher=submitit_local"  # its folder: ${hydra.sweep.dir}/.submitit/%j
    made = sweeper(launcher, interrupt_at=1 if interrupted else None)
    with contextlib.suppress(TrialInterrupted):
        made.sweep(["hparams.lr=0.1,0.2"])
    left = sorted(p.name for p in job.iterdir())
    assert left == (
        ["123_0_log.out", "123_0_result.pkl", "123_submitted.pkl"]
        if interrupted
        else ["123_0_log.out"]
    )  # SLURM may still requeue a stopped sweep's jobs


def test_a_submitit_folder_outside_the_sweep_dir_is_left_alone(tmp_path):
    shared = tmp_path / "scratch" / "submitit"  # other sweeps' jobs may be running from it
    (shared / "7").mkdir(parents=True)
    (shared / "7" / "7_submitted.pkl").write_text("another sweep's job")
    sweep_record.remove_job_pickles(tmp_path / "sweep", f"{shared}/%j")
    assert (shared / "7" / "7_submitted.pkl").exists()


def test_the_report_prints_the_table_and_names_every_failed_trial(
    sweeper, tmp_path, capsys, caplog
):
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        sweeper().run(["hparams.lr=0.3,0.1,0.4"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:2] == ["run_dir", "status"]
    assert [line.split()[:2] for line in printed[1:4]] == [
        ["0", "failed"],
        ["1", "completed"],
        ["2", "failed"],
    ]
    failed = f"{tmp_path / '0'}, {tmp_path / '2'}"
    assert messages(caplog)[-1] == (
        f"2 of 3 planned trials failed or did not run: {failed}. "
        f"Rerun them with resume=true hydra.sweep.dir={tmp_path}"
    )


def test_a_pinned_key_may_be_spelled_with_a_plus(sweeper, tmp_path):
    space = tmp_path / "space.json"  # a label the config lacks, added with +, not sampled
    space.write_text(
        '{"learning_rate": {"min": 1e-3, "max": 1e-2}, "meta.arm": {"feasible_points": [1, 2]}}'
    )
    settings = [f"tuning_search_space={space}", "search.num_trials=2"]
    jobs = sweeper(*settings, sweep_dir=tmp_path / "sweep").job_overrides(["+meta.arm=3"])
    for job in jobs:
        assert [o for o in job if "arm" in o] == ["+meta.arm=3"]


def test_an_interval_is_sampled_with_the_space_and_pins_its_key(sweeper):
    """`interval()` as Hydra's Optuna sweeper takes it: a float range, log-scaled under
    `tag(log, ...)`; sampled with the space's other ranges, in place of its own."""
    made = sweeper("search_space=mnist_adam", "search.num_trials=64")
    lr, beta = (
        "hparams.lr=tag(log, interval(1e-4, 1e-2))",
        "hparams.one_minus_beta_1=interval(0.05,0.1)",
    )
    jobs = made.job_overrides(["batch_size=256,512", lr, beta])
    assert len(jobs) == 2 * 64
    values = [dict(o.split("=", 1) for o in job) for job in jobs]
    lrs = [float(v["hparams.lr"]) for v in values]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs)
    assert all(0.05 <= float(v["hparams.one_minus_beta_1"]) <= 0.1 for v in values)
    below_1e3 = sum(lr < 1e-3 for lr in lrs)  # log scale: half the points below the middle
    assert 0.4 * len(lrs) <= below_1e3 <= 0.6 * len(lrs)
    assert len({v["hparams.lr"] for v in values}) == 64  # each point once per grid value
    assert {v["hparams.epsilon"] for v in values} == {"1e-08", "1e-05", "0.001"}  # sampled


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["hparams.lr=interval(0.1,0.2)"], "hparams.lr is an interval: set search.num_trials=N."),
        (
            ["hparams.lr=interval(0.2,0.1)", "search.num_trials=2"],
            "hparams.lr=interval(0.2, 0.1): need finite min <= max, got min=0.2, max=0.1.",
        ),
        (
            ["hparams.lr=tag(log, interval(0.0,0.1))", "search.num_trials=2"],
            "hparams.lr=tag(log, interval(0.0, 0.1)): a log range must lie above zero, "
            "got min=0.0.",
        ),
        (
            ["hparams.lr=tag(lgo, interval(0.001,0.1))", "search.num_trials=2"],
            "hparams.lr=tag(lgo, interval(0.001, 0.1)): unknown tag lgo: only log is read "
            "(tag(log, interval(0.001, 0.1)) samples on a log scale).",
        ),
    ],
)
def test_a_bad_interval_is_refused_naming_it(sweeper, overrides, message):
    settings = [o for o in overrides if o.startswith("search.")]
    with pytest.raises(ConfigError) as refused:
        sweeper(*settings).job_overrides([o for o in overrides if o not in settings])
    assert str(refused.value) == message


def test_a_space_without_a_number_of_trials_is_refused(sweeper, tmp_path):
    with pytest.raises(ConfigError) as refused:
        sweeper("search_space=mnist_adam").job_overrides([])
    assert str(refused.value) == "search_space is chosen: set search.num_trials=N."


def test_a_space_may_interpolate_other_keys(sweeper, tmp_path):
    made = sweeper("search.num_trials=4", "search.seed=5")
    with open_dict(made.config):
        made.config.search_space = {
            "hparams": {"lr": {"min": 1, "max": "${search.seed}", "scale": "log"}}
        }
    lrs = [float(job[0].split("=")[1]) for job in made.job_overrides([])]
    assert all(1 <= lr <= 5 for lr in lrs) and max(lrs) > 2


def test_resume_into_a_new_sweep_dir_plans_and_runs_every_job(sweeper, tmp_path):
    jobs = [["hparams.lr=0.1"], ["hparams.lr=0.2"]]
    assert sweeper("resume=true").jobs_to_run(tmp_path, jobs) == [0, 1]
    assert sweep_record.read_plan(tmp_path) == jobs


def test_the_sweepers_refusals_say_exactly_what_is_wrong(sweeper, tmp_path):
    space = tmp_path / "space.json"
    space.write_text('{"momentum": {"min": 0.1, "max": 0.9}}')
    both = sweeper(
        "search_space=mnist_adam", f"tuning_search_space={space}", sweep_dir=tmp_path / "a"
    )
    with pytest.raises(ConfigError) as error:
        both.job_overrides([])
    assert str(error.value) == (
        "choose search_space=<name> or tuning_search_space=<file>, not both."
    )
    unknown = sweeper(
        f"tuning_search_space={space}", "search.num_trials=2", sweep_dir=tmp_path / "b"
    )
    with pytest.raises(ConfigError) as error:
        unknown.job_overrides([])
    assert str(error.value) == (
        "search space key 'hparams.momentum': Adam's hyperparameters are "
        "lr, one_minus_beta_1, beta_2, epsilon."
    )
    with pytest.raises(ConfigError) as error:
        sweeper(sweep_dir=tmp_path / "c").job_overrides(["batch_size=512,abc"])
    assert str(error.value) == (
        "batch_size=abc does not compose: Error merging override batch_size=abc; "
        "Value 'abc' of type 'str' could not be converted to Integer"
    )


@pytest.mark.slow  # trains whole trials; the fast tier keeps the rules' own tests
def test_a_large_sweeps_console_report_is_short_and_names_a_few_failures(
    sweeper, tmp_path, capsys, caplog
):
    grid = ",".join(str(0.1 + i / 1000) for i in range(30))
    made = sweeper()
    made.launcher.launch = lambda jobs, index: []  # stopped before any trial ran
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        made.run([f"hparams.lr={grid}"])
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "30 planned trials: 30 not started; no trial reached the target.",
        f"0 trials, 0 failed, best time to target none. Report: "
        f"{tmp_path / 'summary.csv'}, {tmp_path / 'sweep.json'}, {tmp_path / 'report.html'}",
    ]
    named = ", ".join(str(tmp_path / str(i)) for i in range(10))
    assert messages(caplog)[-1] == (
        f"30 of 30 planned trials failed or did not run: {named} and 20 more "
        f"({tmp_path / 'summary.csv'}). Rerun them with resume=true hydra.sweep.dir={tmp_path}"
    )


@pytest.mark.parametrize("quote", ["'", '"', ""])
def test_a_user_file_in_a_folder_with_spaces_is_read_as_hydra_reads_the_path(
    sweeper, tmp_path, quote
):
    """`-m "submission_path='/a b/c.py'"` (or unquoted, which Hydra escapes in each job):
    the file read and hashed is the one Hydra's config holds, not the override's raw text."""
    source = tmp_path / "dir with space" / "mine.py"
    source.parent.mkdir()
    source.write_text("x = 1\n")
    made = sweeper()
    typed = f"submission_path={quote}{source}{quote}"
    (job,) = made.job_overrides([typed])
    assert made.user_files([job]) == {str(source): hashlib.sha256(b"x = 1\n").hexdigest()}
    assert hydra_job.override_value(typed) == str(source)


def test_a_feasible_point_that_looks_like_an_interpolation_stays_the_literal_string(
    sweeper, tmp_path, compose_config
):
    """`"${hparams.lr}"` in a space file is a string among the points, not a reference to
    the trial's learning rate."""
    space = tmp_path / "space.json"
    points = ["${hparams.lr}", "it's ${x}"]
    space.write_text(json.dumps({"workload.activation": {"feasible_points": points}}))
    jobs = sweeper(f"tuning_search_space={space}", "search.num_trials=8").job_overrides([])
    values = {compose_config(*job).workload.activation for job in jobs}
    assert values == set(points)
