"""Trials as one program: a group of trials trained in lockstep by one program's steps.

The trials of a group share every setting that shapes the compiled programs or the loop
(workload, submission, batch size, budget, cadence); they differ in hyperparameters
(which live in the optimizer state) and seeds (initial state, epoch orders, step keys).
Each trial keeps its own bookkeeping, rows, target, divergence and checkpoints in a
`MemberLoop`, the `runner.TrialLoop` of a trial alone; `GroupLoop` launches the group's
programs, evaluates every trial's parameters in one program, and hands each member its
share. A trial that has ended (target, divergence, budget) is masked in the program, so
it no longer changes; once half the program's trials have ended, the running ones move
to a program of their own size (compiled off the clock), so that ended trials cost at
most as much again as the running ones.

Time: a member is charged the group program's time, the time it experienced: each
launch's, and each evaluation's whole (docs/decisions.md).
"""

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aeff import runner, steps
from aeff.checkpoints import TrialCheckpoints
from aeff.errors import ConfigError, TrialInterrupted
from aeff.interrupts import interrupts_held, raise_pending
from aeff.logging.speaker import speaking
from aeff.progress import Progress
from aeff.spec import Submission, Workload

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Member:
    """One trial of a group: its hyperparameters and seed, and where its records go."""

    hparams: Any
    rng_seed: int
    on_eval: Callable[[runner.EvalRow], None] | None = None
    on_end: Callable[[runner.TrialResult], None] | None = None
    checkpoints: TrialCheckpoints | None = None
    tag: Any = None  # what its log lines are marked with (aeff.logging.speaker)


@dataclasses.dataclass
class Group:
    """A group ready to train: `prepared` holds the stacked states [devices, trials, ...],
    keys and the group's programs; `evaluate_one` evaluates one trial's parameters."""

    prepared: runner.Prepared
    rng_seeds: list[int]
    evaluate_one: Callable

    def member(self, index: int) -> runner.Prepared:
        """What a member's bookkeeping reads: the group's figures, the member's seed."""
        return dataclasses.replace(self.prepared, rng_seed=self.rng_seeds[index])


def prepare_group(
    workload: Workload,
    submission: Submission,
    members: list[Member],
    *,
    steps_per_dispatch: int,
    max_steps: int | None = None,
    eval_every_steps: int | None = None,
    clock: runner.Clock = time.perf_counter,
) -> Group:
    """`runner.prepare` for a group: each member's initial state from its own seed and
    hyperparameters, stacked; the programs compiled before the clock starts."""
    for m in members:  # `group.py` has refused a failing member alone, before this
        runner.refuse_unused_hparams(workload, submission, m.hparams)
    mesh, batch_size, splits = runner.checked_layout(workload, submission)
    initial = [runner.initial_state(workload, submission, m.hparams, m.rng_seed) for m in members]
    if len({jax.tree.structure(s) for s, _ in initial}) > 1:
        raise ConfigError(
            f"{type(submission).__name__}'s optimizer state differs in structure between "
            "these hyperparameters, so they cannot share one program: run this sweep with "
            "another launcher (the default: drop hydra/launcher=vectorized)."
        )
    state, step_rng = jax.tree.map(lambda *xs: jnp.stack(xs), *initial)
    state, step_rng = steps.replicate((state, step_rng), mesh)
    stream, eval_splits = runner.device_data(workload, splits, mesh)
    num_train = len(splits.train.labels)
    seeds = [m.rng_seed for m in members]
    stream = shuffled(stream, seeds, 0, mesh)
    programs = workload.program_key()
    steps_per_dispatch = runner.program_length(
        steps_per_dispatch, num_train // batch_size, max_steps, eval_every_steps
    )
    prepared = runner.Prepared(
        workload=workload,
        rng_seed=members[0].rng_seed,
        mesh=mesh,
        state=state,
        stream=stream,
        step_rng=step_rng,
        eval_splits=eval_splits,
        batch_size=batch_size,
        num_train=num_train,
        steps_per_dispatch=steps_per_dispatch,
        single_step=steps.group_train_steps(programs, submission, 1),
        fused_steps=steps.group_train_steps(programs, submission, steps_per_dispatch),
        evaluate=steps.group_evaluate(programs),
        compile_time=0.0,
    )
    group = Group(prepared, seeds, steps.evaluate(programs))
    start = clock()
    jax.block_until_ready(
        (
            warm_up(prepared),
            group.evaluate_one(steps.unstack(state.params, 0), eval_splits["validation"]),
        )
    )
    group.prepared = dataclasses.replace(prepared, compile_time=clock() - start)
    return group


def warm_up(p: runner.Prepared) -> Any:
    """Compile (or load) the group's programs for its state's shape: each run once with
    every trial masked, so nothing changes."""
    masked = steps.replicate(np.zeros(p.stream.order.shape[1], bool), p.mesh)
    return (
        p.single_step(p.state, p.stream, p.step_rng, masked),
        p.fused_steps(p.state, p.stream, p.step_rng, masked),
        p.evaluate(p.state.params, p.eval_splits["validation"]),
    )


