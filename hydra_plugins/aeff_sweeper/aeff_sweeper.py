"""The aeff sweeper: grids and sampled search spaces, failure isolation, resume, a report.

Unlike Hydra's basic sweeper it launches every trial even when some fail, then
writes `summary.csv` and `sweep.json` into the sweep dir and fails only at the end.
It owns the sweep dir while it runs (a second sweeper aimed at it is refused) and
writes the plan of every trial before the first starts, so a report or a resume
knows what was meant to run. It works with any launcher: it only decides which jobs
to launch; each job's trial owns its run dir.
"""

import contextlib
import dataclasses
import itertools
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from aeff import config, errors, interrupts, user_files
from aeff.algoperf import submission as algoperf_submission
from aeff.errors import AeffError, ConfigError, RunDirBusy, TrialInterrupted
from aeff.interrupts import exit_note, exiting_on_signals
from aeff.records import sweep_dir as sweep_record
from aeff.records.run_dir import FINISHED, Lock, read_metadata, status_of
from aeff.records.secrets import redact

log = logging.getLogger(__name__)

# Keys that do not change which trial a job is: a resume may set them differently.
NOT_IN_PLAN = ("resume", "hydra", "checkpoint", "devices", "compilation_cache_dir")
JOB_SUBDIR = "${hydra.job.num}"  # each trial in <sweep dir>/<job number>: the plan's order
DATA_KEYS = ("workload.data_dir", "workload.idx_dir")


@dataclass
class AeffSweeperConf:
    _target_: str = "hydra_plugins.aeff_sweeper.aeff_sweeper.AeffSweeper"
    max_batch_size: int | None = None  # jobs handed to the launcher at once; None: all
    # On a signal, how long joblib's workers (hydra/launcher=parallel) get to
    # end their trials (a last row, a checkpoint) before they are killed.
    stop_wait_sec: float = 60.0


ConfigStore.instance().store(
    group="hydra/sweeper", name="aeff", node=AeffSweeperConf, provider="aeff"
)


# The run dirs of the failed trials of this process's last sweep. The app exits
# non-zero when it is not empty, after Hydra has run its on_multirun_end callbacks.
failed_trials: list[str] = []


def write_and_print_report(sweep_dir: Path, ended: dict[int, str | None] | None = None) -> dict:
    """A sweep's report files, and its brief report on the console; its sweep.json."""
    from aeff.results import text as results
    from aeff.results.report import write_reports

    summary, sweep, page = write_reports(sweep_dir, ended)
    print(results.brief(summary, sweep_dir))
    unrecorded = sweep["num_unrecorded"]
    print(
        f"{sweep['num_trials']} trials, {results.count_failed(summary)} failed"
        + (f", {unrecorded} trained but not recorded (logging=off)" if unrecorded else "")
        + f", best time to target {results.seconds(sweep['best_time_to_target'])}. Report: "
        f"{sweep_dir / sweep_record.SUMMARY}, {sweep_dir / sweep_record.REPORT}, {page}"
    )
    return sweep


def write_and_print_studies_report(
    sweep_dir: Path, ended: dict[Path, dict[int, str | None]] | None = None
) -> dict:
    """Each study's report files (a line each on the console), and the report across the
    studies (`studies.csv`, the sweep dir's `sweep.json`), its table on the console;
    the sweep dir's sweep.json. `ended`: by study folder, see `results.summary`."""
    from aeff.results import text as results
    from aeff.results.report import write_reports, write_studies_reports

    folders = sweep_record.study_dirs(sweep_dir) or []
    reports = []
    for folder in folders:
        summary, sweep, page = write_reports(folder, (ended or {}).get(folder))
        reports.append((folder, sweep))
        print(
            f"{folder.name}: {sweep['num_trials']} trials, {results.count_failed(summary)} "
            f"failed, best time to target {results.seconds(sweep['best_time_to_target'])}. "
            f"Report: {page}"
        )
    table, report, page = write_studies_reports(sweep_dir, reports)
    print(results.studies_text(table, report, sweep_dir))
    print(
        f"Report across studies: {sweep_dir / sweep_record.STUDIES}, "
        f"{sweep_dir / sweep_record.REPORT}, {page}"
    )
    return report


