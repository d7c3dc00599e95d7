"""Every unmarked bash block of the user docs runs as written (tests/helpers/docs.py): a
page's blocks in order, in one empty folder, as a user following the page would, with the
files the page asks to save, MNIST prepared once, and tiny budgets (`python` runs
`python -m aeff` with 8 steps at most, no packages.txt, and 2 trials, studies and workers
where the page gives more). Then the check of the page: what its commands made."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import MNIST_IDX_DIR, REPO, run_bash
from helpers.docs import blocks, page_files, python_with_tiny_budgets, user_pages


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("metadata.json"))]


def summary(sweep: Path) -> pd.DataFrame:
    return pd.read_csv(sweep / "summary.csv")


def check_configuration(work: Path, said: str) -> None:
    [record] = records(work / "outputs")
    assert record["status"] == "completed" and record["global_step"] == 8
    assert record["submission._target_"].endswith("Nesterov") and record["batch_size"] == 512
    assert record["workload.hidden_width"] == 256 and record["meta.study"] == "demo"
    assert "momentum: 0.9" in said  # --cfg job -p hparams


def check_sweeps(work: Path, said: str) -> None:
    outputs = work / "outputs"
    assert list(summary(outputs / "lr_grid")["status"]) == ["completed"] * 2
    assert "0 to run" in said  # the resume of a finished sweep trains nothing
    pinned = summary(outputs / "adam_space")
    assert set(pinned["hparams.epsilon"]) == {1e-8} and pinned["hparams.lr"].nunique() == 2
    studies = pd.read_csv(outputs / "studies" / "studies.csv")
    assert list(studies["study"]) == [0, 1] and studies["search_seed"].nunique() == 2
    assert "median" in said  # the studies' table and their median, printed at the end
    [optuna] = list((outputs / "multirun").rglob("optimization_results.yaml"))
    assert list(summary(optuna.parent)["status"]) == ["completed"] * 2


def check_checkpoints_and_resume(work: Path, said: str) -> None:
    assert "stopped with exit status 143" in said
    trial = work / "outputs" / "one_trial"
    [record] = records(trial)
    assert record["status"] == "completed" and record["global_step"] == 400
    steps = pd.read_csv(trial / "metrics.csv")["global_step"]
    assert steps.is_monotonic_increasing and steps.is_unique and steps.iloc[-1] == 400


def check_launchers(work: Path, said: str) -> None:
    trials = records(work / "outputs" / "multirun")
    assert [r["status"] for r in trials] == ["completed"] * 4
    assert sorted(r.get("group.size") for r in trials if "group.size" in r) == [2, 2]
    assert sorted(r["parallel_trials"] for r in trials) == [1, 1, 2, 2]


def check_results(work: Path, said: str) -> None:
    sweep = work / "outputs" / "lr_grid"
    rows = pd.read_csv(sweep / "all_metrics.csv")
    assert rows["run_dir"].nunique() == 2 and set(rows["meta.study"]) == {"demo"}
    assert list(summary(sweep)["status"]) == ["completed"] * 2
    assert (work / "curves.png").stat().st_size > 10_000
    assert (sweep / "report.html").is_file() and (sweep / "mlflow.db").is_file()
    assert sorted(p.name for p in (sweep / "tensorboard").iterdir() if p.is_dir()) == ["0", "1"]


def check_writing_a_submission(work: Path, said: str) -> None:
    trials = records(work / "outputs")
    assert [r["status"] for r in trials] == ["completed"] * 4
    assert sum("SgdWithWarmup" in r["submission._target_"] for r in trials) == 4
    assert sum(r.get("workload.hidden_width") == 512 for r in trials) == 1
    assert "momentum: 0.9" in said  # --cfg job -p hparams
    (sweep,) = (work / "outputs" / "multirun").glob("*/*")  # the tuned sweep: the space's
    for job in ("0", "1"):
        record = json.loads((sweep / job / "metadata.json").read_text())
        assert record["status"] == "completed" and 0.02 <= record["hparams.lr"] <= 0.5
        copied = (sweep / job / "search_space.json").read_text()
        assert copied == (work / "space.json").read_text()


def check_comparing_algorithms(work: Path, said: str) -> None:
    report = work / "outputs" / "compare"
    table = pd.read_csv(report / "report" / "compare.csv")
    assert sorted(table["submission"]) == ["Adam", "Nesterov"]
    assert set(table["studies"]) == {2} and set(table["workload"]) == {"mnist_relu"}
    scores = pd.read_csv(report / "report" / "scores.csv")
    assert sorted(scores["submission"]) == ["Adam", "Nesterov"] and "speedup_over_Adam" in scores
    assert (report / "report" / "performance_profiles.png").stat().st_size > 10_000


def check_data(work: Path, said: str) -> None:
    [record] = records(work / "outputs")
    assert record["status"] == "completed"
    assert (work / "mnist_data" / "mnist" / "3.0.1" / "aeff_arrays.npz").is_file()


def data_setup(work: Path) -> None:
    """The page's IDX folder: MNIST's own files, the copy the package ships."""
    shutil.copytree(MNIST_IDX_DIR, work / "my_mnist_idx")


# Per page: its check, and what the test changes beyond the tiny budgets, each with its reason.
PAGES = {
    "configuration.md": (check_configuration, {}),
    "sweeps.md": (check_sweeps, {}),
    "checkpoints-and-resume.md": (
        check_checkpoints_and_resume,
        # A trial of 400 steps, stopped once its first row (step 50) is written rather than
        # after 20 s, so that it is still training when the signal comes.
        {
            "always": {"max_steps": "400", "eval_every_steps": "50"},
            "sleep 20": "until [ -s outputs/one_trial/metrics.csv ]; do sleep 0.05; done",
        },
    ),
    "launchers.md": (check_launchers, {}),
    "results.md": (check_results, {}),
    "writing-a-submission.md": (check_writing_a_submission, {}),
    # One workload of the four (the page's is a 72-trial measurement).
    "comparing-algorithms.md": (
        check_comparing_algorithms,
        {"for w in mnist mnist_relu mnist_deep mnist_loss": "for w in mnist_relu"},
    ),
    "data.md": (check_data, {"setup": data_setup}),
}
RUN_PAGES = [page for page in user_pages() if any(b.kind == "run" for b in blocks(page))]


def test_every_page_with_commands_to_run_has_a_check():
    assert sorted(page.name for page in RUN_PAGES) == sorted(PAGES)


def run_page(page: Path, tmp_path: Path, mnist_data_dir: Path) -> None:
    """The page's unmarked blocks, in order, in an empty folder; then its check."""
    check, changes = PAGES[page.name]
    changes = dict(changes)
    work = tmp_path / "work"
    work.mkdir()
    for name, text in page_files(page).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    changes.pop("setup", lambda _: None)(work)
    bin_dir = python_with_tiny_budgets(tmp_path / "bin", **changes.pop("always", {}))
    commands = "\n".join(block.text for block in blocks(page) if block.kind == "run")
    for old, new in changes.items():
        assert old in commands, f"{page.name} no longer says {old!r}: update this test"
        commands = commands.replace(old, new)
    done = run_bash(commands, work, mnist_data_dir, bin_dir=bin_dir)
    check(work, done.stdout + done.stderr)


def page_class(page: Path) -> type:
    """A class of one test for the page: pytest-xdist's `--dist loadscope` (pyproject)
    hands each class to a worker of its own, so the pages (5 to 35 s of CPU each) spread
    over the workers instead of queueing on one as one module's tests would."""

    @pytest.mark.slow
    def test_its_commands_run_as_written(self, tmp_path, mnist_data_dir):
        run_page(page, tmp_path, mnist_data_dir)

    name = "TestPage_" + re.sub(r"\W", "_", page.stem)
    return type(name, (), {"test_its_commands_run_as_written": test_its_commands_run_as_written})


for _page in RUN_PAGES:
    _class = page_class(_page)
    globals()[_class.__name__] = _class


def test_the_runner_knows_every_page_it_runs():
    assert all((REPO / "docs" / name).is_file() for name in PAGES)
