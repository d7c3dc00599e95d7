"""Runs trials through aeff's Python API and prints what they recorded as JSON.

Usage: python tests/trial_json.py REPEAT OVERRIDE... (a child process of the tests, so
each run can have its own XLA_FLAGS device count).
"""

import json
import sys

import jax
from hydra import compose, initialize_config_module

from aeff import config
from aeff.app import prepare, run


def main() -> None:
    repeat, overrides = int(sys.argv[1]), sys.argv[2:]
    config.register()
    with initialize_config_module(config_module="aeff.conf", version_base="1.3"):
        trial = prepare(compose(config_name="config", overrides=overrides))
    runs = []
    for _ in range(repeat):
        rows = []
        runs.append({"result": run(trial, on_eval=rows.append), "rows": rows})
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
