"""The loop's evaluations: when one is due, snapshots between them, measuring the splits.

`Evaluations` is the half of `aeff.training.loop.Loop` that evaluates: at each due
evaluation every running trial's current parameters are measured in one program; between
time-cadence evaluations the parameters are kept at snapshots, and an evaluation that
finds the target reached first measures those, up to the first on target, so that the
time to target is known to within `target_resolution`. Each measurement's time is charged
as evaluation time; its row goes to `Loop._record`.
"""

from collections.abc import Callable
from typing import Any

import jax

from aeff.training import programs, rules
from aeff.training.members import LoopTrial


class Evaluations:
    """`Loop`'s evaluations (a mixin: it reads the loop's state, programs and clock)."""

    def _evaluation_due(self) -> bool:
        lead = self.running[0].counters
        return rules.evaluation_due(
            self.limits, lead.global_step, self.clock() - self.last_eval_end
        )

    def _snapshot_due(self, trial: LoopTrial) -> bool:
        c = trial.counters
        wanted = rules.snapshots_wanted(c, self.limits)
        return wanted and c.submission_time >= trial.next_snapshot_time

    def _snapshot(self, trial: LoopTrial) -> None:
        """The parameters now, evaluated only if the next evaluation finds the target."""
        trial.snapshots.append((rules.point(trial.counters), self.state.variables, trial.slot))
        trial.next_snapshot_time = rules.next_snapshot_time(
            trial.counters.submission_time, self.limits
        )

    def _evaluate(self, trial: LoopTrial) -> None:
        """Evaluate the trial's current parameters, and if they are its first on target,
        its snapshots before them up to the first on target; a row each. Then a
        checkpoint if one is due."""
        c, now = trial.counters, rules.point(trial.counters)
        metrics = self._measure(trial, self.state.variables, trial.slot)
        reached = {**self._train_metrics(trial, now), **metrics}
        if trial.snapshots and self.workload.has_reached_goal(reached):
            while trial.snapshots and not c.goal_reached:
                at, variables, slot = trial.snapshots.pop(0)
                self._record(trial, at, self._measure(trial, variables, slot))
        self._record(trial, now, metrics)
        trial.snapshots.clear()
        c.train_loss_sum, c.train_loss_count, trial.loss_mark = 0.0, 0, (0.0, 0)
        checkpoints = trial.member.checkpoints
        if checkpoints is not None and checkpoints.due():
            self._save(trial)
        trial.next_snapshot_time = rules.next_snapshot_time(c.submission_time, self.limits)

    def _measure(self, trial: LoopTrial, variables: Any, slot: int) -> dict[str, float]:
        """The metrics of the trial at `slot` of `variables` (parameters and model state),
        its evaluation time charged: the current ones of every slot in one program, shared
        by the trials that ask after a launch; others (a snapshot's), that trial's alone."""
        params = variables[0]
        if params is not self.state.params:
            alone = programs.unstack(variables, slot)
            metrics, seconds = self._measured(self.p.programs(1)[2], alone)
            metrics = metrics[0]
        else:
            if self.evaluated is None or self.evaluated[0] is not params:
                self.evaluated = (params, *self._measured(self.programs[2], variables))
            metrics, seconds = self.evaluated[1][slot], self.evaluated[2]
        trial.counters.eval_time += seconds
        return metrics

    def _measured(self, evaluate: Callable, variables: Any) -> tuple[list[dict[str, float]], float]:
        """Each stacked trial's metrics on both splits, and the seconds they took."""
        start = self.clock()
        size = jax.tree.leaves(variables[0])[0].shape[1]
        metrics: list[dict[str, float]] = [{} for _ in range(size)]
        for name, split in self.p.eval_splits.items():
            for metric, values in jax.device_get(evaluate(variables, split)).items():
                for index, value in enumerate(values[0]):
                    metrics[index][f"{name}.{metric}"] = float(value)
        return metrics, self.clock() - start

    def _train_metrics(self, trial: LoopTrial, at: rules.Point) -> dict[str, float]:
        """What a row says of training: the mean loss of the steps since the last row."""
        return {f"{self.workload.train_split}.loss": rules.train_loss(at, trial.loss_mark)}
