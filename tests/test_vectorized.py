"""Trials as one program (aeff.group_loop): each trial of a group trains, evaluates, stops
and diverges exactly as it does alone, and is charged the group's time.

In-process on the bundled MNIST: four trials with their own lr, epsilon and seed, one of
which diverges (lr=1e37 overflows at its second step) and one of which reaches the target
first, run as a group and each alone. The three others' rows equal their rows alone,
where no trial diverged beside them: a diverged trial cannot change the others.
"""

import dataclasses
import math

import jax
import numpy as np
import pytest
from conftest import shared_trial_scope
from test_rules import CLOCK, STEP_SECONDS, TimedAdam
from wild_adam import WildAdam, WildAdamHParams

from aeff import group_loop, runner, steps
from aeff.workloads.mnist import MnistWorkload

BATCH = 256
TRIALS = [  # (lr, epsilon, seed)
    (1e-3, 1e-8, 0),
    (4e-3, 1e-6, 1),
    (1e37, 1e-8, 2),
    (2e-3, 1e-4, 3),
]
SETTINGS = {"max_steps": 40, "eval_every_steps": 8, "steps_per_dispatch": 4}
TARGET = 0.845  # validation accuracy: trial 1 reaches it first, trial 3 later, trial 0 never


@pytest.fixture(scope="module")
def workload(mnist_data_dir):
    return MnistWorkload(
        data_dir=str(mnist_data_dir), target_value=TARGET, max_allowed_runtime_sec=600.0
    )


def hparams(lr, epsilon):
    return WildAdamHParams(lr=lr, epsilon=epsilon)


@pytest.fixture(scope=shared_trial_scope)
def alone(workload):
    """Each trial by itself: (result, rows)."""
    runs = []
    for lr, epsilon, seed in TRIALS:
        rows = []
        result = runner.run_trial(
            workload, WildAdam(batch_size=BATCH), hparams(lr, epsilon), seed,
            on_eval=rows.append, **SETTINGS,
        )  # fmt: skip
        runs.append((result, rows))
    return runs


def run_group(workload, submission, trials, clock=None, **settings):
    """The trials as one group: (results, rows of each, the loop)."""
    rows = [[] for _ in trials]
    members = [
        group_loop.Member(hparams(lr, epsilon), seed, on_eval=rows[i].append)
        for i, (lr, epsilon, seed) in enumerate(trials)
    ]
    clock = {"clock": clock} if clock else {}
    group = group_loop.prepare_group(
        workload,
        submission,
        members,
        steps_per_dispatch=settings.pop("steps_per_dispatch"),
        max_steps=settings["max_steps"],
        eval_every_steps=settings["eval_every_steps"],
        **clock,
    )
    loop = group_loop.GroupLoop(group, members, **settings, **clock)
    return loop.run(), rows, loop


@pytest.fixture(scope=shared_trial_scope)
def grouped(workload):
    return run_group(workload, WildAdam(batch_size=BATCH), TRIALS, **SETTINGS)


@pytest.mark.slow  # eight trials, in-process: 13 s
def test_the_trials_end_as_they_do_alone(alone, grouped):
    results, _, _ = grouped
    assert [r.status for r in results] == ["completed", "completed", "diverged", "completed"]
    for (single, _), result in zip(alone, results, strict=True):
        assert result.status == single.status
        assert result.global_step == single.global_step
        assert result.goal_reached == single.goal_reached
        assert result.steps_to_target == single.steps_to_target
        assert result.rng_seed == single.rng_seed
    assert results[1].steps_to_target < results[3].steps_to_target < SETTINGS["max_steps"]
    assert results[2].global_step == 2 and not results[0].goal_reached


