"""The aeff sweeper: grids and sampled search spaces, failure isolation, resume, a report.

Unlike Hydra's basic sweeper it launches every trial even when some fail, then
writes `summary.csv` and `sweep.json` into the sweep dir and fails only at the end
(SweepFailed, which the app turns into its exit status). It owns the sweep dir while it
runs (a second sweeper aimed at it is refused) and writes the plan of every trial before
the first starts, so a report or a resume knows what was meant to run. It works with any
launcher: it only decides which jobs to launch; each job's trial owns its run dir.

This module is the adapter to Hydra: it parses the command line, checks that values
compose, and launches. What runs is `aeff.sweeps.plan`'s and `aeff.sweeps.resume`'s to
decide, the report `aeff.sweeps.report`'s, the sweep dir's files `aeff.records.sweep_dir`'s.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from aeff import config, interrupts
from aeff.errors import AeffError, ConfigError, SweepFailed, TrialInterrupted
from aeff.records import sweep_dir as sweep_record
from aeff.records.secrets import redact
from aeff.sweeps import launch, plan, resume, settings
from aeff.sweeps import report as sweep_report
from aeff.sweeps.plan import Study
from hydra_plugins.aeff_launcher import workers

log = logging.getLogger(__name__)


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
            raise SweepFailed([], error.__cause__) from None

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        """The sweep (`run`); one with failed trials ends in SweepFailed, which the app
        exits 1 with, once Hydra's callbacks have ended the sweep as they end any other."""
        returns, failed = self.run(arguments)
        if failed:
            name = OmegaConf.select(self.config, "hydra.job.config_name")
            self.hydra_context.callbacks.on_multirun_end(config=self.config, config_name=name)
            raise SweepFailed(failed)
        return returns

    def run(self, arguments: list[str]) -> tuple[list[JobReturn], list[str]]:
        """Every planned trial not finished yet, launched; what the launcher returned, and the
        run dirs of the trials that failed or did not run. A refusal, or the launcher's own
        failure, is said in one line and ends the sweep (SweepFailed)."""
        sweep_dir = Path(self.config.hydra.sweep.dir).absolute()
        try:  # a bad space, grid or sweep dir is refused before anything runs or is written
            studies = self.planned(arguments, sweep_dir)
        except AeffError as error:
            log.error("%s", error)
            raise SweepFailed([], error) from None
        config_yaml = redact(OmegaConf.to_yaml(self.config))
        for folder in {sweep_dir, *(study.folder for study in studies)}:
            sweep_record.write_sweep_config(folder, config_yaml)
        num_jobs, todo = sum(len(s.jobs) for s in studies), sum(len(s.todo) for s in studies)
        in_studies = f" in {len(studies)} studies" if len(studies) > 1 else ""
        log.info("Sweep of %d trials%s in %s: %d to run", num_jobs, in_studies, sweep_dir, todo)
        self.warn_of_sharing(studies)
        returns: list[JobReturn] = []

        def stopped(signum: int) -> str:  # a signal while no trial of this process trains
            workers.stop_workers(signum, self.stop_wait_sec)
            self.report(sweep_dir, studies)
            return f"the sweep's report is written. {sweep_report.finish_hint(sweep_dir)}"

        interrupts.forget_received()
        try:
            with interrupts.sweeping(stopped):
                returns = self.launch(studies)
        except TrialInterrupted as interrupt:  # a trial's, here or in a worker
            workers.stop_workers(interrupt.signum, self.stop_wait_sec)
            self.report(sweep_dir, studies)
            log.warning("Sweep %s. %s", interrupt, sweep_report.finish_hint(sweep_dir))
            raise
        except Exception as error:  # the launcher's own: a worker killed (out of memory)...
            failed = self.report(sweep_dir, studies)
            lines = str(error).strip().splitlines()
            what = type(error).__name__ + (f": {lines[0].rstrip('.')}" if lines else "")
            log.debug("The launcher's error:", exc_info=True)  # shown with hydra.verbose
            log.error("The launcher failed: %s. %s", what, sweep_report.finish_hint(sweep_dir))
            raise SweepFailed(failed, error) from None
        failed = self.report(sweep_dir, studies)
        folder = OmegaConf.select(self.config, "hydra.launcher.submitit_folder")
        sweep_record.remove_job_pickles(sweep_dir, folder)
        return returns, failed

    def planned(self, arguments: list[str], sweep_dir: Path) -> list[Study]:
        """The sweep's studies, checked, with the jobs each has left to run; the sweep dir
        (and each study's folder) owned by this process, its plan written."""
        plan.check_subdir(OmegaConf.to_container(self.config.hydra.sweep)["subdir"])
        studies = self.studies(arguments, sweep_dir)
        settings.check_devices(self.config)
        sweep_record.claim(sweep_dir)
        resuming = bool(self.config.get("resume"))
        before = sweep_record.planned_studies(sweep_dir)
        plan.check_layout(sweep_dir, before, len(studies), resuming)
        for study in studies:
            sweep_record.claim(study.folder)
            study.todo = self.jobs_to_run(study.folder, study.jobs, study)
        if len(studies) > 1:
            seeds = [study.seed for study in studies]
            sweep_record.write_studies_plan(sweep_dir, self.config.search.seed, seeds)
        return studies

    def studies(self, arguments: list[str], sweep_dir: Path) -> list[Study]:
        """The sweep's studies (`search.num_studies`): `plan.studies`."""
        search = self.config.search
        num_studies = search.get("num_studies", 1)
        plan.check_studies(num_studies, search.get("study", 0))
        return plan.studies(sweep_dir, num_studies, search.seed, self.job_plan(arguments))

    def job_overrides(self, arguments: list[str]) -> list[list[str]]:
        """The jobs of one study with `search.seed` (`job_plan`)."""
        return self.job_plan(arguments)(self.config.search.seed)

    def job_plan(self, arguments: list[str]) -> Callable[[int], list[list[str]]]:
        """The jobs for a search seed (`plan.job_plan`) of the command line, parsed and
        checked once, whatever the number of seeds: each value of a grid axis composes with
        the first job's other values, the space's keys are the submission's."""
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
        space = settings.search_space(self.config)
        dimensions = search.parse_space(space) if space else []
        if dimensions or intervals:
            settings.check_hparams(self.config, [d.key for d in dimensions + intervals])
        search_settings = self.config.search
        return plan.job_plan(
            axes, pinned, intervals, dimensions, search_settings, self.check_composes
        )

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

    def jobs_to_run(
        self, sweep_dir: Path, jobs: list[list[str]], study: Study | None = None
    ) -> list[int]:
        """`resume.jobs_to_run` with this sweep's resume=, user files and search seed."""
        number, seed = (study.index, study.seed) if study else (0, self.config.search.seed)
        files, resuming = self.user_files(jobs), bool(self.config.get("resume"))
        return resume.jobs_to_run(
            sweep_dir, jobs, files, resuming, number, seed, config.workload_path_keys(self.config)
        )

    def warn_of_sharing(self, studies: list[Study]) -> None:
        """`settings.warn_of_sharing`, with the trials this launcher runs at once."""
        from aeff.hydra_job import parallel_trials

        parallel = parallel_trials(self.config.hydra.launcher, max(len(s.todo) for s in studies))
        settings.warn_of_sharing(self.config, [s.folder for s in studies], parallel)

    def user_files(self, jobs: list[list[str]]) -> dict[str, str]:
        """path -> sha256 of each user file the sweep's config or jobs name (`settings`)."""
        from aeff.hydra_job import override_value

        return settings.user_files(self.config, jobs, override_value)

    def launch(self, studies: list[Study]) -> list[JobReturn]:
        """`sweeps.launch.launch` with this sweep's launcher."""
        return launch.launch(self.launcher, studies, self.max_batch_size)

    def report(self, sweep_dir: Path, studies: list[Study]) -> list[str]:
        """The sweep's report (`aeff.sweeps.report`); the run dirs of its failed trials."""
        if len(studies) == 1:
            sweep = sweep_report.write_and_print_report(sweep_dir, studies[0].ended)
        else:
            ended = {s.folder: s.ended for s in studies}
            sweep = sweep_report.write_and_print_studies_report(sweep_dir, ended)
        return sweep_report.log_failures(log, sweep_dir, sweep)
