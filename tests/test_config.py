"""Config composition and validation: bad values fail before any data or device is used."""

import dataclasses
import json
import math
import re
from typing import ClassVar

import jax
import pytest
from helpers import HELPERS
from hydra.errors import ConfigCompositionException

from aeff import config, hydra_job
from aeff.cli import app
from aeff.config import Trial, check_trial
from aeff.errors import ConfigError
from aeff.records.attempt import Attempt
from aeff.records.run_dir import RunDir
from aeff.schema import CheckpointConfig, TrialConfig
from aeff.submissions.adam import Adam, AdamHParams
from aeff.submissions.nesterov import Nesterov, NesterovHParams
from aeff.workloads.mnist import MnistWorkload


def test_default_config_builds_typed_objects(compose_config):
    trial = check_trial(compose_config())
    assert trial.workload == MnistWorkload()
    assert trial.workload.target_metric == "validation.accuracy"
    assert trial.workload.target_value == 0.97
    assert trial.workload.max_allowed_runtime_sec == 60
    assert trial.submission == Adam(batch_size=1024)
    assert isinstance(trial.hparams, AdamHParams)
    assert trial.settings.rng_seed is None


@pytest.mark.parametrize(
    ("variant", "differs"),
    [
        ("mnist_relu", {"activation": "relu"}),
        ("mnist_deep", {"num_hidden_layers": 3}),
        ("mnist_loss", {"target_metric": "validation.loss"}),
    ],
)
def test_a_workload_variant_is_its_own_workload_with_its_own_name(compose_config, variant, differs):
    trial = check_trial(compose_config(f"workload={variant}"))
    assert trial.workload.name == trial.record["workload"] == variant
    base = MnistWorkload()
    assert {k: v for k, v in differs.items() if getattr(base, k) != v} == differs
    for key, value in differs.items():
        assert getattr(trial.workload, key) == value
    num_layers = len(jax.eval_shape(trial.workload.init_params, jax.random.key(0)))
    assert num_layers == trial.workload.num_hidden_layers + 1


def test_overrides_are_typed(compose_config):
    trial = check_trial(
        compose_config(
            "hparams.lr=3e-3", "workload.hidden_width=64", "submission=nesterov", "batch_size=256"
        )
    )
    assert trial.hparams.lr == 3e-3
    assert trial.workload.hidden_width == 64
    assert trial.submission == Nesterov(batch_size=256)


