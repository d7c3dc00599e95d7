"""`hydra/sweeper=optuna` as aeff runs it (hydra_plugins/aeff_sweeper/optuna_sweeper.py): bad
settings refused before any trial trains, a failed trial fails alone, every ending reported."""

import json
import logging
import signal

import pandas as pd
import pytest
import yaml
from helpers import data_overrides
from hydra import compose, initialize_config_module
from omegaconf import open_dict

from aeff.cli.app import register
from aeff.errors import ConfigError, TrialInterrupted
from aeff.results.__main__ import main as results_main
from hydra_plugins.aeff_sweeper.optuna_sweeper import check_before_training

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the optuna extra")


@pytest.fixture(autouse=True)
def optuna_logs_through_the_root_logger() -> None:
    """Optuna's own console handler keeps the stderr of the test that first imported it
    (pytest closes it after that test); its lines go to the root logger's handlers instead."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def said():
    """What the sweeper logs (read from its logger: Hydra's logging config closes pytest's
    console capture)."""
    lines = Lines()
    logger = logging.getLogger("hydra_plugins.aeff_sweeper.optuna_sweeper")
    logger.addHandler(lines)
    yield lines
    logger.removeHandler(lines)


OPTUNA = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler.seed=0", "hydra.sweep.dir=sweep"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([], "hydra/sweeper=optuna optimises one number a trial: set objective=time_to_target"),
        (["objective=bogus"], "objective='bogus' is not allowed: expected null, time_to_target"),
        (
            ["objective=final.nope"],
            "objective='final.nope' is not allowed: expected time_to_target or one of "
            "final.train.loss, final.validation.loss",
        ),
        (
            ["objective=time_to_target", "hparams.lr=interval(0.1,0.01)"],
            "hparams.lr=interval(0.1, 0.01): need finite min <= max, got min=0.1, max=0.01.",
        ),
        (
            ["objective=time_to_target", "hparams.lr=tag(log, interval(0, 0.01))"],
            "a log range must lie above zero, got min=0",
        ),
        (
            ["objective=time_to_target", "hparams.lr=tag(foo, interval(0.001, 0.01))"],
            "hparams.lr=tag(foo, interval(0.001, 0.01)): unknown tag foo: only log is read",
        ),
        (
            ["objective=time_to_target", "params:hparams.lr=interval(1,0)"],
            "hparams.lr=interval(1.0, 0.0): need finite min <= max",
        ),
    ],
)
def test_settings_that_would_fail_every_trial_are_refused_before_any_trial(overrides, message):
    """Checked on the config and the swept overrides (the command line's and
    `hydra.sweeper.params`) before Optuna asks for the first trial."""
    swept = [o for o in overrides if "interval(" in o and not o.startswith("params:")]
    params = [o.removeprefix("params:") for o in overrides if o.startswith("params:")]
    fixed = [o for o in overrides if o not in swept and not o.startswith("params:")]
    register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        cfg = compose("config", ["hydra/sweeper=optuna", *fixed], return_hydra_config=True)
    with open_dict(cfg):  # as a preset sets it (conf/hparams_search/)
        cfg.hydra.sweeper.params = dict(p.split("=", 1) for p in params) or None
    with pytest.raises(ConfigError) as refused:
        check_before_training(cfg, swept)
    assert message in str(refused.value)


def test_a_refused_setting_ends_the_sweep_in_one_line_exit_2_with_no_trial(
    aeff_in_process, tmp_path, said
):
    assert aeff_in_process(*OPTUNA, "objective=bogus") == 2
    assert said.text(logging.ERROR) == [
        "objective='bogus' is not allowed: expected null, time_to_target or final.<metric>."
    ]
    assert not (tmp_path / "sweep" / "0").exists()


def test_a_sweep_whose_every_trial_failed_reports_them_and_exits_1(
    aeff_in_process, tmp_path, said, mnist_data_dir
):
    """Optuna's `best_trial` has none to name: the report lists both failures, one line says
    why the sweep stopped, and `results report` takes the sweep dir."""
    args = [*OPTUNA, "objective=time_to_target", "hparams.lr=choice(417,500)"]
    args += ["hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1"]
    assert aeff_in_process(*args, *data_overrides(mnist_data_dir)) == 1
    sweep = tmp_path / "sweep"
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["status"]) == ["failed", "failed"]
    assert all(" is not allowed: expected a number in (0, 100]" in e for e in summary["error"])
    assert json.loads((sweep / "sweep.json").read_text())["failed"] == [
        str(sweep / "0"),
        str(sweep / "1"),
    ]
    assert said.text(logging.ERROR) == [
        "Optuna's sweeper stopped: ValueError: No trials are completed yet."
    ]
    (sweep / "report.html").unlink()
    results_main(["report", str(sweep)])
    assert (sweep / "report.html").exists()


def test_a_signal_stops_the_sweep_with_its_report_and_a_closing_line(
    aeff_in_process, tmp_path, said, monkeypatch
):
    """As when Ctrl-C stops a trial: the signal's exit status, the report written."""
    register()  # Hydra's plugin scan loads Optuna's modules again: patch the loaded one
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    def interrupted(self, arguments):
        (tmp_path / "sweep" / "0").mkdir()
        (tmp_path / "sweep" / "0" / "metadata.json").write_text('{"status": "interrupted"}')
        raise TrialInterrupted(signal.SIGINT)

    monkeypatch.setattr(OptunaSweeperImpl, "sweep", interrupted)
    assert aeff_in_process(*OPTUNA, "objective=time_to_target") == 130
    assert (tmp_path / "sweep" / "report.html").exists()
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["num_trials"] == 1
    assert said.text(logging.WARNING) == ["Sweep stopped by SIGINT; its report is written."]


