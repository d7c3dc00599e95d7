"""Search spaces (`aeff/search.py`): parsing errors naming the key, where each kind of dimension
puts a point of [0, 1], which sequence each method draws, samples in range and reproducible."""

import logging
import math

import numpy as np
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from scipy.stats import qmc

from aeff.config import ConfigError
from aeff.search import MAX_TRIALS, Dimension, as_overrides, parse_space, sample

SPACE = {
    "hparams": {
        "lr": {"min": 1e-4, "max": 1e-2, "scale": "log"},
        "one_minus_beta_1": {"min": 0.01, "max": 0.3, "scale": "log"},
        "epsilon": {"values": [1e-8, 1e-5, 1e-3]},
        "warmup": {"min": 0, "max": 10, "type": "int"},
    }
}


def test_samples_are_in_range_distinct_and_reproducible():
    dimensions = parse_space(SPACE)
    assert [d.key for d in dimensions] == [
        "hparams.lr",
        "hparams.one_minus_beta_1",
        "hparams.epsilon",
        "hparams.warmup",
    ]
    points = sample(dimensions, 8, seed=0)
    assert points == sample(dimensions, 8, seed=0)
    assert points != sample(dimensions, 8, seed=1)
    assert len({p["hparams.lr"] for p in points}) == 8
    for point in points:
        assert 1e-4 <= point["hparams.lr"] <= 1e-2
        assert 0.01 <= point["hparams.one_minus_beta_1"] <= 0.3
        assert point["hparams.epsilon"] in (1e-8, 1e-5, 1e-3)
        assert isinstance(point["hparams.warmup"], int) and 0 <= point["hparams.warmup"] <= 10


def test_log_scale_spreads_over_decades():
    points = sample(parse_space({"lr": {"min": 1e-4, "max": 1e-2, "scale": "log"}}), 64, seed=0)
    logs = [math.log10(p["lr"]) for p in points]
    below = sum(value < -3 for value in logs)
    assert 24 <= below <= 40  # about half the points in each decade


def test_sobol_is_offered_and_says_once_when_the_count_unbalances_it(caplog, recwarn):
    with caplog.at_level(logging.WARNING, logger="aeff.search"):
        for count in (1, 2, 4):  # powers of 2, 2**0 included
            assert len(sample(parse_space(SPACE), count, seed=0, method="sobol")) == count
        assert caplog.messages == []
        assert len(sample(parse_space(SPACE), 6, seed=0, method="sobol")) == 6
    assert caplog.messages == [
        "search.method=sobol: 6 trials is not a power of 2, which Sobol points need to cover "
        "the space evenly (halton needs none)."
    ]
    assert not recwarn.list  # scipy's own UserWarning, said only as that line


def test_overrides_reproduce_the_values_exactly():
    (override,) = as_overrides({"hparams.lr": 0.1 + 0.2})
    assert float(override.split("=")[1]) == 0.1 + 0.2
    parser = OverridesParser.create()
    points = {"hparams.a": None, "hparams.b": "sgd", "hparams.c": True, "hparams.d": 3}
    parsed = [parser.parse_override(o).value() for o in as_overrides(points)]
    assert parsed == [None, "sgd", True, 3]  # null, not the string "None"


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"lr": {"min": 1.0, "max": 0.1}}, "min <= max"),
        ({"lr": {"min": -1.0, "max": 1.0, "scale": "log"}}, "above zero"),
        ({"lr": {"min": 0.0, "max": 1.0, "scale": "log"}}, "above zero"),
        ({"lr": {"min": 0.1}}, "both `min` and `max`"),
        ({"lr": {"min": 0.1, "max": 1, "scale": "cubic"}}, "linear or log"),
        ({"lr": {"values": []}}, "non-empty"),
        ({"lr": 0.1}, "search_space.lr"),
        ({"n": {"min": 0.5, "max": 3, "type": "int"}}, "integer min and max"),
    ],
)
def test_bad_spaces_name_the_key(space, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(space)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"min": "1e-5", "max": 1e-2}, r"lr: min and max must be numbers, .*min='1e-5'"),
        ({"min": 1e-5, "max": True}, r"lr: min and max must be numbers, .*max=True"),
        ({"values": [1e-8, "1e-5"]}, r"lr: the point '1e-5' is a string that reads as a num"),
        ({"values": ["nan"]}, r"lr: the point 'nan' is a string that reads as a number"),
        ({"values": [1e-8, "abc", None, [1, 2]]}, r"lr: the point \[1, 2\] is not allowed"),
        ({"values": [{"a": 1}]}, r"lr: the point \{'a': 1\} is not allowed"),
        ({"values": [1e-8, "abc", None]}, r"lr: the points mix numbers \(1e-08\) and strings"),
        ({"values": [True, 0.5]}, r"lr: the points mix booleans \(True\) and numbers \(0.5\)"),
        ({"values": [1e-8, math.inf]}, r"lr: the point inf is not a finite number"),
        ({"values": "abc"}, r"lr: `values` must be a non-empty list"),
    ],
)
def test_points_of_another_kind_or_a_number_in_quotes_are_refused_naming_them(spec, message):
    """Refused when the sweep is planned, not when a trial meets them: a range of numbers;
    choices all numbers, all strings or all booleans, null beside any; no lists."""
    with pytest.raises(ConfigError, match=rf"^search_space\.{message}") as refused:
        parse_space({"lr": spec})
    assert "\n" not in str(refused.value)


