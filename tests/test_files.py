"""Crash-safe writes (`aeff/records/files.py`): JSON and text replaced whole (write, fsync,
chmod, rename), rows appended whole in one write under one header, a failed write leaving the
file as it was, torn last lines cut, and every error naming its file."""

import csv
import errno
import json
import os
import stat

import pytest

from aeff.errors import RecordsError
from aeff.records import files


@pytest.fixture
def calls(monkeypatch):
    """The os calls of a write, in order, passed through to the real ones."""
    made = []
    for name in ("write", "fsync", "replace", "chmod", "ftruncate"):
        real = getattr(os, name)

        def spy(*args, _name=name, _real=real):
            made.append((_name, args))
            return _real(*args)

        monkeypatch.setattr(files.os, name, spy)
    return made


def test_json_is_fsynced_made_readable_then_renamed_over_the_file(tmp_path, calls):
    path = tmp_path / "metadata.json"
    files.write_json_atomically(path, {"b": 1, "a": [1, 2], "when": tmp_path})
    assert [name for name, _ in calls] == ["fsync", "chmod", "replace"]
    temporary = calls[1][1][0]
    assert calls[1][1][1] == 0o644 and calls[2][1] == (temporary, path)
    name = os.path.basename(temporary)
    assert name.startswith(".metadata.json.") and name.endswith(".tmp")
    assert os.path.dirname(temporary) == str(tmp_path)
    assert path.read_text() == json.dumps(
        {"a": [1, 2], "b": 1, "when": str(tmp_path)}, indent=2, sort_keys=True
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_text_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "config_resolved.yaml"
    path.write_text("old")

    def no_fsync(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(files.os, "fsync", no_fsync)
    with pytest.raises(RecordsError) as raised:
        files.write_text_atomically(path, "new")
    assert raised.value.__cause__.errno == errno.EIO
    assert str(path) in str(raised.value)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_write_into_a_missing_folder_raises_records_error(tmp_path):
    with pytest.raises(RecordsError, match="nowhere"):
        files.write_text_atomically(tmp_path / "nowhere" / "x.json", "{}")


def test_stale_temporaries_are_removed_and_records_kept(tmp_path):
    names = [".metadata.json.abc.tmp", ".metrics.csv.x.tmp", "metrics.csv", "keep.tmp", ".hydra"]
    for name in names:
        (tmp_path / name).write_text("x")
    files.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "keep.tmp", "metrics.csv"]


def test_the_csv_header_is_none_until_its_line_is_whole(tmp_path):
    path = tmp_path / "m.csv"
    assert files.csv_header(path) is None
    path.write_text("a,b")  # torn before its end
    assert files.csv_header(path) is None
    path.write_text('a,"b,c"\n1,2\n')
    assert files.csv_header(path) == ["a", "b,c"]


def test_a_row_is_one_write_of_an_append_only_file_then_fsync(tmp_path, calls, monkeypatch):
    opened = []
    real_open = os.open

    def spy_open(path, flags, mode=0o777):
        opened.append((flags, mode))
        return real_open(path, flags, mode)

    monkeypatch.setattr(files.os, "open", spy_open)
    path = tmp_path / "metrics.csv"
    files.append_csv_row(path, ["a", "b"], {"a": 1, "b": 2})
    files.append_csv_row(path, ["a", "b"], {"a": 3, "b": 4})
    assert [name for name, _ in calls] == ["write", "fsync", "write", "fsync"]
    assert calls[0][1][1] == b"a,b\r\n1,2\r\n" and calls[2][1][1] == b"3,4\r\n"
    assert opened == [(os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)] * 2
    assert path.read_bytes() == b"a,b\r\n1,2\r\n3,4\r\n"


def test_a_short_write_is_continued_from_where_it_stopped(tmp_path, monkeypatch):
    real_write = os.write

    def three_bytes_at_a_time(fd, data):
        return real_write(fd, bytes(data[:3]))

    monkeypatch.setattr(files.os, "write", three_bytes_at_a_time)
    path = tmp_path / "m.csv"
    files.append_csv_row(path, ["a", "b"], {"a": "x" * 7, "b": "y"})
    assert path.read_bytes() == b"a,b\r\nxxxxxxx,y\r\n"


@pytest.mark.parametrize("written", ["half", "all"])
def test_a_failed_append_is_cut_back_to_the_size_before_it(tmp_path, monkeypatch, written):
    """A disk that fills up part-way through the row, or after all of it was written."""
    path = tmp_path / "m.csv"
    files.append_csv_row(path, ["a", "b"], {"a": 1, "b": 2})
    before = path.read_bytes()
    real_write = os.write

    def write_then_fail(fd, data):
        real_write(fd, bytes(data[: len(data) // 2] if written == "half" else data))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "write", write_then_fail)
    with pytest.raises(RecordsError, match=r"cannot write .*m\.csv: No space left on device"):
        files.append_csv_row(path, ["a", "b"], {"a": 3, "b": 4})
    assert path.read_bytes() == before


def test_a_failed_cut_back_still_reports_the_first_error(tmp_path, monkeypatch):
    def no_space(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def no_truncate(fd, size):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(files.os, "write", no_space)
    monkeypatch.setattr(files.os, "ftruncate", no_truncate)
    with pytest.raises(RecordsError, match="No space left on device"):
        files.append_csv_row(tmp_path / "m.csv", ["a"], {"a": 2})


def test_readers_keep_carriage_returns_inside_values(tmp_path):
    path = tmp_path / "m.csv"
    files.append_csv_row(path, ["a", "b"], {"a": "x\ry", "b": "z\r\n"})
    assert files.complete_lines(path) == 'a,b\r\n"x\ry","z\r\n"\r\n'


def test_an_append_that_cannot_open_names_the_file(tmp_path):
    with pytest.raises(RecordsError, match=r"missing/m\.csv: No such file or directory"):
        files.append_csv_row(tmp_path / "missing" / "m.csv", ["a"], {"a": 1})


def test_complete_lines_end_at_the_last_newline_and_a_torn_line_is_cut(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("a\n1\n2")
    assert files.complete_lines(path) == "a\n1\n"
    path.write_text("a\n1\n")
    assert files.complete_lines(path) == "a\n1\n"
    path.write_text("a,b")
    assert files.complete_lines(path) == ""
    files.cut_torn_line(path)
    assert path.read_bytes() == b""
    files.cut_torn_line(tmp_path / "absent.csv")  # nothing to cut
    assert not (tmp_path / "absent.csv").exists()


def test_a_torn_line_that_cannot_be_cut_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "m.csv"
    path.write_text("a\n1")

    def read_only(*args):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.os, "truncate", read_only)
    with pytest.raises(RecordsError, match=r"m\.csv: Read-only file system\."):
        files.cut_torn_line(path)


def test_non_finite_floats_are_recorded_as_null(tmp_path):
    """JSON has no NaN: a diverged trial's loss is written as null, at any depth."""
    path = tmp_path / "m.json"
    files.write_json_atomically(path, {"loss": float("nan"), "x": [1.5, float("-inf")]})
    assert json.loads(path.read_text()) == {"loss": None, "x": [1.5, None]}


def test_rows_append_under_one_header_and_json_is_replaced_whole(tmp_path):
    path = tmp_path / "metrics.csv"
    files.append_csv_row(path, ["a", "b"], {"a": 1, "b": "x,y"})
    files.append_csv_row(path, ["a", "b"], {"a": 2, "b": "z", "ignored": 3})
    assert list(csv.DictReader(path.open())) == [{"a": "1", "b": "x,y"}, {"a": "2", "b": "z"}]
    files.write_json_atomically(tmp_path / "m.json", {"status": "running"})
    files.write_json_atomically(tmp_path / "m.json", {"status": "completed"})
    assert json.loads((tmp_path / "m.json").read_text()) == {"status": "completed"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "metrics.csv"]


def test_a_failed_json_write_keeps_the_old_version_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "metadata.json"
    files.write_json_atomically(path, {"status": "running"})

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", no_space)
    with pytest.raises(RecordsError, match=r"metadata\.json: No space left on device"):
        files.write_json_atomically(path, {"status": "completed"})
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["metadata.json"]


def test_a_torn_last_line_is_cut_and_whole_rows_are_kept(tmp_path):
    path = tmp_path / "m.csv"
    for value in (1, 2):
        files.append_csv_row(path, ["a", "b"], {"a": value, "b": value})  # csv ends rows in \r\n
    whole = path.read_bytes()
    files.cut_torn_line(path)
    assert path.read_bytes() == whole
    with path.open("ab") as file:
        file.write(b"3,")  # a crash of the machine mid-row
    files.cut_torn_line(path)
    assert path.read_bytes() == whole
