"""Runs trials through aeff's Python API and prints what they recorded as JSON.

Usage: python tests/helpers/trial_json.py REPEAT OVERRIDE... (a child process of the tests, so
each run can have its own XLA_FLAGS device count).
"""

import dataclasses
import json
import sys

import jax
from hydra import compose, initialize_config_module

from aeff import config
from aeff.cli.app import register
from aeff.training.loop import run_trial


def main() -> None:
    repeat, overrides = int(sys.argv[1]), sys.argv[2:]
    register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        trial = config.check_trial(compose(config_name="config", overrides=overrides))
    s = trial.settings
    runs = []
    for _ in range(repeat):
        rows = []
        result = run_trial(
            trial.workload,
            trial.submission,
            trial.hparams,
            s.rng_seed,
            stop_at_target=s.stop_at_target,
            max_steps=s.max_steps,
            eval_every_steps=s.eval_every_steps,
            steps_per_dispatch=s.steps_per_dispatch,
            on_eval=rows.append,
        )
        runs.append({"result": dataclasses.asdict(result), "rows": rows})
    print(
        json.dumps(
            {
                "runs": runs,
                "device_count": jax.local_device_count(),
                "tensorflow_imported": "tensorflow" in sys.modules,
            }
        )
    )


if __name__ == "__main__":
    main()
