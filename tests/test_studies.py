"""Studies (`search.num_studies=S`): S independent studies of the trials, each a sweep
record of its own in `<sweep dir>/study_<k>` with its own search seed, and AlgoPerf's
score across them (the median of each study's best time to target)."""

import json
import logging
import math
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import data_overrides, run_aeff
from helpers.sweeper import failures_named, sweeper_on
from hydra.core.plugins import Plugins
from omegaconf import OmegaConf

from aeff import errors, search
from aeff.cli import app
from aeff.errors import ConfigError, SweepFailed, TrialInterrupted
from aeff.records import sweep_dir as sweep_record
from aeff.results import __main__ as results_cli
from aeff.results.sweep_report import write_studies_report
from hydra_plugins.aeff_sweeper import aeff_sweeper

LOGGER = "hydra_plugins.aeff_sweeper.aeff_sweeper"
SPACE = ["search_space=mnist_adam", "search.num_trials=2"]
# Sampled too, and cheaper for the sweeper to check (one key to compose, not three).
LR_RANGE = ["hparams.lr=tag(log, interval(0.0001, 0.01))", "search.num_trials=2"]


class StudyLauncher:
    """Writes each job's record by hand in the folder its `hydra.sweep.dir` names (else
    `sweep_dir`): a trial reaches the target in lr * 1000 s, unless its lr is above
    `misses_above`."""

    def __init__(self, interrupt_at=None, misses_above=1.0, sweep_dir=None):
        self.launches, self.interrupt_at, self.misses_above = [], interrupt_at, misses_above
        self.sweep_dir = sweep_dir

    def launch(self, job_overrides, initial_job_idx):
        self.launches.append((initial_job_idx, [list(job) for job in job_overrides]))
        returns = []
        for index, job in enumerate(job_overrides, start=initial_job_idx):
            values = dict(o.split("=", 1) for o in job)
            folder = values.get("hydra.sweep.dir", str(self.sweep_dir))
            if self.interrupt_at == (folder, index):
                raise TrialInterrupted(signal.SIGINT)
            run_dir = Path(folder) / str(index)
            run_dir.mkdir(parents=True, exist_ok=True)
            lr = float(values["hparams.lr"])
            record = {
                "status": "completed",
                "global_step": 10,
                "workload.target_metric": "validation.accuracy",
                "sweep_dir": folder,
                "hydra.job.num": index,
            }
            (run_dir / "metadata.json").write_text(json.dumps(record))
            reached = lr <= self.misses_above
            (run_dir / "metrics.csv").write_text(
                "global_step,accumulated_submission_time,goal_reached,validation.accuracy\n"
                f"10,{lr * 1000},{reached},{0.99 if reached else 0.5}\n"
            )
            returns.append(("returned", folder, index))
        return returns


def values_of(job: list[str], key: str) -> list[str]:
    return [o.split("=", 1)[1] for o in job if o.split("=", 1)[0] == key]


def test_a_studys_seed_is_the_sweeps_for_study_0_and_a_spawned_one_for_the_others():
    seeds = [search.study_seed(5, k) for k in range(50)]
    assert seeds[0] == 5 and len(set(seeds)) == 50
    assert seeds == [search.study_seed(5, k) for k in range(50)]  # the same every time
    assert all(0 <= s < 2**32 for s in seeds) and search.study_seed(6, 1) != seeds[1]
    assert search.study_seed(-1, 0) == -1  # one study samples as a sweep always did
    with pytest.raises(ConfigError, match=r"search.seed=-1: studies need a non-negative"):
        search.study_seed(-1, 1)