@pytest.mark.slow  # eight trials, in-process: 13 s
def test_each_row_equals_the_trials_row_alone(alone, grouped):
    """Steps, epochs and every metric (float32 tolerance; a diverged trial's are NaN)."""
    _, rows, _ = grouped
    for (_, single_rows), group_rows in zip(alone, rows, strict=True):
        assert [r["global_step"] for r in group_rows] == [r["global_step"] for r in single_rows]
        for single, row in zip(single_rows, group_rows, strict=True):
            metrics = [k for k in single if "." in k]
            assert metrics and set(metrics) == {k for k in row if "." in k}
            assert row["epoch"] == single["epoch"]
            assert row["goal_reached"] == single["goal_reached"]
            np.testing.assert_allclose(
                [row[k] for k in metrics], [single[k] for k in metrics], rtol=2e-5, atol=1e-6
            )


@pytest.mark.slow  # eight trials, in-process: 13 s
def test_the_running_trials_move_to_a_smaller_program(grouped):
    """Two of four ended (divergence, target): the two running ones were repacked."""
    _, _, loop = grouped
    assert len(loop.slots) == 1  # 4 -> 2 (two ended) -> 1 (the third reached the target)
    assert loop.compile_time > loop.p.compile_time


def test_an_inactive_trial_and_a_diverged_one_stop_changing(workload):
    """The group program leaves an inactive trial as it is and stops a trial at the step of
    its first non-finite loss, that step taken."""
    submission = WildAdam(batch_size=BATCH)
    members = [group_loop.Member(hparams(lr, 1e-8), seed) for lr, _, seed in TRIALS[:3]]
    group = group_loop.prepare_group(workload, submission, members, steps_per_dispatch=3)
    p = group.prepared
    stream = group_loop.shuffled(p, p.stream, group.rng_seeds, 0)
    active = steps.replicate(np.array([True, False, True]), p.mesh)
    state, losses = p.fused_steps(p.state, stream, p.step_rng, active)
    assert list(np.asarray(state.global_step)[0]) == [3, 0, 2]
    before, after = steps.unstack(p.state, 1), steps.unstack(state, 1)
    for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
    assert np.isfinite(losses[0, 0]).all() and not np.isfinite(losses[0, 2, 1])


# Time: a fake clock that only the training steps move -----------------------------------


@dataclasses.dataclass(frozen=True)
class TimedWildAdam(TimedAdam):
    """TimedAdam (every step of every trial moves the clock by STEP_SECONDS), unbounded."""

    hparams_schema = WildAdamHParams


def test_each_trial_is_charged_the_groups_time_and_the_budget_ends_all(mnist_data_dir):
    """Two trials whose steps take STEP_SECONDS each, one after another in the program: a
    group step takes 2 * STEP_SECONDS, which is what both are charged; a budget of ten
    group steps ends both at step 10; evaluations are not charged."""
    budget = 10 * 2 * STEP_SECONDS
    workload = MnistWorkload(data_dir=str(mnist_data_dir), max_allowed_runtime_sec=budget)
    CLOCK.now = 0.0
    trials = [(1e-3, 1e-8, 0), (2e-3, 1e-8, 1)]
    results, rows, _ = run_group(
        workload, TimedWildAdam(batch_size=512), trials, clock=CLOCK,
        max_steps=100, eval_every_steps=4, steps_per_dispatch=4,
    )  # fmt: skip
    for result, trial_rows in zip(results, rows, strict=True):
        assert result.global_step == 10
        assert math.isclose(result.accumulated_submission_time, budget)
        assert [r["global_step"] for r in trial_rows] == [4, 8, 10]
        assert [r["accumulated_submission_time"] for r in trial_rows] == [
            4 * 2 * STEP_SECONDS, 8 * 2 * STEP_SECONDS, budget,
        ]  # fmt: skip
        assert result.accumulated_eval_time == 0.0


@pytest.mark.slow  # eight trials, in-process: 13 s
def test_a_group_of_one_trial_is_the_trial_alone(workload, alone):
    results, rows, _ = run_group(workload, WildAdam(batch_size=BATCH), TRIALS[:1], **SETTINGS)
    single, single_rows = alone[0]
    assert results[0].global_step == single.global_step
    for row, single_row in zip(rows[0], single_rows, strict=True):
        assert row["validation.loss"] == pytest.approx(single_row["validation.loss"], rel=2e-5)
