"""What aeff reads back is checked, not trusted; what it writes stays readable and inert."""

import csv
import io
import json
import logging.config
import math
import threading
import time

import numpy as np
import pandas as pd
import pytest
from helpers import run_aeff

from aeff.errors import ConfigError
from aeff.records import secrets
from aeff.records import sweep_dir as sweep_record
from aeff.records.attempt import Attempt
from aeff.records.concat import load_metrics
from aeff.records.files import append_csv_row, write_json_atomically
from aeff.records.rows import last_global_step
from aeff.records.run_dir import RunDir
from aeff.results.summary import UNREADABLE
from aeff.results.sweep_report import write_sweep_report
from aeff.workloads import mnist_data

ROW = {"global_step": 0, "x": 0.5}


def cache_of(tmp_path, mnist_idx_dir):
    cache = tmp_path / "mnist" / "3.0.1" / "aeff_arrays.npz"
    mnist_data._save_atomically(cache, mnist_data.read_idx_dir(mnist_idx_dir))
    return cache


@pytest.mark.parametrize("damage", ["truncated", "altered", "no digest"])
def test_a_damaged_numpy_cache_is_not_trusted(tmp_path, mnist_idx_dir, damage, caplog):
    cache = cache_of(tmp_path, mnist_idx_dir)
    assert mnist_data._read_cache(cache) is not None
    if damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:1_000_000])
    elif damage == "altered":  # a label flipped: the file still loads
        data = bytearray(cache.read_bytes())
        data[-5000] ^= 1
        cache.write_bytes(bytes(data))
    else:
        (cache.parent / "aeff_arrays.npz.sha256").unlink()
    assert mnist_data._read_cache(cache) is None
    assert str(cache) in caplog.text and "preparing it again" in caplog.text


def test_parallel_trials_on_an_empty_data_dir_prepare_mnist_once(tmp_path, monkeypatch):
    prepared = []
    arrays = mnist_data.MnistArrays(*(np.zeros((2, 3), np.uint8) for _ in range(4)))

    def slow_preparation(idx_dir):
        prepared.append(idx_dir)
        time.sleep(0.5)
        return arrays

    monkeypatch.setattr(mnist_data, "read_idx_dir", slow_preparation)
    loaded = []
    threads = [
        threading.Thread(target=lambda: loaded.append(mnist_data.load_mnist(tmp_path, None)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(prepared) == 1 and len(loaded) == 2


def test_metadata_of_a_diverged_trial_is_strict_json(tmp_path):
    write_json_atomically(tmp_path / "m.json", {"loss": math.nan, "rows": [math.inf, 1.0]})

    def refuse(constant):
        raise ValueError(constant)

    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse) == {
        "loss": None,
        "rows": [None, 1.0],
    }


def test_a_formula_in_a_label_is_written_inert(tmp_path):
    path = tmp_path / "metrics.csv"
    row = {"global_step": 1, "meta.f": '=HYPERLINK("http://x","y")', "lr": -0.5, "n": "-"}
    append_csv_row(path, list(row), row)
    (written,) = csv.DictReader(path.open())
    assert written["meta.f"] == "'" + row["meta.f"] and written["lr"] == "-0.5"
    assert written["n"] == "'-"


@pytest.mark.parametrize("label", ["line\u2028separator", "x" * 200_000, 'quote " and\nnewline'])
def test_any_label_keeps_the_rows_readable_for_resume(tmp_path, label):
    owner = RunDir(tmp_path)
    owner.claim()
    (tmp_path / "checkpoints" / "2").mkdir(parents=True)
    for step in (1, 2, 3):
        row = {"global_step": step, "meta.label": label}
        append_csv_row(tmp_path / "metrics.csv", list(row), row)
    assert last_global_step(tmp_path / "metrics.csv") == 3
    owner.begin(Attempt(0, 1, checkpoint_step=2), {"identity": {}}, "", None)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open(newline="")))
    assert [r["global_step"] for r in rows] == ["1", "2"]
    assert all(r["meta.label"] == label for r in rows)


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xfe not utf-8\n", b"global_step,x\n1,2,3,4,5,6\n", b"", b"x" * 300_000 + b"\n"],
    ids=["not-utf8", "overlong-row", "empty", "huge-line"],
)
def test_the_tools_skip_an_unreadable_metrics_file_naming_it(tmp_path, garbage, caplog):
    for job in ("0", "1"):
        (tmp_path / job).mkdir()
        append_csv_row(tmp_path / job / "metrics.csv", list(ROW), ROW)
    (tmp_path / "1" / "metrics.csv").write_bytes(garbage)
    frame = load_metrics(tmp_path)
    assert list(frame["run_dir"]) == [str((tmp_path / "0").resolve())]
    if garbage:
        assert str(tmp_path / "1" / "metrics.csv") in caplog.text