@dataclass
class Study:
    """One study of a sweep: its number, search seed, folder (the sweep dir itself when the
    sweep is one study), jobs, the jobs left to run, and how the launched ones ended."""

    index: int
    seed: int
    folder: Path
    jobs: list[list[str]]
    todo: list[int] = dataclasses.field(default_factory=list)
    ended: dict[int, str | None] = dataclasses.field(default_factory=dict)


class AeffSweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None, stop_wait_sec: float = 60.0) -> None:
        self.max_batch_size = max_batch_size
        self.stop_wait_sec = stop_wait_sec
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        try:
            self.launcher = Plugins.instance().instantiate_launcher(
                hydra_context=hydra_context, task_function=task_function, config=config
            )
        except Exception as error:  # Hydra wraps what the launcher raised
            if not isinstance(error.__cause__, AeffError):
                raise
            log.error("%s", error.__cause__)
            sys.exit(errors.exit_status(error.__cause__))

    def sweep(self, arguments: list[str]) -> list[JobReturn]:

        sweep_dir = Path(self.config.hydra.sweep.dir).absolute()
        try:  # a bad space, grid or sweep dir is refused before anything runs or is written
            subdir = OmegaConf.to_container(self.config.hydra.sweep)["subdir"]
            if subdir != JOB_SUBDIR:
                raise ConfigError(
                    f"hydra.sweep.subdir={subdir}: aeff keeps each trial in "
                    "<sweep dir>/<job number>, which its reports and resume rely on."
                )
            studies = self.studies(arguments, sweep_dir)
            self.check_devices()
            sweep_dir.mkdir(parents=True, exist_ok=True)
            Lock.acquire(sweep_dir)
            check_layout(sweep_dir, len(studies), bool(self.config.get("resume")))
            for study in studies:
                study.folder.mkdir(exist_ok=True)
                Lock.acquire(study.folder)
                study.todo = self.jobs_to_run(study.folder, study.jobs, study)
            if len(studies) > 1:
                seeds = [study.seed for study in studies]
                sweep_record.write_studies_plan(sweep_dir, self.config.search.seed, seeds)
        except AeffError as error:
            log.error("%s", error)
            sys.exit(errors.exit_status(error))
        config_yaml = redact(OmegaConf.to_yaml(self.config))
        for folder in {sweep_dir, *(study.folder for study in studies)}:
            sweep_record.write_sweep_config(folder, config_yaml)
        num_jobs, todo = sum(len(s.jobs) for s in studies), sum(len(s.todo) for s in studies)
        in_studies = f" in {len(studies)} studies" if len(studies) > 1 else ""
        log.info("Sweep of %d trials%s in %s: %d to run", num_jobs, in_studies, sweep_dir, todo)
        self.warn_of_sharing(studies, max(len(s.todo) for s in studies))
        returns: list[JobReturn] = []

        def stopped(signum: int) -> str:  # a signal while no trial of this process trains
            stop_workers(signum, self.stop_wait_sec)
            self.report(sweep_dir, studies)
            return f"the sweep's report is written. {finish_hint(sweep_dir)}"

        interrupts.forget_received()
        try:
            with exit_note(stopped), signals_end_the_sweep():
                returns = self.launch(studies)
        except TrialInterrupted as interrupt:  # a trial's, here or in a worker
            stop_workers(interrupt.signum, self.stop_wait_sec)
            self.report(sweep_dir, studies)
            log.warning("Sweep %s. %s", interrupt, finish_hint(sweep_dir))
            raise
        except Exception as error:  # the launcher's own: a worker killed (out of memory)...
            self.report(sweep_dir, studies)
            lines = str(error).strip().splitlines()
            what = type(error).__name__ + (f": {lines[0].rstrip('.')}" if lines else "")
            log.debug("The launcher's error:", exc_info=True)  # shown with hydra.verbose
            log.error("The launcher failed: %s. %s", what, finish_hint(sweep_dir))
            sys.exit(errors.exit_status(error))
        self.report(sweep_dir, studies)
        folder = OmegaConf.select(self.config, "hydra.launcher.submitit_folder")
        remove_job_pickles(folder, sweep_dir)
        return returns

    def studies(self, arguments: list[str], sweep_dir: Path) -> list["Study"]:
        """The sweep's studies (`search.num_studies`), each with its own search seed and jobs.

        One study is the sweep dir itself, as a sweep always was. Several are folders
        `study_<k>` of it: each job sets `hydra.sweep.dir` to its study's folder (a job's
        overrides win over the command line's), `search.study` and `search.seed` (which
        its records keep), and an `rng_seed` given as a number becomes the study's own.
        """
        from aeff import search

        settings = self.config.search
        num_studies = settings.get("num_studies", 1)
        if not config.is_count(num_studies):
            raise ConfigError(f"search.num_studies={num_studies!r}: expected an integer >= 1.")
        if settings.get("study", 0) != 0:
            raise ConfigError(
                f"search.study={settings.study}: the sweeper sets each trial's study; give "
                "search.num_studies=S for S studies."
            )
        seeds = [search.study_seed(settings.seed, k) for k in range(num_studies)]
        plan = self.job_plan(arguments)
        if num_studies == 1:
            return [Study(0, settings.seed, sweep_dir, plan(settings.seed))]
        studies = []
        for k, seed in enumerate(seeds):
            folder = sweep_record.study_dir(sweep_dir, k)
            jobs = [in_study(job, k, seed, folder) for job in plan(seed)]
            studies.append(Study(k, seed, folder, jobs))
        return studies

    def job_overrides(self, arguments: list[str]) -> list[list[str]]:
        """The jobs of one study with `search.seed` (`job_plan`)."""
        return self.job_plan(arguments)(self.config.search.seed)

    def job_plan(self, arguments: list[str]) -> Callable[[int], list[list[str]]]:
        """The jobs for a search seed: the grid of the command line, times the sampled
        points of the search space and of the command line's `interval()` sweeps.

        A key given on the command line is pinned: the space's range for it is not sampled.
        The command line is parsed and checked once, whatever the number of seeds.
        """
        from hydra.core.override_parser.types import IntervalSweep

        from aeff import search  # scipy: imported only by sweeps

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        axes, swept, pinned, intervals = [], [], set(), []
        for override in parser.parse_overrides(arguments):
            key = override.get_key_element()
            pinned.add(key.lstrip("+~"))
            if isinstance(override.value(), IntervalSweep):
                sweep = override.value()
                intervals.append(search.interval(key, sweep.start, sweep.end, sweep.tags))
            elif override.is_sweep_override():
                axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
                swept.append(axes[-1])
            else:
                axes.append([f"{key}={override.get_value_element_as_str()}"])
        for axis in swept:  # each value in the first job's company (a user's submission...)
            self.check_composes(axis, [other[0] for other in axes if other is not axis])
        grid = [list(combination) for combination in itertools.product(*axes)]
        space = self.search_space()
        dimensions = search.parse_space(space) if space else []
        if dimensions or intervals:
            self.check_hparams([d.key for d in dimensions + intervals])
        dimensions = [d.without(pinned) for d in dimensions if d.key not in pinned] + intervals
        settings = self.config.search
        if not space and not intervals:
            if settings.num_trials is not None:
                raise ConfigError(
                    "search.num_trials is set but nothing is sampled: add search_space=<name> "
                    "(see conf/search_space/) or a key=interval(low,high) sweep."
                )
            return lambda seed: [list(job) for job in grid]
        if settings.num_trials is None:
            sampled = "search_space is chosen" if space else f"{intervals[0].key} is an interval"
            raise ConfigError(f"{sampled}: set search.num_trials=N.")
        checked = []

        def jobs(seed: int) -> list[list[str]]:
            points = search.sample(dimensions, settings.num_trials, seed, settings.method)
            if not checked:  # a key the config lacks: the same keys for every seed
                self.check_composes(search.as_overrides(points[0]), grid[0])
                checked.append(True)
            return [job + search.as_overrides(point) for job in grid for point in points]

        jobs(settings.seed)  # bad settings refused now, before any study is planned
        return jobs

    def check_composes(self, values: list[str], company: list[str]) -> None:
        """Each value (of a grid axis, or a sampled point) composes with the overrides
        `company` (a typo or bad type would otherwise stop the launcher at that trial,
        leaving the later ones unrun)."""
        for override in values:
            try:
                loader = self.hydra_context.config_loader
                loader.load_sweep_config(self.config, [*company, override])
            except Exception as error:  # Hydra's own composition errors, and their cause
                lines = [str(e).splitlines()[0] for e in (error, error.__cause__) if e]
                raise ConfigError(f"{override} does not compose: {'; '.join(lines)}") from None

    def search_space(self) -> dict:
        """The chosen `search_space` option, or the `tuning_search_space` file."""
        chosen, path = self.config.get("search_space"), self.config.get("tuning_search_space")
        if chosen and path:
            raise ConfigError("choose search_space=<name> or tuning_search_space=<file>, not both.")
        if path:  # an AlgoPerf submission's hyperparameters keep the space's names
            algoperf = algoperf_submission.is_target(self.config.submission.get("_target_"))
            return user_files.read_search_space(Path(path), keep_names=algoperf)
        return OmegaConf.to_container(chosen, resolve=True) if chosen else {}

    def check_hparams(self, keys: list[str]) -> None:
        """Refuse a space's `hparams.*` key that the submission's schema does not have."""
        task = OmegaConf.masked_copy(self.config, [k for k in self.config if k != "hydra"])
        try:
            trial = config.check_trial(task)
        except AeffError:
            return  # the trials report what is wrong with the config itself
        if not dataclasses.is_dataclass(trial.hparams):
            return  # an AlgoPerf submission's: the space names them
        known = [f.name for f in dataclasses.fields(trial.hparams)]
        for key in keys:
            if key.startswith("hparams.") and key.removeprefix("hparams.") not in known:
                raise ConfigError(
                    f"search space key {key!r}: {type(trial.submission).__name__}'s "
                    f"hyperparameters are {', '.join(known)}."
                )

    def jobs_to_run(
        self, sweep_dir: Path, jobs: list[list[str]], study: "Study | None" = None
    ) -> list[int]:
        """All jobs of a new sweep (or study, in its folder); with resume=true, those not
        finished, after checking that the plan is the one recorded and that no job still
        runs."""
        planned = sweep_record.read_plan(sweep_dir)
        files = self.user_files(jobs)
        number, seed = (study.index, study.seed) if study else (0, self.config.search.seed)
        if not self.config.get("resume"):
            if planned is not None:
                raise ConfigError(
                    f"{sweep_dir} holds a sweep already: add resume=true to finish it, or "
                    "choose another hydra.sweep.dir."
                )
            sweep_record.write_plan(sweep_dir, jobs, files, number, seed)
            return list(range(len(jobs)))
        if planned is None:
            sweep_record.write_plan(sweep_dir, jobs, files, number, seed)
            planned = jobs
        # An edited space samples other values: name the file, not the values it changed.
        refuse_edited_files(sweep_dir, sweep_record.planned_files(sweep_dir), files)
        if changes := plan_changes(planned, sweep_record.redacted(jobs)):
            raise ConfigError(
                f"resume=true finishes only the same sweep, but {sweep_dir} planned "
                f"{changes}: resume with the sweep's own command line."
            )
        todo = []
        for index in range(len(jobs)):
            job_dir = sweep_dir / str(index)
            if Lock.is_held(job_dir):
                raise RunDirBusy(f"{job_dir} is in use by {Lock.owner(job_dir)}: wait for it.")
            record = read_metadata(job_dir) or {}
            if why := sweep_record.foreign(job_dir, index, record):
                raise ConfigError(why)
            if status_of(job_dir, record) not in FINISHED:
                todo.append(index)
        return todo

    def check_devices(self) -> None:
        """`devices.per_trial` GPUs that this host cannot give a trial: refused once."""
        from aeff import devices

        per_trial = OmegaConf.select(self.config, "devices.per_trial", default=None)
        if per_trial:
            ids = OmegaConf.select(self.config, "devices.ids", default=None)
            devices.slots_of(per_trial, list(ids) if ids is not None else devices.visible_gpu_ids())

    def warn_of_sharing(self, studies: list["Study"], num_jobs: int) -> None:
        """Say, before the first trial, when trials running at once share the machine's
        cores or GPUs, and record it in the plan: sweep.json then marks the score."""
        from aeff import devices
        from aeff.cli.hydra_job import parallel_trials
        from aeff.records import system

        cpus = os.cpu_count() or 1
        parallel = parallel_trials(self.config.hydra.launcher, num_jobs)
        per_trial = OmegaConf.select(self.config, "devices.per_trial", default=None)
        note = devices.sharing(parallel, cpus, len(system.gpu_handles()), per_trial)
        for study in studies:
            sweep_record.record_sharing(study.folder, note)
        if note:
            log.warning(
                "%s: each trial's clock counts the others' work, so times to target and the "
                "score are measured under sharing (sweep.json says so). For times that "
                "compare, run at most %d at once (hydra.launcher.n_jobs) or give each trial "
                "its own GPUs (devices.per_trial).",
                note,
                cpus,
            )

    def user_files(self, jobs: list[list[str]]) -> dict[str, str]:
        """path -> sha256 of each user file the sweep's config or jobs name, as this
        process read it (the bytes its trials here run and record)."""
        from aeff.cli.hydra_job import override_value

        named = {(k, v) for k in config.USER_FILES if (v := self.config.get(k))}
        for job in jobs:
            for override in job:
                key = override.lstrip("+~").partition("=")[0]
                if key in config.USER_FILES and (value := override_value(override)):
                    named.add((key, value))
        return {
            redact(str(Path(path).expanduser().resolve())): user_files.sha256(path, key)
            for key, path in sorted(named)
        }

    def launch(self, studies: list[Study]) -> list[JobReturn]:
        """Every study's jobs to run, in batches of consecutive job numbers. A launcher
        that takes several batches at once (the vectorized one's `launch_batches`) gets
        them together, up to max_batch_size jobs a call, so that it may group trials of
        different studies (or either side of a finished one)."""
        pairs = [(study, batch) for study in studies for batch in self.batches(study.todo)]
        returns: list[JobReturn] = []
        if len(pairs) < 2 or not hasattr(self.launcher, "launch_batches"):
            for study, batch in pairs:
                launched = self.launcher.launch([study.jobs[i] for i in batch], batch[0])
                returns.extend(launched)
                study.ended.update(endings(batch, launched))
            return returns
        limit, calls = self.max_batch_size or 1 << 30, []
        for pair in pairs:
            if calls and sum(len(b) for _, b in calls[-1]) + len(pair[1]) <= limit:
                calls[-1].append(pair)
            else:
                calls.append([pair])
        for call in calls:
            handed = [([study.jobs[i] for i in batch], batch[0]) for study, batch in call]
            for (study, batch), launched in zip(
                call, self.launcher.launch_batches(handed), strict=True
            ):
                returns.extend(launched)
                study.ended.update(endings(batch, launched))
        return returns

    def batches(self, indices: list[int]) -> list[list[int]]:
        """Runs of consecutive job numbers, at most max_batch_size long."""
        batches: list[list[int]] = []
        for index in indices:
            last = batches[-1] if batches else None
            if last and last[-1] == index - 1 and len(last) < (self.max_batch_size or 1 << 30):
                last.append(index)
            else:
                batches.append([index])
        return batches

    def report(self, sweep_dir: Path, studies: list["Study"]) -> None:

        if len(studies) == 1:
            sweep = write_and_print_report(sweep_dir, studies[0].ended)
        else:
            sweep = write_and_print_studies_report(sweep_dir, {s.folder: s.ended for s in studies})
        failed_trials[:] = sweep["failed"]
        if failed_trials:
            named = ", ".join(failed_trials[:NAMED_FAILURES])
            more = len(failed_trials) - NAMED_FAILURES
            log.error(
                "%d of %d planned trials failed or did not run: %s. "
                "Rerun them with resume=true hydra.sweep.dir=%s",
                len(failed_trials),
                sweep["num_planned"],
                named
                + (f" and {more} more ({sweep_dir / sweep_record.SUMMARY})" if more > 0 else ""),
                sweep_dir,
            )


