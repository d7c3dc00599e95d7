"""docs/writing-a-submission.md's worked run runs as written: AlgoPerf's AdamW, unmodified,
swept from its own search space, aeff's Adam swept from mnist_adam, then `compare`. AlgoPerf's
files are read from `shared/algoperf` beside the repository; where it is absent the test
skips, naming it."""

import json
import re

import pandas as pd
import pytest
from helpers import REPO, doc_blocks, run_bash

GUIDE = REPO / "docs" / "writing-a-submission.md"
SECTION = "### A worked run: AlgoPerf's AdamW against aeff's Adam"
ALGOPERF = (REPO / ".." / "shared" / "algoperf").resolve()


def worked_run() -> str:
    """The section's one bash block."""
    [(_, commands)] = doc_blocks(GUIDE, SECTION)
    return commands


@pytest.mark.slow
@pytest.mark.skipif(
    not (ALGOPERF / "algorithms").is_dir(),
    reason=f"AlgoPerf's published files are not in {ALGOPERF}",
)
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
