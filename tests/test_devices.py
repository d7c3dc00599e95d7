"""A trial's devices: whether trials run at once share the machine."""

import pytest

from aeff import devices


@pytest.mark.parametrize(
    "parallel, cpus, gpus, per_trial, shared",
    [
        (1, 2, 0, None, None),
        (2, 2, 0, None, None),
        (3, 2, 0, None, "3 trials at once share 2 CPU cores"),
        (2, 16, 1, None, "2 trials at once share 1 GPU(s)"),
        (2, 16, 2, 1, None),  # each its own GPU
    ],
)
def test_trials_at_once_share_the_machine_past_its_cores_or_on_shared_gpus(
    parallel, cpus, gpus, per_trial, shared
):
    assert devices.sharing(parallel, cpus, gpus, per_trial) == shared