NAMED_FAILURES = 10  # run dirs named on the console; summary.csv lists every one


@contextlib.contextmanager
def signals_end_the_sweep() -> Iterator[None]:
    """While the launcher waits for its workers (joblib's), a signal stops them, reports and
    ends the process (`stopped`); a trial in this process (the
    basic and vectorized launchers) puts its own handlers in place while it runs."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are the main thread's (an in-process caller's sweep in a thread)
        return
    with exiting_on_signals("the sweep ended", None):
        yield


def stop_workers(signum: int, wait_sec: float) -> None:
    """Pass the signal on to the worker processes of joblib's pool (`hydra/launcher=parallel`;
    the other launchers run trials in this process, or on a cluster), so each trial takes its own
    way out (a last row, a checkpoint, `interrupted`); wait up to `wait_sec` for every
    trial to end, then end the workers (killing one whose trial did not end in time), so
    that a resume finds every run dir free."""
    workers = detached_loky_workers()
    for worker in workers:
        with contextlib.suppress(psutil.Error):
            worker.send_signal(signum)
    deadline = time.monotonic() + wait_sec
    while (training := [w for w in workers if Lock.held_by(w)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if training:
        log.warning(
            "Killing %s: their trials did not end within %g s of %s (hydra.sweeper.stop_wait_sec)",
            ", ".join(f"process {w.pid}" for w in training),
            wait_sec,
            signal.Signals(signum).name,
        )
    for worker in workers:  # none runs a trial now: done, or idle in the launcher's loop
        with contextlib.suppress(psutil.Error):
            worker.kill()
    psutil.wait_procs(workers, timeout=10)


def detached_loky_workers() -> list[psutil.Process]:
    """The workers of joblib's process pool (`hydra/launcher=parallel`), taken out of its
    hands: a worker that ends (its trial stopped before it began, an idle one on Ctrl-C)
    would otherwise make the pool's manager thread SIGKILL the others, mid-checkpoint.
    Empty when no pool runs in this process."""
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    processes = getattr(getattr(module, "_executor", None), "_processes", None)
    if not isinstance(processes, dict):
        return []
    pids = list(processes)
    processes.clear()  # the pool no longer knows them: it neither waits for nor kills them
    workers = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            workers.append(psutil.Process(pid))
    return workers


def endings(batch: list[int], returns: list[JobReturn]) -> dict[int, str | None]:
    """How each job of `batch` ended, by job number, as its launcher returned it: None when
    it returned, else its error's first line (a trial with no record, logging=off, has
    nothing else to tell it)."""
    ended: dict[int, str | None] = {}
    for index, returned in zip(batch, returns, strict=False):
        if not isinstance(returned, JobReturn):
            continue  # a launcher that returns something else tells nothing
        if returned.status == JobStatus.COMPLETED:
            ended[index] = None
        elif returned.status == JobStatus.FAILED:
            error = returned._return_value  # the task's exception (`return_value` raises it)
            lines = str(error).strip().splitlines()
            ended[index] = redact(type(error).__name__ + (f": {lines[0]}" if lines else ""))
    return ended


def remove_job_pickles(folder: str | None, sweep_dir: Path) -> None:
    """Once every job has returned, the submitit launchers' pickles of each job's call and
    result in `folder` (`<sweep dir>/.submitit/%j`), which hold its overrides as typed,
    credentials included; its logs stay. A stopped sweep keeps them: SLURM may still run
    or requeue its jobs from them. A folder outside the sweep dir is left alone: other
    sweeps' jobs may share it."""
    root = Path(folder.split("%", 1)[0]) if folder else None  # None: another launcher
    if root is None or not root.resolve().is_relative_to(sweep_dir.resolve()):
        return
    try:
        for pickle in root.rglob("*.pkl"):
            pickle.unlink(missing_ok=True)
    except OSError as error:
        log.warning("submitit's job pickles in %s stay: %s", folder, error)


