"""report.html: a sweep on one page, with no network, as a browser shows it."""

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from aeff.records import sweep_dir as sweep_record
from aeff.records.environment import rerun_command
from aeff.results import __main__ as cli
from aeff.results import report
from aeff.results.report import write_html_report
from aeff.results.sweep_report import write_sweep_report

HEADER = "global_step,accumulated_submission_time,goal_reached,validation.accuracy,hparams.lr,workload.target_metric,workload.target_value\n"  # noqa: E501


def trial(run_dir: Path, status: str, rows: list[tuple], lr: float, **extra) -> None:
    run_dir.mkdir(parents=True)
    metadata = {
        "status": status,
        "global_step": rows[-1][0],
        "workload": "mnist",
        "workload.target_metric": "validation.accuracy",
        "hparams.lr": lr,
        "hydra.job.num": int(run_dir.name),
        "sweep_dir": str(run_dir.parent),
        "rng_seed": 7,
        "rerun_command": rerun_command([f"hparams.lr={lr}", "max_steps=40", "hydra.run.dir=x"], 7),
        **extra,
    }
    (run_dir / "metadata.json").write_text(json.dumps(metadata))
    lines = [f"{s},{t},{r},{a},{lr},validation.accuracy,0.97\n" for s, t, r, a in rows]
    (run_dir / "metrics.csv").write_text(HEADER + "".join(lines))


@pytest.fixture
def sweep(tmp_path) -> Path:
    sweep_record.write_plan(tmp_path, [[f"hparams.lr={lr}"] for lr in (0.001, 0.01, 3.0, 0.1)])
    trial(tmp_path / "0", "completed", [(10, 1.0, False, 0.9), (20, 2.0, True, 0.975)], 0.001)
    trial(tmp_path / "1", "completed", [(10, 1.5, True, 0.98)], 0.01)
    trial(tmp_path / "2", "failed", [(10, 1.0, False, 0.1)], 3.0, error_message="<b>boom</b>")
    return tmp_path  # job 3 never started


def test_the_page_holds_the_table_the_figures_the_best_trial_and_the_failures(sweep):
    page = write_html_report(sweep, *write_sweep_report(sweep)).read_text()
    assert "4 planned trials: 2 completed, 1 failed, 1 not started" in page
    assert "best time to target: <b>1.5 s</b>" in page
    assert "time to target 1.5 s at step 10 (" in page  # a step count, not 10.0
    assert "python -m aeff hparams.lr=0.01 max_steps=40 rng_seed=7" in page  # the best, again
    assert "time and steps to target, may differ by up to one evaluation period" in page
    assert page.count("<img ") == 2  # the curves; time to target against lr
    assert "&lt;b&gt;boom&lt;/b&gt;" in page and "<b>boom</b>" not in page  # escaped
    table = page.split("<table class='trials'>", 1)[1]
    assert re.findall(r"<tr><td class='text'>(\d)</td>", table) == ["0", "1", "2", "3"]
    assert "src='http" not in page and "<link" not in page  # nothing to fetch


def test_the_command_writes_it_only_for_a_sweep(sweep, capsys):
    cli.main(["report", str(sweep)])
    assert capsys.readouterr().out.strip() == str(sweep / "report.html")
    assert (sweep / sweep_record.SUMMARY).exists()
    with pytest.raises(SystemExit) as stopped:
        cli.main(["report", str(sweep / "0")])
    assert stopped.value.code == 2
    assert "no sweep_plan.json there: give a sweep dir" in capsys.readouterr().err
    assert not (sweep / "0" / "report.html").exists()


@pytest.mark.slow
def test_a_browser_opens_it_without_errors_and_shows_the_table_and_the_figures(
    sweep, tmp_path_factory
):
    """Chromium loads the page without a console message, runs its script, and draws each
    figure pixel for pixel as its PNG holds it, and the table with its sortable header."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium on this machine: `apt-get install chromium` (.ci/run does)")
    page = write_html_report(sweep, *write_sweep_report(sweep))
    folder = tmp_path_factory.mktemp("chromium")
    dom = chromium(browser, folder, "--enable-logging=stderr", "--v=0", "--dump-dom", page)
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # no script error, no failed load
    assert dom.stdout.count('class="sortable"') == 7  # the script ran over every header
    figures = pngs(page.read_text())
    assert [f.shape for f in figures] == [(450, 700, 3), (320, 500, 3)]  # curves; lr
    assert all((f.min(axis=2) < 128).sum() > 1000 for f in figures)  # axes, labels, lines
    shot = folder / "report.png"
    chromium(browser, folder, "--window-size=1200,2400", f"--screenshot={shot}", page)
    pixels = rgb(image.imread(shot))
    for figure in figures:
        assert drawn_at(figure, pixels) is not None, f"a figure is not drawn whole: {shot}"
    # The trials table: its header grey (the script's class `sortable`), a border line
    # above and below the header and below each of the 4 trials.
    header = np.flatnonzero((pixels == 240).all(axis=2).sum(axis=1) > 200)
    assert len(header) > 10, f"no sortable header drawn: {shot}"
    lines = np.flatnonzero((pixels[header[0] - 1 :] == 204).all(axis=2).sum(axis=1) > 200)
    assert len(lines) == 6, f"{len(lines)} table lines, not 6: {shot}"


def chromium(browser: str, folder: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """Headless Chromium on `args` (the page last), at one pixel a CSS pixel."""
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={folder / 'profile'}",
            *[a.as_uri() if isinstance(a, Path) else a for a in args],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def pngs(page: str) -> list[np.ndarray]:
    """The page's figures, decoded from their data URIs (RGB, 0-255)."""
    found = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    return [rgb(image.imread(io.BytesIO(base64.b64decode(data)), format="png")) for data in found]


