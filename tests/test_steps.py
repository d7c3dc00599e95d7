"""The compiled pieces: evaluation over padded splits, training steps, one compile per sweep."""

import dataclasses

import jax
import numpy as np
import pytest

from aeff import steps
from aeff.runner import run_trial
from aeff.spec import HostSplit
from aeff.submissions.adam import Adam, AdamHParams
from aeff.workloads.mnist import MnistWorkload

TRACES: list[str] = []


@dataclasses.dataclass(frozen=True)
class TracedMnist(MnistWorkload):
    """MNIST that notes each time JAX traces its loss, i.e. each compilation."""

    def loss(self, logits, labels):
        TRACES.append("loss")
        return super().loss(logits, labels)


@pytest.fixture(scope="module")
def workload(tfds_data_dir):
    return MnistWorkload(data_dir=str(tfds_data_dir))


@pytest.mark.parametrize(("size", "eval_batch_size"), [(103, 25), (100, 100), (7, 64)])
def test_evaluation_is_exact_when_the_split_does_not_fill_the_batches(
    workload, size, eval_batch_size
):
    rng = np.random.default_rng(0)
    split = HostSplit(
        rng.normal(size=(size, 28, 28, 1)).astype(np.float32),
        rng.integers(0, 10, size).astype(np.int32),
    )
    params = workload.init_params(jax.random.key(1))
    mesh = steps.device_mesh()
    means = steps.evaluate(workload)(
        steps.replicate(params, mesh), steps.shard_for_eval(split, eval_batch_size, mesh)
    )
    logits = workload.apply_model(params, split.inputs)
    expected_loss = float(workload.loss(logits, split.labels).mean())
    expected_accuracy = float((np.argmax(logits, -1) == split.labels).mean())
    assert float(means["loss"][0]) == pytest.approx(expected_loss, rel=1e-5)
    assert float(means["accuracy"][0]) == pytest.approx(expected_accuracy, abs=1e-7)


def test_trials_differing_in_hyperparameters_share_one_compilation(tfds_data_dir):
    workload = TracedMnist(data_dir=str(tfds_data_dir))
    first = run_trial(
        workload, Adam(batch_size=512), AdamHParams(lr=1e-3), 0, max_steps=30, eval_every_steps=30
    )
    traces_of_first_trial = len(TRACES)
    second = run_trial(
        workload, Adam(batch_size=512), AdamHParams(lr=3e-3), 0, max_steps=30, eval_every_steps=30
    )
    assert traces_of_first_trial > 0
    assert len(TRACES) == traces_of_first_trial
    # The injected learning rate really differs between the two trials.
    assert first.final_metrics["train.loss"] != second.final_metrics["train.loss"]
    for result in (first, second):  # 30 steps of Adam learn MNIST well past chance
        assert result.final_metrics["validation.accuracy"] > 0.8
