"""AlgoPerf's submission contract on aeff (aeff/algoperf/): its API importable without
AlgoPerf, the two contracts told apart, one-line errors, AlgoPerf's workload API on aeff's
workloads, its search spaces by their own names, and its submissions trained, recorded and
resumed under aeff's rules. AlgoPerf's published files: tests/test_algoperf_published.py."""

import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import HELPERS, data_overrides, run_aeff
from helpers.in_process import SIGNAL, metadata, rows
from helpers.scripted import EVAL_SECONDS, Scripted, ScriptedMnist
from jax.sharding import PartitionSpec

from aeff import algoperf, config, search, spec, user_files
from aeff.algoperf import runner
from aeff.algoperf.submission import (
    TARGET,
    AlgoPerfSubmission,
    display_name,
    hyperparameters,
    submission_name,
)
from aeff.cli.app import compose_config
from aeff.errors import ConfigError, TrialInterrupted
from aeff.training import rules
from aeff.training.loop import Member
from aeff.trial import train_and_evaluate
from aeff.workloads.mnist import MnistWorkload

MOMENTUM = HELPERS / "algoperf_momentum.py"
MOMENTUM_SPACE = HELPERS / "algoperf_momentum.json"
TIME_COLUMNS = ["accumulated_submission_time", "accumulated_eval_time", "wall_time"]
TIME_COLUMNS += ["global_start_time", "run_idx"]


