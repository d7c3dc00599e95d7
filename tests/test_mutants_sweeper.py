"""The sweeper's whole sweep, in-process with a launcher that writes records by hand: batches,
the plan, the report, bad input, an interrupted sweep's resume command, failed trials."""

import contextlib
import json
import logging
import os
import signal
import sys
import types
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.plugins import Plugins
from omegaconf import OmegaConf, open_dict

from aeff import hydra_job, results
from aeff.app import register
from aeff.errors import ConfigError, TrialInterrupted
from hydra_plugins.aeff_sweeper import aeff_sweeper
from hydra_plugins.aeff_sweeper.aeff_sweeper import AeffSweeper, plan_changes

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
def make(tmp_path):
    register()

    def _make(*overrides: str, sweep_dir: Path, max_batch_size=None, **launcher) -> AeffSweeper:
        with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.sweep.dir = str(sweep_dir)
        made = AeffSweeper(max_batch_size=max_batch_size)
        made.config = cfg
        search_path = create_config_search_path("pkg://aeff.conf")
        made.hydra_context = types.SimpleNamespace(config_loader=ConfigLoaderImpl(search_path))
        made.launcher = Launcher(sweep_dir, **launcher)
        return made

    return _make


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
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SystemExit) as stopped:
        AeffSweeper().setup(hydra_context="context", task_function="task", config=refused)
    assert stopped.value.code == 2 and messages(caplog) == [str(refused)]
    with pytest.raises(RuntimeError, match="Error in call"):  # anything else is Hydra's to report
        AeffSweeper().setup(hydra_context="context", task_function="task", config=KeyError())


def test_batches_are_runs_of_consecutive_jobs_at_most_max_batch_size_long():
    assert AeffSweeper().batches([]) == []
    assert AeffSweeper().batches([0, 1, 2, 4, 5, 9]) == [[0, 1, 2], [4, 5], [9]]
    assert AeffSweeper(max_batch_size=2).batches([0, 1, 2, 3, 4, 6]) == [[0, 1], [2, 3], [4], [6]]
    assert AeffSweeper(max_batch_size=1).batches([3, 4]) == [[3], [4]]
    assert AeffSweeper().batches([2, 1]) == [[2], [1]]


def test_a_sweep_launches_its_plan_in_batches_and_reports(make, tmp_path, capsys, caplog):
    sweep_dir = tmp_path / "new" / "sweep"  # made, parents and all
    sweeper = make(sweep_dir=sweep_dir, max_batch_size=2)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        returns = sweeper.sweep(["hparams.lr=0.1,0.2,0.3"])
    jobs = [[f"hparams.lr={lr}"] for lr in ("0.1", "0.2", "0.3")]
    assert sweeper.launcher.launches == [(0, jobs[:2]), (2, jobs[2:])]
    assert returns == [("returned", 0), ("returned", 1), ("returned", 2)]
    assert results.read_plan(sweep_dir) == jobs
    saved = OmegaConf.load(sweep_dir / "multirun.yaml")
    assert saved.hydra.sweep.dir == str(sweep_dir) and saved.workload.split_seed == 0
    report = json.loads((sweep_dir / results.REPORT).read_text())
    assert report["score"] == 1.0 and report["num_trials"] == 3
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == (
        f"3 trials, 1 failed, score (least time to target) 1.0. Report: "
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
    assert aeff_sweeper.failed_trials == [failed]


def test_a_resumed_sweep_runs_the_rest_and_clears_the_failures(make, tmp_path, caplog):
    make(sweep_dir=tmp_path).sweep(["hparams.lr=0.1,0.3,0.2"])
    assert aeff_sweeper.failed_trials == [str(tmp_path / "1")]
    (tmp_path / "1" / "metadata.json").unlink()  # as if it never ran
    (tmp_path / "1" / "metrics.csv").unlink()
    (tmp_path / "1").rmdir()
    again = make("resume=true", sweep_dir=tmp_path)
    again.launcher.launch = lambda jobs, index: [("again", index, jobs)]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert again.sweep(["hparams.lr=0.1,0.3,0.2"]) == [("again", 1, [["hparams.lr=0.3"]])]
    assert messages(caplog)[-2:] == [
        f"Sweep of 3 trials in {tmp_path}: 1 to run",
        f"1 of 3 planned trials failed or did not run: {tmp_path / '1'}. "
        f"Rerun them with resume=true hydra.sweep.dir={tmp_path}",
    ]
    assert aeff_sweeper.failed_trials == [str(tmp_path / "1")]  # not started: not a result
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "metadata.json").write_text(
        json.dumps({"status": "completed", "global_step": 10})
    )
    (tmp_path / "1" / "metrics.csv").write_text("global_step\n10\n")
    make("resume=true", sweep_dir=tmp_path).sweep(["hparams.lr=0.1,0.3,0.2"])
    assert aeff_sweeper.failed_trials == []


