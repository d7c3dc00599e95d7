"""Plots of trials' rows (`aeff/results/plots.py`), as matplotlib drew them: lines and
labels, the target and the limits around it, many trials as one collection."""

import json
import logging
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers.written_trials import drawn_figures, plotted_sweep, trial

from aeff.errors import ConfigError
from aeff.records import sweep_dir as sweep_record
from aeff.records.concat import concatenate_csvs, load_metrics
from aeff.results.plots import around_target, axis_label, plot


@pytest.fixture
def figures(monkeypatch):
    yield from drawn_figures(monkeypatch)


def test_axis_labels_carry_units_and_limits_frame_the_target():
    assert axis_label("wall_time") == "wall_time (s)"
    assert axis_label("global_step") == "global_step (step)"
    assert axis_label("validation.loss") == "validation.loss (nats)"
    assert axis_label("validation.accuracy") == "validation.accuracy (fraction)"
    assert axis_label("train.other") == "train.other"
    values = pd.Series([0.5, 0.99])
    assert around_target(values, 0.97, True) == pytest.approx((0.853, 1.0134))
    assert around_target(pd.Series([0.1]), 0.97, True) == pytest.approx((0.853, 0.9934))
    losses = pd.Series([0.2, 3.0])
    assert around_target(losses, 0.3, False) == pytest.approx((0.19, 0.35))
    assert around_target(pd.Series([0.5]), 0.3, False) == pytest.approx((0.29, 0.35))


