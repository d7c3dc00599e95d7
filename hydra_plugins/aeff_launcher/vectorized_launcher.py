"""`hydra/launcher=vectorized`: the jobs it is handed, as groups of trials in one program.

aeff trials that share everything but hyperparameters, seed and labels (`aeff.trial.
group_key`, which includes the checkpoint step a resume continues from) train as one
`vmap`-ed program of up to `trials_per_program`; each stays a Hydra job, with its run dir,
its records, Hydra's `on_job_start`/`on_job_end` callbacks, its own log file and a
JobReturn. Every other job (another app's task, an aeff trial with bad input,
`hydra.job.chdir=true`, a group of one) runs as Hydra's basic launcher runs it. Either way
an aeff trial trains through `aeff.hydra_job.sweep_trials` (the app's job function
calls it for a job alone), so a group and a job alone end and return alike.
"""

import contextlib
import copy
import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    configure_log,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from aeff.algoperf import submission as algoperf_submission

log = logging.getLogger(__name__)


@dataclasses.dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.aeff_launcher.vectorized_launcher.VectorizedLauncher"
    trials_per_program: int = 64  # the most trials in one group


ConfigStore.instance().store(
    group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf, provider="aeff"
)


def vectorizable(task_function: Any) -> Any:
    """Mark an app's task function as aeff's trial job: its jobs may be grouped."""
    task_function.aeff_trial_job = True
    return task_function


class VectorizedLauncher(Launcher):
    def __init__(self, trials_per_program: int = 64) -> None:
        if trials_per_program < 1:
            from aeff.errors import ConfigError

            raise ConfigError(
                f"hydra.launcher.trials_per_program={trials_per_program}: use 1 or more."
            )
        self.trials_per_program = trials_per_program
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        return self.launch_batches([(job_overrides, initial_job_idx)])[0]

    def launch_batches(
        self, batches: Sequence[tuple[Sequence[Sequence[str]], int]]
    ) -> list[list[JobReturn]]:
        """Several launches' jobs (each batch: its overrides and first job number) grouped
        together: the aeff sweeper hands over its studies' jobs at once, whose numbers
        restart in each study's folder, so that trials of different studies share a
        program where their `group_key` allows. The returns, by batch."""
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = [
            self._job_config(initial_job_idx + i, overrides)
            for job_overrides, initial_job_idx in batches
            for i, overrides in enumerate(job_overrides)
        ]
        returns: list[JobReturn | None] = [None] * len(configs)
        for group in self._groups(configs):
            if len(group) == 1:
                returns[group[0]] = self._run_alone(configs[group[0]])
            else:
                outcomes = self._run_group([configs[i] for i in group])
                for index, job_return in zip(group, outcomes, strict=True):
                    returns[index] = job_return
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        by_batch, start = [], 0
        for job_overrides, _ in batches:
            by_batch.append(returns[start : start + len(job_overrides)])
            start += len(job_overrides)
        return by_batch

    def _job_config(self, idx: int, overrides: Sequence[str]) -> DictConfig:
        """The job's config, as the basic launcher makes it, with its output dir set."""
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = idx
            config.hydra.job.num = idx
        HydraConfig.instance().set_config(config)
        output_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = os.path.abspath(output_dir)
        return config

    def _job_name(self, config: DictConfig) -> str:
        """The job's number; `study_<k>/<number>` for a job of a study of the sweep (its
        output dir, from the sweep dir)."""
        top = Path(os.path.abspath(str(self.config.hydra.sweep.dir)))
        output = Path(config.hydra.runtime.output_dir)
        if output.is_relative_to(top) and output != top:
            return str(output.relative_to(top))
        return str(config.hydra.job.num)

    def _run_alone(self, config: DictConfig) -> JobReturn:
        return run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )

    def _groups(self, configs: list[DictConfig]) -> list[list[int]]:
        """Job indices by group, in order of their first job; a job that cannot join one
        alone."""
        if not getattr(self.task_function, "aeff_trial_job", False):
            return [[i] for i in range(len(configs))]
        from aeff import trial

        by_key: dict[str, list[int]] = {}
        alone, algoperf = [], []
        for index, config in enumerate(configs):
            key = None
            if not config.hydra.job.chdir and not config.hydra.job.env_set:
                HydraConfig.instance().set_config(config)
                job = _trial_job(config)
                key = trial.group_key(job.cfg, job.run_dir)
                if algoperf_submission.is_target(OmegaConf.select(job.cfg, "submission._target_")):
                    algoperf.append(self._job_name(config))
            if key is None:
                alone.append([index])
            else:
                by_key.setdefault(key, []).append(index)
        if algoperf:
            log.info(
                "AlgoPerf's submissions run one trial at a time, each calling its own jitted "
                "step: jobs %s",
                ", ".join(algoperf),
            )
        size = self.trials_per_program
        groups = [jobs[i : i + size] for jobs in by_key.values() for i in range(0, len(jobs), size)]
        return sorted(groups + alone)

    def _run_group(self, configs: list[DictConfig]) -> list[JobReturn]:
        """The jobs as one group: started as Hydra starts a job, trained together through
        `sweep_trials`, as the app's job function trains a job alone, ended."""
        from aeff import hydra_job

        jobs, returns = [], []
        for config in configs:
            HydraConfig.instance().set_config(config)
            Path(config.hydra.runtime.output_dir).mkdir(parents=True, exist_ok=True)
            jobs.append(_trial_job(config))
            returns.append(_job_return(config, jobs[-1].cfg))
        configure_log(configs[0].hydra.job_logging, configs[0].hydra.verbose)
        for config in configs:
            HydraConfig.instance().set_config(config)
            self.hydra_context.callbacks.on_job_start(
                config=config, task_function=self.task_function
            )
        numbers = [self._job_name(c) for c in configs]
        with trial_logs(configs, numbers):
            log.info("%d trials in one program: jobs %s", len(jobs), ", ".join(numbers))
            outcomes = hydra_job.sweep_trials(jobs, f"{numbers[0]}-{numbers[-1]}")
        for config, job_return, outcome in zip(configs, returns, outcomes, strict=True):
            HydraConfig.instance().set_config(config)
            failed = isinstance(outcome, BaseException)
            job_return.return_value = outcome
            job_return.status = JobStatus.FAILED if failed else JobStatus.COMPLETED
            self.hydra_context.callbacks.on_job_end(config=config, job_return=job_return)
        return returns