def finish_hint(sweep_dir: Path) -> str:
    """The command that finishes a sweep that stopped, credentials redacted."""
    from aeff.cli.hydra_job import typed_command

    finish = ("resume=true", f"hydra.sweep.dir={sweep_dir}")
    command = typed_command(*finish, without=("resume=", "hydra.sweep.dir="))
    return f"Finish it with: {redact(command)}"


def refuse_edited_files(
    sweep_dir: Path, planned: dict[str, str] | None, now: dict[str, str]
) -> None:
    """Refuse a resume whose user files are not the bytes the sweep was planned with: its
    trials would run other code (or another space) beside the finished ones."""
    if planned is None:
        log.warning(
            "%s records no sha256 of the user's files (an older aeff planned it): an edit "
            "since cannot be detected.",
            sweep_dir / sweep_record.PLAN,
        )
        return
    for path, before in planned.items():
        if path not in now:
            raise ConfigError(
                f"resume=true finishes only the same sweep, but {sweep_dir} planned it with "
                f"{path}, which this command does not name: resume with the sweep's own "
                "command line, from the folder it started in."
            )
        if now[path] != before:
            raise ConfigError(
                f"resume=true finishes only the same sweep, but {path} changed since "
                f"{sweep_dir} planned it (sha256 {before[:12]}, now {now[path][:12]}): "
                "restore the planned file, or start the sweep again in another "
                "hydra.sweep.dir."
            )