def test_a_plot_names_trials_by_what_differs_and_shows_the_target(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    out = plot(root, "global_step", "validation.accuracy", tmp_path / "a.png")
    assert out == tmp_path / "a.png" and out.stat().st_size > 0
    (axes,) = figures
    labels = [line.get_label() for line in axes.get_lines()]
    assert labels == ["0 (lr=0.1)", "1 (lr=0.3)", "target 0.97"]
    target = axes.get_lines()[2]
    assert list(target.get_ydata()) == [0.97, 0.97] and target.get_linestyle() == "--"
    assert axes.get_ylim() == pytest.approx((0.853, 1.0034))
    assert axes.get_xlabel() == "global_step (step)"
    assert axes.get_ylabel() == "validation.accuracy (fraction)"
    assert list(axes.get_lines()[0].get_xdata()) == [10, 20]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == labels


def test_a_trial_of_one_row_is_a_visible_point_and_longer_ones_plain_lines(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    path = root / "1" / "metrics.csv"
    pd.read_csv(path).iloc[:1].to_csv(path, index=False)
    plot(root, "global_step", "validation.accuracy", tmp_path / "a.png")
    one, two = figures[-1].get_lines()[1], figures[-1].get_lines()[0]
    assert list(one.get_xdata()) == [10] and one.get_marker() == "o"
    assert two.get_marker() in (None, "None", "")


def test_a_plot_of_non_finite_values_draws_its_limits_from_the_finite_ones(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    path = root / "1" / "metrics.csv"
    pd.read_csv(path).assign(**{"validation.accuracy": [math.nan, math.inf]}).to_csv(path)
    plot(root, "global_step", "validation.accuracy", tmp_path / "a.png")
    assert figures[-1].get_ylim() == pytest.approx((0.853, 1.0034))  # trial 0's, as before
    path = root / "0" / "metrics.csv"
    pd.read_csv(path).assign(**{"validation.accuracy": [math.nan, math.nan]}).to_csv(path)
    assert plot(root, "global_step", "validation.accuracy", tmp_path / "b.png").exists()


def test_a_plot_of_another_metric_has_no_target_line(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    plot(root, "accumulated_submission_time", "goal_reached", tmp_path / "b.png")
    labels = [line.get_label() for line in figures[0].get_lines()]
    assert labels == ["0 (lr=0.1)", "1 (lr=0.3)"]
    with pytest.raises(ConfigError, match=r"^plot --x nope: no such column"):
        plot(root, "nope", "validation.accuracy", tmp_path / "c.png")


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_a_plot_file_and_its_styling(tmp_path, figures):
    root = tmp_path / "sweep"
    trial(root / "0", [(10, 1.0, False, 0.5)], metric="validation.loss")
    path = root / "0" / "metrics.csv"
    frame = pd.read_csv(path)
    frame["workload.target_metric"] = "validation.loss"
    frame["workload.target_value"] = 0.3
    frame["hparams.lr"], frame["hparams.b1"] = 0.1, 0.9
    frame.to_csv(path, index=False)
    out = plot(root, "global_step", "validation.loss", tmp_path / "loss.png")
    assert png_size(out) == (7 * 120, int(4.5 * 120))  # 7 x 4.5 inches at 120 dpi
    (axes,) = figures
    run, target = axes.get_lines()
    assert run.get_label() == "0 (lr=0.1, b1=0.9)"  # one trial: every hparam named
    assert target.get_color() == "black" and target.get_linewidth() == 1
    assert axes.get_ylim() == pytest.approx((0.29, 0.35))  # a loss: lower is better
    assert all(t.get_fontsize() == 7 for t in axes.get_legend().get_texts())
    gridline = axes.xaxis.get_gridlines()[0]
    assert gridline.get_visible() and gridline.get_alpha() == 0.3


def test_many_trials_are_one_collection_coloured_by_the_varying_hparam(tmp_path, figures):
    plan = [[f"hparams.lr={0.001 * 2**i}"] for i in range(20)]
    sweep_record.write_plan(tmp_path, plan)
    for job in range(20):
        trial(tmp_path / str(job), [(10, 1.0, False, 0.5), (20, 2.0, True, 0.98)])
        path = tmp_path / str(job) / "metrics.csv"
        pd.read_csv(path).assign(**{"hparams.lr": 0.001 * 2**job}).to_csv(path, index=False)
    plot(tmp_path, "global_step", "validation.accuracy", tmp_path / "a.png")
    axes = figures[0]
    (lines,) = axes.collections
    assert len(lines.get_segments()) == 20 and axes.get_legend() is None
    assert list(lines.get_array()) == [0.001 * 2**i for i in range(20)]  # in job order
    assert type(lines.norm).__name__ == "LogNorm"  # lr spans 2**19
    assert axes.get_title() == "20 trials"
    assert axes.figure.axes[1].get_ylabel() == "hparams.lr"  # the colour bar names it


def test_a_plot_names_trials_by_string_and_null_hparams(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    for job, schedule in (("0", "cosine"), ("1", None)):
        path = root / job / "metrics.csv"
        pd.read_csv(path).assign(**{"hparams.schedule": schedule}).to_csv(path, index=False)
    plot(root, "global_step", "validation.accuracy", tmp_path / "a.png")
    labels = [line.get_label() for line in figures[0].get_lines()]
    assert labels[:2] == ["0 (lr=0.1, schedule=cosine)", "1 (lr=0.3, schedule=null)"]


def test_a_metric_with_no_finite_value_is_named_in_a_warning(tmp_path, figures, caplog):
    root = plotted_sweep(tmp_path)
    for job in ("0", "1"):
        path = root / job / "metrics.csv"
        pd.read_csv(path).assign(**{"validation.loss": math.nan}).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        plot(root, "global_step", "validation.loss", tmp_path / "a.png")
    assert "validation.loss has no finite value" in caplog.text
    caplog.clear()
    plot(root, "global_step", "validation.accuracy", tmp_path / "b.png")
    assert "no finite value" not in caplog.text


def test_the_combined_csv_reads_back_as_the_trials_it_holds(tmp_path, figures):
    root = plotted_sweep(tmp_path)
    combined = concatenate_csvs(root)
    rows = load_metrics(combined)
    assert sorted(Path(d).name for d in rows["run_dir"].unique()) == ["0", "1"]
    assert concatenate_csvs(combined) == combined  # its own folder, the same rows
    assert load_metrics(combined).equals(rows)
    plot(combined, "global_step", "validation.accuracy", tmp_path / "a.png")
    labels = [line.get_label() for line in figures[0].get_lines()]
    assert labels == ["0 (lr=0.1)", "1 (lr=0.3)", "target 0.97"]


def test_a_run_dir_named_with_dollars_is_drawn_as_text_not_mathtext(tmp_path, figures):
    """`$\\frac{1}{$` in a run dir's name and a hyperparameter's string: matplotlib's
    mathtext parser would refuse it as the figure is saved."""
    rows = [(10, 1.0, False, 0.5), (20, 2.0, True, 0.98)]
    trial(tmp_path / "run$\\frac{1}{$", rows, **{"hparams.schedule": "$x^{"})
    trial(tmp_path / "plain", rows, **{"hparams.schedule": "cosine"})
    out = plot(tmp_path, "global_step", "validation.accuracy", tmp_path / "a.png")
    assert out.stat().st_size > 0
    (axes,) = figures
    texts = [t.get_text() for t in axes.get_legend().get_texts()]
    assert texts == ["plain", "run\\$\\frac{1}{\\$"]


def test_the_limits_frame_a_target_as_its_workload_declares_it_not_as_its_name_says(
    tmp_path, figures
):
    """A record saying `workload.target_higher_is_better` (metadata.json, where the trial
    writes it): a `validation.loss` declared better higher is framed as an accuracy is,
    below the target up to the best value; without the key, as a loss."""
    for declared, limits in ((True, (0.25, 0.51)), (None, (0.29, 0.35))):
        root = tmp_path / str(declared)
        trial(root / "0", [(10, 1.0, False, 0.5)], metric="validation.loss")
        path = root / "0" / "metrics.csv"
        frame = pd.read_csv(path)
        frame["workload.target_metric"] = "validation.loss"
        frame["workload.target_value"] = 0.3
        frame.to_csv(path, index=False)
        if declared is not None:
            record = root / "0" / "metadata.json"
            known = json.loads(record.read_text()) if record.exists() else {}
            record.write_text(json.dumps({**known, "workload.target_higher_is_better": declared}))
        plot(root, "global_step", "validation.loss", tmp_path / f"{declared}.png")
        assert figures[-1].get_ylim() == pytest.approx(limits)
