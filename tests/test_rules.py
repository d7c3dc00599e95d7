"""AlgoPerf's rules as arithmetic (`aeff.training.rules`), with plain numbers: no JAX, no
clock, no data. Times are in milliseconds written as seconds (0.004 is a 4 ms step)."""

import math

import pytest

from aeff.training import rules
from aeff.training.rules import Counters, Limits

LIMITS = Limits(budget=4.0, eval_period=0.5)


def counters(**values) -> Counters:
    return Counters(global_start_time=0.0, **values)


def test_a_launch_is_charged_its_time_steps_and_losses():
    c = counters()
    assert rules.charge(c, 0.012, [0.5, 0.25, 0.25], budget=4.0) is None
    assert (c.global_step, c.submission_time, c.train_loss_count) == (3, 0.012, 3)
    assert c.train_loss_sum == 1.0 and c.is_time_remaining


def test_a_launch_adds_its_losses_to_those_since_the_last_row():
    c = counters(global_step=4, train_loss_sum=2.0, train_loss_count=4)
    rules.charge(c, 0.004, [0.5], budget=4.0)
    assert (c.train_loss_sum, c.train_loss_count) == (2.5, 5)


def test_steps_of_unknown_loss_and_a_preparation_are_charged_their_time_only():
    """AlgoPerf's `update_params` reports no loss; its `prepare_for_eval` takes no step."""
    c = counters(global_step=3, submission_time=1.0, train_loss_sum=1.5, train_loss_count=3)
    rules.charge_steps(c, 0.5, 2, budget=4.0)
    assert (c.global_step, c.submission_time, c.is_time_remaining) == (5, 1.5, True)
    assert (c.train_loss_sum, c.train_loss_count) == (1.5, 3)
    rules.charge_steps(c, 2.5, 0, budget=4.0)
    assert (c.global_step, c.submission_time, c.is_time_remaining) == (5, 4.0, False)


@pytest.mark.parametrize("when, counts", [(3.9, True), (4.0, False), (4.5, False)])
def test_only_an_evaluation_made_while_time_remained_counts_toward_the_target(when, counts):
    assert rules.counts_toward_target(when, 4.0) is counts


def test_the_step_that_spends_the_budget_ends_the_time_remaining():
    c = counters(submission_time=3.996)
    rules.charge(c, 0.004, [0.1], budget=4.0)
    assert not c.is_time_remaining and not rules.keep_going(c, LIMITS)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_ends_the_launch_at_its_step_with_its_share_of_the_time(bad):
    """Steps after the first non-finite loss are taken back, with their share of the time."""
    c = counters(global_step=10, submission_time=1.0, train_loss_count=2)
    assert rules.charge(c, 0.016, [0.5, bad, math.nan, 0.5], budget=4.0) == 1
    assert c.global_step == 12 and c.train_loss_count == 4
    assert c.submission_time == pytest.approx(1.008)


def test_divergence_on_the_budgets_last_step_leaves_no_time():
    c = counters(submission_time=3.99)
    rules.charge(c, 0.02, [0.5, math.nan, 0.5, 0.5], budget=4.0)
    assert c.submission_time == pytest.approx(4.0) and not c.is_time_remaining


@pytest.mark.parametrize(
    ("c", "limits", "going"),
    [
        (counters(), LIMITS, True),
        (counters(is_time_remaining=False), LIMITS, False),
        (counters(goal_reached=True), LIMITS, False),
        (counters(goal_reached=True), Limits(4.0, 0.5, stop_at_target=False), True),
        (counters(global_step=7), Limits(4.0, 0.5, max_steps=7), False),
        (counters(global_step=6), Limits(4.0, 0.5, max_steps=7), True),
    ],
)
def test_a_trial_goes_on_while_budget_target_and_max_steps_allow(c, limits, going):
    assert rules.keep_going(c, limits) is going