def test_each_study_samples_with_its_own_seed_in_its_own_folder(tmp_path):
    launcher = StudyLauncher()
    made = sweeper_on(tmp_path, ["search.num_trials=2", "search.num_studies=2"], launcher)
    made.sweep([*LR_RANGE, "search.num_studies=2"])
    seeds = [search.study_seed(0, k) for k in range(2)]
    assert seeds[0] == 0 and len(set(seeds)) == 2  # study 0 samples as a sweep of one does
    dimensions = [search.interval("hparams.lr", 0.0001, 0.01, {"log"})]
    assert len(launcher.launches) == 2  # a launch a study, its job numbers from 0
    for k, (first, jobs) in enumerate(launcher.launches):
        folder = sweep_record.study_dir(tmp_path, k)
        assert first == 0 and len(jobs) == 2
        for job, point in zip(jobs, search.sample(dimensions, 2, seeds[k]), strict=True):
            assert values_of(job, "hydra.sweep.dir") == [str(folder)]
            assert values_of(job, "search.seed") == [str(seeds[k])]
            assert values_of(job, "search.study") == [str(k)]
            assert values_of(job, "hparams.lr") == [repr(point["hparams.lr"])]
        plan = json.loads((folder / sweep_record.PLAN).read_text())
        assert (plan["study"], plan["search_seed"], plan["num_trials"]) == (k, seeds[k], 2)
        report = json.loads((folder / sweep_record.REPORT).read_text())
        assert (report["study"], report["search_seed"], report["num_trials"]) == (k, seeds[k], 2)
        assert (folder / sweep_record.SUMMARY).exists() and (folder / "report.html").exists()
    assert not (tmp_path / sweep_record.PLAN).exists() and not (tmp_path / "0").exists()
    assert sweep_record.read_studies_plan(tmp_path)["studies"][1] == {
        "study": 1,
        "dir": "study_1",
        "search_seed": seeds[1],
    }


def test_a_sweep_of_one_study_keeps_its_layout_and_its_jobs(tmp_path):
    launcher = StudyLauncher(sweep_dir=tmp_path)
    sweeper_on(tmp_path, ["search.num_trials=2"], launcher).sweep(LR_RANGE)
    ((first, jobs),) = launcher.launches
    assert first == 0 and not [o for job in jobs for o in job if o.startswith(("search.s", "hyd"))]
    assert (
        not (tmp_path / sweep_record.STUDIES_PLAN).exists() and not (tmp_path / "study_0").exists()
    )
    assert json.loads((tmp_path / sweep_record.PLAN).read_text())["search_seed"] == 0


def test_an_rng_seed_given_as_a_number_becomes_each_studys_own(tmp_path):
    """Trials of different studies train from different seeds: a seed on the command line
    (or a grid of them) is study 0's; other studies get one derived from it. A null seed
    stays null: each trial draws its own, as in any sweep."""
    launcher = StudyLauncher()
    args = ["hparams.lr=1e-3", "rng_seed=7,null", "search.num_studies=2"]
    sweeper_on(tmp_path, ["search.num_studies=2"], launcher).sweep(args)
    (_, study_0), (_, study_1) = launcher.launches
    assert [values_of(job, "rng_seed") for job in study_0] == [["7"], ["null"]]
    assert [values_of(job, "rng_seed") for job in study_1] == [
        [str(search.study_seed(7, 1))],
        ["null"],
    ]


def test_the_score_across_studies_is_the_median_of_each_studys_best(tmp_path):
    """AlgoPerf's: a study's time is its best trial's; a study that missed the target counts
    as infinite; the score is the median over the studies."""

    def report(study: int, score: float | None) -> tuple:
        best = None if score is None else {"run_dir": f"/s/study_{study}/1", "steps_to_target": 5}
        return (
            tmp_path / f"study_{study}",
            {
                "study": study,
                "search_seed": 10 + study,
                "score": score,
                "best_trial": best,
                "num_planned": 2,
                "num_trials": 2,
                "num_reached_target": int(score is not None),
                "num_unrecorded": 0,
                "failed": [],
                "measured_under_sharing": None,
            },
        )

    table, sweep = write_studies_report(tmp_path, [report(0, 3.0), report(1, None)])
    assert sweep["score"] == math.inf and list(table["time_to_target"]) == [3.0, math.inf]
    assert json.loads((tmp_path / sweep_record.REPORT).read_text())["score"] is None  # JSON: no inf
    studies = [report(0, 3.0), report(1, None), report(2, 1.0)]
    table, sweep = write_studies_report(tmp_path, studies)
    assert sweep["score"] == 3.0 and sweep["num_studies"] == 3
    written = pd.read_csv(tmp_path / sweep_record.STUDIES)
    assert list(written["time_to_target"]) == [3.0, math.inf, 1.0]
    assert list(written["best_run_dir"].fillna("-")) == ["/s/study_0/1", "-", "/s/study_2/1"]
    assert (
        json.loads((tmp_path / sweep_record.REPORT).read_text())["studies"][1]["time_to_target"]
        is None
    )