def rgb(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., :3] * 255).round().astype(np.uint8)


def drawn_at(figure: np.ndarray, shot: np.ndarray) -> tuple[int, int] | None:
    """Where `shot` holds `figure` exactly: found by its busiest row, then compared whole."""
    row = int((figure.min(axis=2) < 250).sum(axis=1).argmax())
    key = figure[row].tobytes()
    for y in range(row, shot.shape[0] - figure.shape[0] + row + 1):
        line = shot[y].tobytes()
        at = line.find(key)
        while at >= 0:
            top, left = y - row, at // 3
            block = shot[top : top + figure.shape[0], left : left + figure.shape[1]]
            if at % 3 == 0 and np.array_equal(block, figure):
                return top, left
            at = line.find(key, at + 1)
    return None


@pytest.mark.parametrize(
    "config",
    [
        "search_space:\n  hparams:\n    lr: {min: 1.0e-3, max: 1.0e-2, scale: log}\n",
        "hydra:\n  overrides:\n    task:\n    - hparams.lr=tag(log, interval(1e-3, 1e-2))\n",
    ],
)
def test_a_hyperparameter_sampled_on_a_log_scale_is_drawn_on_a_log_axis(tmp_path, config):
    """lr 0.002 and 0.005 span less than 10x: the axis is log because the sweep says so."""
    sweep_record.write_plan(tmp_path, [[f"hparams.lr={lr}"] for lr in (0.002, 0.005)])
    trial(tmp_path / "0", "completed", [(10, 1.0, True, 0.975)], 0.002)
    trial(tmp_path / "1", "completed", [(10, 1.5, True, 0.98)], 0.005)
    assert report.log_scaled(tmp_path) == set()  # no multirun.yaml: the values decide
    sweep_record.write_sweep_config(tmp_path, config)
    assert report.log_scaled(tmp_path) == {"hparams.lr"}
    table, _ = write_sweep_report(tmp_path)
    axes = report.scatter(table, "hparams.lr", log=True).axes[0]
    assert axes.get_xscale() == "log"
    assert report.scatter(table, "hparams.lr").axes[0].get_xscale() == "linear"
    report.pyplot().close("all")


def test_a_sweep_of_studies_has_a_page_of_its_own_linking_each_studys(tmp_path, capsys):
    sweep_record.write_studies_plan(tmp_path, 0, [0, 5])
    for k, seconds in enumerate((1.5, 3.0)):
        study = sweep_record.study_dir(tmp_path, k)
        study.mkdir()
        sweep_record.write_plan(study, [["hparams.lr=0.01"]], study=k, search_seed=[0, 5][k])
        trial(study / "0", "completed", [(10, seconds, True, 0.98)], 0.01)
    cli.main(["report", str(tmp_path)])
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == str(tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "Median time to target over the studies of each one's best time to target: " in page
    assert "<b>2.25 s</b>" in page  # the median of 1.5 and 3.0
    assert re.findall(r"<a href='(study_\d/report.html)'>", page) == [
        "study_0/report.html",
        "study_1/report.html",
    ]
    assert all((tmp_path / f"study_{k}" / "report.html").exists() for k in (0, 1))


def test_hyperparameter_values_and_labels_are_escaped_and_the_page_redacted_as_written(tmp_path):
    """A string hyperparameter and `meta.*` labels are text, never markup, in the table and
    the best trial's line; a credential the records kept (a label typed before secrets were
    masked, say) is masked as the page is written."""
    sweep_record.write_plan(tmp_path, [["hparams.lr=0.01"]])
    trial(
        tmp_path / "0",
        "completed",
        [(10, 1.5, True, 0.98)],
        0.01,
        **{
            "hparams.schedule": "<script>alert(1)</script>",
            "meta.<i>label</i>": "<img src=x onerror=alert(2)>",
            "meta.store": "https://ann:hunter2secret@db.example.com/runs",
        },
    )
    page = write_html_report(tmp_path, *write_sweep_report(tmp_path)).read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<i>label</i>" not in page and "&lt;i&gt;label&lt;/i&gt;" in page
    assert "hunter2secret" not in page and "db.example.com" in page
