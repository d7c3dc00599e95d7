"""docs/writing-a-submission.md's AlgoPerf blocks run as written: "AlgoPerf's submissions, as
published" (two single runs of AlgoPerf's AdamW), and the worked run (AdamW, unmodified, swept
from its own search space, aeff's Adam swept from mnist_adam, then `compare`), whose sweep
README.md shows under "The first five things". AlgoPerf's files are read from
`shared/algoperf` beside the repository; where it is absent the tests skip, naming it."""

import json
import re

import pandas as pd
import pytest
from helpers import REPO, doc_blocks, run_bash
from helpers.docs import blocks, python_with_tiny_budgets

GUIDE = REPO / "docs" / "writing-a-submission.md"
SECTION = "### A worked run: AlgoPerf's AdamW against aeff's Adam"
AS_PUBLISHED = "AlgoPerf's submissions, as published"
ALGOPERF = (REPO / ".." / "shared" / "algoperf").resolve()
WITHOUT_ALGOPERF = pytest.mark.skipif(
    not (ALGOPERF / "algorithms").is_dir(),
    reason=f"AlgoPerf's published files are not in {ALGOPERF}",
)


def worked_run() -> str:
    """The section's one bash block."""
    [(_, commands)] = doc_blocks(GUIDE, SECTION)
    return commands


@pytest.mark.slow
@WITHOUT_ALGOPERF
def test_the_worked_run_of_algoperfs_adamw_against_adam_runs_as_written(tmp_path, mnist_data_dir):
    # AlgoPerf's checkout is the one beside the repository; a step cap and two trials a
    # sweep keep the test short; everything else is the doc's text.
    commands = re.sub(r"^ALGOPERF=.*$", f"ALGOPERF={ALGOPERF}", worked_run(), flags=re.M)
    commands = commands.replace("python -m aeff -m", "python -m aeff -m max_steps=40")
    commands = commands.replace("search.num_trials=4", "search.num_trials=2")
    assert commands.count("max_steps=40") == 2 and commands.count("search.num_trials=2") == 2
    done = run_bash(commands, tmp_path, mnist_data_dir)

    outputs = tmp_path / "outputs"
    for sweep in ("algoperf_adamw", "aeff_adam"):
        summary = pd.read_csv(outputs / sweep / "summary.csv")
        assert list(summary["status"]) == ["completed", "completed"]
    record = json.loads((outputs / "algoperf_adamw" / "0" / "metadata.json").read_text())
    assert record["batch_size"] == 16  # AdamW's get_batch_size('mnist')
    assert 1e-4 <= record["hparams.learning_rate"] <= 1e-2  # by AlgoPerf's name, from its space
    compared = pd.read_csv(outputs / "adamw_vs_adam" / "compare.csv")
    assert sorted(compared["submission"]) == ["Adam", "AlgoPerf_AdamW"]
    assert "AlgoPerf_AdamW" in done.stdout


def test_the_readmes_algoperf_sweep_is_the_worked_runs_first():
    [readme] = [
        b for b in blocks(REPO / "README.md") if b.target == "tests/test_submission_guide.py"
    ]
    assert readme.section == "The first five things"
    [worked] = [b for b in blocks(GUIDE) if b.section == SECTION.lstrip("# ")]
    assert readme.commands() == worked.commands()[1:3]


@pytest.mark.slow
@WITHOUT_ALGOPERF
def test_algoperfs_adamw_runs_as_published_with_a_value_given_and_its_space(
    tmp_path, mnist_data_dir
):
    # The doc's command with ALGOPERF beside the repository and 8 steps each
    # (tests/helpers/docs.py's tiny budgets); everything else is the doc's text.
    [block] = [b for b in blocks(GUIDE) if b.section == AS_PUBLISHED]
    commands = f"ALGOPERF={ALGOPERF}\n{block.text}"
    bin_dir = python_with_tiny_budgets(tmp_path / "bin")
    run_bash(commands, tmp_path, mnist_data_dir, bin_dir=bin_dir)

    records = [json.loads(p.read_text()) for p in (tmp_path / "outputs").glob("*/*/metadata.json")]
    [record] = records
    assert record["status"] == "completed" and record["global_step"] == 8
    assert record["batch_size"] == 16  # AdamW's get_batch_size('mnist')
    assert record["hparams.learning_rate"] == 0.001
    assert record["tuning_search_space_sha256"]  # its space, for the other hyperparameters