def test_a_job_dir_holding_another_runs_record_stops_a_resume(make, tmp_path, caplog):
    """A run aimed at a job's dir by hand (`hydra.run.dir=<sweep dir>/1`) is not that job:
    the resume names it before running anything."""
    make(sweep_dir=tmp_path).sweep(["hparams.lr=0.1,0.3"])
    command = "python -m aeff hydra.run.dir=sweep/1 hparams.lr=5.0"
    for sweep_dir, job in (("", 0), (str(tmp_path), 0)):  # no sweep's; another job's
        record = {"status": "completed", "sweep_dir": sweep_dir, "hydra.job.num": job}
        (tmp_path / "1" / "metadata.json").write_text(json.dumps({**record, "command": command}))
        again = make("resume=true", sweep_dir=tmp_path)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SystemExit) as stopped:
            again.sweep(["hparams.lr=0.1,0.3"])
        assert stopped.value.code == 2 and again.launcher.launches == []
        assert messages(caplog) == [
            f"{tmp_path / '1' / 'metadata.json'} is the record of another run ({command}), "
            f"not of job 1 of this sweep: move {tmp_path / '1'} aside, then resume the sweep."
        ]


def test_a_resume_with_an_edited_space_exits_2_naming_it_before_any_trial(
    make, tmp_path, caplog, next_process
):
    """The edit changes the sampled values too: the file is named, not the values."""
    space, sweep_dir = tmp_path / "space.json", tmp_path / "sweep"
    space.write_text('{"learning_rate": {"min": 0.01, "max": 0.5, "scaling": "log"}}')
    overrides = [f"tuning_search_space={space}", "search.num_trials=3"]
    with pytest.raises(TrialInterrupted):  # stopped after its first trial
        make(*overrides, sweep_dir=sweep_dir, interrupt_at=1).sweep(overrides[:1])
    before = {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()}
    space.write_text('{"learning_rate": {"min": 0.001, "max": 0.5, "scaling": "log"}}')
    next_process()
    again = make("resume=true", *overrides, sweep_dir=sweep_dir)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SystemExit) as stopped:
        again.sweep(overrides[:1])
    assert stopped.value.code == 2 and again.launcher.launches == []
    (message,) = messages(caplog)
    assert message.startswith(f"resume=true finishes only the same sweep, but {space} changed")
    assert {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()} == before


def test_bad_input_exits_before_anything_is_written(make, tmp_path, caplog):
    sweep_dir = tmp_path / "sweep"
    sweeper = make("search.num_trials=2", sweep_dir=sweep_dir)
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SystemExit) as stopped:
        sweeper.sweep(["hparams.lr=0.1"])
    assert stopped.value.code == 2
    assert messages(caplog) == [
        "search.num_trials is set but no search_space is chosen: "
        "add search_space=<name> (see conf/search_space/)."
    ]
    assert not sweep_dir.exists() and sweeper.launcher.launches == []


