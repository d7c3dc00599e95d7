"""Runs one trial alone, as a group of one, and as the first of a group of eight (with and
without a neighbour that diverges), and prints each run's rows as JSON.

Usage: python tests/helpers/grouping_json.py OVERRIDE... (a child process of the tests, so that
each run can have its own XLA_FLAGS device count). The submission is WildAdam, so that
a neighbour can diverge for real (lr=1e37).
"""

import dataclasses
import json
import sys

import jax
from hydra import compose, initialize_config_module
from wild_adam import WildAdam, WildAdamHParams

from aeff import config
from aeff.cli.app import register
from aeff.training.loop import Member, run_group, run_trial


def main() -> None:
    register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        trial = config.check_trial(compose(config_name="config", overrides=sys.argv[1:]))
    s, workload = trial.settings, trial.workload
    submission = WildAdam(batch_size=trial.submission.batch_size)
    hparams = WildAdamHParams(**dataclasses.asdict(trial.hparams))
    settings = {
        "max_steps": s.max_steps,
        "eval_every_steps": s.eval_every_steps,
        "steps_per_dispatch": s.steps_per_dispatch,
        "stop_at_target": s.stop_at_target,
    }
    alone: list[dict] = []
    run_trial(workload, submission, hparams, s.rng_seed, on_eval=alone.append, **settings)
    runs = {"alone": alone}
    for name, diverging in (("group of 1", None), ("group of 8", None), ("diverging", 1e37)):
        rows: list[dict] = []
        members = [Member(hparams, s.rng_seed, on_eval=rows.append)]
        if name != "group of 1":
            neighbours = [diverging or 1e-3 * (i + 2) for i in range(7)]
            members += [
                Member(dataclasses.replace(hparams, lr=lr), s.rng_seed + i + 1)
                for i, lr in enumerate(neighbours)
            ]
        outcomes = run_group(workload, submission, members, **settings)
        runs[name] = rows
        runs[f"{name} statuses"] = [o.status for o in outcomes]
    print(json.dumps({"runs": runs, "device_count": jax.local_device_count()}))


if __name__ == "__main__":
    main()