def test_choices_of_one_kind_with_null_are_kept_as_given():
    for values in ([1e-8, 3, None], ["sgd", None, "adam"], [True, False, None]):
        (dimension,) = parse_space({"x": {"values": values}})
        assert dimension.values == tuple(values)


def test_zero_trials_and_more_than_a_study_needs_are_refused():
    with pytest.raises(ConfigError, match=r"search\.num_trials=0"):
        sample(parse_space(SPACE), 0, seed=0)
    with pytest.raises(ConfigError, match=r"num_trials=100001: expected a positive integer, at"):
        sample(parse_space(SPACE), MAX_TRIALS + 1, seed=0)
    assert len(sample(parse_space(SPACE), MAX_TRIALS, seed=0)) == MAX_TRIALS


def test_a_choice_splits_the_unit_interval_evenly():
    choice = Dimension("k", values=("a", "b", "c"))
    assert [choice.value(u) for u in (0.0, 0.33, 0.34, 0.66, 0.67, 0.99, 1.0)] == list("aabbccc")


def test_an_integer_range_gives_each_integer_an_equal_share():
    integer = Dimension("k", 2.0, 5.0, integer=True)  # 2, 3, 4, 5: a quarter each
    us = (0.0, 0.24, 0.25, 0.49, 0.5, 0.74, 0.75, 0.99, 1.0)
    assert [integer.value(u) for u in us] == [2, 2, 3, 3, 4, 4, 5, 5, 5]
    assert isinstance(integer.value(0.5), int)


def test_a_linear_range_is_linear_and_a_log_range_geometric():
    assert [Dimension("k", 2.0, 6.0).value(u) for u in (0.0, 0.25, 1.0)] == [2.0, 3.0, 6.0]
    log = Dimension("k", 1e-4, 1e-2, log=True)
    assert [log.value(u) for u in (0.0, 0.5, 1.0)] == pytest.approx([1e-4, 1e-3, 1e-2])


@pytest.mark.parametrize(("method", "engine"), [("halton", qmc.Halton), ("sobol", qmc.Sobol)])
def test_each_method_is_its_scrambled_sequence_seeded_by_the_seed(method, engine):
    dimensions = parse_space({"a": {"min": 0.0, "max": 1.0}, "b": {"min": 0.0, "max": 1.0}})
    points = sample(dimensions, 4, seed=3, method=method)
    expected = engine(d=2, scramble=True, seed=np.random.default_rng(3)).random(4)
    assert [[p["a"], p["b"]] for p in points] == expected.tolist()


def test_one_trial_is_a_sweep_no_dimensions_give_empty_points_and_a_method_is_checked():
    assert len(sample(parse_space({"a": {"min": 0.0, "max": 1.0}}), 1, seed=0)) == 1
    assert sample([], 3, seed=0) == [{}, {}, {}]
    with pytest.raises(ConfigError, match=r"^search\.method='grid': expected halton or sobol"):
        sample([], 3, seed=0, method="grid")


def test_an_error_in_a_nested_range_names_its_full_key():
    with pytest.raises(ConfigError, match=r"^search_space\.hparams\.lr: a range needs both"):
        parse_space({"hparams": {"lr": {"min": 1.0}}})


def test_a_linear_float_range_gives_overrides_that_are_numbers():
    (point,) = sample(parse_space({"hparams": {"x": {"min": 0.0, "max": 1.0}}}), 1, seed=0)
    assert type(point["hparams.x"]) is float  # not numpy's, whose repr is no number
    (override,) = as_overrides(point)
    assert float(override.split("=", 1)[1]) == point["hparams.x"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"min": 0, "max": 1, "scale": "linear", "type": "float", "values": [1]},
            "search_space.x: `values` must be a non-empty list, alone.",
        ),
        ({"min": "a", "max": 1}, "search_space.x: min and max must be numbers, without quotes"),
        ({"min": 0, "max": float("inf")}, "search_space.x: need finite min <= max, got min=0.0"),
        (
            {"min": 1, "max": 8, "type": "int", "scale": "log"},
            "search_space.x: an int range needs integer min and max on a linear scale.",
        ),
    ],
)
def test_each_bad_range_has_its_own_message(spec, message):
    with pytest.raises(ConfigError) as refused:
        parse_space({"x": spec})
    assert str(refused.value).startswith(message)


def test_a_range_of_one_value_is_allowed():
    (dimension,) = parse_space({"x": {"min": 2, "max": 2}})
    assert dimension.value(0.5) == 2.0
