"""The trial loop where mutation testing found it loose: a diverged trial's last row and
warning, the budget when divergence lands on it, the wall time a checkpoint keeps.
Same fake clock and scripted MNIST as test_rules.py."""

import logging

from test_rules import (  # noqa: F401 (mnist is a fixture)
    CLOCK,
    ON_EVAL_SECONDS,
    STEP_SECONDS,
    TimedAdam,
    mnist,
    trial,
)

NAN_STEP = 14  # as in test_rules.py, so that a session compiles these trials once


class RecordingCheckpoints:
    """Nothing to restore, due at every evaluation; keeps each save's counters and the
    clock when it was taken."""

    def __init__(self) -> None:
        self.saved: list[tuple[dict, float]] = []

    def restore(self, template):
        return None

    def due(self) -> bool:
        return True

    def save(self, state, progress) -> None:
        self.saved.append((dict(progress), CLOCK.now))


def test_a_diverged_trial_warns_and_its_last_row_has_time_left(mnist, caplog):  # noqa: F811
    with caplog.at_level(logging.WARNING, logger="aeff.runner"):
        result, rows = trial(
            mnist(target_value=0.75),
            submission=TimedAdam(nan_step=NAN_STEP),
            max_steps=40,
            steps_per_dispatch=8,
        )
    assert result.status == "diverged" and result.global_step == NAN_STEP
    assert rows[-1]["is_time_remaining"] is True
    assert [r.getMessage() for r in caplog.records if r.name == "aeff.runner"] == [
        f"Diverged: training loss nan at step {NAN_STEP}."
    ]


def test_divergence_on_the_last_budgeted_step_leaves_no_time(mnist):  # noqa: F811
    result, rows = trial(
        mnist(target_value=0.75, max_allowed_runtime_sec=NAN_STEP * STEP_SECONDS),
        submission=TimedAdam(nan_step=NAN_STEP),
        max_steps=40,
        steps_per_dispatch=8,
    )
    assert result.status == "diverged" and result.global_step == NAN_STEP
    assert result.accumulated_submission_time == NAN_STEP * STEP_SECONDS
    assert rows[-1]["is_time_remaining"] is False


def test_a_checkpoint_keeps_the_wall_time_at_its_save(mnist):  # noqa: F811
    checkpoints = RecordingCheckpoints()
    result, rows = trial(mnist(target_value=0.75), max_steps=8, checkpoints=checkpoints)
    assert [progress["global_step"] for progress, _ in checkpoints.saved] == [4, 8]
    for (progress, _), row in zip(checkpoints.saved, rows, strict=True):
        assert progress["wall_time"] == row["wall_time"] + ON_EVAL_SECONDS
    assert result.wall_time == checkpoints.saved[-1][0]["wall_time"]
