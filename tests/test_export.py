"""`python -m aeff.results export mlflow|tensorboard`: a real 2-trial sweep into a real MLflow
store and into TensorBoard event files, read back with each tool's own reader."""

import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import HELPERS, shared_trial_scope, short_trial_overrides

from aeff.cli.app import compose_config
from aeff.errors import ConfigError
from aeff.records import sweep_dir as sweep_record
from aeff.records.concat import load_metrics
from aeff.results import __main__ as cli
from aeff.results.summary import summary
from aeff.trial import train_and_evaluate

mlflow = pytest.importorskip("mlflow", reason='the mlflow extra: pip install "aeff[mlflow]"')
pytest.importorskip("tensorboard", reason='the tensorboard extra: pip install "aeff[tensorboard]"')
# TensorBoard's reader without TensorFlow (its documented no-TF mode): TF takes seconds to
# import, and stays out of the test process.
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

# MLflow 3.18's store on SQLAlchemy 2.1: a deprecation of theirs, not aeff's.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
    pytest.mark.slow,  # the module's sweep trains two trials; MLflow's import alone takes seconds
]
LRS = ("1e-3", "3e-3")


BAD_LR = "-1"  # job 2, with aeff's Adam: refused, recorded `failed` as in a sweep (no rows)


@pytest.fixture(scope=shared_trial_scope)
def sweep(tmp_path_factory, mnist_data_dir) -> Path:
    """A sweep dir of two real trials (12 steps, a row every 4), each with a label and a
    copy of the user's submission file, and a third that failed, as the sweeper's jobs
    leave them."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    sweep_record.write_plan(sweep_dir, [[f"hparams.lr={lr}"] for lr in (*LRS, BAD_LR)])
    for job, lr in enumerate(LRS):
        labels = {"hydra.job.num": job, "sweep_dir": str(sweep_dir)}
        train_and_evaluate(short_trial(mnist_data_dir, lr), sweep_dir / str(job), labels)
    labels = {"hydra.job.num": 2, "sweep_dir": str(sweep_dir)}
    with pytest.raises(ConfigError):
        cfg = short_trial(mnist_data_dir, BAD_LR, user_file=False)
        train_and_evaluate(cfg, sweep_dir / "2", labels, record_bad_input=True)
    return sweep_dir


def short_trial(data_dir: Path, lr: str, user_file: bool = True):
    return compose_config(
        [
            *short_trial_overrides(data_dir),
            f"hparams.lr={lr}",
            "+meta.study=export",
            *([f"submission_path={HELPERS / 'wild_adam.py'}"] if user_file else []),
        ]
    )


def export(*args: str) -> None:
    cli.main(["export", *map(str, args)])


@pytest.fixture(scope=shared_trial_scope)
def exported(sweep, tmp_path_factory):
    """The sweep exported into MLflow's default store (made once: ~4 s), the console's line."""
    copy = tmp_path_factory.mktemp("mlflow") / "sweep"
    shutil.copytree(sweep, copy)
    export("mlflow", copy)
    return copy, mlflow.MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")


def runs_of(client, sweep_dir, view=None):
    experiment = client.get_experiment_by_name(str(sweep_dir.resolve()))
    kwargs = {"run_view_type": view} if view else {}
    return {
        r.data.tags["run_dir"]: r for r in client.search_runs([experiment.experiment_id], **kwargs)
    }


def test_mlflow_gets_each_trial_as_a_run_with_its_config_metrics_tags_and_files(exported, capsys):
    sweep_dir, client = exported
    runs = runs_of(client, sweep_dir)
    assert sorted(runs) == [str((sweep_dir / job).resolve()) for job in ("0", "1", "2")]
    failed = runs[str((sweep_dir / "2").resolve())]
    assert failed.info.status == "FAILED" and failed.data.tags["status"] == "failed"
    assert failed.data.tags["error"].startswith("hparams.lr=-1.0 is not allowed")
    assert failed.data.metrics == {} and failed.data.params == {}
    rows = load_metrics(sweep_dir)
    for job, lr in enumerate(LRS):
        run_dir = (sweep_dir / str(job)).resolve()
        run, record = runs[str(run_dir)], json.loads((run_dir / "metadata.json").read_text())
        assert run.info.run_name == str(job) and run.info.status == "FINISHED"
        assert run.data.params == {
            k: str(v) if isinstance(v, str) else json.dumps(v)
            for k, v in record["identity"].items()
        }
        assert float(run.data.params["hparams.lr"]) == float(lr)
        assert run.data.tags["status"] == "completed"
        assert run.data.tags["rng_seed"] == str(record["rng_seed"])
        assert run.data.tags["workload"] == "mnist" and run.data.tags["submission"] == "WildAdam"
        assert run.data.tags["meta.study"] == "export"
        mine = rows[rows["run_dir"] == str(run_dir)]
        for metric in ("validation.accuracy", "train.loss", "accumulated_submission_time"):
            history = client.get_metric_history(run.info.run_id, metric)
            assert [(m.step, m.value) for m in history] == list(
                zip(mine["global_step"], mine[metric], strict=True)
            )
            times = (mine["global_start_time"] + mine["wall_time"]) * 1000
            assert [m.timestamp for m in history] == [int(t) for t in times]
        assert "hparams.lr" not in run.data.metrics and "global_step" not in run.data.metrics
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert files == {"metadata.json", "config_resolved.yaml", "submission.py"}
        assert run.info.artifact_uri.startswith((sweep_dir / ".mlartifacts").resolve().as_uri())


def test_exporting_again_keeps_an_unchanged_run_and_replaces_one_that_moved_on(exported, capsys):
    """Trial 1 first exported as it stood mid-run (its record `running`, two rows, no
    process holding it: `interrupted`), then as it ended: one run per trial, always."""
    sweep_dir, client = exported
    before = runs_of(client, sweep_dir)
    job = sweep_dir / "1"
    record, rows = (job / "metadata.json").read_bytes(), (job / "metrics.csv").read_bytes()
    mid_run = {**json.loads(record), "status": "running"}
    (job / "metadata.json").write_text(json.dumps(mid_run))
    (job / "metrics.csv").write_bytes(b"".join(rows.splitlines(keepends=True)[:3]))
    try:
        export("mlflow", sweep_dir)
        assert "(1 replaced, 2 unchanged)" in capsys.readouterr().out
        stopped = runs_of(client, sweep_dir)[str(job.resolve())]
        assert stopped.data.tags["status"] == "interrupted" and stopped.info.status == "KILLED"
        steps = client.get_metric_history(stopped.info.run_id, "validation.accuracy")
        assert [m.step for m in steps] == [4, 8]
    finally:
        (job / "metadata.json").write_bytes(record)
        (job / "metrics.csv").write_bytes(rows)
    export("mlflow", sweep_dir)
    after = runs_of(client, sweep_dir)
    assert len(after) == 3 and after[str(job.resolve())].data.tags["status"] == "completed"
    steps = client.get_metric_history(after[str(job.resolve())].info.run_id, "validation.accuracy")
    assert [m.step for m in steps] == [4, 8, 12]  # the run replaced, not appended to
    kept = str((sweep_dir / "0").resolve())
    assert after[kept].info.run_id == before[kept].info.run_id  # unchanged: not exported again
    deleted = runs_of(client, sweep_dir, view=mlflow.entities.ViewType.DELETED_ONLY)
    assert set(deleted) == {str(job.resolve())}
    export("mlflow", sweep_dir)
    assert "(3 unchanged)" in capsys.readouterr().out


def test_tensorboard_reads_each_trials_scalars_by_step_and_the_hparams_table(sweep, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata as hparams_metadata

    logdir = tmp_path / "tb"
    for _ in range(2):  # the second export replaces the first: nothing twice
        export("tensorboard", sweep, "--logdir", logdir)
    assert "tensorflow" not in sys.modules  # written without TensorFlow
    rows = load_metrics(sweep)
    root = EventAccumulator(str(logdir))
    root.Reload()
    (content,) = root.PluginTagToContent("hparams").values()
    experiment = hparams_metadata.parse_experiment_plugin_data(content)
    assert "hparams.lr" in {h.name for h in experiment.hparam_infos}
    table_metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"validation.accuracy", "best_target_metric", "test.loss"} <= table_metrics
    for job, lr in enumerate(LRS):
        run_dir = (sweep / str(job)).resolve()
        events = EventAccumulator(str(logdir / str(job)))
        events.Reload()
        assert len(list((logdir / str(job)).iterdir())) == 1
        mine = rows[rows["run_dir"] == str(run_dir)]
        for metric in ("validation.accuracy", "train.loss", "accumulated_eval_time"):
            scalars = events.Scalars(metric)
            assert [s.step for s in scalars] == list(mine["global_step"])
            assert [s.value for s in scalars] == pytest.approx(list(mine[metric]), rel=1e-6)
        (best,) = events.Scalars("best_target_metric")
        assert best.step == 12 and best.value == pytest.approx(mine["validation.accuracy"].max())
        (start,) = events.PluginTagToContent("hparams").values()
        session = hparams_metadata.parse_session_start_info_plugin_data(start)
        assert session.hparams["hparams.lr"].number_value == float(lr)
        assert session.hparams["workload"].string_value == "mnist"
        assert session.group_name == str(job)
    (failed,) = EventAccumulator(str(logdir / "2")).Reload().PluginTagToContent("hparams").values()
    assert hparams_metadata.parse_session_start_info_plugin_data(failed).group_name == "2"
    table = hparams_table(logdir)  # what the HPARAMS tab shows
    assert sorted(table) == ["0", "1", "2"]
    assert [table[str(job)]["hparams.lr"] for job in (0, 1)] == [float(lr) for lr in LRS]
    best = rows.groupby("run_dir")["validation.accuracy"].max()
    assert table["0"]["best_target_metric"] == pytest.approx(best[str((sweep / "0").resolve())])


def hparams_table(logdir: Path) -> dict[str, dict[str, float]]:
    """The HPARAMS tab's rows as TensorBoard's hparams plugin answers its page: each
    session group's learning rate and metrics."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    events = plugin_event_multiplexer.EventMultiplexer()
    events.AddRunsFromDirectory(str(logdir))
    events.Reload()
    provider = data_provider.MultiplexerDataProvider(events, str(logdir))
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=events, data_provider=provider)
    every = [api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE]
    every.append(api_pb2.STATUS_RUNNING)
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0,
        slice_size=100,
        allowed_statuses=every,  # the page's default filter
    )
    handler = list_session_groups.Handler(
        context.RequestContext(), backend_context.Context(tb), "", request
    )
    return {
        group.name: {
            **{k: v.number_value for k, v in group.hparams.items() if k == "hparams.lr"},
            **{m.name.tag: m.value for m in group.metric_values},
        }
        for group in handler.run().session_groups
    }


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["mlflow", "{empty}"], "no trial records at or below"),
        (["tensorboard", "{empty}"], "no trial records at or below"),
        (
            ["mlflow", "{sweep}", "--tracking-uri", "nosuchstore://here"],
            "MLflow refused it after 0 of",
        ),
        (["mlflow", "{sweep}", "--logdir", "x"], "--logdir is for export tensorboard"),
        (  # a server that does not answer; its password never printed
            ["mlflow", "{sweep}", "--tracking-uri", "http://me:pass/Planted0123@127.0.0.1:9/"],
            "--tracking-uri http://***@127.0.0.1:9/: MLflow refused it",
        ),
        (["tensorboard", "{sweep}", "--logdir", "{sweep}/sweep_plan.json"], "cannot write there"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sweep, tmp_path, capsys, args, says):
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", sweep=sweep) for a in args]
    with pytest.raises(SystemExit) as stop:
        export(*args)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (sweep / "mlflow.db").exists() and "Planted0123" not in err