def test_a_sweeps_report_across_studies_names_each_best_trial(tmp_path, capsys):
    launcher = StudyLauncher(misses_above=3e-3)
    args = ["hparams.lr=1e-3,2e-3,5e-3", "search.num_studies=2"]
    made = sweeper_on(tmp_path, ["search.num_studies=2"], launcher)
    made.sweep(args)
    report = json.loads((tmp_path / sweep_record.REPORT).read_text())
    assert report["score"] == pytest.approx(1.0) and report["num_planned"] == 6
    assert [s["best_run_dir"] for s in report["studies"]] == [
        str(tmp_path / "study_0" / "0"),
        str(tmp_path / "study_1" / "0"),
    ]
    capsys.readouterr()
    (tmp_path / sweep_record.STUDIES).unlink()
    results_cli.main(["summary", str(tmp_path)])  # the report again, from the records
    printed = capsys.readouterr().out
    assert (
        "study_0/0" in printed
        and "study_1/0" in printed
        and "median time to target (over 2 studies" in printed
    )
    assert len(pd.read_csv(tmp_path / sweep_record.STUDIES)) == 2


def test_a_stopped_sweep_of_studies_resumes_the_unfinished_trials_of_every_study(tmp_path, caplog):
    stop_at = (str(tmp_path / "study_1"), 1)
    settings = ["search.num_trials=2", "search.num_studies=2"]
    with pytest.raises(TrialInterrupted) as stopped:
        sweeper_on(tmp_path, settings, StudyLauncher(stop_at)).sweep([*LR_RANGE, *settings])
    report = json.loads((tmp_path / sweep_record.REPORT).read_text())  # written as it stopped
    assert report["num_trials"] == 3 and report["failed"] == [str(tmp_path / "study_1" / "1")]
    assert errors.exit_status(stopped.value) == 130  # the app exits non-zero
    (tmp_path / "study_0" / "1" / "metadata.json").write_text(
        json.dumps({"status": "failed", "sweep_dir": "x", "hydra.job.num": 1})
    )
    launcher = StudyLauncher()
    settings.append("resume=true")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _, failed_trials = sweeper_on(tmp_path, settings, launcher).run([*LR_RANGE, *settings])
    assert [(first, len(jobs)) for first, jobs in launcher.launches] == [(1, 1), (1, 1)]
    assert f"Sweep of 4 trials in 2 studies in {tmp_path}: 2 to run" in caplog.messages
    assert json.loads((tmp_path / sweep_record.REPORT).read_text())["failed"] == []
    assert failed_trials == []


@pytest.mark.parametrize(
    ("first", "again", "message"),
    [
        (2, 3, "planned search.num_studies=2 (now 3)"),
        (2, 1, "planned search.num_studies=2 (now 1)"),
        (1, 2, "planned search.num_studies=1 (now 2)"),
    ],
)
def test_a_resume_with_another_number_of_studies_is_refused(
    tmp_path, caplog, first, again, message
):
    if first == 1:  # the plans a sweep of `first` studies wrote before its first trial
        sweep_record.write_plan(tmp_path, [["hparams.lr=0.1"]])
    else:
        sweep_record.write_studies_plan(
            tmp_path, 0, [search.study_seed(0, k) for k in range(first)]
        )
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    args = ["hparams.lr=0.1", f"search.num_studies={again}", "resume=true"]
    launcher = StudyLauncher()
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed) as stopped:
        sweeper_on(tmp_path, args, launcher).sweep(args)
    assert errors.exit_status(stopped.value) == 2 and launcher.launches == []
    (said,) = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert message in said and said.startswith("resume=true finishes only the same sweep")
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".lock") == before
    args = ["hparams.lr=0.1", f"search.num_studies={first}"]  # without resume=true
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed):
        sweeper_on(tmp_path, args, StudyLauncher()).sweep(args)
    assert caplog.records[-1].getMessage().startswith(f"{tmp_path} holds a sweep already")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("search.num_studies=0", "search.num_studies=0: expected an integer >= 1."),
        ("search.num_studies=abc", "search.num_studies='abc': expected an integer >= 1."),
        ("search.num_studies=1.5", "search.num_studies=1.5: expected an integer >= 1."),
        ("search.num_studies=true", "search.num_studies=True: expected an integer >= 1."),
        ("search.study=1", "search.study=1: the sweeper sets each trial's study;"),
    ],
)
def test_a_bad_number_of_studies_is_one_line_before_anything_is_written(
    tmp_path, caplog, setting, message
):
    sweep_dir = tmp_path / "sweep"
    launcher = StudyLauncher()
    args = ["hparams.lr=0.1", setting]
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(SweepFailed) as stopped:
        sweeper_on(sweep_dir, args, launcher).sweep(args)
    assert errors.exit_status(stopped.value) == 2
    assert launcher.launches == [] and not sweep_dir.exists()
    (said,) = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert said.startswith(message) and "\n" not in said