def test_a_sweep_dir_of_another_layout_is_refused_before_anything_is_written(
    make, tmp_path, caplog
):
    sweep_dir = tmp_path / "sweep"
    sweeper = make(sweep_dir=sweep_dir)
    with open_dict(sweeper.config):
        sweeper.config.hydra.sweep.subdir = "${hydra.job.override_dirname}"
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SystemExit) as stopped:
        sweeper.sweep(["hparams.lr=0.1,0.2"])
    assert stopped.value.code == 2
    assert messages(caplog) == [
        "hydra.sweep.subdir=${hydra.job.override_dirname}: aeff keeps each trial in "
        "<sweep dir>/<job number>, which its reports and resume rely on."
    ]
    assert not sweep_dir.exists() and sweeper.launcher.launches == []


def test_the_sweeps_config_is_saved_with_credentials_redacted(make, tmp_path):
    url = "+meta.url='https://user:token@host/x?sig=abc'"
    make(url, sweep_dir=tmp_path).sweep(["hparams.lr=0.1"])
    saved = OmegaConf.load(tmp_path / results.SWEEP_CONFIG)
    assert saved.meta.url == "https://***@host/x?sig=***"
    assert "token" not in (tmp_path / results.SWEEP_CONFIG).read_text()


def test_a_second_sweep_into_a_sweep_dir_exits_2(make, tmp_path, caplog):
    make(sweep_dir=tmp_path).sweep(["hparams.lr=0.1"])
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SystemExit) as stopped:
        make(sweep_dir=tmp_path).sweep(["hparams.lr=0.1"])
    assert stopped.value.code == 2
    assert messages(caplog)[-1].startswith(f"{tmp_path} holds a sweep already")