@pytest.mark.parametrize("tool", ["mlflow", "tensorboard"])
def test_an_exporter_whose_extra_is_missing_says_how_to_install_it(
    sweep, tool, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, tool, None)  # Python's own "not installed"
    with pytest.raises(SystemExit) as stop:
        export(tool, sweep)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f'pip install "aeff[{tool}]"' in err, err


@pytest.mark.slow
def test_a_trial_and_the_other_results_commands_import_neither_mlflow_nor_tensorboard():
    code = (
        "import sys, aeff.trial, aeff.results.__main__, aeff.results.export,"
        " aeff.results.export_mlflow, aeff.results.export_tensorboard;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mlflow', 'tensorboard', 'tensorflow', 'sqlalchemy', 'alembic')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_single_run_dir_exports_as_one_run_and_stays_one_trial(exported, sweep, tmp_path, capsys):
    """The exports land in the run dir, and what they leave there (copies of its record as
    MLflow's artifacts, event files) is never taken for another trial."""
    run_dir = tmp_path / "run"
    shutil.copytree(sweep / "0", run_dir)
    store = f"sqlite:///{exported[0] / 'mlflow.db'}"  # the module's store: made once
    for _ in range(2):
        export("mlflow", run_dir, "--tracking-uri", store)
        export("tensorboard", run_dir)
    out = capsys.readouterr().out
    assert "1 trial in MLflow (1 exported)" in out and "1 trial in MLflow (1 unchanged)" in out
    assert [p.name for p in (run_dir / "tensorboard").iterdir() if p.is_dir()] == ["run"]
    assert list(summary(run_dir)["run_dir"]) == [str(run_dir.resolve())]


def big_trial(run_dir: Path, rows: int = 60, columns: int = 20, params: int = 150):
    """A trial of `rows` x `columns` metric values (over MLflow's 1,000 a batch) and
    `params` hyperparameters (over its 100), its record in `run_dir`."""
    import numpy as np

    from aeff.results.export import Trial

    run_dir.mkdir(parents=True)
    metadata = {"status": "completed", "identity": {f"hparams.h{i}": i for i in range(params)}}
    (run_dir / "metadata.json").write_text(json.dumps(metadata))
    steps = np.arange(1, rows + 1) * 10
    values = np.arange(rows * columns, dtype=float).reshape(rows, columns)
    return Trial(
        run_dir=run_dir,
        name=run_dir.name,
        status="completed",
        metadata=metadata,
        columns=[f"m{j}" for j in range(columns)],
        steps=steps,
        times=1.8e9 + steps.astype(float),
        values=values,
        result={"best_target_metric": 0.5},
    )


def test_a_trial_over_mlflows_batch_limits_is_written_whole(tmp_path):
    from aeff.results.export_mlflow import EXPORTED_TAG, to_mlflow

    trial = big_trial(tmp_path / "sweep" / "0")
    uri = f"sqlite:///{tmp_path / 'own.db'}"
    to_mlflow([trial], tmp_path / "sweep", uri)
    client = mlflow.MlflowClient(uri)
    (run,) = runs_of(client, tmp_path / "sweep").values()
    assert len(run.data.params) == 150 and len(run.data.metrics) == 21
    assert run.data.tags[EXPORTED_TAG] == trial.fingerprint()
    history = client.get_metric_history(run.info.run_id, "m19")
    expected = [(10 * (i + 1), 20.0 * i + 19) for i in range(60)]
    assert [(m.step, m.value) for m in history] == expected


def test_batches_keep_to_mlflows_limits_and_end_with_the_fingerprint():
    from mlflow.entities import Metric, Param, RunTag

    from aeff.results.export_mlflow import batches

    metrics = [Metric(f"m{i % 7}", float(i), 0, i) for i in range(2_500)]
    params = [Param(f"p{i}", "1") for i in range(250)]
    calls = batches(metrics, params, RunTag("last", "x"))
    assert [m for call in calls for m in call[0]] == metrics
    assert [p for call in calls for p in call[1]] == params
    assert [t.key for call in calls for t in call[2]] == ["last"] and calls[-1][2]
    for m, p, t in calls:
        assert len(m) <= 1000 and len(p) <= 100 and len(m) + len(p) + len(t) <= 1000
    assert batches([], [], RunTag("last", "x")) == [([], [], [RunTag("last", "x")])]


def test_a_run_cut_off_before_its_last_batch_is_exported_again(tmp_path, monkeypatch):
    """The fingerprint comes last: a run stopped before its last batch is replaced."""
    from aeff.results.export_mlflow import EXPORTED_TAG, to_mlflow

    trial, sweep_dir = big_trial(tmp_path / "sweep" / "0"), tmp_path / "sweep"
    uri = f"sqlite:///{tmp_path / 'own.db'}"
    real, calls = mlflow.MlflowClient.log_batch, []

    def cut(self, run_id, **kwargs):
        calls.append(run_id)
        if len(calls) == 2:  # its last: 1,221 metrics and 150 params take two
            raise OSError("the machine stopped")
        return real(self, run_id, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", cut)
    with pytest.raises(ConfigError, match="after 0 of 1 trials"):
        to_mlflow([trial], sweep_dir, uri)
    monkeypatch.undo()
    assert "(1 replaced)" in to_mlflow([trial], sweep_dir, uri)
    (run,) = runs_of(mlflow.MlflowClient(uri), sweep_dir).values()
    assert run.data.tags[EXPORTED_TAG] == trial.fingerprint() and len(run.data.params) == 150


def test_only_aeffs_own_store_is_written_without_fsync(tmp_path):
    import sqlalchemy

    from aeff.results.export_mlflow import unsynced

    def synchronous(name: str) -> int:
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / name}")
        with engine.connect() as connection:
            value = connection.exec_driver_sql("PRAGMA synchronous").scalar()
        engine.dispose()
        return value

    with unsynced(own=True):
        assert synchronous("a.db") == 0  # OFF
    with unsynced(own=False):
        assert synchronous("b.db") == 2  # FULL, SQLite's default
    assert synchronous("c.db") == 2  # the listener is gone


def edit_cell(run_dir: Path, column: str, row: int, value: str) -> None:
    """One cell of a trial's metrics.csv changed by hand, as a spreadsheet would."""
    path = run_dir / "metrics.csv"
    lines = path.read_text().splitlines(keepends=True)
    cells = lines[row + 1].rstrip("\n").split(",")
    cells[lines[0].rstrip("\n").split(",").index(column)] = value
    lines[row + 1] = ",".join(cells) + "\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize("column", ["validation.accuracy", "wall_time"])
def test_a_cell_edited_to_text_exports_its_trial_as_damaged_in_one_line(
    sweep, tmp_path, capsys, monkeypatch, column
):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a fresh process
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    edit_cell(copy / "0", column, 1, "abc")
    export("mlflow", copy)
    export("tensorboard", copy)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(f"({column}: 'abc')" in line for line in lines), err
    assert "3 trials in MLflow (3 exported)" in out and "3 trials for TensorBoard" in out
    client = mlflow.MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    runs = runs_of(client, copy)
    damaged = runs[str((copy / "0").resolve())]
    assert damaged.data.tags["status"] == "damaged" and damaged.info.status == "FAILED"
    history = client.get_metric_history(damaged.info.run_id, "validation.accuracy")
    steps = sorted(m.step for m in history)  # a row without its time: at the trial's start
    assert steps == ([4, 12] if column == "validation.accuracy" else [4, 8, 12])


def test_a_secret_written_into_a_record_by_hand_is_exported_masked(sweep, tmp_path):
    """Records are written redacted; one edited afterwards is masked as it is exported:
    its labels (MLflow tags), its config (params, TensorBoard's HPARAMS table)."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    path = copy / "0" / "metadata.json"
    record = json.loads(path.read_text())
    record["meta.study"] = "curl -u me:plantedLabel0123 https://h"
    record["identity"]["hparams.source"] = "X-Api-Key: plantedParam0123"
    path.write_text(json.dumps(record))
    export("mlflow", copy)
    export("tensorboard", copy)
    run = runs_of(mlflow.MlflowClient(f"sqlite:///{copy / 'mlflow.db'}"), copy)
    tags, params = (lambda d: (d.tags, d.params))(run[str((copy / "0").resolve())].data)
    assert tags["meta.study"] == "curl -u me:*** https://h"
    assert params["hparams.source"] == "X-Api-Key: '***'"
    written = [copy / "mlflow.db", *(copy / "tensorboard").rglob("*.aeff")]
    for text in (p.read_bytes() for p in written):
        assert b"plantedLabel0123" not in text and b"plantedParam0123" not in text


@pytest.mark.slow  # two exporting processes
def test_two_exports_at_once_into_one_new_store_make_each_trial_once(sweep, tmp_path):
    """Each waits for the store's lock (held here until both say so), then one exports
    the trials and the other finds them exported: 3 runs for 3 trials, both exit 0."""
    from aeff.results.export_mlflow import store_lock

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    uri = f"sqlite:///{copy / 'mlflow.db'}"
    command = [sys.executable, "-m", "aeff.results", "export", "mlflow", str(copy)]
    with store_lock(uri, copy):
        exports = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        for process in exports:
            assert "waiting for another export into" in process.stderr.readline()
    said = []
    for process in exports:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0
        said.append(out)
    assert sorted("(3 unchanged)" in out for out in said) == [False, True], said
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(str(copy.resolve()))
    assert len(client.search_runs([experiment.experiment_id])) == 3  # not one per export


def test_mlflow_runs_are_named_by_the_overrides_that_tell_them_apart(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    for job, lr in enumerate((*LRS, BAD_LR)):
        path = copy / str(job) / "metadata.json"
        record = json.loads(path.read_text())
        record["hydra.overrides"] = [f"hparams.lr={lr}", "max_steps=12"]
        path.write_text(json.dumps(record))
    export("mlflow", copy)
    runs = runs_of(mlflow.MlflowClient(f"sqlite:///{copy / 'mlflow.db'}"), copy)
    names = {Path(d).name: run.info.run_name for d, run in runs.items()}
    assert names == {"0": "hparams.lr=1e-3", "1": "hparams.lr=3e-3", "2": "hparams.lr=-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return (
            json.loads(answer.read())
            if answer.headers.get_content_subtype() == "json"
            else {"html": answer.read().decode()}
        )


@pytest.mark.slow  # MLflow's server starts in 10-30 s
def test_mlflows_own_server_and_ui_show_the_exported_runs(exported):
    """The route docs give users (`pip install "aeff[mlflow-ui]"`, then `mlflow server`
    on the exported store): its UI page answers, and its REST API lists aeff's runs."""
    sweep_dir, _ = exported
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    if not mlflow_cli.exists() or importlib.util.find_spec("flask") is None:
        pytest.skip('the mlflow-ui extra: pip install "aeff[mlflow-ui]"')
    port = free_port()
    command = [str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--backend-store-uri", f"sqlite:///{sweep_dir / 'mlflow.db'}"]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                get(f"{base}/health")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "mlflow server did not answer in 120 s"
                time.sleep(0.5)
        assert "<!doctype html>" in get(f"{base}/")["html"].lower()  # the UI's page
        name = urllib.parse.quote(str(sweep_dir.resolve()))
        experiment = get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}")
        found = get(
            f"{base}/api/2.0/mlflow/runs/search",
            {"experiment_ids": [experiment["experiment"]["experiment_id"]]},
        )
        run_dirs = {
            tag["value"]
            for run in found["runs"]
            for tag in run["data"]["tags"]
            if tag["key"] == "run_dir"
        }
        assert run_dirs == {str((sweep_dir / job).resolve()) for job in ("0", "1", "2")}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        server.stderr.close()
