"""Trials grouped into one program, in-process on the bundled MNIST: which trials the
vectorized launcher puts in one program and how many (`aeff.trial.group_key`, up to
`hydra.launcher.trials_per_program`); the loop that trains them as one program
(`aeff.training.loop`); and a group's lifecycle through `aeff.trial.train_and_evaluate_group`
(the launcher's call): claims, bad input, crashes, signals and resume, each trial's records
its own. The launcher itself, and sweeps through it in processes, are in
test_vectorized_launcher.py."""

import copy
import dataclasses
import logging
import math
import os
import signal

import jax
import numpy as np
import pytest
from helpers import HELPERS, data_overrides, owned_by_another_process
from helpers.in_process import SIGNAL, MomentumOrNot, metadata, rows
from helpers.scripted import STEP_SECONDS, Scripted, TimedAdam
from helpers.wild_adam import WildAdamHParams
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from aeff import trial
from aeff.cli.app import compose_config, register
from aeff.errors import ConfigError, RunDirBusy, TrialInterrupted
from aeff.interrupts import interrupts_noted
from aeff.records.lock import Lock
from aeff.records.run_dir import RunDir, rows_digest
from aeff.records.speaker import SPEAKER
from aeff.submissions.adam import Adam
from aeff.submissions.nesterov import NesterovHParams
from aeff.training import loop, prepare, programs
from aeff.training.checkpoints import TrialCheckpoints
from aeff.training.loop import Loop, Member, TrialResult, limits_of, run_trial
from aeff.training.prepare import Prepared, initial_state
from aeff.trial import TrialJob, group_key, train_and_evaluate_group
from aeff.workloads.mnist import METRIC_NAMES, MnistWorkload
from hydra_plugins.aeff_launcher.vectorized_launcher import VectorizedLauncher, vectorizable

# Which trials share a program (group_key, the launcher's groups) ----------------------


@pytest.fixture(scope="module")
def composed():
    """The app's config with Hydra's node, composed once; tests patch copies of it."""
    register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        return compose("config", ["hparams.lr=1e-3", "rng_seed=1"], return_hydra_config=True)


def patched(composed, **values):
    """A copy of the trial's config (without Hydra's node) with `values` (dotted keys)."""
    cfg = copy.deepcopy(composed)
    with open_dict(cfg):
        del cfg["hydra"]
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    return cfg


def key(composed, run_dir, **values):
    return group_key(patched(composed, **values), run_dir)


@pytest.mark.parametrize(
    "same", [{"hparams.lr": 3e-3}, {"hparams.epsilon": 1e-4, "rng_seed": 7}, {"meta.arm": "b"}]
)
def test_hyperparameters_seeds_and_labels_may_differ_in_a_group(composed, tmp_path, same):
    assert key(composed, tmp_path, **same) == key(composed, tmp_path)


NESTEROV = {"submission._target_": "aeff.submissions.nesterov.Nesterov", "hparams": {}}


@pytest.mark.parametrize(
    "apart",
    [
        {"batch_size": 512},
        {"max_steps": 10},
        {"eval_every_steps": 5},
        {"steps_per_dispatch": 4},
        {"stop_at_target": False},
        {"workload.target_value": 0.9},
        {"workload.max_allowed_runtime_sec": 5.0},
        {"workload.hidden_width": 64},
        NESTEROV,
    ],
)
def test_what_shapes_the_programs_or_the_loop_keeps_trials_apart(composed, tmp_path, apart):
    other = key(composed, tmp_path, **apart)
    assert other is not None and other != key(composed, tmp_path)