@pytest.fixture
def without_algoperf(monkeypatch):
    """A process where no `algoperf` was imported yet (a test's own stays its own)."""
    for name in [n for n in sys.modules if n == "algoperf" or n.startswith("algoperf.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [n for n in sys.modules if n == "algoperf" or n.startswith("algoperf.")]:
        del sys.modules[name]


def test_algoperfs_api_imports_where_algoperf_is_not_installed(without_algoperf):
    algoperf.provide()
    from algoperf import jax_sharding_utils
    from algoperf import spec as algoperf_spec

    assert algoperf_spec.ForwardPassMode.TRAIN is spec.ForwardPassMode.TRAIN
    assert algoperf_spec.LossType.SOFTMAX_CROSS_ENTROPY.value == 0
    assert algoperf_spec.ParameterType.BATCH_NORM_SCALE.value == 3
    assert jax_sharding_utils.get_batch_dim_sharding().spec == PartitionSpec("batch")
    assert jax_sharding_utils.replicate(np.ones(3)).sharding.spec == PartitionSpec()


def test_the_installed_algoperf_is_used_and_its_enums_understood(
    without_algoperf, tmp_path, monkeypatch
):
    """Where `algoperf` is importable, submissions get it, and aeff's workload answers in
    its types: its ShapeTuple leaves, its ParameterType, its ForwardPassMode."""
    package = tmp_path / "algoperf"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "spec.py").write_text(
        textwrap.dedent("""
        import enum
        class ForwardPassMode(enum.Enum):
            TRAIN = 10
            EVAL = 11
        class ParameterType(enum.Enum):
            WEIGHT = 20
            BIAS = 21
        class LossType(enum.Enum):
            SOFTMAX_CROSS_ENTROPY = 30
        class ShapeTuple:
            def __init__(self, shape_tuple):
                self.shape_tuple = shape_tuple
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    algoperf.provide()
    from algoperf import spec as installed

    assert installed.__file__ == str(package / "spec.py")
    workload = MnistWorkload()
    assert all(isinstance(s, installed.ShapeTuple) for s in jax.tree.leaves(workload.param_shapes))
    assert set(jax.tree.leaves(workload.model_params_types)) == {
        installed.ParameterType.WEIGHT,
        installed.ParameterType.BIAS,
    }
    assert workload.loss_type is installed.LossType.SOFTMAX_CROSS_ENTROPY
    assert spec.is_training(installed.ForwardPassMode.TRAIN)
    assert not spec.is_training(installed.ForwardPassMode.EVAL)


def test_mnist_answers_algoperfs_workload_api():
    workload = MnistWorkload()
    params, model_state = workload.init_model_fn(jax.random.key(0))
    shapes = workload.param_shapes
    assert jax.tree.map(lambda s: s.shape_tuple, shapes) == jax.tree.map(jnp.shape, params)
    assert workload.model_params_types["Dense_0"] == {
        "kernel": spec.ParameterType.WEIGHT,
        "bias": spec.ParameterType.BIAS,
    }
    assert workload.is_output_params("Dense_1") and not workload.is_output_params("Dense_0")
    assert workload.step_hint == 7813 and workload.target_metric_name == "accuracy"
    assert workload.num_train_examples == 50_000 and workload.num_test_examples == 10_000
    assert workload.has_reached_validation_target({"validation/accuracy": 0.975})
    assert not workload.has_reached_validation_target({"validation/accuracy": 0.96})

    inputs = jax.random.normal(jax.random.key(1), (5, 28, 28, 1))
    labels = jnp.array([0, 1, 2, 3, 9])
    logits, same_state = workload.model_fn(
        params, {"inputs": inputs}, model_state, spec.ForwardPassMode.EVAL, None, False
    )
    assert same_state == {} and logits.shape == (5, 10)
    mask = jnp.array([1.0, 1.0, 0.0, 1.0, 1.0])
    losses = workload.loss_fn(labels, logits, mask, label_smoothing=0.1)
    smoothed = jax.nn.one_hot(labels, 10) * 0.9 + 0.1 / 10  # AlgoPerf's smoothing
    expected = -jnp.sum(smoothed * jax.nn.log_softmax(logits), axis=-1) * mask
    np.testing.assert_allclose(losses["per_example"], expected, rtol=1e-5)
    np.testing.assert_allclose(losses["summed"], expected.sum(), rtol=1e-5)
    assert float(losses["n_valid_examples"]) == 4.0


def write(tmp_path, text: str, name: str = "mine.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_an_algoperf_file_is_told_apart_by_what_it_defines():
    cls = config.class_in_file(MOMENTUM, "submission_path", "submission")
    assert cls is AlgoPerfSubmission
    plain_sgd = config.class_in_file(HELPERS / "plain_sgd.py", "submission_path", "submission")
    assert issubclass(plain_sgd, spec.Submission)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "def update_params(*args):\n    pass\n",
            "defines part of AlgoPerf's submission API but not get_batch_size, "
            "init_optimizer_state, data_selection",
        ),
        ("x = 1\n", "defines no submission: neither a subclass of aeff's Submission nor"),
        ("import torch\n", "ModuleNotFoundError: .*torch.*: aeff runs AlgoPerf's JAX submissions"),
        ("import chex\n", 'AlgoPerf\'s NAdamW imports it\\): pip install -e ".\\[algoperf\\]"'),
        ("from algoperf.workloads import mnist\n", "aeff provides algoperf.spec and"),
    ],
)
def test_a_file_of_neither_contract_is_one_line_naming_it(tmp_path, monkeypatch, text, message):
    monkeypatch.setitem(sys.modules, "chex", None)  # as where the algoperf extra is missing
    monkeypatch.setitem(sys.modules, "torch", None)  # as where PyTorch is not installed
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^submission_path={path}.*{message}") as refused:
        config.class_in_file(path, "submission_path", "submission")
    assert "\n" not in str(refused.value)


def test_a_pytorch_submission_is_refused_where_torch_is_installed(tmp_path, monkeypatch):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    path = write(tmp_path, "import torch\n\ndef update_params(*args):\n    pass\n", "pt.py")
    with pytest.raises(ConfigError, match=r"is a PyTorch submission \(it imports torch as torch\)"):
        config.class_in_file(path, "submission_path", "submission")
    # The stand-in leaves with this test: monkeypatch restores a real torch, if one was loaded.
    sys.modules.pop("torch", None)


def test_algoperfs_spaces_keep_their_names_for_its_submissions(tmp_path):
    space = user_files.read_search_space(MOMENTUM_SPACE, keep_names=True)
    assert set(space) == {"hparams.learning_rate", "hparams.momentum", "hparams.label_smoothing"}
    assert "hparams.lr" in user_files.read_search_space(MOMENTUM_SPACE)  # aeff's own


def test_a_list_of_points_gives_trial_i_point_i(tmp_path):
    path = tmp_path / "points.json"
    path.write_text('[{"learning_rate": 0.1, "momentum": 0.9}, {"learning_rate": 0.2}]')
    space = user_files.read_search_space(path, keep_names=True)
    dimensions = search.parse_space(space)
    points = search.sample(dimensions, 2, seed=3)
    assert [search.as_overrides(p) for p in points] == [
        ["hparams.learning_rate=0.1", "hparams.momentum=0.9"],
        ["hparams.learning_rate=0.2"],
    ]
    pinned = [d.without({"hparams.learning_rate"}) for d in dimensions]
    assert search.as_overrides(search.sample(pinned, 1, seed=0)[0]) == ["hparams.momentum=0.9"]
    with pytest.raises(ConfigError, match="lists 2 points; use at most 2 trials"):
        search.sample(dimensions, 3, seed=0)


@pytest.fixture
def algoperf_config(mnist_data_dir):
    """A short trial of the tests' AlgoPerf submission, composed as `python -m aeff` does."""

    def make(*overrides: str, space: bool = True):
        return compose_config(
            [
                f"submission_path={MOMENTUM}",
                *([f"tuning_search_space={MOMENTUM_SPACE}"] if space else []),
                *data_overrides(mnist_data_dir),
                "workload.num_validation=58976",  # 1,024 training examples: 16 steps an epoch
                "eval_every_steps=10",
                "max_steps=40",
                "logging.system_metrics=false",
                "logging.packages=false",
                *overrides,
            ]
        )

    return make


@pytest.mark.slow  # trains a trial of its own; the fast tier's AlgoPerf trial is the clock's
def test_an_algoperf_submission_trains_and_is_recorded_as_aeffs(tmp_path, algoperf_config):
    """Its own batch size, its hyperparameters by its names (the space's first point), its
    file copied and hashed, a row per evaluation without a training loss (AlgoPerf's
    update_params reports none), time charged for its calls alone, no snapshots."""
    result = train_and_evaluate(algoperf_config("rng_seed=3"), tmp_path)
    assert result.status == "completed" and result.global_step == 40
    record = metadata(tmp_path)
    assert record["batch_size"] == 64 and record["target_resolution"] is None
    assert record["submission._target_"] == "aeff.algoperf.submission.AlgoPerfSubmission"
    assert 0.01 <= record["hparams.learning_rate"] <= 0.1 and record["hparams.momentum"] == 0.9
    assert record["steps_per_dispatch"] == 1
    assert (tmp_path / "submission.py").read_bytes() == MOMENTUM.read_bytes()
    assert record["submission_path_sha256"] == user_files.sha256(MOMENTUM, "submission_path")
    table = rows(tmp_path)
    assert list(table["global_step"]) == [10, 20, 30, 40] and "train.loss" not in table
    assert list(table["epoch"]) == [10 / 16, 20 / 16, 30 / 16, 40 / 16]
    assert table["accumulated_submission_time"].is_monotonic_increasing
    assert table["validation.accuracy"].iloc[-1] > 0.5  # it learns
    assert set(table["hparams.learning_rate"]) == {record["hparams.learning_rate"]}


@pytest.mark.slow  # trains or compiles a program of its own
def test_an_algoperf_trial_resumed_past_an_epoch_gives_the_rows_of_one_never_stopped(
    tmp_path, algoperf_config
):
    """Interrupted at its third evaluation (step 30, in its second epoch): its checkpoint
    keeps the optimizer state's arrays and the queue's place, so the resumed trial draws
    the batches the whole one drew."""
    target = "workload._target_=helpers.in_process.SignalledMnist"
    SIGNAL.update(evals=0, at_eval=3)
    try:
        with pytest.raises(TrialInterrupted) as stopped:
            train_and_evaluate(algoperf_config(target, "rng_seed=5"), tmp_path / "resumed")
    finally:
        SIGNAL["at_eval"] = None
    assert stopped.value.checkpoint_step == 30
    train_and_evaluate(algoperf_config(target, "resume=true"), tmp_path / "resumed")
    train_and_evaluate(algoperf_config(target, "rng_seed=5"), tmp_path / "whole")
    resumed, whole = rows(tmp_path / "resumed"), rows(tmp_path / "whole")
    assert list(resumed["global_step"]) == [10, 20, 30, 40]
    metrics = [c for c in resumed if c.startswith(("validation.", "test."))]
    np.testing.assert_array_equal(resumed[metrics], whole[metrics])
    assert metadata(tmp_path / "resumed")["resumed_from_step"] == 30


def test_a_hyperparameter_the_trial_lacks_is_one_line_before_training(tmp_path, algoperf_config):
    with pytest.raises(ConfigError) as refused:
        train_and_evaluate(algoperf_config(space=False), tmp_path / "run")
    assert str(refused.value) == (
        f"submission_path={MOMENTUM}: init_optimizer_state reads hyperparameters.learning_rate, "
        "which this trial does not give: add learning_rate to tuning_search_space= or give "
        "+hparams.learning_rate=<value>."
    )
    assert not (tmp_path / "run").exists()  # a single run's bad input leaves no files


def test_a_submission_that_returns_the_wrong_tuple_is_one_line(tmp_path, algoperf_config):
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        MOMENTUM.read_text().replace(
            "return (optimizer_state, update), params, model_state",
            "return (optimizer_state, update), params",
        )
    )
    cfg = algoperf_config(f"submission_path={wrong}")
    with pytest.raises(ConfigError, match=rf"^submission_path={wrong}: update_params returned "):
        train_and_evaluate(cfg, tmp_path / "run")


def test_an_algoperf_trial_is_never_grouped(tmp_path, algoperf_config):
    from aeff.trial import group_key

    cfg = algoperf_config()
    assert group_key(cfg, tmp_path / "0") != group_key(cfg, tmp_path / "1")


@pytest.mark.slow  # trains or compiles a program of its own
def test_aeffs_optax_losses_match_algoperfs_on_one_batch():
    """aeff's own contract and AlgoPerf's meet one workload: its loss_fn at smoothing 0 is
    the per-example loss aeff's own submissions train on."""
    workload = MnistWorkload()
    params = workload.init_params(jax.random.key(0))
    inputs = jax.random.normal(jax.random.key(1), (8, 28, 28, 1))
    labels = jnp.arange(8) % 10
    logits = workload.apply_model(params, inputs)
    np.testing.assert_allclose(
        workload.loss_fn(labels, logits)["per_example"],
        optax.softmax_cross_entropy_with_integer_labels(logits, labels),
        rtol=1e-6,
    )


STEP, PREPARE = 0.25, 1.0  # seconds of the fake clock an AlgoPerf call takes


def timed_submission(clock: Scripted, workload_name: str = "mnist") -> AlgoPerfSubmission:
    """The tests' AlgoPerf submission, whose `update_params` takes STEP seconds and whose
    `prepare_for_eval` takes PREPARE on the fake `clock`."""
    algoperf.provide()
    base = user_files.load_module(MOMENTUM, "submission_path")
    timed = types.ModuleType("timed_momentum")
    timed.__dict__.update(vars(base))

    def update_params(**arguments):
        clock.advance(STEP)
        return base.update_params(**arguments)

    def prepare_for_eval(**arguments):
        clock.advance(PREPARE)
        return base.prepare_for_eval(**arguments)

    timed.update_params, timed.prepare_for_eval = update_params, prepare_for_eval
    return AlgoPerfSubmission(path=str(MOMENTUM), module=timed)


def test_an_algoperf_trial_is_charged_its_calls_and_ends_within_one_step_of_its_budget(
    mnist_data_dir,
):
    """Its steps and its preparations for evaluation are submission time, evaluations are
    not; it ends at the first evaluation at or past its budget, which its last step's
    launch (a step at a time near the end) reaches within a step and a preparation."""
    budget = 10.0
    clock = Scripted()  # never on target
    workload = ScriptedMnist(
        data_dir=str(mnist_data_dir), max_allowed_runtime_sec=budget, scripted=clock
    )
    limits = rules.Limits(budget, workload.eval_period_time_sec, eval_every_steps=4)
    hparams = hyperparameters({"learning_rate": 0.05, "momentum": 0.9, "label_smoothing": 0.0})
    prepared = runner.prepare(
        workload, timed_submission(clock), [hparams], [0], limits, steps_per_dispatch=1, clock=clock
    )
    table = []
    member = Member(hparams, 0, on_eval=table.append)
    [result] = runner.HostLoop(prepared, [member], limits, clock).run()
    steps = [row["global_step"] for row in table]
    assert steps == [4, 8, 12, 16, 20] and result.global_step == 20
    for row in table:  # four steps and a preparation per evaluation
        assert row["accumulated_submission_time"] == row["global_step"] / 4 * (4 * STEP + PREPARE)
        assert row["accumulated_eval_time"] == row["global_step"] / 4 * EVAL_SECONDS
    assert budget <= result.accumulated_submission_time < budget + STEP + PREPARE
    assert not table[-1]["is_time_remaining"] and "train.loss" not in table[-1]


def algoperf_sweep(tmp_path, data_dir, *overrides: str):
    """`python -m aeff -m` of two short trials of the tests' AlgoPerf submission."""
    return run_aeff(
        [
            "-m",
            *overrides,
            f"submission_path={MOMENTUM}",
            f"tuning_search_space={MOMENTUM_SPACE}",
            "search.num_trials=2",
            "max_steps=20",
            "eval_every_steps=10",
            *data_overrides(data_dir),
        ],
        tmp_path,
    )


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["vectorized", "parallel", "submitit_local"])
def test_every_launcher_runs_algoperf_trials_each_alone(launcher, tmp_path, mnist_data_dir):
    """The vectorized launcher runs AlgoPerf's trials one by one (each has its own jitted
    step), the parallel one in its workers; each trial a complete record."""
    out = algoperf_sweep(tmp_path, mnist_data_dir, f"hydra/launcher={launcher}")
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    records = [metadata(sweep_dir / str(job)) for job in (0, 1)]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert all("group.size" not in r for r in records)  # never grouped
    if launcher == "vectorized":
        assert "AlgoPerf's submissions run one trial at a time" in out.stdout + out.stderr
    assert records[0]["hparams.learning_rate"] != records[1]["hparams.learning_rate"]


@pytest.mark.slow
def test_optunas_sweeper_tunes_an_algoperf_submission_by_its_names(tmp_path, mnist_data_dir):
    out = algoperf_sweep(
        tmp_path,
        mnist_data_dir,
        "hydra/sweeper=optuna",
        "objective=final.validation.loss",
        "hydra.sweeper.n_trials=2",
        "hparams.learning_rate=tag(log, interval(0.01, 0.1))",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    records = [metadata(sweep_dir / str(job)) for job in (0, 1)]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert all(0.01 <= r["hparams.learning_rate"] <= 0.1 for r in records)
    assert "Best parameters: {'hparams.learning_rate':" in out.stdout + out.stderr


def test_results_name_an_algoperf_submission_for_its_algorithm():
    """AlgoPerf's files are all `submission.py`, and their class is aeff's stand-in."""
    adamw = "/x/archived_paper_baselines/adamw/jax/submission.py"
    assert display_name(adamw) == "adamw"
    assert display_name("/x/external_tuning/jax_nadamw_full_budget.py") == "jax_nadamw_full_budget"
    algoperf_record = {"submission._target_": TARGET, "submission_path": adamw}
    assert submission_name(algoperf_record) == "adamw"
    assert submission_name({"submission._target_": "aeff.submissions.adam.Adam"}) == "Adam"
