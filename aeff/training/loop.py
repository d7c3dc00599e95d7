"""K >= 1 trials trained in lockstep under AlgoPerf's rules: the loop around the devices.

A trial alone is a group of one. `Loop.run` launches every running trial's steps as one
program (`aeff.training.programs`), charges each trial the launch's time, evaluates them
together when an evaluation is due (`aeff.training.evaluations`), and hands each trial's
rows, checkpoints and ending to its `Member`'s callbacks (`aeff.training.members`). The
arithmetic is `aeff.training.rules`'; this module measures and orchestrates.

Each trial ends on its own: its target, budget or `max_steps`, a non-finite loss (a
group's program then holds it at that step), a crash of its own code (the launch is run
again for each trial alone, off the clock, to find whose) or a record it cannot write;
the others go on. Once half the program's trials have ended, the running ones move to a
program of their own size (compiled off the clock). A signal is a flag, looked at
between launches (`interrupts.check`): each running trial then gets a last row and a
checkpoint, and `TrialInterrupted` goes up.

Only the launches count as submission time: data selection and updates. Evaluations
are timed apart; records and checkpoints not at all. The host waits for the devices once
per launch: a launch queues the steps up to the next thing the host must do.
"""

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from aeff import interrupts
from aeff.errors import TrialInterrupted
from aeff.progress import Progress
from aeff.records.speaker import speaking
from aeff.spec import Submission, Workload
from aeff.training import programs, rules
from aeff.training.checkpoints import TrialCheckpoints
from aeff.training.evaluations import Evaluations
from aeff.training.members import LoopTrial, Member, Outcome, TrialResult
from aeff.training.prepare import Clock, Prepared, prepare, warm_up

log = logging.getLogger(__name__)

# A group of more trials logs each one's rows at DEBUG, off the console: 64 trials would
# print 64 lines at every evaluation. metrics.csv holds every row; the console, each
# trial's start and end.
ROWS_ON_CONSOLE = 8


def limits_of(workload: Workload, **settings: Any) -> rules.Limits:
    return rules.Limits(workload.max_allowed_runtime_sec, workload.eval_period_time_sec, **settings)


def run_group(
    workload: Workload,
    submission: Submission,
    members: list[Member],
    *,
    steps_per_dispatch: int = 8,
    clock: Clock = time.perf_counter,
    **settings: Any,
) -> list[Outcome]:
    """`prepare`, then `Loop.run`: trials in one call (tests, benchmarks); `settings` are
    `rules.Limits`' own."""
    limits = limits_of(workload, **settings)
    prepared = prepare(
        workload,
        submission,
        [m.hparams for m in members],
        [m.rng_seed for m in members],
        limits,
        steps_per_dispatch=steps_per_dispatch,
        clock=clock,
    )
    return Loop(prepared, members, limits, clock).run()