def test_meta_labels_are_accepted(compose_config):
    trial = check_trial(compose_config("+meta.study=demo", "+meta.note='a=b,c'"))
    assert trial.settings.meta == {"study": "demo", "note": "a=b,c"}


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("hparams.lr=abc", ["hparams.lr", "Float"]),
        ("hparams.lr=nan", ["hparams.lr", "(0, 100]"]),
        ("hparams.lr=-1", ["hparams.lr", "(0, 100]"]),
        ("hparams.lr=1e30", ["hparams.lr", "(0, 100]"]),
        ("hparams.one_minus_beta_1=1.5", ["hparams.one_minus_beta_1", "[0, 1)"]),
        ("+hparams.momentum=0.9", ["hparams.momentum", "lr, one_minus_beta_1"]),
        ("batch_size=0", ["batch_size", "positive"]),
        ("max_steps=0", ["max_steps", "positive"]),
        ("objective=speed", ["objective='speed'", "time_to_target or final.<metric>"]),
        ("workload.max_allowed_runtime_sec=-1", ["workload.max_allowed_runtime_sec", "> 0"]),
        ("workload.eval_period_time_sec=0", ["workload.eval_period_time_sec", "> 0"]),
        ("workload.hidden_width=0", ["workload.hidden_width", "[1, 65536]"]),
        ("workload.hidden_width=1000000000", ["workload.hidden_width", "[1, 65536]"]),
        ("workload.num_hidden_layers=0", ["workload.num_hidden_layers", "[1, 64]"]),
        ("workload.activation=swish", ["workload.activation", "'sigmoid', 'relu', 'tanh'"]),
        ("workload.eval_batch_size=100000000000", ["workload.eval_batch_size", "[1, 60000]"]),
        (
            "workload.target_metric=train.accuracy",
            ["workload.target_metric", "validation.accuracy"],
        ),
        ("workload.target_value=inf", ["workload.target_value", "(0, 1]"]),
        ("workload.target_value=1.5", ["workload.target_value", "(0, 1] for validation"]),
        ("workload.target_value=0", ["workload.target_value", "(0, 1] for validation"]),
        (
            "workload.target_metric=validation.loss workload.target_value=0",
            ["workload.target_value", "finite number > 0 for validation.loss"],
        ),
        (
            "workload.target_metric=test.loss workload.target_value=nan",
            ["workload.target_value", "finite number > 0 for test.loss"],
        ),
        ("workload.split_seed=-1", ["workload.split_seed", "integer >= 0"]),
        ("workload.pixel_mean=inf", ["workload.pixel_mean=inf", "[0, 1]"]),
        ("workload.pixel_mean=nan", ["workload.pixel_mean=nan", "[0, 1]"]),
        ("workload.pixel_mean=127", ["workload.pixel_mean=127.0", "[0, 1]"]),
        ("workload.pixel_std=0", ["workload.pixel_std", "finite number > 0"]),
        ("workload.pixel_std=inf", ["workload.pixel_std", "finite number > 0"]),
        ("workload.pixel_std=nan", ["workload.pixel_std", "finite number > 0"]),
        ("target_resolution=0", ["target_resolution", "null or a number in (0, 1)"]),
        ("target_resolution=1", ["target_resolution", "(0, 1)"]),
        ("target_resolution=nan", ["target_resolution", "(0, 1)"]),
        (f"workload.data_dir={__file__}", ["workload.data_dir", "a folder, not a file"]),
        (f"compilation_cache_dir={__file__}", ["compilation_cache_dir", "a folder, not a file"]),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(compose_config, override, names):
    with pytest.raises(ConfigError) as error:
        check_trial(compose_config(*override.split()))
    for name in names:
        assert name in str(error.value)


@pytest.mark.parametrize(
    "override",
    [
        "foo=1",
        "workload=nope",
        "submission=nope",
        "batch_size=abc",
        "rng_seed=x",
        "target_resolution=abc",
    ],
)
def test_unknown_keys_options_and_types_fail_at_composition(compose_config, override):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config(override)
    assert override.split("=")[0] in str(error.value) + str(error.value.__cause__)


@pytest.mark.parametrize(
    ("schema", "required"),
    [
        (MnistWorkload, {}),
        (AdamHParams, {}),
        (NesterovHParams, {}),
        (TrialConfig, {"batch_size": 1}),
        (CheckpointConfig, {}),
    ],
)
def test_no_float_of_a_built_in_schema_takes_a_non_finite_value(schema, required):
    """A nan or infinite value passes no built-in check: `workload.pixel_mean=inf` made a
    trial that "diverged" at its first step and exited 0."""
    floats = [f.name for f in dataclasses.fields(schema) if "float" in str(f.type)]
    assert floats
    for name in floats:
        for value in (math.nan, math.inf, -math.inf):
            with pytest.raises(ConfigError, match=name):
                schema(**required, **{name: value})


def test_infinite_hyperparameters_are_refused():
    with pytest.raises(ConfigError, match="lr"):
        AdamHParams(lr=math.inf)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("+hparam.lr=1e-3", "hparam"),  # what Hydra suggests for the typo hparam.lr=1e-3
        ("+foo=1", "foo"),
        ("+search.bar=1", "bar"),
        ("+logging.verbose=true", "verbose"),
        ("+checkpoint.every=3", "every"),
        ("+workload.depth=3", "depth"),
    ],
)
def test_keys_added_with_plus_are_refused_unless_under_meta(compose_config, override, key):
    with pytest.raises(ConfigError, match=key):
        check_trial(compose_config(override))


def test_the_record_holds_the_values_used_and_the_identity_leaves_out_labels(compose_config):
    trial = check_trial(
        compose_config("hparams.lr=3e-3", "+meta.study=demo", "workload.data_dir=/data")
    )
    assert trial.record["hparams.lr"] == 3e-3
    assert trial.record["hparams.beta_2"] == 0.999  # the schema's value, not only overrides
    assert trial.record["batch_size"] == 1024 and trial.record["meta.study"] == "demo"
    assert "meta.study" not in trial.identity and "workload.data_dir" not in trial.identity
    assert trial.identity["hparams.lr"] == 3e-3 and trial.identity["workload"] == "mnist"