def test_bad_input_runs_alone_and_a_resume_groups_by_its_checkpoint_step(composed, tmp_path):
    assert key(composed, tmp_path, **{"hparams.lr": -1.0}) is None
    fresh = key(composed, tmp_path / "new", resume=True)
    (tmp_path / "a" / "checkpoints" / "40").mkdir(parents=True)
    (tmp_path / "b" / "checkpoints" / "40").mkdir(parents=True)
    at_40 = key(composed, tmp_path / "a", resume=True, **{"hparams.lr": 3e-3})
    assert at_40 == key(composed, tmp_path / "b", resume=True) != fresh
    (tmp_path / "b" / "checkpoints" / "48").mkdir()
    assert key(composed, tmp_path / "b", resume=True) not in (at_40, fresh)
    assert key(composed, tmp_path / "a") == key(composed, tmp_path / "new")  # refused later


def sweep_configs(composed, tmp_path, jobs):
    """The jobs' configs as a launcher gets them: Hydra's node included, numbered."""
    configs = []
    for num, values in enumerate(jobs):
        cfg = copy.deepcopy(composed)
        with open_dict(cfg):
            for key_, value in values.items():
                OmegaConf.update(cfg, key_, value)
            cfg.hydra.job.num = num
            cfg.hydra.runtime.output_dir = str(tmp_path / str(num))
        configs.append(cfg)
    return configs


@pytest.fixture
def no_hydra_job_left():
    """The launcher sets Hydra's job config, as Hydra's own launchers do: cleared after the
    tests that call it."""
    yield
    HydraConfig.instance().cfg = None


@pytest.mark.usefixtures("no_hydra_job_left")
def test_groups_hold_at_most_trials_per_program_in_job_order(composed, tmp_path):
    jobs = [{"hparams.lr": lr, "batch_size": b} for lr in (1e-3, 2e-3, 3e-3) for b in (256, 512)]
    jobs.append({"hparams.lr": -1.0})  # bad input: alone
    launcher = VectorizedLauncher(trials_per_program=2)
    launcher.task_function = vectorizable(lambda cfg: cfg)
    # batch 256: jobs 0, 2, 4 (two groups: at most 2 a program); batch 512: 1, 3, 5
    groups = launcher._groups(sweep_configs(composed, tmp_path, jobs))
    assert groups == [[0, 2], [1, 3], [4], [5], [6]]


@pytest.mark.usefixtures("no_hydra_job_left")
def test_jobs_that_change_their_process_run_alone(composed, tmp_path):
    """A job that moves into its run dir or sets environment variables cannot share a
    process's program with others."""
    jobs = [{"hparams.lr": lr} for lr in (1e-3, 2e-3, 3e-3, 4e-3)]
    jobs[1]["hydra.job.chdir"] = True
    jobs[2]["hydra.job.env_set"] = {"OMP_NUM_THREADS": "1"}
    launcher = VectorizedLauncher()
    launcher.task_function = vectorizable(lambda cfg: cfg)
    assert launcher._groups(sweep_configs(composed, tmp_path, jobs)) == [[0, 3], [1], [2]]


@pytest.mark.usefixtures("no_hydra_job_left")
def test_resumed_jobs_share_a_group_when_they_continue_from_one_step(composed, tmp_path):
    jobs = [{"hparams.lr": lr, "resume": True} for lr in (1e-3, 2e-3, 3e-3, 4e-3, 5e-3)]
    for job, step in ((1, 40), (2, 48), (3, 40)):
        (tmp_path / str(job) / "checkpoints" / str(step)).mkdir(parents=True)
    launcher = VectorizedLauncher()
    launcher.task_function = vectorizable(lambda cfg: cfg)
    assert launcher._groups(sweep_configs(composed, tmp_path, jobs)) == [[0, 4], [1, 3], [2]]


@pytest.mark.usefixtures("no_hydra_job_left")
def test_another_apps_jobs_run_one_by_one(composed, tmp_path):
    launcher = VectorizedLauncher()
    launcher.task_function = lambda cfg: cfg
    configs = sweep_configs(composed, tmp_path, [{"hparams.lr": 1e-3}, {"hparams.lr": 2e-3}])
    assert launcher._groups(configs) == [[0], [1]]


