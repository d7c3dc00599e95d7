"""Search spaces where mutation testing found them loose: where each kind of dimension puts a
point of [0, 1], which engine each method uses, one trial, errors naming the key."""

import numpy as np
import pytest
from scipy.stats import qmc

from aeff.errors import ConfigError
from aeff.search import Dimension, as_overrides, parse_space, sample


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


def test_one_trial_is_a_sweep_and_no_dimensions_give_empty_points():
    assert len(sample(parse_space({"a": {"min": 0.0, "max": 1.0}}), 1, seed=0)) == 1
    assert sample([], 3, seed=0) == [{}, {}, {}]
    with pytest.raises(ConfigError, match=r"^search\.method='grid': expected halton or sobol"):
        sample([], 3, seed=0, method="grid")


def test_range_errors_start_with_the_full_key():
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