@pytest.mark.parametrize(
    ("overrides", "higher"),
    [
        ((), True),
        (("workload=mnist_loss",), False),
        (("workload.target_metric=test.loss", "workload.target_value=0.2"), False),
    ],
)
def test_the_metadata_records_the_direction_the_workload_declares_for_the_target(
    compose_config, overrides, higher
):
    trial = check_trial(compose_config(*overrides))
    assert trial.metadata["workload.target_higher_is_better"] is higher
    assert trial.metadata == {**trial.record, "workload.target_higher_is_better": higher}


@dataclasses.dataclass(frozen=True)
class UndeclaredMnist(MnistWorkload):
    """MNIST declaring no evaluation metrics (and skipping MNIST's own checks)."""

    eval_metrics: ClassVar[dict[str, bool]] = {}

    def __post_init__(self) -> None:
        pass


def test_a_target_metric_without_a_declared_direction_is_refused_in_one_line():
    message = (
        "workload.target_metric='validation.accuracy' is not allowed: expected one of "
        "train.loss (the metrics UndeclaredMnist declares, each with its direction, in "
        "eval_metrics)."
    )
    with pytest.raises(ConfigError) as refused:
        config.check_target(UndeclaredMnist())
    assert str(refused.value) == message
    with pytest.raises(ConfigError, match=re.escape(message)):
        UndeclaredMnist().target_higher_is_better  # noqa: B018


def test_the_workloads_path_fields_are_made_absolute_and_left_out_of_the_identity(
    compose_config, tmp_path
):
    paths = ("workload.data_dir", "workload.idx_dir")
    assert config.workload_path_keys(compose_config()) == paths
    assert config.workload_path_keys(compose_config("workload._target_=nowhere.Gone")) == ()
    cfg = compose_config("workload.data_dir=cache", "workload.idx_dir=/idx")
    hydra_job.absolute_paths(cfg, tmp_path)
    assert (cfg.workload.data_dir, cfg.workload.idx_dir) == (str(tmp_path / "cache"), "/idx")

    @dataclasses.dataclass(frozen=True)
    class CachedMnist(MnistWorkload):
        PATH_FIELDS: ClassVar[tuple[str, ...]] = ("data_dir",)

    record = {"workload.data_dir": "/a", "workload.idx_dir": "/b", "hparams.lr": 0.1}
    trial = Trial(CachedMnist(), None, None, None, record)
    assert trial.identity == {"workload.idx_dir": "/b", "hparams.lr": 0.1}


def test_a_label_that_reads_an_environment_variable_is_refused(compose_config, monkeypatch):
    """Labels are recorded, environment variables are not: the label is named, its
    variable's value is not."""
    monkeypatch.setenv("AEFF_TEST_SECRET", "plantedEnvironmentValue0123")
    cfg = compose_config("+meta.tok=${oc.env:AEFF_TEST_SECRET}", "+meta.study=A")
    with pytest.raises(
        ConfigError, match=r"meta\.tok=\$\{oc\.env:AEFF_TEST_SECRET\} reads an"
    ) as err:
        check_trial(cfg)
    assert "plantedEnvironmentValue0123" not in str(err.value)


# Every key of the identity of a trial that uses all three user files: what a resume must
# match. A value recorded but left out of it, or a key added to the record, is decided here.
IDENTITY_KEYS = [
    "workload",
    "batch_size",
    "stop_at_target",
    "max_steps",
    "eval_every_steps",
    "target_resolution",
    "workload._target_",
    "workload.split_seed",
    "workload.num_validation",
    "workload.pixel_mean",
    "workload.pixel_std",
    "workload.hidden_width",
    "workload.num_hidden_layers",
    "workload.activation",
    "workload.eval_batch_size",
    "workload.target_metric",
    "workload.target_value",
    "workload.max_allowed_runtime_sec",
    "workload.eval_period_time_sec",
    "submission._target_",
    "submission.batch_size",
    "hparams.lr",
    "hparams.nesterov",
    "submission_path_sha256",
    "workload_path_sha256",
    "tuning_search_space_sha256",
]
# Recorded, and not the trial's: its labels, and where its data and files are.
NOT_IDENTITY = [
    "meta.study",
    "workload.data_dir",
    "workload.idx_dir",
    "submission_path",
    "workload_path",
    "tuning_search_space",
]
WORKLOAD_FILE = """import dataclasses
from aeff.workloads.mnist import MnistWorkload

@dataclasses.dataclass(frozen=True)
class OtherMnist(MnistWorkload):
    pass
"""