def test_a_garbage_record_is_reported_not_skipped(tmp_path):
    """Job 1's record is garbage; job 0's rows, written by hand, hold only their steps (a
    report once ended on them in a KeyError)."""
    sweep_record.write_plan(tmp_path, [["a=1"], ["a=2"]])
    for job, text in (("0", '{"status": "completed", "global_step": 3}'), ("1", "{not json")):
        (tmp_path / job).mkdir()
        (tmp_path / job / "metadata.json").write_text(text)
    (tmp_path / "0" / "metrics.csv").write_text("global_step\n3\n")
    table, report = write_sweep_report(tmp_path)
    assert list(table["status"]) == ["completed", UNREADABLE]
    assert report["failed"] == [str((tmp_path / "1").resolve())]


def test_resume_refuses_an_unreadable_record_naming_it(tmp_path):
    (tmp_path / "metadata.json").write_text("[1, 2")
    owner = RunDir(tmp_path)
    owner.claim()
    with pytest.raises(ConfigError, match=r"metadata\.json is unreadable"):
        owner.attempt({}, None, resume=True, checkpointing=True)
    (tmp_path / "metadata.json").unlink()
    (tmp_path / "metrics.csv").write_bytes(b"global_step,x\nabc,1\n")
    (tmp_path / "checkpoints" / "4").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"metrics\.csv is unreadable"):
        owner.begin(Attempt(0, 1, checkpoint_step=4), {}, "", None)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("https://user:p@ss_TOKEN1@host/x", "TOKEN1"),
        ("git+https://oauth2:TOKEN2@gitlab.example.com/a.git", "TOKEN2"),
        ("https://host/data?token=TOKEN3&part=1", "TOKEN3"),
        ("s3://bucket/x?X-Amz-Signature=TOKEN4", "TOKEN4"),
        ("https://host/x?access_token=TOKEN5#frag", "TOKEN5"),
        ("/data/https:/user:TOKEN6@host/x (a URL made a path)", "TOKEN6"),
        ("https://host/x?api_key=TOKEN7", "TOKEN7"),
    ],
)
def test_credentials_are_redacted_wherever_they_sit_in_a_url(text, secret):
    redacted = secrets.redact(text)
    assert secret not in redacted and "***" in redacted


def test_redaction_leaves_plain_text_alone():
    for text in ("lr=0.001", "user@example.com", "a?b=1&c=2", "https://host/path/file.txt"):
        assert secrets.redact(text) == text


def test_log_records_are_redacted_whatever_handlers_a_config_sets_up():
    secrets.redact_log_records()
    stream = io.StringIO()
    logging.config.dictConfig(  # as Hydra configures a job's logging, after aeff started
        {
            "version": 1,
            "handlers": {"mine": {"class": "logging.StreamHandler", "stream": stream}},
            "loggers": {"planted": {"handlers": ["mine"], "level": "INFO"}},
            "disable_existing_loggers": False,
        }
    )
    logging.getLogger("planted").info("reading %s", "https://u:TOKEN8@host/x?sig=TOKEN9")
    assert stream.getvalue() == "reading https://***@host/x?sig=***\n"


def test_summary_csv_cells_are_inert(tmp_path):
    sweep_record.write_plan(tmp_path, [["a=1"]])
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metadata.json").write_text(
        json.dumps({"status": "completed", "meta.f": "=cmd|' /C calc'!A0"})
    )
    write_sweep_report(tmp_path)
    assert pd.read_csv(tmp_path / "summary.csv")["meta.f"][0].startswith("'=")


@pytest.mark.slow
def test_relative_paths_mean_the_same_with_hydra_chdir(tmp_path, mnist_data_dir):
    import shutil

    shutil.copytree(mnist_data_dir, tmp_path / "data")
    out = run_aeff(
        ["hydra.job.chdir=true", "workload.data_dir=data", "debug=short", "rng_seed=0"],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    record = json.loads((run_dir / "metadata.json").read_text())
    assert record["workload.data_dir"] == str(tmp_path / "data")
    assert not (run_dir / "data").exists() and "Preparing MNIST" not in out.stdout