@pytest.mark.usefixtures("no_hydra_job_left")
def test_trials_per_program_must_be_positive(composed, tmp_path):
    with pytest.raises(ValueError, match="trials_per_program=0: use 1 or more"):
        VectorizedLauncher(trials_per_program=0)
    launcher = VectorizedLauncher(trials_per_program=1)  # every trial a program of its own
    launcher.task_function = vectorizable(lambda cfg: cfg)
    configs = sweep_configs(composed, tmp_path, [{"hparams.lr": 1e-3}, {"hparams.lr": 2e-3}])
    assert launcher._groups(configs) == [[0], [1]]


# K trials as one program (aeff.training.loop) -----------------------------------------

# The group's program masks the trials that have ended; each trial is charged the group's
# time; on a time cadence, evaluations, snapshots and the refined crossing fall where they
# fall for the trial alone. That each trial's rows equal its rows alone under a step cadence
# is shown here in-process, and end to end through the launcher in
# test_vectorized_launcher.py.

BATCH = 256


@pytest.fixture(scope="module")
def workload(mnist_data_dir):
    return MnistWorkload(data_dir=str(mnist_data_dir))


def hparams(lr, epsilon):
    return WildAdamHParams(lr=lr, epsilon=epsilon)


def members_of(trials, **callbacks) -> list[Member]:
    return [Member(hparams(lr, epsilon), seed, **callbacks) for lr, epsilon, seed in trials]


def prepared(workload, submission, members, limits, steps_per_dispatch, **clock) -> Prepared:
    hps, seeds = [m.hparams for m in members], [m.rng_seed for m in members]
    return prepare.prepare(
        workload, submission, hps, seeds, limits, steps_per_dispatch=steps_per_dispatch, **clock
    )


def run_group(
    workload, submission, trials, clock=None, checkpoints=(), split_seconds=0.0, **settings
):
    """The trials as one group: (results, rows of each, the loop). With `split_seconds`,
    evaluating a split takes that long on the fake clock."""
    rows = [[] for _ in trials]
    members = members_of(trials)
    for member, trial_rows in zip(members, rows, strict=True):
        member.on_eval = trial_rows.append
    for member, saves in zip(members, checkpoints, strict=False):
        member.checkpoints = saves
    clock = {"clock": clock} if clock else {}
    steps_per_dispatch = settings.pop("steps_per_dispatch")
    limits = limits_of(workload, **settings)
    p = prepared(workload, submission, members, limits, steps_per_dispatch, **clock)
    if split_seconds:
        p = TimedEvaluation(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)})
        p.split_seconds = split_seconds
    loop = Loop(p, members, limits, **clock)
    return loop.run(), rows, loop


class TimedEvaluation(Prepared):
    """Prepared trials whose evaluation of a split takes `split_seconds` on their submission's
    fake clock."""

    split_seconds = 0.0

    def programs(self, size=None):
        single, fused, evaluate = super().programs(size)

        def timed(*args):
            self.submission.scripted.advance(self.split_seconds)
            return evaluate(*args)

        return single, fused, timed


COMPILE_SECONDS = 1000.0


@dataclasses.dataclass(frozen=True)
class TimedWildAdam(TimedAdam):
    """TimedAdam (every step of every trial moves the fake clock by STEP_SECONDS), with no
    bounds on its hyperparameters, whose every trace (a compile) takes COMPILE_SECONDS."""

    hparams_schema = WildAdamHParams

    def update_params(self, workload, params, optimizer_state, model_state, batch, rng):
        self.scripted.advance(COMPILE_SECONDS)  # Python: runs when traced, not when the step runs
        return super().update_params(workload, params, optimizer_state, model_state, batch, rng)