@pytest.fixture(scope="module")
def every_file_trial(tmp_path_factory) -> Trial:
    """A trial with labels, a data dir and all three user files."""
    folder = tmp_path_factory.mktemp("user_files")
    (folder / "submission.py").write_text((HELPERS / "plain_sgd.py").read_text())
    (folder / "workload.py").write_text(WORKLOAD_FILE)
    (folder / "space.json").write_text('{"lr": {"min": 0.01, "max": 0.1, "scaling": "log"}}')
    return check_trial(
        app.compose_config(
            [
                f"submission_path={folder / 'submission.py'}",
                f"workload_path={folder / 'workload.py'}",
                f"tuning_search_space={folder / 'space.json'}",
                "+meta.study=demo",
                "workload.data_dir=/data",
                f"workload.idx_dir={folder}",
            ]
        )
    )


def test_the_identity_is_every_recorded_value_but_labels_and_where_files_are(every_file_trial):
    assert list(every_file_trial.identity) == IDENTITY_KEYS
    assert sorted(set(every_file_trial.record) - set(IDENTITY_KEYS)) == sorted(NOT_IDENTITY)


def another(value):
    """A value of the same kind that is not `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    return 1 if value is None else f"{value}x"


@pytest.mark.parametrize("key", IDENTITY_KEYS)
def test_a_resume_that_changes_any_one_key_of_the_identity_is_refused(
    tmp_path, every_file_trial, key
):
    """In-process, as `trial.py` decides an attempt: the recorded identity against this
    process's, one key changed. The unchanged identity continues the trial."""
    recorded = every_file_trial.identity
    earlier = {"status": "running", "identity": recorded, "rng_seed": 1, "attempt": 0}
    (tmp_path / "metadata.json").write_text(json.dumps(earlier))
    owner = RunDir(tmp_path)
    assert owner.attempt(recorded, None, resume=True, checkpointing=True) == Attempt(
        1, 1, move_aside=True
    )
    changed = {**recorded, key: another(recorded[key])}
    with pytest.raises(ConfigError) as refused:
        owner.attempt(changed, None, resume=True, checkpointing=True)
    assert f" recorded {key}={recorded[key]!r} (now {changed[key]!r}): " in str(refused.value)


def test_debug_short_is_a_trial_of_3_steps_that_the_command_line_overrides(compose_config):
    """`debug=short` (conf/debug/short.yaml), for trying a command out and for tests."""
    assert compose_config().max_steps is None  # no preset unless chosen
    assert check_trial(compose_config("debug=short")).settings.max_steps == 3
    assert compose_config("debug=short", "max_steps=7").max_steps == 7
    assert compose_config("max_steps=7", "debug=short").max_steps == 7  # whatever the order


@pytest.mark.parametrize(
    ("override", "trains_with"),
    [("hparams.lr=5e-324", "0"), ("hparams.epsilon=1e-300", "0"), ("hparams.epsilon=1e-40", "0")],
)
def test_a_hyperparameter_float32_cannot_hold_is_refused_naming_it(
    compose_config, override, trains_with
):
    """The state holds float32 (XLA flushes subnormals to zero): the trial would train with
    0 while its record said otherwise."""
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as refused:
        check_trial(compose_config(override))
    assert str(refused.value).startswith(f"{key}={float(override.split('=')[1])!r} is not allowed")
    assert f"(it would train with {trains_with})" in str(refused.value)
    assert check_trial(compose_config(f"{key}=1e-30")).record[key] == 1e-30  # float32 holds it
