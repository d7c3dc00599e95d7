"""A group of trials through `aeff.trial.train_and_evaluate_group`, in-process (the
vectorized launcher's call; test_vectorized_sweeps.py runs the launcher in processes)."""

import dataclasses
import logging
import os
import signal

import jax
import pytest
from helpers import HELPERS, data_overrides, owned_by_another_process
from helpers.in_process import SIGNAL, metadata, rows

from aeff import trial
from aeff.cli.app import compose_config
from aeff.errors import ConfigError, RunDirBusy, TrialInterrupted
from aeff.records.lock import Lock
from aeff.records.run_dir import RunDir, rows_digest
from aeff.records.speaker import SPEAKER
from aeff.submissions.adam import Adam
from aeff.training import loop, prepare
from aeff.training.loop import TrialResult
from aeff.trial import TrialJob, train_and_evaluate_group

SIGNALLED = "workload._target_=helpers.in_process.SignalledMnist"


@dataclasses.dataclass(frozen=True)
class Crashing(Adam):
    """Adam whose step raises when traced: a group that fails as a whole."""

    def update_params(self, *args, **kwargs):
        raise RuntimeError("boom")


@dataclasses.dataclass(frozen=True)
class OneBad(Adam):
    """Adam whose steps from `from_step` on raise, through a host callback, for a learning
    rate above 5e-3: a crash of one trial's own code inside the group's program."""

    from_step: int = 0

    def update_params(self, workload, params, optimizer_state, model_state, batch, rng):
        def refuse(lr, step):
            if lr > 5e-3 and step >= self.from_step:
                raise RuntimeError(f"lr={float(lr)} is too high for OneBad")

        hyperparams = optimizer_state.hyperparams
        jax.debug.callback(refuse, hyperparams["learning_rate"], optimizer_state.count)
        return super().update_params(workload, params, optimizer_state, model_state, batch, rng)


@dataclasses.dataclass(frozen=True)
class RefusesHighLr(Adam):
    """Adam whose `optimizer()` raises for a learning rate above 5e-3: one trial's own code
    failing before training, as the group is prepared."""

    @staticmethod
    def optimizer(hparams):
        if hparams.lr > 5e-3:
            raise ValueError(f"lr={hparams.lr} is too high for RefusesHighLr")
        return Adam.optimizer(hparams)


def jobs(tmp_path, config, *per_job: tuple[str, ...]) -> list[TrialJob]:
    """A sweep's jobs in `tmp_path/<job number>`, labelled as Hydra's jobs are."""
    return [
        TrialJob(
            config(*overrides),
            tmp_path / str(i),
            {"hydra.job.num": i, "sweep_dir": str(tmp_path)},
            tmp_path,
            {"config.yaml": f"job: {i}\n"},
        )
        for i, overrides in enumerate(per_job)
    ]