def shuffled(stream: Any, rng_seeds: list[int], epoch_start: int, mesh: Any) -> Any:
    """Each trial's order of the epoch starting at `epoch_start` [trials, examples], as it
    has alone."""
    num_train = stream.inputs.shape[1]
    orders = np.stack([steps.epoch_order(s, epoch_start, num_train) for s in rng_seeds])
    return stream._replace(order=steps.replicate(orders, mesh))


class MemberLoop(runner.TrialLoop):
    """One trial's bookkeeping in a group; the group trains and evaluates for it."""

    def __init__(self, group: "GroupLoop", index: int, member: Member, **settings: Any) -> None:
        super().__init__(
            group.group.member(index),
            on_eval=member.on_eval,
            checkpoints=member.checkpoints,
            clock=group.clock,
            **settings,
        )
        self.group, self.index, self.slot = group, index, index
        self.on_end, self.tag = member.on_end, member.tag

    def _point(self) -> runner.Snapshot:
        """The point now, its parameters as (the group's, this trial's slot in them): a
        repack moves the trial to another slot."""
        point = super()._point()
        return dataclasses.replace(point, params=(point.params, self.slot))

    def _measure(self, params: Any) -> dict[str, float]:
        metrics, seconds = self.group.measure(*params)
        self.counters.eval_time += seconds  # the evaluation it waited for
        return metrics

    def _own_state(self) -> steps.TrainState:
        return jax.tree.map(lambda x: x[0, self.slot], self.state)


