"""The compiled pieces: evaluation over padded splits, training steps, one compile per sweep."""

import dataclasses
import types

import jax
import numpy as np
import pytest

from aeff.errors import ConfigError
from aeff.spec import HostSplit
from aeff.submissions.adam import Adam, AdamHParams
from aeff.training import programs
from aeff.training.loop import limits_of, run_trial
from aeff.training.prepare import prepare
from aeff.workloads.mnist import MnistWorkload

TRACES: list[str] = []


@dataclasses.dataclass(frozen=True)
class TracedMnist(MnistWorkload):
    """MNIST that notes each time JAX traces its loss, i.e. each compilation."""

    def loss(self, logits, labels):
        TRACES.append("loss")
        return super().loss(logits, labels)


@pytest.fixture(scope="module")
def workload(mnist_data_dir):
    return MnistWorkload(data_dir=str(mnist_data_dir))


@pytest.mark.parametrize(("size", "eval_batch_size"), [(103, 25), (100, 100), (7, 64)])
def test_evaluation_is_exact_when_the_split_does_not_fill_the_batches(
    workload, size, eval_batch_size
):
    rng = np.random.default_rng(0)
    split = HostSplit(
        rng.integers(0, 256, size=(size, 28, 28, 1), dtype=np.uint8),
        rng.integers(0, 10, size).astype(np.int32),
    )
    params = workload.init_params(jax.random.key(1))
    mesh = programs.device_mesh()
    batched = dataclasses.replace(workload, eval_batch_size=eval_batch_size)
    stacked = jax.tree.map(lambda x: x[None], (params, {}))  # a trial alone: a stack of one
    means = programs.evaluate(workload, 1)(
        programs.replicate(stacked, mesh), programs.shard_for_eval(split, batched, mesh)
    )
    logits = workload.apply_model(params, workload.preprocess(split.inputs))
    expected_loss = float(workload.loss(logits, split.labels).mean())
    expected_accuracy = float((np.argmax(logits, -1) == split.labels).mean())
    assert float(means["loss"][0, 0]) == pytest.approx(expected_loss, rel=1e-5)
    assert float(means["accuracy"][0, 0]) == pytest.approx(expected_accuracy, abs=1e-7)


@pytest.mark.slow  # compiles programs of its own; the full suite runs it
def test_trials_differing_in_hyperparameters_share_one_compilation(mnist_data_dir):
    workload = TracedMnist(data_dir=str(mnist_data_dir))
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


def test_a_program_on_the_cpu_has_at_most_the_steps_that_compile_in_seconds(
    workload, monkeypatch, caplog
):
    """`steps_per_dispatch=1000000 batch_size=16`: a program of an epoch's 3125 unrolled
    steps compiled for over 240 s without a step; it is cut to MAX_UNROLLED_STEPS."""
    assert jax.default_backend() == "cpu"  # where the steps are unrolled
    compiled = []

    def train_steps(workload, submission, num_steps, size):
        compiled.append(num_steps)
        return lambda *args: None

    monkeypatch.setattr(programs, "train_steps", train_steps)
    monkeypatch.setattr(programs, "evaluate", lambda workload, size: lambda *args: None)
    with caplog.at_level("INFO", logger="aeff.training.prepare"):
        prepared = prepare(
            workload,
            Adam(batch_size=16),
            [AdamHParams()],
            [0],
            limits_of(workload),
            steps_per_dispatch=10**6,
        )
    assert compiled == [1, 16] and prepared.steps_per_dispatch == 16  # about 4 s to compile
    assert "steps_per_dispatch=1000000: 16 steps per program on the cpu" in caplog.text
    assert caplog.messages[-1] == "Compiling the programs of 1 trial before the clock starts."


@pytest.mark.parametrize(
    ("batch_size", "devices", "message"),
    [
        (50_001, 1, "batch_size=50001 exceeds the 50000 training examples."),
        (1022, 4, "batch_size=1022 does not divide over the 4 local devices: use a multiple of 4."),
    ],
)
def test_a_batch_the_data_or_the_devices_cannot_take_is_refused(
    workload, monkeypatch, batch_size, devices, message
):
    """As on `devices` devices (the end-to-end test runs 4 fake ones in another process)."""
    mesh = types.SimpleNamespace(devices=np.empty(devices))
    monkeypatch.setattr(programs, "device_mesh", lambda: mesh)
    with pytest.raises(ConfigError) as refused:
        prepare(
            workload,
            Adam(batch_size=batch_size),
            [AdamHParams()],
            [0],
            limits_of(workload),
            steps_per_dispatch=1,
        )
    assert str(refused.value) == message


@pytest.mark.slow  # compiles programs of its own; the full suite runs it
def test_fused_steps_evaluate_and_stop_at_the_same_steps_as_single_steps(workload):
    rows: dict[int, list[dict]] = {1: [], 4: []}
    results = {
        k: run_trial(
            workload,
            Adam(batch_size=4096),  # 12 steps per epoch: dispatches must stop at each epoch
            AdamHParams(lr=1e-3),
            0,
            stop_at_target=False,
            max_steps=20,
            eval_every_steps=10,
            steps_per_dispatch=k,
            on_eval=rows[k].append,
        )
        for k in rows
    }
    for k in rows:
        assert [row["global_step"] for row in rows[k]] == [10, 20]
        assert results[k].global_step == 20
    for single, fused in zip(rows[1], rows[4], strict=True):
        for metric in ("train.loss", "validation.loss", "validation.accuracy"):
            assert fused[metric] == pytest.approx(single[metric], rel=1e-4, abs=1e-5)


def test_trials_differing_in_budget_target_or_data_share_one_compilation(mnist_data_dir):
    base = TracedMnist(data_dir=str(mnist_data_dir))
    run_trial(base, Adam(batch_size=512), AdamHParams(), 0, max_steps=4, eval_every_steps=4)
    traced = len(TRACES)
    other = dataclasses.replace(
        base, target_value=0.3, max_allowed_runtime_sec=7.0, eval_period_time_sec=0.1, split_seed=3
    )
    result = run_trial(other, Adam(batch_size=512), AdamHParams(), 0, max_steps=4)
    assert len(TRACES) == traced
    assert result.goal_reached  # the other target was used: 4 steps reach 0.3
    assert other.program_key() == base.program_key()
    wider = dataclasses.replace(base, hidden_width=64)  # another model: its own programs
    assert wider.program_key() != base.program_key()