# These tests share one program: three trials, the third of which diverges at step 2.
THREE = [(4e-3, 1e-4, 6), (2e-3, 1e-8, 6), (1e37, 1e-8, 5)]
# This module's fake clock, held by its submission: the tests share its compilations.
CLOCK = Scripted()
SUBMISSION = TimedWildAdam(batch_size=2048, scripted=CLOCK)


@pytest.mark.slow  # compiles programs of its own; the full suite runs it
def test_an_inactive_trial_and_a_diverged_one_stop_changing(workload):
    """The group program leaves an inactive trial as it is and stops a trial at the step of
    its first non-finite loss, that step taken."""
    p = prepared(workload, SUBMISSION, members_of(THREE), limits_of(workload), 4)
    active = programs.replicate(np.array([True, False, True]), p.mesh)
    _, fused, _ = p.programs()
    state, losses, alive = fused(p.state, p.stream, p.step_rng, active)
    assert list(np.asarray(state.global_step)[0]) == [4, 0, 2]
    assert list(np.asarray(alive)[0]) == [True, False, False]  # the next program's `active`
    before, after = programs.unstack(p.state, 1), programs.unstack(state, 1)
    for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
    assert np.isfinite(losses[0, 0]).all() and not np.isfinite(losses[0, 2, 1])


