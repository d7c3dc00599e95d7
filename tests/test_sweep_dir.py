"""A sweep dir's own record (`aeff/records/sweep_dir.py`): its plan, written redacted and
read back checked, and its config."""

import json

import pytest
from helpers.written_trials import refusal

from aeff.errors import ConfigError
from aeff.records import sweep_dir as sweep_record


def test_the_plan_is_written_redacted_and_an_unreadable_one_is_one_line(tmp_path, capsys):
    sweep_record.write_plan(tmp_path, [["a=1"], ["+url=https://user:token@host/x?sig=abc&b=2"]])
    assert json.loads((tmp_path / sweep_record.PLAN).read_text()) == {
        "num_trials": 2,
        "jobs": [["a=1"], ["+url=https://***@host/x?sig=***&b=2"]],  # credentials redacted
        "files": {},
        "study": 0,
        "search_seed": None,
    }
    assert sweep_record.planned_files(tmp_path) == {}
    sweep_record.write_plan(tmp_path, [["a=1"]], {"/f/mine.py": "ab12"})
    assert sweep_record.planned_files(tmp_path) == {"/f/mine.py": "ab12"}
    plan = tmp_path / sweep_record.PLAN
    plan.write_text('{"jobs": [["a=1"]]}')  # an older aeff's: no files recorded
    assert (
        sweep_record.read_plan(tmp_path) == [["a=1"]]
        and sweep_record.planned_files(tmp_path) is None
    )
    assert sweep_record.planned_files(tmp_path / "none") is None
    bad_files = ('{"jobs": [], "files": []}', '{"jobs": [], "files": {"a": 1}}')
    bad_files += ('{"jobs": [], "sharing": {"x": 1}}',)  # sweep.json would repeat it
    for text in ("{", '{"num_trials": 1}', "[1]", '{"jobs": 5}', *bad_files):
        plan.write_text(text)
        with pytest.raises(ConfigError) as refused:
            sweep_record.planned_files(tmp_path)
        assert str(refused.value).startswith(f"{plan} is unreadable (")
    for text in ("{", '{"num_trials": 1}', "[1]", '{"jobs": 5}', '{"jobs": [["a=1"], "b=2"]}'):
        plan.write_text(text)
        with pytest.raises(ConfigError) as refused:
            sweep_record.read_plan(tmp_path)
        assert str(refused.value).startswith(f"{plan} is unreadable (")
    assert str(refused.value) == (  # the last: a plan of other shape
        f"{plan} is unreadable (TypeError): restore it, or start the sweep again in "
        "another hydra.sweep.dir."
    )
    said = refusal(capsys, ["summary", str(tmp_path)])
    assert said == f"aeff.results: {refused.value}\n"  # one line


def test_a_sweep_config_is_written_as_given(tmp_path):
    sweep_record.write_sweep_config(tmp_path, "a: 1\n")
    assert (tmp_path / sweep_record.SWEEP_CONFIG).read_text() == "a: 1\n"
    assert sweep_record.SWEEP_CONFIG == "multirun.yaml"
