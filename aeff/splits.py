"""A workload's data: its splits in host memory, and the batches of the steps.

`Workload.load_splits` gives `Splits`, each a `HostSplit` as compact as stored
(`Workload.preprocess` runs on the devices); the training split goes to the devices as
an `aeff.spec.InputStream`, from which a submission's `data_selection` takes each step's
`Batch`. Which splits a workload evaluates, and under which names, it declares
(`Workload.eval_splits`).
"""

from typing import NamedTuple

import jax
import numpy as np


class Batch(NamedTuple):
    inputs: jax.Array
    labels: jax.Array


class HostSplit(NamedTuple):
    """One split in host memory, as compact as stored: `Workload.preprocess` runs on the devices."""

    inputs: np.ndarray
    labels: np.ndarray


class Splits(NamedTuple):
    train: HostSplit
    validation: HostSplit
    test: HostSplit
