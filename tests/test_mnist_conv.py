"""The convolutional MNIST workload (aeff/workloads/mnist.py, `workload=mnist_conv`): its
model state (BatchNorm's running statistics) and randomness (dropout) through AlgoPerf's
workload API, trained by aeff's own submissions and by AlgoPerf's, checkpointed and
resumed with its model state."""

import jax
import numpy as np
import pytest
from helpers import HELPERS, data_overrides, run_trial_json
from helpers.in_process import SIGNAL, metadata, rows

from aeff.cli.app import compose_config
from aeff.errors import TrialInterrupted
from aeff.spec import ForwardPassMode, ParameterType
from aeff.trial import train_and_evaluate
from aeff.workloads.mnist import MnistConvWorkload

TRAIN, EVAL = ForwardPassMode.TRAIN, ForwardPassMode.EVAL
pytestmark = pytest.mark.slow  # a convolutional net's programs compile for seconds each

# One step a program: unrolled steps of a convolutional net compile for tens of seconds.
SMALL = [
    "workload=mnist_conv",
    "workload.conv_width=2",
    "steps_per_dispatch=1",
]


@pytest.fixture(scope="module")
def conv():
    workload = MnistConvWorkload(conv_width=2)
    params, state = workload.init_model_fn(jax.random.key(0))
    inputs = jax.random.normal(jax.random.key(1), (8, 28, 28, 1))
    return workload, params, state, {"inputs": inputs}


def stats(state):
    return jax.tree.leaves(state)


def test_training_mode_updates_the_running_statistics_evaluation_uses_them(conv):
    workload, params, state, batch = conv
    _, trained = workload.model_fn(params, batch, state, TRAIN, jax.random.key(2), True)
    assert not all(np.array_equal(a, b) for a, b in zip(stats(trained), stats(state), strict=True))
    _, kept = workload.model_fn(params, batch, state, TRAIN, jax.random.key(2), False)
    assert all(np.array_equal(a, b) for a, b in zip(stats(kept), stats(state), strict=True))
    # evaluation: each example's logits are its own, whatever else is in the batch
    whole, same = workload.model_fn(params, batch, trained, EVAL, None, False)
    half, _ = workload.model_fn(params, {"inputs": batch["inputs"][:4]}, trained, EVAL, None, False)
    np.testing.assert_allclose(whole[:4], half, rtol=1e-5, atol=1e-6)
    assert same is trained


def test_dropout_follows_the_steps_key_and_a_traced_rate(conv):
    workload, params, state, batch = conv

    @jax.jit
    def logits(rng, rate):
        return workload.model_fn(params, batch, state, TRAIN, rng, True, dropout_rate=rate)[0]

    one, other = jax.random.key_data(jax.random.key(3)), jax.random.key_data(jax.random.key(4))
    assert not np.allclose(logits(one, 0.5), logits(other, 0.5))
    np.testing.assert_array_equal(logits(one, 0.5), logits(one, 0.5))
    np.testing.assert_allclose(logits(one, 0.0), logits(other, 0.0))


def test_its_parameters_are_typed_as_algoperf_types_them(conv):
    workload = conv[0]
    types = workload.model_params_types
    assert types["Conv_0"]["kernel"] == ParameterType.CONV_WEIGHT
    assert types["BatchNorm_0"] == {
        "scale": ParameterType.BATCH_NORM_SCALE,
        "bias": ParameterType.BATCH_NORM_BIAS,
    }
    assert types["Dense_0"]["kernel"] == ParameterType.WEIGHT
    assert workload.is_output_params("Dense_0") and not workload.is_output_params("Conv_1")


@pytest.mark.parametrize(
    "submission",
    [
        ["submission=adam", "batch_size=64"],
        [
            f"submission_path={HELPERS / 'algoperf_momentum.py'}",
            f"tuning_search_space={HELPERS / 'algoperf_momentum.json'}",
        ],
    ],
    ids=["aeffs-adam", "algoperfs-contract"],
)
def test_both_contracts_train_it_and_a_resume_keeps_its_model_state(
    submission, tmp_path, mnist_data_dir
):
    """Interrupted at its second evaluation (step 20), the trial resumes from a checkpoint
    holding its running statistics: its rows are those of the trial never stopped,
    evaluation (which reads the statistics) included."""

    def config(*overrides):
        return compose_config(
            [
                *submission,
                *SMALL,
                "workload._target_=helpers.in_process.SignalledConv",
                *data_overrides(mnist_data_dir),
                "eval_every_steps=10",
                "max_steps=30",
                "logging.system_metrics=false",
                "logging.packages=false",
                *overrides,
            ]
        )

    SIGNAL.update(evals=0, at_eval=2)
    try:
        with pytest.raises(TrialInterrupted):
            train_and_evaluate(config("rng_seed=1"), tmp_path / "resumed")
    finally:
        SIGNAL["at_eval"] = None
    train_and_evaluate(config("resume=true"), tmp_path / "resumed")
    train_and_evaluate(config("rng_seed=1"), tmp_path / "whole")
    resumed, whole = rows(tmp_path / "resumed"), rows(tmp_path / "whole")
    assert list(resumed["global_step"]) == [10, 20, 30]
    metrics = [c for c in resumed if c.startswith(("validation.", "test."))]
    # running statistics lost in the checkpoint would move the evaluations by far more
    np.testing.assert_allclose(resumed[metrics], whole[metrics], rtol=1e-6)
    assert metadata(tmp_path / "resumed")["resumed_from_step"] == 20
    assert resumed["validation.accuracy"].iloc[-1] > 0.3  # it learns


def test_batch_norm_sees_the_global_batch_on_any_number_of_devices(mnist_data_dir):
    """Without dropout, a trial on 4 devices follows the one on 1: BatchNorm's batch
    statistics are the global batch's, its running statistics the same."""
    overrides = [
        *SMALL,
        "workload.dropout_rate=0.0",
        "batch_size=64",
        "max_steps=12",
        "eval_every_steps=4",
        "rng_seed=0",
        *data_overrides(mnist_data_dir),
    ]
    one, four = (run_trial_json(overrides, devices)["runs"][0] for devices in (1, 4))
    for a, b in zip(one["rows"], four["rows"], strict=True):
        for key in ("validation.loss", "validation.accuracy", "train.loss"):
            assert a[key] == pytest.approx(b[key], rel=2e-4), key