@pytest.mark.parametrize(
    ("global_step", "eval_every_steps", "max_steps", "seconds_left", "to_check", "expected"),
    [
        (0, None, None, 100.0, None, 10),  # MAX_LAUNCH_SECONDS at 0.1 s a step
        (3, 5, None, 100.0, None, 2),  # the next step-cadence evaluation, after step 5
        (0, None, 7, 100.0, None, 7),  # max_steps
        (4, None, 7, 100.0, None, 3),  # ... counted from the step reached
        (0, None, None, 1.5, None, 7),  # near the budget's end, half the time left
        (0, None, None, 0.05, None, 1),  # ... but always a step: one at most over the budget
        (0, None, None, 100.0, 0.42, 5),  # a time-based check: the launch ends just past it
        (0, None, None, 100.0, 0.4, 4),  # ... or at it
        (0, None, None, 100.0, 0.0, 1),
    ],
)
def test_a_launch_runs_up_to_the_next_check(
    global_step, eval_every_steps, max_steps, seconds_left, to_check, expected
):
    assert rules.MAX_LAUNCH_SECONDS == 1.0
    size = rules.launch_size(
        global_step,
        Limits(100.0, 0.5, eval_every_steps=eval_every_steps, max_steps=max_steps),
        seconds_per_step=0.1,
        seconds_left=seconds_left,
        seconds_to_check=to_check,
    )
    assert size == expected


def test_the_first_launch_is_one_step_that_sets_the_pace():
    size = rules.launch_size(
        0, LIMITS, seconds_per_step=0.0, seconds_left=9.0, seconds_to_check=9.0
    )
    assert size == 1


def run_budget(step_seconds, budget: float = 4.0) -> tuple[Counters, list[float]]:
    """A trial's launches, sized by the rules at the last launch's pace, each step taking
    `step_seconds(step)`: its counters at the end, and each step's time."""
    limits, c, pace, times = Limits(budget, eval_period=1e9), counters(), 0.0, []
    while rules.keep_going(c, limits):
        size = rules.launch_size(
            c.global_step,
            limits,
            seconds_per_step=pace,
            seconds_left=budget - c.submission_time,
            seconds_to_check=None,
        )
        launch = [step_seconds(c.global_step + i) for i in range(size)]
        times += launch
        rules.charge(c, sum(launch), [0.1] * size, budget)
        pace = sum(launch) / size
    return c, times


@pytest.mark.parametrize(
    "step_seconds",
    [
        lambda step: 0.0039,  # steady
        lambda step: 0.0039 if step < 600 else 0.0078,  # twice as slow from a step on
        lambda step: 0.0039 * (1 + step / 1000),  # slowing down all along
        lambda step: 0.002 + 0.006 * (step * 7919 % 101) / 100,  # noisy, 2 to 8 ms
    ],
)
def test_a_trial_ends_within_one_step_of_its_budget_whatever_the_steps_take(step_seconds):
    """AlgoPerf checks the budget after every step; fused launches must end as close. Sized
    at the last pace alone, a slowdown near the end overran by tens of steps."""
    c, times = run_budget(step_seconds)
    assert c.submission_time >= 4.0
    assert c.submission_time - 4.0 <= times[-1]  # the last step crossed it
    assert sum(times[:-1]) < 4.0


def test_the_last_launches_shrink_and_cost_few_more_waits():
    """Halving the time left near the end costs about log2(steps a second) launches."""
    limits, c, launches = Limits(4.0, eval_period=1e9), counters(), 0
    while rules.keep_going(c, limits):
        size = rules.launch_size(
            c.global_step,
            limits,
            seconds_per_step=0.004,
            seconds_left=4.0 - c.submission_time,
            seconds_to_check=None,
        )
        rules.charge(c, 0.004 * size, [0.1] * size, 4.0)
        launches += 1
    assert launches <= 4 + 10  # 4 one-second launches, then about log2(250) shrinking ones


@pytest.mark.parametrize(
    ("global_step", "num_steps", "expected"),
    [
        (0, 20, [8, 1, 1, 8, 1, 1]),  # epochs of 10 steps: programs stop at each
        (4, 6, [1] * 6),
        (4, 16, [1] * 6 + [8, 1, 1]),
    ],
)
def test_a_program_never_crosses_an_epoch(global_step, num_steps, expected):
    assert rules.dispatches(global_step, num_steps, steps_per_epoch=10, fused=8) == expected


@pytest.mark.parametrize(
    ("max_steps", "eval_every_steps", "most", "expected"),
    [
        (None, None, None, 12),
        (5, None, None, 5),
        (None, 3, None, 3),
        (40, 20, None, 12),
        (None, None, 8, 8),  # the longest that compiles in seconds
    ],
)
def test_no_program_is_longer_than_a_launch_can_be(max_steps, eval_every_steps, most, expected):
    """The fused program is cut to the epoch, max_steps, the step cadence and `most`."""
    limits = Limits(4.0, 0.5, eval_every_steps=eval_every_steps, max_steps=max_steps)
    assert rules.program_length(16, 12, limits, most) == expected
    assert rules.program_length(4, 12, limits, most) == min(4, expected)