def check_layout(sweep_dir: Path, num_studies: int, resume: bool) -> None:
    """Refuse a sweep dir planned for another number of studies (a resume must keep it),
    and, without resume=true, one that holds a sweep of studies already."""

    planned = sweep_record.read_studies_plan(sweep_dir)
    one = (sweep_dir / sweep_record.PLAN).exists()
    before = planned["num_studies"] if planned else int(one)
    if before and not resume:
        raise ConfigError(
            f"{sweep_dir} holds a sweep already: add resume=true to finish it, or choose "
            "another hydra.sweep.dir."
        )
    if before and before != num_studies:
        raise ConfigError(
            f"resume=true finishes only the same sweep, but {sweep_dir} planned "
            f"search.num_studies={before} (now {num_studies}): resume with the sweep's own "
            "command line."
        )


def in_study(job: list[str], study: int, seed: int, folder: Path) -> list[str]:
    """A job of study `study` (of several): in the study's folder, with the study's number
    and search seed, and an `rng_seed` given as a number made the study's own (study 0
    keeps it), so that trials of different studies train from different seeds."""
    from aeff import search

    values = {"search.seed": str(seed), "search.study": str(study)}
    for override in job:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "rng_seed" and value.isdigit():
            values["rng_seed"] = str(search.study_seed(int(value), study))
    kept = [o for o in job if o.lstrip("+~").partition("=")[0] not in values]
    return [*kept, *(f"{k}={v}" for k, v in values.items()), f"hydra.sweep.dir={quoted(folder)}"]


def quoted(path: Path) -> str:
    """A path as a Hydra override's value: as it is when plain, else single-quoted."""
    text = str(path)
    if re.fullmatch(r"[\w./-]+", text):
        return text
    return "'" + text.replace("'", "\\'") + "'"


def plan_values(job: list[str]) -> dict[str, str]:
    """A job's overrides as key -> value, without the keys that do not change the trial."""
    values = {}
    for override in job:
        key, _, value = override.lstrip("+~").partition("=")
        if key.split(".")[0].split("/")[0] not in NOT_IN_PLAN and key not in DATA_KEYS:
            values[key] = value
    return values


def plan_changes(planned: list[list[str]], jobs: list[list[str]]) -> str:
    """What differs between the recorded plan and this one ('' when nothing does)."""
    if len(planned) != len(jobs):
        return f"{len(planned)} trials (now {len(jobs)})"
    for index, (before, now) in enumerate(zip(planned, jobs, strict=True)):
        before, now = plan_values(before), plan_values(now)
        if before != now:
            keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            changes = ", ".join(f"{k}={before.get(k)} (now {now.get(k)})" for k in keys)
            return f"for trial {index}: {changes}"
    return ""