def run_trial(
    workload: Workload,
    submission: Submission,
    hparams: Any,
    rng_seed: int,
    *,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    checkpoints: TrialCheckpoints | None = None,
    **settings: Any,
) -> TrialResult:
    """One trial in one call: its result, or the error that ended it raised."""
    member = Member(hparams, rng_seed, on_eval=on_eval, checkpoints=checkpoints)
    [outcome] = run_group(workload, submission, [member], **settings)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class Loop(Evaluations):
    """Train the members until each has ended; evaluate all at each due evaluation."""

    def __init__(
        self,
        prepared: Prepared,
        members: list[Member],
        limits: rules.Limits,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.p, self.limits, self.clock = prepared, limits, clock
        self.workload = prepared.workload
        self.trials = [LoopTrial(i, m) for i, m in enumerate(members)]
        self.running = list(self.trials)
        self.slots = list(self.trials)  # the trials in the program, in its order
        self.outcomes: dict[int, Outcome] = {}
        self.state, self.stream, self.step_rng = prepared.state, prepared.stream, prepared.step_rng
        self.programs = prepared.programs()
        self.compile_time = prepared.compile_time
        self.progress = Progress(limits.budget)
        self.last_eval_end = -math.inf
        self.seconds_per_step = 0.0
        self.evaluated: tuple[Any, list[dict[str, float]], float] | None = None
        self.active: jax.Array | None = None  # which slots train: made once per running set

    def run(self) -> list[Outcome]:
        """Each member's result or the error that ended it, in order. A signal gives each
        running member a last row and a checkpoint, then raises TrialInterrupted."""
        self._restore()
        for trial in self.trials:
            trial.start = self.clock() - trial.counters.wall_time
        try:
            self._train()
        except Exception as error:  # no one trial's: the group's (its memory, say)
            crash = error
            self._each(self.running, lambda t: self._fail(t, crash))
        except BaseException as error:
            for trial in self.running:
                with speaking(trial.member.tag):
                    self._stop(trial, error)
            raise
        finally:
            self.progress.clear()
        return [self.outcomes[t.index] for t in self.trials]

    def _restore(self) -> None:
        """Continue each member from its checkpoint of step `resume_from`, if one is given
        (a group's members resume from one step: `trial.group_key`)."""
        steps = {t.member.resume_from for t in self.trials}
        if steps == {None}:
            return
        assert len(steps) == 1, f"a group's trials resume from one step, not {steps}"
        states = []
        for trial in self.trials:
            state, counters = trial.member.checkpoints.restore(
                self._own_state(trial), trial.member.resume_from
            )
            states.append(state)
            trial.counters = rules.Counters(**counters)
            with speaking(trial.member.tag):
                log.info("Resumed from the checkpoint at step %d.", trial.counters.global_step)
        stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *states)
        self.state = programs.replicate(stacked, self.p.mesh)
        step = self.trials[0].counters.global_step
        epoch_start = step - step % self.p.steps_per_epoch
        self.stream = self.p.shuffled(self.stream, self.p.rng_seeds, epoch_start)

    def _train(self) -> None:
        self._end_finished()  # a trial resumed from its last step trains no further
        while self.running:
            interrupts.check()
            self._launch()
            if self.running and self._evaluation_due():
                self._each(self.running, self._evaluate)
                self.last_eval_end = self.clock()
            else:
                self._each([t for t in self.running if self._snapshot_due(t)], self._snapshot)
            self._end_finished()
            if 0 < len(self.running) <= len(self.slots) // 2:
                self._repack()
            if self.running:
                lead = self.running[0].counters
                self.progress.update(lead.global_step, lead.submission_time)

    def _end_finished(self) -> None:
        ended = [t for t in self.running if not rules.keep_going(t.counters, self.limits)]
        self._each(ended, lambda t: self._end(t, "completed"))

    def _each(self, trials: list[LoopTrial], action: Callable[[LoopTrial], None]) -> None:
        """`action` for each trial, its log lines marked as its; a trial whose action
        fails (a record it cannot write, say) ends `failed`, and the others go on."""
        for trial in list(trials):
            with speaking(trial.member.tag):
                try:
                    action(trial)
                except Exception as error:
                    self._fail(trial, error)

    def _launch(self) -> None:
        """The running trials' steps up to the next check, waited for once and charged to
        each; a trial ends at its first non-finite loss."""
        lead = self.running[0].counters
        sizes = rules.dispatches(
            lead.global_step, self._launch_size(), self.p.steps_per_epoch, self.p.steps_per_dispatch
        )
        if self.active is None:  # the running set changed
            active = np.array([t in self.running for t in self.slots])
            self.active = programs.replicate(active, self.p.mesh)
        start = self.clock()
        try:
            state, stream, losses = self._queue(lead.global_step, sizes, self.programs)
            jax.block_until_ready(state)
            losses = np.concatenate([loss[0] for loss in jax.device_get(losses)], axis=-1)
        except Exception as error:
            self._find_who_raised(error, lead.global_step, sizes)
            return
        step_time = self.clock() - start
        self.state, self.stream, self.evaluated = state, stream, None
        self.seconds_per_step = step_time / losses.shape[-1]
        for trial in list(self.running):
            own = losses[trial.slot]
            first = rules.charge(trial.counters, step_time, own, self.limits.budget)
            if first is not None:
                with speaking(trial.member.tag):
                    step = trial.counters.global_step
                    log.warning("Diverged: training loss %s at step %d.", own[first], step)
                self._each([trial], lambda t: self._end(t, "diverged"))

    def _queue(
        self, step: int, sizes: list[int], compiled: tuple[Callable, ...], slots: Any = None
    ) -> tuple[Any, Any, list[jax.Array]]:
        """Programs of `sizes` steps from `step` queued on the devices (for the trials at
        `slots`, else all): the state and stream after them, and their losses."""
        single, fused, _ = compiled
        state, stream, rng, active = self.state, self.stream.order, self.step_rng, self.active
        if slots is not None:
            state, stream, rng, active = self._at((state, stream, rng, active), slots)
        stream = self.stream._replace(order=stream)
        seeds = [self.slots[i].member.rng_seed for i in (slots or range(len(self.slots)))]
        losses = []
        for size in sizes:
            if step % self.p.steps_per_epoch == 0:
                stream = self.p.shuffled(stream, seeds, step)
            program = fused if size == self.p.steps_per_dispatch else single
            # a trial that diverges stays at that step in the launch's next programs too
            state, loss, active = program(state, stream, rng, active)
            losses.append(loss)
            step += size
        return state, stream, losses

    def _find_who_raised(self, error: Exception, step: int, sizes: list[int]) -> None:
        """A launch raised: each running trial's steps run again alone, off the clock; a
        trial whose own run raises ends `failed` with its own error, and the others train
        on in a program without it. An error no trial raises alone is the group's."""
        if len(self.slots) == 1:
            self._each(self.running, lambda t: self._fail(t, error))
            return
        alone, raised = self.p.programs(1), False
        for trial in list(self.running):
            try:
                state, _, _ = self._queue(step, sizes, alone, [trial.slot])
                jax.block_until_ready(state)
            except Exception as own:
                with speaking(trial.member.tag):
                    self._fail(trial, own)
                raised = True
        if not raised:
            raise error
        if self.running:
            self._repack()

    def _launch_size(self) -> int:
        lead = self.running[0].counters
        spent = max(t.counters.submission_time for t in self.running)  # resumed: may differ
        return rules.launch_size(
            lead.global_step,
            self.limits,
            seconds_per_step=self.seconds_per_step,
            seconds_left=self.limits.budget - spent,
            seconds_to_check=rules.seconds_to_check(
                self.limits,
                self.clock() - self.last_eval_end,
                [
                    t.next_snapshot_time - t.counters.submission_time
                    for t in self.running
                    if rules.snapshots_wanted(t.counters, self.limits)
                ],
            ),
        )

    def _record(self, trial: LoopTrial, at: rules.Point, metrics: dict[str, float]) -> None:
        """The evaluation at `at`: the target checked, its row logged and handed out."""
        c = trial.counters
        metrics = {**self._train_metrics(trial, at), **metrics}
        in_time = rules.counts_toward_target(at.submission_time, self.limits.budget)
        rules.evaluated(c, at, in_time and self.workload.has_reached_goal(metrics))
        c.wall_time = self.clock() - trial.start
        c.last_row = rules.row(
            c, at, metrics, steps_per_epoch=self.p.steps_per_epoch, batch_size=self.p.batch_size
        )
        trial.loss_mark = (at.train_loss_sum, at.train_loss_count)
        self.progress.clear()
        target = self.workload.target_metric
        shown = [(m.replace(".", " "), metrics[m]) for m in self.workload.console_metrics]
        log.log(
            logging.INFO if len(self.trials) <= ROWS_ON_CONSOLE else logging.DEBUG,
            "step %d | submission %.2fs | eval %.2fs | %s %.4f" + " | %s %.4f" * len(shown),
            *(at.global_step, at.submission_time, c.eval_time, target, metrics[target]),
            *(value for pair in shown for value in pair),
        )
        if trial.member.on_eval is not None:
            trial.member.on_eval(c.last_row)

    def _save(self, trial: LoopTrial) -> None:
        trial.counters.wall_time = self.clock() - trial.start
        state = self._own_state(trial)
        trial.member.checkpoints.save(state, dataclasses.asdict(trial.counters))

    def _own_state(self, trial: LoopTrial) -> programs.TrainState:
        """The trial's train state, one replica."""
        return jax.tree.map(lambda x: x[0, trial.slot], self.state)

    def _end(self, trial: LoopTrial, status: str) -> None:
        """A trial's end: its final evaluation if its last step has none, its result."""
        self._remove(trial)
        c = trial.counters
        if c.last_eval_step != c.global_step:
            self._evaluate(trial)
        self._ended(trial, trial.result(status, self.clock() - trial.start, self.compile_time))

    def _fail(self, trial: LoopTrial, error: Exception) -> None:
        """A trial's end by an error of its own: a checkpoint of the work done."""
        self._remove(trial)
        self._stop(trial, error)
        self._ended(trial, error)

    def _remove(self, trial: LoopTrial) -> None:
        if trial in self.running:
            self.running.remove(trial)
            self.active = None

    def _ended(self, trial: LoopTrial, outcome: Outcome) -> None:
        self.outcomes[trial.index] = outcome
        if trial.member.on_end is not None:
            try:
                trial.member.on_end(outcome)
            except Exception as error:  # its final record: the trial's outcome is that
                log.error("The trial's ending could not be recorded: %s", error)
                self.outcomes[trial.index] = error

    def _stop(self, trial: LoopTrial, error: BaseException) -> None:
        """On the way out: a last row where a signal stopped the trial, then a checkpoint
        of the work done."""
        interrupted = isinstance(error, TrialInterrupted)
        c = trial.counters
        try:
            if interrupted and c.last_eval_step != c.global_step:
                self._evaluate(trial)
        except Exception as late:
            log.warning("No last row on the way out: %s", late)
        if trial.member.checkpoints is not None:
            try:
                self._save(trial)
                if interrupted:
                    error.checkpoint_step = c.global_step
            except Exception as late:  # a full disk, say: report the first error
                log.warning("No checkpoint on the way out: %s", late)

    def _repack(self) -> None:
        """The running trials alone in a program of their size, compiled off the clock
        (its time is compile time)."""
        slots = [t.slot for t in self.running]
        state, step_rng, order = self._at((self.state, self.step_rng, self.stream.order), slots)
        self.state, self.step_rng = state, step_rng
        self.stream = self.stream._replace(order=order)
        self.slots, self.active, self.evaluated = list(self.running), None, None
        for slot, trial in enumerate(self.slots):
            trial.slot = slot
        start = self.clock()
        self.programs = self.p.programs(len(self.slots))
        jax.block_until_ready(warm_up(self.p, state, self.stream, step_rng))
        seconds = self.clock() - start
        self.compile_time += seconds
        log.info(
            "%d trials still running: a program of their own (%.2fs to compile).",
            len(self.slots),
            seconds,
        )

    def _at(self, tree: Any, slots: list[int]) -> Any:
        """The trials at `slots` of a stacked tree [devices, trials, ...], laid out for pmap."""
        index = np.array(slots)
        return programs.reshard(jax.tree.map(lambda x: x[:, index], tree), self.p.mesh)