def test_studies_with_another_sweeper_are_refused_as_unsupported():
    Plugins.instance()  # Hydra's plugins scanned: the Optuna sweeper's config, if installed
    config = OmegaConf.create(
        {
            "hydra": {"sweeper": {"_target_": "hydra_plugins.x.optuna_sweeper.OptunaSweeper"}},
            "search": {"num_studies": 2},
        }
    )
    with pytest.raises(ConfigError, match=r"^search.num_studies=2: studies are unsupported with"):
        app.refuse_studies_of_another_sweeper(config)
    config.search.num_studies = 1
    app.refuse_studies_of_another_sweeper(config)  # one study: Optuna's sweep as ever
    config.hydra.sweeper._target_ = aeff_sweeper.AeffSweeper.__module__ + ".AeffSweeper"
    config.search.num_studies = 2
    app.refuse_studies_of_another_sweeper(config)


@pytest.mark.slow  # a process: 4 s
def test_optunas_sweep_of_studies_exits_2_before_any_trial(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra")
    args = ["-m", "hydra/sweeper=optuna", "hparams_search=mnist_optuna", "search.num_studies=2"]
    out = run_aeff(args, tmp_path, timeout=120)
    assert out.returncode == 2
    assert "search.num_studies=2: studies are unsupported with AeffOptunaSweeper" in out.stderr
    assert not (tmp_path / "outputs").exists() or not list(tmp_path.rglob("metadata.json"))


@pytest.mark.slow  # 2 studies of 2 trials of 3 steps, stopped and resumed: 8 s
def test_two_studies_train_record_and_resume_as_sweeps_of_their_own(
    aeff_in_process, tmp_path, mnist_data_dir, monkeypatch
):
    """A real sweep of 2 studies x 2 trials, stopped by a signal as study 1's second trial
    is launched, then resumed: every trial records its study and search seed, trials of
    the two studies drew different seeds, and each study and the sweep are reported."""
    # Hydra's first plugin scan in a process loads its launcher's module again: patch the
    # class the sweep will use, whichever test ran first in this process.
    Plugins.instance()
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    launch = BasicLauncher.launch

    def stopping(self, job_overrides, initial_job_idx):
        if any("search.study=1" in job for job in job_overrides) and initial_job_idx == 0:
            launch(self, job_overrides[:1], 0)
            raise TrialInterrupted(signal.SIGTERM)
        return launch(self, job_overrides, initial_job_idx)

    args = ["-m", *SPACE, "search.num_studies=2", "debug=short", "workload.target_value=0.3"]
    args += ["hydra.sweep.dir=sweep", "logging.packages=false", *data_overrides(mnist_data_dir)]
    monkeypatch.setattr(BasicLauncher, "launch", stopping)
    assert aeff_in_process(*args) == 128 + signal.SIGTERM
    sweep = tmp_path / "sweep"
    assert not (sweep / "study_1" / "1").exists()
    assert json.loads((sweep / sweep_record.REPORT).read_text())["num_trials"] == 3
    monkeypatch.setattr(BasicLauncher, "launch", launch)
    assert aeff_in_process(*args, "resume=true") == 0

    seeds = [search.study_seed(0, k) for k in range(2)]
    records = {}
    for k in range(2):
        folder = sweep / f"study_{k}"
        for name in (sweep_record.PLAN, sweep_record.SUMMARY, sweep_record.REPORT, "report.html"):
            assert (folder / name).exists(), name
        report = json.loads((folder / sweep_record.REPORT).read_text())
        assert (report["study"], report["search_seed"], report["failed"]) == (k, seeds[k], [])
        for job in range(2):
            record = json.loads((folder / str(job) / "metadata.json").read_text())
            assert record["status"] == "completed"
            assert (record["study"], record["search_seed"]) == (k, seeds[k])
            assert record["sweep_dir"] == str(folder) and record["hydra.job.num"] == job
            assert f"rng_seed={record['rng_seed']}" in record["rerun_command"]
            assert "search." not in record["rerun_command"]
            records[(k, job)] = record
    assert len({r["rng_seed"] for r in records.values()}) == 4
    assert records[(0, 0)]["hparams.lr"] != records[(1, 0)]["hparams.lr"]  # their own points

    results_cli.main(["summary", str(sweep)])
    studies = pd.read_csv(sweep / sweep_record.STUDIES)
    assert list(studies["study"]) == [0, 1] and list(studies["search_seed"]) == seeds
    best = [
        json.loads((sweep / f"study_{k}" / sweep_record.REPORT).read_text())["score"]
        for k in range(2)
    ]
    median = float(np.median([math.inf if b is None else b for b in best]))
    report = json.loads((sweep / sweep_record.REPORT).read_text())
    assert report["score"] == (None if math.isinf(median) else pytest.approx(median))
    assert report["num_trials"] == 4 and report["failed"] == []


@pytest.mark.slow  # 4 trials of 3 steps in one program: 7 s
def test_the_vectorized_launcher_groups_trials_of_different_studies(
    aeff_in_process, tmp_path, mnist_data_dir
):
    args = ["-m", "hparams.lr=1e-3,3e-3", "rng_seed=0", "search.num_studies=2", "debug=short"]
    args += ["hydra/launcher=vectorized", "hydra.sweep.dir=sweep", "logging.packages=false"]
    assert aeff_in_process(*args, *data_overrides(mnist_data_dir)) == 0
    sweep = tmp_path / "sweep"
    records = [
        json.loads((sweep / f"study_{k}" / str(job) / "metadata.json").read_text())
        for k in range(2)
        for job in range(2)
    ]
    assert {(r["group.id"], r["group.size"]) for r in records} == {("study_0/0-study_1/1", 4)}
    assert [(r["study"], r["rng_seed"]) for r in records] == [
        (0, 0),
        (0, 0),
        (1, search.study_seed(0, 1)),
        (1, search.study_seed(0, 1)),
    ]
    assert [r["log_dir"] for r in records] == [
        str(sweep / f"study_{k}" / str(job)) for k in range(2) for job in range(2)
    ]
    assert json.loads((sweep / sweep_record.REPORT).read_text())["num_trials"] == 4


CRASHING_SUBMISSION = """
import dataclasses
from aeff.submissions.adam import Adam

@dataclasses.dataclass(frozen=True)
class CrashingAdam(Adam):
    @staticmethod
    def optimizer(hparams):
        if hparams.lr > 0.1:
            raise RuntimeError("no such optimizer")
        return Adam.optimizer(hparams)
"""


@pytest.mark.slow  # 4 trials of 3 steps, 2 of them crashing: 3 s (the fast tier is full)
def test_a_failed_trial_fails_neither_its_study_nor_the_others_and_the_sweep_exits_1(
    aeff_in_process, tmp_path, mnist_data_dir
):
    (tmp_path / "crashing.py").write_text(CRASHING_SUBMISSION)
    args = ["-m", "submission_path=crashing.py", "hparams.lr=0.5,1e-3", "search.num_studies=2"]
    args += ["debug=short", "hydra.sweep.dir=sweep", "logging.packages=false"]
    with failures_named() as said:
        assert aeff_in_process(*args, *data_overrides(mnist_data_dir)) == 1
    sweep = tmp_path / "sweep"
    for k in range(2):
        summary = pd.read_csv(sweep / f"study_{k}" / sweep_record.SUMMARY)
        assert list(summary["status"]) == ["failed", "completed"]
    report = json.loads((sweep / sweep_record.REPORT).read_text())
    assert report["failed"] == [str(sweep / f"study_{k}" / "0") for k in range(2)]
    assert said.sweeps == [report["failed"]]


@pytest.mark.parametrize(
    "text", ["{", '{"num_studies": 2, "studies": []}', '{"num_studies": 1, "studies": [{}]}']
)
def test_a_damaged_studies_plan_is_one_line_naming_it(tmp_path, text):
    (tmp_path / sweep_record.STUDIES_PLAN).write_text(text)
    with pytest.raises(ConfigError, match=r"studies_plan.json is unreadable \(\w+\): restore"):
        sweep_record.read_studies_plan(tmp_path)