class GroupLoop:
    """Train a group until every member has ended; evaluate all at each due evaluation."""

    def __init__(
        self,
        group: Group,
        members: list[Member],
        stop_at_target: bool = True,
        max_steps: int | None = None,
        eval_every_steps: int | None = None,
        clock: runner.Clock = time.perf_counter,
        target_resolution: float | None = None,
    ) -> None:
        self.group, self.p, self.clock = group, group.prepared, clock
        self.eval_every_steps = eval_every_steps
        settings = {
            "stop_at_target": stop_at_target,
            "max_steps": max_steps,
            "eval_every_steps": eval_every_steps,
            "target_resolution": target_resolution,
        }
        self.members = [MemberLoop(self, i, m, **settings) for i, m in enumerate(members)]
        self.running = list(self.members)
        self.slots = list(self.members)  # the members in the program, in its order
        self.results: dict[int, runner.TrialResult] = {}
        self.state, self.stream, self.step_rng = self.p.state, self.p.stream, self.p.step_rng
        self.workload = self.p.workload
        self.compile_time = self.p.compile_time
        self.progress = Progress(self.workload.max_allowed_runtime_sec)
        self.last_eval_end = -math.inf
        self.seconds_per_step = 0.0
        self.evaluated: tuple[Any, list[dict[str, float]], float] | None = None
        self.active: jax.Array | None = None  # which slots train: made once per running set

    def run(self) -> list[runner.TrialResult]:
        """Every member's result, in order; on an exception, each running member's way out
        (a last row for a signal, a checkpoint)."""
        self.start = self.clock()
        for member in self.members:
            member.start = self.start
        try:
            self._train()
        except BaseException as error:
            for member in self.running:
                with speaking(member.tag):
                    member._stop(error)
            raise
        finally:
            self.progress.clear()
        return [self.results[m.index] for m in self.members]

    def _train(self) -> None:
        while self.running:
            raise_pending()
            self._launch()
            if self._evaluation_due():
                self._each(self.running, "_evaluate")
                self.last_eval_end = self.clock()
            else:
                self._each([m for m in self.running if m._snapshot_due()], "_snapshot")
            for member in [m for m in self.running if not m._keep_going()]:
                self._end(member, "completed")
            if 0 < len(self.running) <= len(self.slots) // 2:
                self._repack()
            if self.running:
                lead = self.running[0].counters
                self.progress.update(lead.global_step, lead.submission_time)

    def _each(self, members: list[MemberLoop], method: str) -> None:
        for member in members:
            with speaking(member.tag):
                getattr(member, method)()

    def _launch(self) -> None:
        """The running members' steps up to the next check, as one program per dispatch."""
        lead, p = self.running[0].counters, self.p
        sizes = runner.dispatches(
            lead.global_step, self._launch_size(), p.steps_per_epoch, p.steps_per_dispatch
        )
        if self.active is None:  # the running set changed
            self.active = steps.replicate(np.array([m in self.running for m in self.slots]), p.mesh)
        seeds = [m.p.rng_seed for m in self.slots]
        # A signal waits for the launch to be charged to every member (as a trial's launch)
        with interrupts_held() as held:
            step_start = self.clock()
            losses, step, active = [], lead.global_step, self.active
            for size in sizes:
                if step % p.steps_per_epoch == 0:
                    self.stream = shuffled(self.stream, seeds, step, p.mesh)
                program = p.fused_steps if size == p.steps_per_dispatch else p.single_step
                # a trial that diverges stays at that step in the launch's next programs too
                self.state, loss, active = program(self.state, self.stream, self.step_rng, active)
                losses.append(loss)
                step += size
            jax.block_until_ready(self.state)
            step_time = self.clock() - step_start
            losses = np.concatenate([loss[0] for loss in jax.device_get(losses)], axis=-1)
            self.seconds_per_step = step_time / losses.shape[-1]
            self.evaluated = None
            for member in list(self.running):
                member.state = self.state
                member._account(step_time, losses[member.slot])
                if not np.isfinite(losses[member.slot]).all():
                    with speaking(member.tag):
                        member._end_at_divergence(losses[member.slot])
                    self._end(member, "diverged")
        if held:
            raise TrialInterrupted(held[0])

    def _launch_size(self) -> int:
        lead = self.running[0]
        return runner.launch_size(
            lead.counters.global_step,
            self.eval_every_steps,
            lead.max_steps,
            seconds_per_step=self.seconds_per_step,
            seconds_left=self.workload.max_allowed_runtime_sec - lead.counters.submission_time,
            seconds_to_check=self._seconds_to_check(),
        )

    def _seconds_to_check(self) -> float | None:
        """Until the next time-based evaluation or any member's snapshot."""
        if self.eval_every_steps:
            return None
        seconds = self.workload.eval_period_time_sec - (self.clock() - self.last_eval_end)
        for m in self.running:
            if m._snapshots_wanted():
                seconds = min(seconds, m.next_snapshot_time - m.counters.submission_time)
        return max(seconds, 0.0)

    def _evaluation_due(self) -> bool:
        if not self.running:
            return False
        if self.eval_every_steps:
            return self.running[0].counters.global_step % self.eval_every_steps == 0
        return self.clock() - self.last_eval_end >= self.workload.eval_period_time_sec

    def _end(self, member: MemberLoop, status: str) -> None:
        """A member's end: its final evaluation if its last step has none, its result."""
        self.running.remove(member)
        self.active = None
        with speaking(member.tag):
            if member.counters.last_eval_step != member.counters.global_step:
                member._evaluate()
            result = member._result(status)
            self.results[member.index] = dataclasses.replace(result, compile_time=self.compile_time)
            if member.on_end is not None:
                member.on_end(self.results[member.index])

    def _repack(self) -> None:
        """The running members alone in a program of their size, compiled off the clock
        (its time is compile time)."""
        slots = np.array([m.slot for m in self.running])
        state, step_rng, order = jax.tree.map(
            lambda x: x[:, slots], (self.state, self.step_rng, self.stream.order)
        )
        state, step_rng, order = steps.reshard((state, step_rng, order), self.p.mesh)
        self.state, self.step_rng = state, step_rng
        self.stream = self.stream._replace(order=order)
        self.slots, self.active = list(self.running), None
        for slot, member in enumerate(self.slots):
            member.slot, member.state = slot, state
        start = self.clock()
        prepared = dataclasses.replace(self.p, state=state, step_rng=step_rng, stream=self.stream)
        jax.block_until_ready(warm_up(prepared))
        seconds = self.clock() - start
        self.compile_time += seconds
        log.info(
            "%d trials still running: a program of their own (%.2fs to compile).",
            len(self.slots),
            seconds,
        )

    def measure(self, params: Any, slot: int) -> tuple[dict[str, float], float]:
        """The metrics of the trial at `slot` in `params`, and the seconds they took: the
        current parameters of every slot in one program, shared by the members that ask
        after a launch; other (snapshots, a lone final evaluation), that trial's alone."""
        if params is not self.state.params:
            return self._measure_one(steps.unstack(params, slot))
        if self.evaluated is None or self.evaluated[0] is not params:
            eval_start = self.clock()
            metrics: list[dict[str, float]] = [{} for _ in self.slots]
            for name, split in self.p.eval_splits.items():
                means = jax.device_get(self.p.evaluate(params, split))
                for metric, values in means.items():
                    for index, value in enumerate(values[0]):
                        metrics[index][f"{name}.{metric}"] = float(value)
            self.evaluated = (params, metrics, self.clock() - eval_start)
        return self.evaluated[1][slot], self.evaluated[2]

    def _measure_one(self, params: Any) -> tuple[dict[str, float], float]:
        eval_start = self.clock()
        metrics = {}
        for name, split in self.p.eval_splits.items():
            means = jax.device_get(self.group.evaluate_one(params, split))
            metrics.update({f"{name}.{metric}": float(v[0]) for metric, v in means.items()})
        return metrics, self.clock() - eval_start