def _trial_job(config: DictConfig) -> Any:
    """The job's trial as the app's job function would hand it on."""
    from aeff import hydra_job

    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return hydra_job.trial_job_of(task_cfg, HydraConfig.get())


def _job_return(config: DictConfig, task_cfg: DictConfig) -> JobReturn:
    job_return = JobReturn()
    job_return.cfg = task_cfg
    job_return.hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
    job_return.overrides = OmegaConf.to_container(config.hydra.overrides.task)
    job_return.working_dir = os.getcwd()
    job_return.task_name = JobRuntime.instance().get("name")  # as `run_job` names it
    return job_return


@contextlib.contextmanager
def trial_logs(configs: list[DictConfig], names: list[str] | None = None) -> Iterator[None]:
    """Each job's log file (Hydra's, `<output dir>/<job name>.log`) gets the lines about its
    trial and the group's own; on the console, a line about one trial names its job."""
    from aeff.records.speaker import SPEAKER

    root = logging.getLogger()
    shared = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    for handler in shared:
        root.removeHandler(handler)
        handler.close()
    handlers = []
    for index, config in enumerate(configs if shared else []):  # none: no log files wanted
        handler = logging.FileHandler(
            Path(config.hydra.runtime.output_dir) / f"{config.hydra.job.name}.log"
        )
        handler.setFormatter(shared[0].formatter)
        handler.setLevel(shared[0].level)
        handler.addFilter(lambda record, index=index: SPEAKER.get() in (None, index))
        root.addHandler(handler)
        handlers.append(handler)
    naming = _JobNaming(names or [str(c.hydra.job.num) for c in configs], SPEAKER)
    for handler in root.handlers:
        handler.addFilter(naming)
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.removeFilter(naming)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


class _JobNaming(logging.Filter):
    """Starts a line about one trial of the group with its job number, once."""

    def __init__(self, numbers: list[str], speaker: Any) -> None:
        super().__init__()
        self.numbers, self.speaker = numbers, speaker

    def filter(self, record: logging.LogRecord) -> bool:
        tag = self.speaker.get()
        if tag is not None and getattr(record, "aeff_job", None) is None:  # job 0 too
            record.aeff_job = self.numbers[tag]
            record.msg = f"job {self.numbers[tag]}: {record.msg}"
        return True
