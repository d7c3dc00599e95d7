"""Config composition and validation: bad values fail before any data or device is used."""

import math

import pytest
from hydra.errors import ConfigCompositionException

from aeff.app import prepare
from aeff.config import ConfigError
from aeff.submissions.adam import Adam, AdamHParams
from aeff.submissions.nesterov import Nesterov
from aeff.workloads.mnist import MnistWorkload


def test_default_config_builds_typed_objects(compose_config):
    trial = prepare(compose_config())
    assert trial.workload == MnistWorkload()
    assert trial.workload.target_metric == "validation.accuracy"
    assert trial.workload.target_value == 0.97
    assert trial.workload.max_allowed_runtime_sec == 60
    assert trial.submission == Adam(batch_size=1024)
    assert isinstance(trial.hparams, AdamHParams)
    assert trial.settings.rng_seed is None


def test_overrides_are_typed(compose_config):
    trial = prepare(
        compose_config(
            "hparams.lr=3e-3", "workload.hidden_width=64", "submission=nesterov", "batch_size=256"
        )
    )
    assert trial.hparams.lr == 3e-3
    assert trial.workload.hidden_width == 64
    assert trial.submission == Nesterov(batch_size=256)


def test_meta_labels_are_accepted(compose_config):
    trial = prepare(compose_config("+meta.study=demo", "+meta.note='a=b,c'"))
    assert trial.settings.meta == {"study": "demo", "note": "a=b,c"}


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("hparams.lr=abc", ["hparams.lr", "Float"]),
        ("hparams.lr=nan", ["hparams.lr", "finite"]),
        ("hparams.lr=-1", ["hparams.lr", "> 0"]),
        ("hparams.one_minus_beta_1=1.5", ["hparams.one_minus_beta_1", "[0, 1)"]),
        ("+hparams.momentum=0.9", ["hparams.momentum", "lr, one_minus_beta_1"]),
        ("batch_size=0", ["batch_size", "positive"]),
        ("max_steps=0", ["max_steps", "positive"]),
        ("workload.max_allowed_runtime_sec=-1", ["workload.max_allowed_runtime_sec", "> 0"]),
        ("workload.eval_period_time_sec=0", ["workload.eval_period_time_sec", "> 0"]),
        ("workload.hidden_width=0", ["workload.hidden_width", "positive"]),
        (
            "workload.target_metric=train.accuracy",
            ["workload.target_metric", "validation.accuracy"],
        ),
        ("workload.target_value=inf", ["workload.target_value", "finite"]),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(compose_config, override, names):
    with pytest.raises(ConfigError) as error:
        prepare(compose_config(override))
    for name in names:
        assert name in str(error.value)


@pytest.mark.parametrize(
    "override", ["foo=1", "workload=nope", "submission=nope", "batch_size=abc", "rng_seed=x"]
)
def test_unknown_keys_options_and_types_fail_at_composition(compose_config, override):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config(override)
    assert override.split("=")[0] in str(error.value) + str(error.value.__cause__)


def test_infinite_hyperparameters_are_refused():
    with pytest.raises(ConfigError, match="lr"):
        AdamHParams(lr=math.inf)


def test_null_seed_is_drawn_per_trial(compose_config):
    seeds = {prepare(compose_config("rng_seed=null")).rng_seed for _ in range(3)}
    assert len(seeds) == 3
    assert prepare(compose_config("rng_seed=7")).rng_seed == 7
