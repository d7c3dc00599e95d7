"""docs/coming-from-algoperf.md's AlgoPerf flow runs as written: search space, two trials, labels,
concat, the seaborn plot with aeff's column names."""

import json

import pandas as pd
import pytest
from helpers import REPO, doc_blocks, run_bash

GUIDE = REPO / "docs" / "coming-from-algoperf.md"
SECTION = "## AlgoPerf's experiment guide, the aeff way"


@pytest.mark.slow
def test_the_algoperf_guide_runs_as_written(tmp_path, mnist_data_dir):
    blocks = dict(doc_blocks(GUIDE, SECTION))
    # The step cap keeps the test short; everything else is the guide's text.
    commands = blocks["bash"].replace("python -m aeff -m", "python -m aeff -m max_steps=40")
    (tmp_path / "mnist_study").mkdir()
    (tmp_path / "mnist_study" / "plot_loss.py").write_text(blocks["python"])
    run_bash(commands, tmp_path, mnist_data_dir, timeout=300)

    study = tmp_path / "mnist_study"
    assert (study / "plot_loss.png").stat().st_size > 10_000
    rows = pd.read_csv(study / "logs" / "all_metrics.csv")
    assert sorted(rows["run_idx"].unique()) == [0, 1]
    assert set(rows["meta.study"]) == {"loss_curve"}
    assert rows["hparams.lr"].nunique() == 2  # sampled from the JSON's learning_rate
    assert rows["hparams.epsilon"].isin([1e-8, 1e-5]).all()
    metadata = json.loads((study / "logs" / "0" / "metadata.json").read_text())
    assert {"git_branch", "git_commit_hash", "cpu_model_name", "workload"} <= set(metadata)
