"""Trials' records written by hand for the results tools' tests (`aeff/results`): a run
dir's metadata and rows, a sweep of them, the figures the plots draw, and what
`python -m aeff.results` says as it refuses."""

import json
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from aeff.records import sweep_dir as sweep_record
from aeff.records.lock import LOCK
from aeff.results import __main__ as cli

HEADER = "global_step,accumulated_submission_time,goal_reached,{metric},run_idx\n"


def trial(
    run_dir: Path,
    rows: list[tuple] | None,
    *,
    status: str = "completed",
    lr: float = 0.1,
    metric: str = "validation.accuracy",
    **extra,
) -> None:
    """A run dir written by hand: metadata, and metrics.csv unless `rows` is None."""
    run_dir.mkdir(parents=True)
    metadata = {
        "status": status,
        **({"global_step": rows[-1][0]} if rows else {}),  # a finished trial's last row
        "workload": "mnist",
        "submission._target_": "aeff.submissions.adam.Adam",
        "workload.target_metric": metric,
        "hparams.lr": lr,
        **extra,
    }
    (run_dir / "metadata.json").write_text(json.dumps(metadata))
    if rows is not None:
        lines = [f"{step},{time},{reached},{value},0\n" for step, time, reached, value in rows]
        (run_dir / "metrics.csv").write_text(HEADER.format(metric=metric) + "".join(lines))


def by_job(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index(table["run_dir"].map(lambda d: Path(d).name))


def example_sweep(tmp_path: Path) -> Path:
    """Jobs 0-11 planned; 0, 2 and 10 ran; 1 died while running, on target; the others
    never started."""
    sweep_record.write_plan(tmp_path, [[f"hparams.lr={i}"] for i in range(12)])
    # Job 0 crosses the target at 2.0 s, falls below it, and is back above at 3.0 s.
    rows = [
        (10, 1.0, False, 0.9),
        (20, 2.0, True, 0.97),
        (30, 3.0, True, 0.96),
        (40, 4.0, True, 0.98),
    ]
    trial(tmp_path / "0", rows, status="completed", lr=0.1)
    trial(tmp_path / "2", [(10, 1.0, False, 0.5)], status="diverged", lr=0.2)
    trial(tmp_path / "10", [(10, 1.5, True, 0.975)], status="completed", lr=0.3)
    trial(tmp_path / "1", [(10, 0.5, True, 0.975)], status="running", lr=0.4)
    (tmp_path / "1" / LOCK).touch()  # a lock no process holds: its process died
    return tmp_path


def refusal(capsys, argv: list[str]) -> str:
    """What `python -m aeff.results ARGV` says as it exits 2."""
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err


def drawn_figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """The axes each plot draws on, kept open for inspection (a fixture's body: all are
    closed after the test)."""
    made = []
    real = plt.subplots

    def subplots(*args, **kwargs):
        figure, axes = real(*args, **kwargs)
        made.append(axes)
        return figure, axes

    monkeypatch.setattr(plt, "subplots", subplots)
    yield made
    plt.close("all")


def plotted_sweep(root: Path) -> Path:
    rows = [(10, 1.0, False, 0.5), (20, 2.0, True, 0.98)]
    trial(root / "0", rows, **{"hparams.lr": 0.1, "hparams.b1": 0.9})
    trial(root / "1", rows, **{"hparams.lr": 0.3, "hparams.b1": 0.9})
    for name in ("0", "1"):  # the target, as RunDir.append writes it into every row
        path = root / name / "metrics.csv"
        frame = pd.read_csv(path)
        frame["workload.target_metric"] = "validation.accuracy"
        frame["workload.target_value"] = 0.97
        frame["hparams.lr"] = 0.1 if name == "0" else 0.3
        frame["hparams.b1"] = 0.9
        frame["validation.loss"] = [0.4, 0.1]
        frame["wall_time"] = [1.5, 2.5]
        frame.to_csv(path, index=False)
    return root
