"""docs/experiments.md's AlgoPerf flow runs as written: search space, two trials, labels,
concat, the seaborn plot with aeff's column names."""

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from helpers import REPO

GUIDE = REPO / "docs" / "experiments.md"
SECTION = "## 6. AlgoPerf's experiment guide, the aeff way"


def guide_blocks() -> dict[str, str]:
    """The section's bash and python blocks, by language."""
    section = GUIDE.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.DOTALL))


@pytest.mark.slow
def test_the_algoperf_guide_runs_as_written(tmp_path, mnist_data_dir):
    blocks = guide_blocks()
    # The step cap keeps the test short; everything else is the guide's text.
    commands = blocks["bash"].replace("python -m aeff -m", "python -m aeff -m max_steps=40")
    (tmp_path / "mnist_study").mkdir()
    (tmp_path / "mnist_study" / "plot_loss.py").write_text(blocks["python"])
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=tmp_path,
        env={**os.environ, "PATH": path, "TFDS_DATA_DIR": str(mnist_data_dir), "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    study = tmp_path / "mnist_study"
    assert (study / "plot_loss.png").stat().st_size > 10_000
    rows = pd.read_csv(study / "logs" / "all_metrics.csv")
    assert sorted(rows["run_idx"].unique()) == [0, 1]
    assert set(rows["meta.study"]) == {"loss_curve"}
    assert rows["hparams.lr"].nunique() == 2  # sampled from the JSON's learning_rate
    assert rows["hparams.epsilon"].isin([1e-8, 1e-5]).all()
    metadata = json.loads((study / "logs" / "0" / "metadata.json").read_text())
    assert {"git_branch", "git_commit_hash", "cpu_model_name", "workload"} <= set(metadata)