@pytest.mark.slow  # three trials of 4 steps in this process: 10 s
def test_a_failed_trial_fails_alone_and_the_sweep_goes_on_to_its_report(
    aeff_in_process, tmp_path, said, mnist_data_dir
):
    """Optuna is told the trial failed (its FAIL), the others train and are ranked, and the
    sweep exits 1 like aeff's. No trial reaches the target: every objective is the budget,
    and a warning says that Optuna's best is then any trial."""
    args = [*OPTUNA, "objective=time_to_target", "hparams.lr=choice(0.001,417)"]
    args += ["hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "max_steps=4"]
    args += ["eval_every_steps=2", *data_overrides(mnist_data_dir)]
    assert aeff_in_process(*args) == 1
    sweep = tmp_path / "sweep"
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 4 and {"completed", "failed"} == set(summary["status"])
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best == {"name": "optuna", "best_params": {"hparams.lr": 0.001}, "best_value": 60.0}
    assert (sweep / "report.html").exists()
    (warning,) = said.text(logging.WARNING)
    assert warning.startswith("No trial reached the target: each one's objective")


@pytest.mark.slow  # four trials of 4 steps grouped in one program: 10 s
def test_grouped_trials_return_their_objective_to_optuna(aeff_in_process, tmp_path, mnist_data_dir):
    args = [*OPTUNA, "hydra/launcher=vectorized", "objective=final.validation.loss"]
    args += ["hparams.lr=tag(log, interval(0.0001, 0.01))", "hydra.sweeper.n_trials=4"]
    args += ["hydra.sweeper.n_jobs=4", "max_steps=4", "eval_every_steps=2"]
    assert aeff_in_process(*args, *data_overrides(mnist_data_dir)) == 0
    sweep = tmp_path / "sweep"
    summary = pd.read_csv(sweep / "summary.csv")
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    losses = [json.loads((sweep / str(i) / "metadata.json").read_text()) for i in range(4)]
    assert best["best_value"] == min(m["final.validation.loss"] for m in losses)
    assert set(summary["status"]) == {"completed"}