@pytest.mark.parametrize(
    ("limits", "step", "since", "due"),
    [
        (LIMITS, 3, 0.5, True),  # an evaluation period of wall time
        (LIMITS, 3, 0.49, False),
        (Limits(4.0, 0.5, eval_every_steps=4), 8, 0.0, True),  # a step cadence
        (Limits(4.0, 0.5, eval_every_steps=4), 9, 99.0, False),  # ... and nothing else
    ],
)
def test_when_an_evaluation_is_due(limits, step, since, due):
    assert rules.evaluation_due(limits, step, since) is due


def test_the_next_check_is_the_nearest_evaluation_or_snapshot():
    assert rules.seconds_to_check(LIMITS, 0.2, []) == pytest.approx(0.3)
    assert rules.seconds_to_check(LIMITS, 0.2, [0.25, 0.1]) == pytest.approx(0.1)
    assert rules.seconds_to_check(LIMITS, 0.7, []) == 0.0  # overdue: at once
    assert rules.seconds_to_check(Limits(4.0, 0.5, eval_every_steps=4), 0.2, [0.1]) is None


def test_snapshots_are_wanted_under_a_time_cadence_until_the_target():
    resolved = Limits(4.0, 0.5, target_resolution=0.05)
    assert rules.snapshots_wanted(counters(), resolved)
    assert not rules.snapshots_wanted(counters(goal_reached=True), resolved)
    assert not rules.snapshots_wanted(counters(), LIMITS)
    stepped = Limits(4.0, 0.5, eval_every_steps=4, target_resolution=0.05)
    assert not rules.snapshots_wanted(counters(), stepped)


@pytest.mark.parametrize(("now", "expected"), [(0.0, 0.03125), (1.0, 1.03125), (4.0, 4.1)])
def test_the_next_snapshot_is_half_the_resolution_later_at_least_a_period_fraction(now, expected):
    """r/2 of the submission time (0.05/2 x 4 s = 0.1 s), at least 0.5 s / 16."""
    limits = Limits(4.0, 0.5, target_resolution=0.05)
    assert rules.next_snapshot_time(now, limits) == pytest.approx(expected)


def test_a_point_is_the_trial_where_it_stands():
    c = counters(global_step=7, submission_time=0.028, train_loss_sum=1.5, train_loss_count=3)
    c.is_time_remaining = False
    assert rules.point(c) == rules.Point(7, 0.028, False, 1.5, 3)


def test_a_rows_train_loss_is_the_mean_since_the_row_before():
    at = rules.Point(8, 0.032, True, train_loss_sum=3.0, train_loss_count=8)
    assert rules.train_loss(at, (1.0, 4)) == 0.5
    assert rules.train_loss(at, (2.0, 7)) == 1.0  # one step since the row before
    assert rules.train_loss(rules.Point(0, 0.0, True, 0.0, 0), (0.0, 0)) == 0.0


def test_the_first_evaluation_on_target_sets_the_time_and_its_resolution():
    c = counters()
    rules.evaluated(c, rules.Point(100, 0.4, True, 0.0, 0), on_target=False)
    rules.evaluated(c, rules.Point(200, 0.5, True, 0.0, 0), on_target=True)
    rules.evaluated(c, rules.Point(300, 0.6, True, 0.0, 0), on_target=True)  # not again
    assert (c.goal_reached, c.time_to_target, c.steps_to_target) == (True, 0.5, 200)
    assert c.time_to_target_resolution == pytest.approx(1 - 0.4 / 0.5)
    assert (c.num_evals, c.last_eval_step, c.last_eval_submission_time) == (3, 300, 0.6)


def test_a_row_holds_its_points_times_and_metrics():
    c = counters(eval_time=0.25, wall_time=2.0, goal_reached=True)
    at = rules.Point(50, 0.2, False, 0.0, 0)
    row = rules.row(c, at, {"validation.accuracy": 0.9}, steps_per_epoch=100, batch_size=16)
    assert row == {
        "global_step": 50,
        "epoch": 0.5,
        "accumulated_submission_time": 0.2,
        "accumulated_eval_time": 0.25,
        "wall_time": 2.0,
        "global_start_time": 0.0,
        "steps_per_epoch": 100,
        "batch_size": 16,
        "goal_reached": True,
        "is_time_remaining": False,
        "validation.accuracy": 0.9,
    }
