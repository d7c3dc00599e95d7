"""Trials as one program (aeff.training.loop), in-process on the bundled MNIST: the group's
program masks the trials that have ended; each trial is charged the group's time; on a
time cadence, evaluations, snapshots and the refined crossing fall where they fall for
the trial alone. That each trial's rows equal its rows alone under a step cadence is
shown here in-process, and end to end through the launcher in test_vectorized_sweeps.py.
"""

import dataclasses
import logging
import math
import signal

import jax
import numpy as np
import pytest
from helpers.in_process import MomentumOrNot
from helpers.scripted import CLOCK, STEP_SECONDS, TimedAdam
from helpers.wild_adam import WildAdamHParams

from aeff.errors import ConfigError, TrialInterrupted
from aeff.interrupts import interrupts_noted
from aeff.submissions.nesterov import NesterovHParams
from aeff.training import loop as training_loop
from aeff.training import programs
from aeff.training.checkpoints import TrialCheckpoints
from aeff.training.loop import Loop, Member, limits_of, run_trial
from aeff.training.prepare import Prepared, initial_state, prepare
from aeff.workloads.mnist import METRIC_NAMES, MnistWorkload

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
    return prepare(
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
    """Prepared trials whose evaluation of a split takes `split_seconds` on the fake clock."""

    split_seconds = 0.0

    def programs(self, size=None):
        single, fused, evaluate = super().programs(size)

        def timed(*args):
            CLOCK.advance(self.split_seconds)
            return evaluate(*args)

        return single, fused, timed


COMPILE_SECONDS = 1000.0


@dataclasses.dataclass(frozen=True)
class TimedWildAdam(TimedAdam):
    """TimedAdam (every step of every trial moves the fake clock by STEP_SECONDS), with no
    bounds on its hyperparameters, whose every trace (a compile) takes COMPILE_SECONDS."""

    hparams_schema = WildAdamHParams

    def update_params(self, workload, params, optimizer_state, model_state, batch, rng):
        CLOCK.advance(COMPILE_SECONDS)  # Python: runs when traced, not when the step runs
        return super().update_params(workload, params, optimizer_state, model_state, batch, rng)


# These tests share one program: three trials, the third of which diverges at step 2.
THREE = [(4e-3, 1e-4, 6), (2e-3, 1e-8, 6), (1e37, 1e-8, 5)]
SUBMISSION = TimedWildAdam(batch_size=2048)


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
    monkeypatch.setattr(training_loop, "ROWS_ON_CONSOLE", 2)
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
        prepare(
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
    for (single, single_rows), (result, rows) in zip(alone, grouped, strict=True):
        assert result.goal_reached and result.steps_to_target == single.steps_to_target
        assert result.time_to_target == 2 * single.time_to_target
        assert result.time_to_target_resolution == single.time_to_target_resolution
        assert result.accumulated_eval_time == single.accumulated_eval_time == 0.0
        assert [r["global_step"] for r in rows] == [r["global_step"] for r in single_rows]
        # Evaluations come every 3 steps from step 1 (a group's launch of 1.5 s is cut to
        # 1 s: MAX_LAUNCH_SECONDS); the snapshots' rows lie between the last one before
        # the crossing and the crossing
        refined = [r["global_step"] for r in rows[:-1] if (r["global_step"] - 1) % 3]
        if resolution:
            assert refined and max(refined) <= result.steps_to_target < min(refined) + 3
        else:
            assert not refined
        for row, single_row in zip(rows, single_rows, strict=True):
            assert (
                row["accumulated_submission_time"] == 2 * single_row["accumulated_submission_time"]
            )
            assert row["validation.accuracy"] == pytest.approx(
                single_row["validation.accuracy"], abs=1e-6
            )