@pytest.mark.slow  # its vmap-ed programs are compiled for it alone: 3 s
def test_vmap_and_one_trial_after_another_compute_the_same(workload):
    """The two forms of a group's programs (a CPU gets the second, a GPU the first)."""
    p = prepared(workload, SUBMISSION, members_of(THREE), limits_of(workload), 4)
    active = programs.replicate(np.ones(3, bool), p.mesh)
    program_key = workload.program_key()
    outputs = []
    for vectorized in (True, False):
        train = programs.train_steps(program_key, SUBMISSION, 4, 3, vectorized)
        state, losses, _ = train(p.state, p.stream, p.step_rng, active)
        evaluate = programs.evaluate(program_key, 3, vectorized)
        outputs.append((state, losses, evaluate(state.variables, p.eval_splits["validation"])))
    for a, b in zip(*(jax.tree.leaves(o) for o in outputs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
    assert not np.isfinite(np.asarray(outputs[0][1])[0, 2]).all()  # the diverging trial


@pytest.mark.slow  # a group's programs: 4 s
def test_each_trial_is_charged_the_groups_time_and_the_budget_ends_all(workload):
    """Three trials whose steps take STEP_SECONDS each, one after another in the program: a
    group step takes 3 * STEP_SECONDS, which is what each is charged; the diverged one up
    to its step 2; a budget of ten group steps ends the others at step 10. An evaluation of
    the group (its two splits, 9 s each) is each trial's evaluation time, not charged;
    compiles (COMPILE_SECONDS each) are not charged either."""
    group_step, group_eval = 3 * STEP_SECONDS, 2 * 9.0
    budget = 10 * group_step
    CLOCK.now = 0.0
    results, rows, _ = run_group(
        dataclasses.replace(workload, max_allowed_runtime_sec=budget), SUBMISSION, THREE,
        clock=CLOCK, max_steps=100, eval_every_steps=4, steps_per_dispatch=4, split_seconds=9.0,
    )  # fmt: skip
    for result, trial_rows in zip(results[:2], rows[:2], strict=True):
        assert result.status == "completed" and result.global_step == 10
        assert math.isclose(result.accumulated_submission_time, budget)
        assert [r["global_step"] for r in trial_rows] == [4, 8, 10]
        assert [r["accumulated_submission_time"] for r in trial_rows] == [
            4 * group_step, 8 * group_step, budget,
        ]  # fmt: skip
        assert result.accumulated_eval_time == 3 * group_eval  # steps 4, 8, 10
        # A group step is longer than a launch may be (MAX_LAUNCH_SECONDS): a launch each.
        # So the diverged trial's last evaluation, at step 2, held these two up as well.
        assert result.wall_time == budget + 4 * group_eval
    diverged = results[2]
    assert diverged.status == "diverged" and diverged.global_step == 2
    assert math.isclose(diverged.accumulated_submission_time, 2 * group_step)
    assert [r["global_step"] for r in rows[2]] == [2]
    assert diverged.accumulated_eval_time == group_eval
    assert diverged.wall_time == 2 * group_step + group_eval


@pytest.mark.slow  # trains a group at length
def test_max_steps_ends_each_trial_at_it_and_hands_over_each_result(workload):
    """max_steps=30 between evaluations every 20 steps: the launch from step 20 stops at
    30, and its second program starts the second epoch (24 steps), with each trial's own
    order; each trial's `on_end` gets its result as it ends. The third trial diverges at
    step 2, in the first of its launch's programs, and the next ones leave it there."""
    ended = []
    members = members_of(THREE, on_end=ended.append)
    limits = limits_of(workload, max_steps=30, eval_every_steps=20)
    p = prepared(workload, SUBMISSION, members, limits, 4)
    loop = Loop(p, members, limits)
    results = loop.run()
    assert [r.global_step for r in results] == [30, 30, 2]
    assert list(np.asarray(loop.state.global_step)[0]) == [30, 30, 2]
    assert ended == [results[2], results[0], results[1]]  # in the order they ended
    assert p.steps_per_epoch == 24
    second_epoch = [programs.epoch_order(seed, 24, p.num_train) for _, _, seed in THREE]
    np.testing.assert_array_equal(np.asarray(loop.stream.order)[0], np.stack(second_epoch))


def test_a_large_groups_rows_stay_off_the_console(workload, monkeypatch, caplog):
    """Above ROWS_ON_CONSOLE trials (here 2, for a group of 3), rows are DEBUG lines."""
    monkeypatch.setattr(loop, "ROWS_ON_CONSOLE", 2)
    members = members_of(THREE)
    limits = limits_of(workload, max_steps=20, eval_every_steps=20)
    with caplog.at_level(logging.DEBUG, logger="aeff.training.loop"):
        Loop(prepared(workload, SUBMISSION, members, limits, 4), members, limits).run()
    rows = [r for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(rows) >= 3 and {r.levelno for r in rows} == {logging.DEBUG}


EVAL_COLUMNS = ("global_step", "epoch", *METRIC_NAMES)


def approx(expected):
    """float32 tolerance; a diverged trial's NaN loss equals NaN."""
    return pytest.approx(expected, rel=2e-5, abs=1e-6, nan_ok=True)


@pytest.mark.slow  # programs compiled for it alone (a repack's, the trials alone): 6 s
def test_each_trial_of_a_group_has_the_rows_it_has_alone(workload, tmp_path, caplog):
    """On a step cadence, across an epoch boundary (24 steps an epoch): the third trial
    diverges at step 2, the first reaches the target at step 24 (the second then runs on in
    a program of its own), the second at max_steps. Each has its rows, result and
    checkpoint alone."""
    on_target = dataclasses.replace(workload, target_value=0.87)
    settings = {"max_steps": 36, "eval_every_steps": 12, "steps_per_dispatch": 4}
    saves = [TrialCheckpoints(tmp_path / "group" / str(i), 0) for i in range(3)]
    CLOCK.now = 1e6  # far from 0: a time computed as the sum of two readings shows
    with caplog.at_level(logging.INFO, logger="aeff.training.loop"):
        results, rows, loop = run_group(on_target, SUBMISSION, THREE, CLOCK, saves, **settings)
    ended = [(r.status, r.global_step, r.steps_to_target) for r in results]
    assert ended == [("completed", 24, 24), ("completed", 36, 36), ("diverged", 2, None)]
    assert loop.slots == [loop.trials[1]]
    # Three trials in the program to step 24, the second alone from then on; the compile
    # of its program (its warm-up run, and COMPILE_SECONDS a trace) is compile time
    assert results[1].accumulated_submission_time == (24 * 3 + 12) * STEP_SECONDS
    (line,) = [r.getMessage() for r in caplog.records if "a program of their own" in r.message]
    repack = float(line.rpartition("(")[2].partition("s to compile")[0])
    # the warm-up runs (every trial masked) and their traces, if any, on the clock
    assert STEP_SECONDS <= repack < 3 * COMPILE_SECONDS
    assert STEP_SECONDS <= loop.p.compile_time < 4 * COMPILE_SECONDS
    assert results[0].compile_time == loop.p.compile_time
    assert results[1].compile_time == pytest.approx(loop.p.compile_time + repack, abs=0.01)
    for i, ((lr, epsilon, seed), result, grouped) in enumerate(
        zip(THREE, results, rows, strict=True)
    ):
        alone: list = []
        CLOCK.now = 0.0
        single = run_trial(  # one step a program: one to compile, the same numbers
            on_target, SUBMISSION, hparams(lr, epsilon), seed, on_eval=alone.append,
            clock=CLOCK, checkpoints=TrialCheckpoints(tmp_path / str(i), 0),
            **{**settings, "steps_per_dispatch": 1},
        )  # fmt: skip
        assert (result.status, result.num_evals) == (single.status, single.num_evals)
        assert result.final_metrics == approx(single.final_metrics)
        assert len(grouped) == len(alone)
        for row, single_row in zip(grouped, alone, strict=True):
            for column in EVAL_COLUMNS:
                assert row[column] == approx(single_row[column]), (seed, column)
        # Its checkpoint holds its own state at its last step, as alone (a diverged trial's
        # counters at the step it diverged; alone, its state is its launch's end)
        template = initial_state(on_target, SUBMISSION, hparams(lr, epsilon), seed)[0]
        own, mine = (
            TrialCheckpoints(d, 0).restore(template, result.global_step)
            for d in (tmp_path / "group" / str(i), tmp_path / str(i))
        )
        assert own[1]["global_step"] == mine[1]["global_step"] == result.global_step
        if result.status == "diverged":
            continue
        assert int(own[0].global_step) == int(mine[0].global_step) == result.global_step
        for a, b in zip(jax.tree.leaves(own[0]), jax.tree.leaves(mine[0]), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)


def test_a_signal_ends_each_running_trial_with_its_row_and_checkpoint(workload, tmp_path):
    """SIGTERM while the first trial's row of step 12 is handed out: the two running
    trials each end with a row and a checkpoint of step 12, once each; the diverged one is
    left as it ended."""
    rows: list[list] = [[], [], []]

    def first_row(row):
        rows[0].append(row)
        if len(rows[0]) == 2:
            signal.raise_signal(signal.SIGTERM)

    members = members_of(THREE)
    for member, trial_rows in zip(members, rows, strict=True):
        member.on_eval = trial_rows.append
    members[0].on_eval = first_row
    for i, member in enumerate(members):
        member.checkpoints = TrialCheckpoints(tmp_path / str(i), 1e9)  # none due: on the way out
    limits = limits_of(workload, max_steps=36, eval_every_steps=6)
    p = prepared(workload, SUBMISSION, members, limits, 4)
    with interrupts_noted(), pytest.raises(TrialInterrupted):
        Loop(p, members, limits).run()
    assert [[r["global_step"] for r in trial_rows] for trial_rows in rows] == [
        [6, 12], [6, 12], [2],
    ]  # fmt: skip
    saved = []
    for i in (0, 1):
        assert [p.name for p in (tmp_path / str(i)).iterdir() if p.name.isdigit()] == ["12"]
        template = initial_state(workload, SUBMISSION, members[i].hparams, members[i].rng_seed)[0]
        saved.append(TrialCheckpoints(tmp_path / str(i), 0).restore(template, 12)[0])
    assert not (tmp_path / "2").exists()
    # each its own state: the trials differ in hyperparameters and seed
    assert [int(state.global_step) for state in saved] == [12, 12]
    kernels = [np.asarray(jax.tree.leaves(state.params)[-1]) for state in saved]
    assert not np.allclose(*kernels)


def test_hyperparameters_that_change_the_state_cannot_share_a_program(workload):
    values = [NesterovHParams(momentum=m) for m in (0.9, 0.0)]
    with pytest.raises(ConfigError) as refused:
        prepare.prepare(
            workload,
            MomentumOrNot(batch_size=BATCH),
            values,
            [0, 0],
            limits_of(workload),
            steps_per_dispatch=1,
        )
    assert str(refused.value) == (
        "MomentumOrNot's optimizer state differs in structure between these hyperparameters, "
        "so they cannot share one program: run this sweep with another launcher (the "
        "default: drop hydra/launcher=vectorized)."
    )


def alone_and_grouped(workload_of, trials, **settings):
    """Each trial alone on a workload of half the period and budget, and the trials as a
    group of two (each group step takes twice a trial's): the same schedule in steps."""
    alone = []
    for lr, epsilon, seed in trials:
        rows = []
        CLOCK.now = 0.0
        result = run_trial(
            workload_of(0.5), SUBMISSION, hparams(lr, epsilon), seed,
            on_eval=rows.append, clock=CLOCK, **settings,
        )  # fmt: skip
        alone.append((result, rows))
    CLOCK.now = 0.0
    results, rows, _ = run_group(workload_of(1.0), SUBMISSION, trials, clock=CLOCK, **settings)
    return alone, list(zip(results, rows, strict=True))


@pytest.mark.slow  # four trials in-process: 6 s each
@pytest.mark.parametrize("resolution", [0.05, None])
def test_time_cadence_and_snapshots_find_the_same_crossing_in_a_group(mnist_data_dir, resolution):
    """Evaluations on the period, snapshots between them (target_resolution) and the first
    crossing refined from them: each grouped trial has the rows it has alone, at twice the
    submission time, since each group step takes two trials' steps. Without snapshots,
    each launch ends at the period's end, as alone."""

    def workload_of(scale):
        return MnistWorkload(
            data_dir=str(mnist_data_dir),
            target_value=0.8,
            eval_period_time_sec=1.5 * scale,
            max_allowed_runtime_sec=20.0 * scale,
        )

    trials = [(2e-3, 1e-8, 0), (4e-3, 1e-6, 1)]
    settings = {"stop_at_target": False, "target_resolution": resolution, "steps_per_dispatch": 4}
    alone, grouped = alone_and_grouped(workload_of, trials, **settings)
    for (single, single_rows), (result, group_rows) in zip(alone, grouped, strict=True):
        assert result.goal_reached and result.steps_to_target == single.steps_to_target
        assert result.time_to_target == 2 * single.time_to_target
        assert result.time_to_target_resolution == single.time_to_target_resolution
        assert result.accumulated_eval_time == single.accumulated_eval_time == 0.0
        assert [r["global_step"] for r in group_rows] == [r["global_step"] for r in single_rows]
        # Evaluations come every 3 steps from step 1 (a group's launch of 1.5 s is cut to
        # 1 s: MAX_LAUNCH_SECONDS); the snapshots' rows lie between the last one before
        # the crossing and the crossing
        refined = [r["global_step"] for r in group_rows[:-1] if (r["global_step"] - 1) % 3]
        if resolution:
            assert refined and max(refined) <= result.steps_to_target < min(refined) + 3
        else:
            assert not refined
        for row, single_row in zip(group_rows, single_rows, strict=True):
            assert (
                row["accumulated_submission_time"] == 2 * single_row["accumulated_submission_time"]
            )
            assert row["validation.accuracy"] == pytest.approx(
                single_row["validation.accuracy"], abs=1e-6
            )


# A group's lifecycle (aeff.trial.train_and_evaluate_group) ----------------------------

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