class Spoken(logging.Handler):
    """aeff's log lines, each with the trial it is about (`aeff.records.speaker`)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((SPEAKER.get(), record.getMessage()))


@pytest.fixture
def spoken(caplog):
    handler = Spoken()
    logging.getLogger("aeff").addHandler(handler)
    with caplog.at_level(logging.INFO, logger="aeff"):
        yield handler.lines
    logging.getLogger("aeff").removeHandler(handler)


@pytest.mark.slow  # trains whole trials; the fast tier keeps the rules' own tests
def test_each_job_is_a_trial_of_its_own_and_a_bad_or_busy_one_leaves_the_others(
    tmp_path, trial_config, spoken, monkeypatch
):
    """Job 1's dir is another live process's, job 2's learning rate is refused: each gets
    its error, job 1's dir no files, job 2 a `failed` record; jobs 0, 3 and 4 train as one
    program of three, each with its own seed, rows and record (job 4 with logging=off:
    none). Each log line names its trial."""
    group = jobs(
        tmp_path,
        trial_config,
        ("hparams.lr=1e-3", "rng_seed=1", "checkpoint.interval_sec=1e-9", "checkpoint.keep=true"),
        ("hparams.lr=2e-3", "rng_seed=2"),
        ("hparams.lr=1e30", "rng_seed=3"),
        ("hparams.lr=3e-3", "checkpoint.interval_sec=1e-9"),
        ("logging=off", "rng_seed=5"),
    )
    called = {}  # how the group's loop is set up: the trials' settings, passed on

    def spy(name, real):
        def call(*args, **kwargs):
            called[name] = (args, kwargs)
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(prepare, "prepare", spy("prepare", prepare.prepare))
    monkeypatch.setattr(loop, "Loop", spy("loop", loop.Loop))
    with owned_by_another_process(tmp_path / "1"):
        outcomes = train_and_evaluate_group(group, "g7")
        assert sorted(p.name for p in (tmp_path / "1").iterdir()) == [".aeff.lock"]
    assert [type(o) for o in outcomes] == [TrialResult, RunDirBusy, ConfigError, *[TrialResult] * 2]
    failed = metadata(tmp_path / "2")
    assert failed["status"] == "failed" and "hparams.lr" in failed["error_message"]
    for job, lr in ((0, 1e-3), (3, 3e-3)):
        record = metadata(tmp_path / str(job))
        assert record["status"] == "completed" and outcomes[job].global_step == 12
        assert record["rng_seed"] == outcomes[job].rng_seed and record["hparams.lr"] == lr
        assert (record["group.id"], record["group.size"]) == ("g7", 3)
        assert (record["hydra.job.num"], record["sweep_dir"]) == (job, str(tmp_path))
        assert record["cwd"] == str(tmp_path)
        assert record["metrics_sha256"] == rows_digest(tmp_path / str(job) / "metrics.csv")
        assert (tmp_path / str(job) / ".hydra" / "config.yaml").read_text() == f"job: {job}\n"
        trial_rows = rows(tmp_path / str(job))
        assert list(trial_rows["global_step"]) == [4, 8, 12]
        assert (trial_rows["rng_seed"] == record["rng_seed"]).all()
        assert (trial_rows["group.id"] == "g7").all() and (trial_rows["hparams.lr"] == lr).all()
    assert outcomes[0].rng_seed == 1 and outcomes[4].rng_seed == 5
    assert outcomes[0].final_metrics != outcomes[3].final_metrics
    assert outcomes[4].global_step == 12 and not (tmp_path / "4" / "metadata.json").exists()
    assert (tmp_path / "0" / "checkpoints" / "12").is_dir()  # checkpoint.keep=true: its own
    assert not (tmp_path / "3" / "checkpoints").exists()  # saved at each row, then removed

    workload = trial.checked(group[0].cfg, {}).workload
    limits = loop.limits_of(workload, max_steps=12, eval_every_steps=4, target_resolution=0.05)
    (_, _, hparams, seeds, given), options = called["prepare"]
    assert (given, options) == (limits, {"steps_per_dispatch": 8})
    assert seeds == [outcomes[i].rng_seed for i in (0, 3, 4)]
    assert [h.lr for h in hparams] == [1e-3, 3e-3, trial.checked(group[4].cfg, {}).hparams.lr]
    assert called["loop"][0][2] == limits
    busy = f"{tmp_path / '1'} is in use by process "
    assert [tag for tag, line in spoken if line.startswith(busy)] == [1]
    assert (2, "hparams.lr=1e+30 is not allowed: expected a number in (0, 100].") in spoken
    assert {tag for tag, line in spoken if "drew rng_seed" in line} == {3}
    assert {tag for tag, line in spoken if line.startswith("step 12 |")} == {0, 3, 4}


@pytest.mark.slow  # programs for a group of one: 3 s
def test_a_group_of_one_trains_it(tmp_path, trial_config):
    """All but one job refused: the one trains, as a group of one, and stops at its target."""
    jobs_ = jobs(tmp_path, trial_config, ("hparams.lr=1e30",), ("workload.target_value=0.5",))
    outcomes = train_and_evaluate_group(jobs_, "g1")
    assert isinstance(outcomes[0], ConfigError)
    assert outcomes[1].goal_reached and outcomes[1].global_step < 12
    assert metadata(tmp_path / "1")["group.size"] == 1


def test_a_group_that_cannot_share_a_program_records_each_trial_failed(
    tmp_path, trial_config, spoken
):
    """Hyperparameters that change the optimizer state's structure: every trial of the
    group is recorded failed, with its values and the reason."""
    target = "submission._target_=helpers.in_process.MomentumOrNot"
    group = jobs(
        tmp_path,
        trial_config,
        ("submission=nesterov", target, "hparams.momentum=0.9"),
        ("submission=nesterov", target, "hparams.momentum=0.0"),
    )
    outcomes = train_and_evaluate_group(group, "g2")
    assert all(isinstance(o, ConfigError) for o in outcomes)
    for job, momentum in ((0, 0.9), (1, 0.0)):
        record = metadata(tmp_path / str(job))
        assert record["status"] == "failed" and record["hparams.momentum"] == momentum
        assert record["error_message"] == str(outcomes[0])
    assert {tag for tag, line in spoken if line == str(outcomes[0])} == {0, 1}  # each trial


@pytest.mark.slow  # compiles programs of its own; the full suite runs it
def test_a_member_whose_hparam_never_reaches_the_optimizer_fails_alone(
    tmp_path, mnist_data_dir, spoken
):
    """Job 1's learning rate would leave the optimizer state as the default's (an optax
    optimizer without `inject_hyperparams`): it alone is refused and recorded failed,
    naming the key; the others train as a group of two."""
    plain_sgd = f"submission_path={HELPERS / 'plain_sgd.py'}"

    short = ["max_steps=12", "eval_every_steps=4", "batch_size=512", "logging.packages=false"]

    def config(*overrides):  # `submission_path=` as the app composes it
        return compose_config([*data_overrides(mnist_data_dir), *short, plain_sgd, *overrides])

    group = jobs(tmp_path, config, ("rng_seed=1",), ("hparams.lr=0.5", "rng_seed=2"), ())
    outcomes = train_and_evaluate_group(group, "g4")
    assert [type(o) for o in outcomes] == [TrialResult, ConfigError, TrialResult]
    failed = metadata(tmp_path / "1")
    assert failed["status"] == "failed" and failed["hparams.lr"] == 0.5
    assert failed["error_message"].startswith("hparams.lr=0.5 changes nothing in PlainSgd's")
    assert (1, str(outcomes[1])) in spoken
    for job in (0, 2):
        record = metadata(tmp_path / str(job))
        assert record["status"] == "completed" and record["group.size"] == 2


@pytest.mark.slow  # trains a group of its own
def test_a_member_whose_optimizer_raises_before_training_fails_alone(
    tmp_path, trial_config, spoken
):
    """As the default launcher isolates it: job 1's submission refuses its learning rate
    as the optimizer is built; it alone is recorded failed, the others train as two."""
    target = f"submission._target_={__name__}.RefusesHighLr"
    per_job = [(target, "hparams.lr=1e-3"), (target, "hparams.lr=1e-2"), (target,)]
    outcomes = train_and_evaluate_group(jobs(tmp_path, trial_config, *per_job), "g5")
    assert [type(o) for o in outcomes] == [TrialResult, ValueError, TrialResult]
    failed = metadata(tmp_path / "1")
    assert (failed["status"], failed["error_type"]) == ("failed", "ValueError")
    assert failed["error_message"] == "lr=0.01 is too high for RefusesHighLr"
    for job in (0, 2):
        record = metadata(tmp_path / str(job))
        assert record["status"] == "completed" and record["group.size"] == 2


def test_a_group_that_crashes_records_each_trial_failed(tmp_path, trial_config):
    target = f"submission._target_={__name__}.Crashing"
    group = jobs(tmp_path, trial_config, (target, "rng_seed=1"), (target, "rng_seed=2"))
    outcomes = train_and_evaluate_group(group, "g3")
    assert [str(o) for o in outcomes] == ["boom", "boom"]
    for job in (0, 1):
        record = metadata(tmp_path / str(job))
        assert (record["status"], record["error_type"]) == ("failed", "RuntimeError")


@pytest.mark.slow  # a group's programs for the signalled workload, twice: 8 s
def test_a_signal_ends_every_trial_of_the_group_and_a_resume_trains_them_again(
    tmp_path, trial_config
):
    """SIGTERM at the group's second evaluation (step 8): every trial records
    `interrupted` with a last row at that step; without checkpoints, `resume=true` trains
    each again from step 0 with its recorded seed, the first attempt set aside."""
    settings = (SIGNALLED, "checkpoint.enabled=false")
    group = jobs(tmp_path, trial_config, settings, (*settings, "hparams.lr=3e-3"))
    SIGNAL.update(evals=0, at_eval=3)  # each trial's goal is checked at each evaluation
    try:
        with pytest.raises(TrialInterrupted):
            train_and_evaluate_group(group, "g8")
    finally:
        SIGNAL["at_eval"] = None
    seeds = []
    for job in (0, 1):
        record = metadata(tmp_path / str(job))
        assert record["status"] == "interrupted" and record["group.size"] == 2
        assert record["error_message"] == "stopped by SIGTERM"
        assert list(rows(tmp_path / str(job))["global_step"]) == [4, 8]
        seeds.append(record["rng_seed"])

    resume = (*settings, "resume=true")
    again = jobs(tmp_path, trial_config, resume, (*resume, "hparams.lr=3e-3"))
    outcomes = train_and_evaluate_group(again, "g9")
    for job in (0, 1):
        record = metadata(tmp_path / str(job))
        assert (record["status"], record["attempt"]) == ("completed", 1)
        assert record["rng_seed"] == seeds[job] == outcomes[job].rng_seed
        assert list(rows(tmp_path / str(job))["global_step"]) == [4, 8, 12]
        assert list(rows(tmp_path / str(job) / ".attempts" / "0")["global_step"]) == [4, 8]


@pytest.mark.slow  # the signalled group, its resume and an uninterrupted group: 10 s
def test_a_group_resumes_from_its_checkpoints_as_if_never_stopped(tmp_path, trial_config, spoken):
    """SIGTERM at the group's evaluation of step 8 leaves a checkpoint of each trial there;
    `resume=true` continues both in one program from step 8 (a third, new trial in the
    same call trains from step 0 in a part of its own), and every row is the row of a
    group that was never stopped."""
    trials = [("hparams.lr=1e-3", "rng_seed=1"), ("hparams.lr=3e-3", "rng_seed=2")]
    new = ("hparams.lr=2e-3", "rng_seed=3")
    stopped = jobs(tmp_path / "stopped", trial_config, *[(SIGNALLED, *t) for t in trials])
    SIGNAL.update(evals=0, at_eval=3)
    try:
        with pytest.raises(TrialInterrupted):
            train_and_evaluate_group(stopped, "g1")
    finally:
        SIGNAL["at_eval"] = None
    resume = [(SIGNALLED, *t, "resume=true") for t in (*trials, new)]
    outcomes = train_and_evaluate_group(jobs(tmp_path / "stopped", trial_config, *resume), "g2")
    assert [type(o) for o in outcomes] == [TrialResult] * 3
    resumed = [line for line in spoken if line[1].startswith("Resumed")]
    assert resumed == [(0, "Resumed from the checkpoint at step 8."), (1, resumed[0][1])]

    never = jobs(tmp_path / "never", trial_config, *trials, new)
    train_and_evaluate_group(never[:2], "g3")
    train_and_evaluate_group(never[2:], "g4")
    for job in ("0", "1", "2"):
        record = metadata(tmp_path / "stopped" / job)
        assert (record["status"], record["attempt"]) == ("completed", 0)
        got, want = rows(tmp_path / "stopped" / job), rows(tmp_path / "never" / job)
        assert list(got["global_step"]) == list(want["global_step"]) == [4, 8, 12]
        for column in ("train.loss", "validation.loss", "validation.accuracy"):
            assert got[column].to_numpy() == pytest.approx(want[column].to_numpy(), abs=1e-5)


@pytest.mark.slow  # trains whole trials; the fast tier keeps the rules' own tests
def test_a_signal_during_a_launch_waits_for_every_trial(tmp_path, trial_config, monkeypatch):
    """SIGTERM while the group's launch to step 12 runs: it is charged to each trial, and
    both end with a row at step 12."""
    queue, launches = loop.Loop._queue, []

    def signalled(self, step, *args):
        launches.append(step)
        if step == 8:
            os.kill(os.getpid(), signal.SIGTERM)
        return queue(self, step, *args)

    monkeypatch.setattr(loop.Loop, "_queue", signalled)
    settings = ("checkpoint.enabled=false", "max_steps=16")
    group = jobs(tmp_path, trial_config, settings, (*settings, "hparams.lr=3e-3"))
    with pytest.raises(TrialInterrupted):
        train_and_evaluate_group(group, "g10")
    for job in (0, 1):
        assert metadata(tmp_path / str(job))["status"] == "interrupted"
        assert list(rows(tmp_path / str(job))["global_step"]) == [4, 8, 12]


def test_a_signal_while_the_group_prepares_records_each_trial_and_exits(
    tmp_path, trial_config, monkeypatch, capsys
):
    """SIGTERM while the group's programs compile: every trial's record says
    `interrupted` by the time the process exits, with status 143 and one line."""
    at_exit = {}

    def exit_(status):
        records = [metadata(tmp_path / str(job))["status"] for job in (0, 1)]
        at_exit.update(status=status, records=records)
        raise KeyboardInterrupt  # out of the handler; the group records it as it ends

    real = prepare.prepare

    def prepare_signalled(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "_exit", exit_)
    monkeypatch.setattr(prepare, "prepare", prepare_signalled)
    train_and_evaluate_group(jobs(tmp_path, trial_config, (), ("rng_seed=2",)), "g5")
    assert at_exit == {"status": 143, "records": ["interrupted", "interrupted"]}
    assert capsys.readouterr().err == (
        "aeff: stopped by SIGTERM before its records began; nothing to resume.\n"
    )


@pytest.mark.slow  # trains a group: 4 s
def test_a_signal_while_the_records_begin_waits_for_them(tmp_path, trial_config, monkeypatch):
    """SIGTERM while the first trial's records begin: all begin whole, then the group
    stops, each recorded `interrupted` (three trials: the first test's programs)."""
    begin = trial._begin

    def begin_signalled(member, *args):
        if member.index == 0:
            signal.raise_signal(signal.SIGTERM)
        return begin(member, *args)

    monkeypatch.setattr(trial, "_begin", begin_signalled)
    three = jobs(tmp_path, trial_config, (), ("rng_seed=2",), ("rng_seed=3",))
    with pytest.raises(TrialInterrupted) as stopped:
        train_and_evaluate_group(three, "g6")
    assert stopped.value.signum == signal.SIGTERM
    for job in (0, 1, 2):
        assert metadata(tmp_path / str(job))["status"] == "interrupted"
        assert (tmp_path / str(job) / "config_resolved.yaml").exists()  # begun whole


@pytest.mark.slow  # each trial's program alone, then the rest's: 8-15 s each
@pytest.mark.parametrize(("from_step", "its_rows"), [(0, []), (6, [4])])
def test_a_trial_whose_own_code_crashes_fails_alone_and_the_others_train_on(
    tmp_path, trial_config, from_step, its_rows
):
    """Job 1's submission raises inside the group's program for its learning rate, as the
    programs first run (prepared) or at step 6 (training): it ends `failed` with its own
    error (found by running each trial alone, off the clock), and jobs 0 and 2 train on in
    a program without it to their last step, their records their own."""
    target = f"submission._target_={__name__}.OneBad"
    target = (target, f"+submission.from_step={from_step}")
    group = jobs(
        tmp_path,
        trial_config,
        (*target, "hparams.lr=1e-3", "rng_seed=1"),
        (*target, "hparams.lr=1e-2", "rng_seed=2"),
        (*target, "hparams.lr=2e-3", "rng_seed=3"),
    )
    outcomes = train_and_evaluate_group(group, "g11")
    assert [type(o) for o in outcomes] == [TrialResult, jax.errors.JaxRuntimeError, TrialResult]
    assert "is too high for OneBad" in str(outcomes[1])
    failed = metadata(tmp_path / "1")
    assert failed["status"] == "failed" and "is too high for OneBad" in failed["error_message"]
    written = (tmp_path / "1" / "metrics.csv").exists()
    assert (list(rows(tmp_path / "1")["global_step"]) if written else []) == its_rows
    for job in (0, 2):
        record = metadata(tmp_path / str(job))
        assert record["status"] == "completed" and "error_message" not in record
        assert list(rows(tmp_path / str(job))["global_step"]) == [4, 8, 12]
        assert outcomes[job].global_step == 12
    # the healthy trials were charged only the launches they ran
    assert outcomes[0].accumulated_submission_time == outcomes[2].accumulated_submission_time


@pytest.mark.slow  # trains a group: 4 s
def test_every_trials_run_dir_is_held_from_claim_to_end(tmp_path, trial_config, monkeypatch):
    """While a group trains, each trial's run dir is locked: `summary` calls it running,
    and no other process can take it."""
    held = []
    append = RunDir.append

    def append_checked(self, row):
        held.append((self.path.name, Lock.is_held(self.path)))
        append(self, row)

    monkeypatch.setattr(RunDir, "append", append_checked)
    group = jobs(tmp_path, trial_config, ("rng_seed=1",), ("rng_seed=2", "hparams.lr=3e-3"))
    train_and_evaluate_group(group, "g12")
    assert sorted(held) == sorted((str(job), True) for job in (0, 1) for _ in range(3))
    assert not any(Lock.is_held(tmp_path / str(job)) for job in (0, 1))  # released at the end
