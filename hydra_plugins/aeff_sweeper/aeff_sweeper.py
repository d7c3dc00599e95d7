"""The aeff sweeper: grids and sampled search spaces, failure isolation, resume, a report.

Unlike Hydra's basic sweeper it launches every trial even when some fail, then
writes `summary.csv` and `sweep.json` into the sweep dir and fails only at the end.
It works with any launcher: it only decides which jobs to launch.
"""

import itertools
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from aeff.checkpoints import has_checkpoint
from aeff.config import ConfigError

log = logging.getLogger(__name__)

FINISHED = ("completed", "diverged")  # divergence is a result, not a failure


@dataclass
class AeffSweeperConf:
    _target_: str = "hydra_plugins.aeff_sweeper.aeff_sweeper.AeffSweeper"
    max_batch_size: int | None = None  # jobs handed to the launcher at once; None: all


ConfigStore.instance().store(
    group="hydra/sweeper", name="aeff", node=AeffSweeperConf, provider="aeff"
)


# The run dirs of the failed trials of this process's last sweep. The app exits
# non-zero when it is not empty, after Hydra has run its on_multirun_end callbacks.
failed_trials: list[str] = []


class AeffSweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        try:  # a bad space or grid is refused before anything runs or is written
            jobs = self.job_overrides(arguments)
        except ConfigError as error:
            log.error("%s", error)
            sys.exit(2)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        todo = self.jobs_to_run(sweep_dir, jobs)
        log.info("Sweep of %d trials in %s: %d to run", len(jobs), sweep_dir, len(todo))
        returns: list[JobReturn] = []
        for batch in self.batches(todo):
            returns.extend(self.launcher.launch([jobs[i] for i in batch], batch[0]))
        self.report(sweep_dir)
        return returns

    def job_overrides(self, arguments: list[str]) -> list[list[str]]:
        """The grid of the command line, times the sampled points of the search space."""
        from aeff import search  # scipy: imported only by sweeps

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        axes = []
        for override in parser.parse_overrides(arguments):
            key = override.get_key_element()
            if override.is_sweep_override():
                if not override.is_discrete_sweep():
                    raise ConfigError(f"{key}: only comma lists and range() sweeps are supported.")
                axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
            else:
                axes.append([f"{key}={override.get_value_element_as_str()}"])
        grid = [list(combination) for combination in itertools.product(*axes)]
        space = self.config.get("search_space")
        space = OmegaConf.to_container(space, resolve=True) if space else {}
        settings = self.config.search
        if not space:
            if settings.num_trials is not None:
                raise ConfigError(
                    "search.num_trials is set but no search_space is chosen: "
                    "add search_space=<name> (see conf/search_space/)."
                )
            return grid
        if settings.num_trials is None:
            raise ConfigError("search_space is chosen: set search.num_trials=N.")
        points = search.sample(
            search.parse_space(space), settings.num_trials, settings.seed, settings.method
        )
        return [job + search.as_overrides(point) for job in grid for point in points]

    def jobs_to_run(self, sweep_dir: Path, jobs: list[list[str]]) -> list[int]:
        """All jobs; with resume=true, only those not finished, each keeping its seed."""
        if not self.config.get("resume"):
            return list(range(len(jobs)))
        todo = []
        for index in range(len(jobs)):
            job_dir = sweep_dir / str(index)
            metadata = job_dir / "metadata.json"
            record = json.loads(metadata.read_text()) if metadata.exists() else {}
            if record.get("status") in FINISHED:
                continue
            if record.get("rng_seed") is not None:
                jobs[index] = [o for o in jobs[index] if not o.startswith("rng_seed=")]
                jobs[index].append(f"rng_seed={record['rng_seed']}")
            # A trial with a checkpoint continues in its dir; others start afresh, and the
            # attempt's records move aside.
            if job_dir.exists() and not has_checkpoint(job_dir / "checkpoints"):
                attempts = sweep_dir / ".attempts"
                attempts.mkdir(exist_ok=True)
                earlier = len(list(attempts.glob(f"{index}.*")))
                shutil.move(job_dir, attempts / f"{index}.{earlier}")
            todo.append(index)
        return todo

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

    def report(self, sweep_dir: Path) -> None:
        from aeff.results import write_sweep_report

        summary, sweep = write_sweep_report(sweep_dir)
        print(summary.to_string(index=False))
        print(json.dumps({k: v for k, v in sweep.items() if k != "trials"}, indent=2))
        failed_trials[:] = sweep["failed"]
        if failed_trials:
            log.error(
                "%d of %d trials failed: %s. Rerun them with resume=true hydra.sweep.dir=%s",
                len(failed_trials),
                sweep["num_trials"],
                ", ".join(failed_trials),
                sweep_dir,
            )
