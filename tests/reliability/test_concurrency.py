"""Two sweeps started at once from one folder keep apart."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from helpers import data_overrides


@pytest.mark.slow
def test_two_sweeps_started_together_do_not_collide(tmp_path, mnist_data_dir):
    command = [
        sys.executable,
        "-m",
        "aeff",
        "-m",
        "hparams.lr=1e-3,3e-3",
        "max_steps=20",
        # The same time stamp for both: only the unique suffix can keep them apart.
        "hydra.sweep.dir=outputs/multirun/same-second_${aeff.unique_suffix:}",
        *data_overrides(mnist_data_dir),
    ]
    procs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr.decode()[-3000:]

    sweep_dirs = sorted((tmp_path / "outputs" / "multirun").iterdir())
    assert len(sweep_dirs) == 2
    for sweep_dir in sweep_dirs:
        summary = pd.read_csv(sweep_dir / "summary.csv")
        assert sorted(summary["hparams.lr"]) == [1e-3, 3e-3]
        assert (summary["status"] == "completed").all()
        assert all(run_dir.startswith(str(sweep_dir.resolve())) for run_dir in summary["run_dir"])
        for job in ("0", "1"):
            metadata = json.loads((sweep_dir / job / "metadata.json").read_text())
            assert metadata["sweep_dir"] == str(sweep_dir.resolve())
            assert pd.read_csv(sweep_dir / job / "metrics.csv")["global_step"].iloc[-1] == 20