def test_an_interrupted_sweep_reports_and_says_how_to_finish(make, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(hydra_job, "TYPED", [])  # as typed: sys.argv, not an earlier test's
    argv = ["aeff", "-m", "hparams.lr=0.1,0.2", "+url=https://user:token@host/x"]
    monkeypatch.setattr(sys, "argv", argv)
    sweeper = make(sweep_dir=tmp_path, interrupt_at=1)
    with caplog.at_level(logging.WARNING, logger=LOGGER), pytest.raises(TrialInterrupted):
        sweeper.sweep(["hparams.lr=0.1,0.2"])
    report = json.loads((tmp_path / results.REPORT).read_text())
    assert report["num_trials"] == 1 and report["num_planned"] == 2
    assert messages(caplog)[-1:] == [
        "Sweep stopped by SIGINT. Finish it with: aeff -m hparams.lr=0.1,0.2 "
        f"+url=https://***@host/x resume=true hydra.sweep.dir={tmp_path}"
    ]


def test_a_failed_launcher_ends_the_sweep_with_a_report_and_one_line(
    make, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(hydra_job, "TYPED", [])  # as typed: sys.argv, not an earlier test's
    argv = ["aeff", "-m", "hparams.lr=0.1,0.2,0.3", "+url=https://user:token@host/x"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(aeff_sweeper, "failed_trials", [])
    sweeper = make(sweep_dir=tmp_path, max_batch_size=1, fail_at=1)
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SystemExit) as stopped:
        sweeper.sweep(["hparams.lr=0.1,0.2,0.3"])
    assert stopped.value.code == 1 and len(sweeper.launcher.launches) == 2  # none after it
    report = json.loads((tmp_path / results.REPORT).read_text())
    assert report["num_trials"] == 1 and report["num_planned"] == 3
    assert aeff_sweeper.failed_trials == [str(tmp_path / "1"), str(tmp_path / "2")]
    assert messages(caplog)[-1] == (
        "The launcher failed: RuntimeError: A worker process was unexpectedly terminated. "
        "Finish it with: aeff -m hparams.lr=0.1,0.2,0.3 +url=https://***@host/x "
        f"resume=true hydra.sweep.dir={tmp_path}"
    )
    # Resumed as it says, and failing again without a word of its own
    typed = [*argv, "resume=true", f"hydra.sweep.dir={tmp_path}"]
    monkeypatch.setattr(sys, "argv", typed)
    again = make("resume=true", sweep_dir=tmp_path, max_batch_size=1, fail_at_silently=1)
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SystemExit):
        again.sweep(["hparams.lr=0.1,0.2,0.3"])
    assert messages(caplog)[-1] == (  # the resume's own command, not it twice
        "The launcher failed: RuntimeError. Finish it with: aeff -m "
        f"hparams.lr=0.1,0.2,0.3 +url=https://***@host/x resume=true hydra.sweep.dir={tmp_path}"
    )


@pytest.mark.parametrize("interrupted", [False, True])
def test_submitits_job_pickles_are_removed_once_every_job_returned(make, tmp_path, interrupted):
    job = tmp_path / ".submitit" / "123"
    job.mkdir(parents=True)
    for name in ("123_submitted.pkl", "123_0_result.pkl", "123_0_log.out"):
        (job / name).write_text("the job's overrides, as typed")
    launcher = "hydra/launcher=submitit_local"  # its folder: ${hydra.sweep.dir}/.submitit/%j
    sweeper = make(launcher, sweep_dir=tmp_path, interrupt_at=1 if interrupted else None)
    with contextlib.suppress(TrialInterrupted):
        sweeper.sweep(["hparams.lr=0.1,0.2"])
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
    aeff_sweeper.remove_job_pickles(f"{shared}/%j", tmp_path / "sweep")
    assert (shared / "7" / "7_submitted.pkl").exists()


def test_plan_values_read_keys_as_hydra_spells_them():
    planned = [["+hparams.x=a=b", "hydra/launcher=joblib"]]
    assert plan_changes(planned, [["hparams.x=a=b"]]) == ""
    assert plan_changes(planned, [["hparams.x=a=c"]]) == "for trial 0: hparams.x=a=b (now a=c)"


def test_the_report_prints_the_table_and_names_every_failed_trial(make, tmp_path, capsys, caplog):
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        make(sweep_dir=tmp_path).sweep(["hparams.lr=0.3,0.1,0.4"])
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


def test_a_pinned_key_may_be_spelled_with_a_plus(make, tmp_path):
    space = tmp_path / "space.json"  # a label the config lacks, added with +, not sampled
    space.write_text(
        '{"learning_rate": {"min": 1e-3, "max": 1e-2}, "meta.arm": {"feasible_points": [1, 2]}}'
    )
    settings = [f"tuning_search_space={space}", "search.num_trials=2"]
    jobs = make(*settings, sweep_dir=tmp_path / "sweep").job_overrides(["+meta.arm=3"])
    for job in jobs:
        assert [o for o in job if "arm" in o] == ["+meta.arm=3"]


def test_interval_sweeps_are_refused_naming_the_key(make, tmp_path):
    with pytest.raises(ConfigError) as refused:
        make(sweep_dir=tmp_path).job_overrides(["hparams.lr=interval(0.1,0.2)"])
    assert str(refused.value) == "hparams.lr: only comma lists and range() sweeps are supported."


def test_a_space_without_a_number_of_trials_is_refused(make, tmp_path):
    with pytest.raises(ConfigError) as refused:
        make("search_space=mnist_adam", sweep_dir=tmp_path).job_overrides([])
    assert str(refused.value) == "search_space is chosen: set search.num_trials=N."


def test_a_space_may_interpolate_other_keys(make, tmp_path):
    sweeper = make("search.num_trials=4", "search.seed=5", sweep_dir=tmp_path)
    with open_dict(sweeper.config):
        sweeper.config.search_space = {
            "hparams": {"lr": {"min": 1, "max": "${search.seed}", "scale": "log"}}
        }
    lrs = [float(job[0].split("=")[1]) for job in sweeper.job_overrides([])]
    assert all(1 <= lr <= 5 for lr in lrs) and max(lrs) > 2


def test_plan_changes_name_every_differing_key_on_either_side():
    planned = [["a=1", "b=2", "d=5"]]
    now = [["a=3", "c=4", "d=5"]]
    assert plan_changes(planned, now) == (
        "for trial 0: a=1 (now 3), b=2 (now None), c=None (now 4)"
    )


def test_resume_into_a_new_sweep_dir_plans_and_runs_every_job(make, tmp_path):
    jobs = [["hparams.lr=0.1"], ["hparams.lr=0.2"]]
    assert make("resume=true", sweep_dir=tmp_path).jobs_to_run(tmp_path, jobs) == [0, 1]
    assert results.read_plan(tmp_path) == jobs


def test_a_second_sweep_is_told_both_ways_out(make, tmp_path):
    make(sweep_dir=tmp_path).jobs_to_run(tmp_path, [["hparams.lr=0.1"]])
    with pytest.raises(ConfigError) as refused:
        make(sweep_dir=tmp_path).jobs_to_run(tmp_path, [["hparams.lr=0.1"]])
    assert str(refused.value) == (
        f"{tmp_path} holds a sweep already: add resume=true to finish it, or "
        "choose another hydra.sweep.dir."
    )


def test_the_sweepers_refusals_say_exactly_what_is_wrong(make, tmp_path):
    space = tmp_path / "space.json"
    space.write_text('{"momentum": {"min": 0.1, "max": 0.9}}')
    both = make("search_space=mnist_adam", f"tuning_search_space={space}", sweep_dir=tmp_path / "a")
    with pytest.raises(ConfigError) as error:
        both.job_overrides([])
    assert str(error.value) == (
        "choose search_space=<name> or tuning_search_space=<file>, not both."
    )
    unknown = make(f"tuning_search_space={space}", "search.num_trials=2", sweep_dir=tmp_path / "b")
    with pytest.raises(ConfigError) as error:
        unknown.job_overrides([])
    assert str(error.value) == (
        "search space key 'hparams.momentum': Adam's hyperparameters are "
        "lr, one_minus_beta_1, beta_2, epsilon."
    )
    with pytest.raises(ConfigError) as error:
        make(sweep_dir=tmp_path / "c").job_overrides(["batch_size=512,abc"])
    assert str(error.value) == (
        "batch_size=abc does not compose: Error merging override batch_size=abc; "
        "Value 'abc' of type 'str' could not be converted to Integer"
    )


def test_joblibs_workers_are_taken_out_of_its_pools_hands(monkeypatch):
    """So that the pool's manager thread, seeing one worker end, does not SIGKILL the others
    while they save their checkpoints."""
    assert aeff_sweeper.detached_loky_workers() == []  # no pool in this process
    processes = {os.getpid(): "this process, as a worker", 2**22 + 1: "one that ended"}
    pool = types.SimpleNamespace(_executor=types.SimpleNamespace(_processes=processes))
    monkeypatch.setitem(sys.modules, "joblib.externals.loky.reusable_executor", pool)
    assert [w.pid for w in aeff_sweeper.detached_loky_workers()] == [os.getpid()]
    assert processes == {}


def test_a_large_sweeps_console_report_is_short_and_names_a_few_failures(
    make, tmp_path, capsys, caplog
):
    grid = ",".join(str(0.1 + i / 1000) for i in range(30))
    sweeper = make(sweep_dir=tmp_path)
    sweeper.launcher.launch = lambda jobs, index: []  # stopped before any trial ran
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        sweeper.sweep([f"hparams.lr={grid}"])
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "30 planned trials: 30 not started; no trial reached the target.",
        f"0 trials, 0 failed, score (least time to target) None. Report: "
        f"{tmp_path / 'summary.csv'}, {tmp_path / 'sweep.json'}, {tmp_path / 'report.html'}",
    ]
    named = ", ".join(str(tmp_path / str(i)) for i in range(10))
    assert messages(caplog)[-1] == (
        f"30 of 30 planned trials failed or did not run: {named} and 20 more "
        f"({tmp_path / 'summary.csv'}). Rerun them with resume=true hydra.sweep.dir={tmp_path}"
    )
