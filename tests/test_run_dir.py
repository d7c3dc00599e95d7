"""The run dir's owner (`aeff/records/run_dir.py`) in-process, on files written by hand, no
training: what each record holds, logging=off, failures before the trial began, discarding a
dir, the lock and its text, the attempt a resume continues, cutting and moving records aside,
appending rows once. (test_run_dir_trials.py trains real trials through the same owner.)"""

import errno
import fcntl
import json
import logging
import os
import signal
import socket
import stat
import time
from pathlib import Path

import pytest

from aeff.errors import ConfigError, RecordsError, RunDirBusy, TrialInterrupted
from aeff.records import files, run_dir
from aeff.records.attempt import Attempt, differing
from aeff.records.lock import Lock
from aeff.records.run_dir import RunDir


def metadata(path):
    return json.loads((path / "metadata.json").read_text())


@pytest.fixture
def owner(tmp_path):
    made = RunDir(tmp_path / "run")
    made.claim()
    yield made
    made.release()


def test_begin_writes_every_record_hydras_files_and_the_copies(owner, tmp_path):
    path = owner.path
    (path / ".metadata.json.x.tmp").write_text("a killed write")
    owner.release()
    owner.claim()  # a claim clears temporaries of killed writes
    assert not (path / ".metadata.json.x.tmp").exists()
    before = time.time()
    owner.begin(
        Attempt(number=2),
        {"identity": {"k": 1}, "a": 1},
        "cfg: 1\n",
        "pkg==1\n",
        hydra_files={"config.yaml": "a: 1\n", "overrides.yaml": "[]\n"},
        files={
            "submission_path": (Path("~/mine.py"), b"class Mine: ...\r\n"),  # bytes as given
            "tuning_search_space": (tmp_path / "space.json", b"{}"),  # not read: no such file
        },
    )
    record = metadata(path)
    assert record["status"] == "running" and record["attempt"] == 2 and record["a"] == 1
    assert record["resumed_from_step"] is None
    assert before <= record["start_time"] <= time.time()
    assert (path / "config_resolved.yaml").read_text() == "cfg: 1\n"
    assert (path / "packages.txt").read_text() == "pkg==1\n"
    assert sorted(p.name for p in (path / ".hydra").iterdir()) == ["config.yaml", "overrides.yaml"]
    assert (path / ".hydra" / "config.yaml").read_text() == "a: 1\n"
    assert (path / "submission.py").read_bytes() == b"class Mine: ...\r\n"  # named by its setting
    assert (path / "search_space.json").read_text() == "{}"
    assert not (path / "mine.py").exists() and not (path / "workload.py").exists()
    owner.append({"global_step": 1, "x": 1})
    owner.append({"global_step": 2, "x": 2, "late": 3})  # the first row sets the columns
    assert (path / "metrics.csv").read_bytes() == b"global_step,x\r\n1,1\r\n2,2\r\n"


def test_a_users_file_that_cannot_be_copied_names_the_copy(owner, tmp_path):
    (owner.path / "workload.py").mkdir()  # in the copy's way
    with pytest.raises(RecordsError, match=r"workload\.py: Is a directory"):
        owner.begin(Attempt(), {}, "", None, files={"workload_path": (Path("w.py"), b"x = 1\n")})


def test_without_packages_or_hydras_files_neither_is_written(owner):
    owner.begin(Attempt(), {}, "", None)
    assert not (owner.path / "packages.txt").exists()
    assert not (owner.path / ".hydra").exists()  # no Hydra files given: no folder


def test_end_records_status_times_and_values(owner):
    owner.begin(Attempt(), {"identity": {}}, "", None)
    start = metadata(owner.path)["start_time"]
    with pytest.raises(ValueError, match="unknown status 'done'"):
        owner.end("done")
    owner.end("completed", global_step=7)
    record = metadata(owner.path)
    assert record["status"] == "completed" and record["global_step"] == 7
    assert 0 <= record["elapsed_time"] <= time.time() - start
    assert record["end_datetime"][:4] == time.strftime("%Y")
    assert record["end_datetime"][-6] in "+-"  # with the UTC offset


def test_a_record_deleted_during_the_trial_is_written_again_at_its_end(owner):
    owner.begin(Attempt(), {"identity": {}}, "", None)
    (owner.path / "metadata.json").unlink()
    owner.end("completed", global_step=7)
    record = metadata(owner.path)
    assert (record["status"], record["global_step"]) == ("completed", 7)
    assert 0 <= record["elapsed_time"] < 1  # its start is gone with it: no time is made up


def test_a_record_that_cannot_be_ended_is_logged_not_raised(owner, caplog, monkeypatch):
    owner.begin(Attempt(), {"identity": {}}, "", None)

    def full_disk(path, data):
        raise RecordsError(path, OSError(28, "No space left on device"))

    monkeypatch.setattr(run_dir, "write_json_atomically", full_disk)
    with caplog.at_level(logging.ERROR, logger="aeff.records.run_dir"):
        owner.end("failed")
    (message,) = [r.getMessage() for r in caplog.records if r.name == "aeff.records.run_dir"]
    assert message.startswith("The trial ended failed, but cannot write ")


def test_logging_off_writes_nothing_but_the_lock_and_hydras_files(tmp_path):
    quiet = RunDir(tmp_path, write_records=False)
    quiet.claim()
    quiet.record_failure({"error_message": "x"})
    quiet.begin(Attempt(), {"identity": {}}, "cfg", "pkgs", {"config.yaml": "a: 1\n"})
    quiet.append({"global_step": 1})
    quiet.end("completed")
    assert quiet.status == "completed"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".aeff.lock", ".hydra"]
    assert [p.name for p in (tmp_path / ".hydra").iterdir()] == ["config.yaml"]
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "a: 1\n"
    quiet.release()
    bare = RunDir(tmp_path / "bare", write_records=False)
    bare.claim()
    bare.begin(Attempt(), {"identity": {}}, "cfg", "pkgs")
    assert [p.name for p in bare.path.iterdir()] == [run_dir.LOCK]
    bare.release()


def test_a_failure_before_the_trial_began_replaces_only_such_a_failure(owner):
    owner.record_failure({"error_message": "bad batch", "status": "running"})
    assert metadata(owner.path) == {"error_message": "bad batch", "status": "failed"}
    owner.record_failure({"error_message": "another"})  # a later try failed too: its record
    assert metadata(owner.path) == {"error_message": "another", "status": "failed"}
    trial = {"identity": {"k": 1}, "status": "interrupted", "attempt": 0}
    (owner.path / "metadata.json").write_text(json.dumps(trial))
    owner.record_failure({"error_message": "resume refused"})  # an earlier trial's record stays
    assert metadata(owner.path) == trial
    (owner.path / "metadata.json").write_text("{")
    owner.record_failure({"error_message": "x"})  # unreadable: left for its owner
    assert (owner.path / "metadata.json").read_text() == "{"


def test_a_trial_that_began_records_no_failure_before_it(tmp_path):
    began = RunDir(tmp_path)
    began.claim()
    began.begin(Attempt(), {"identity": {}}, "", None)
    began.record_failure({"error_message": "x"})
    assert metadata(tmp_path)["status"] == "running" and "error_message" not in metadata(tmp_path)
    began.release()


def test_an_unused_dir_is_discarded_and_one_with_records_kept(tmp_path):
    unused = RunDir(tmp_path / "unused")
    unused.claim()
    (unused.path / ".hydra").mkdir()
    (unused.path / "aeff.log").write_text("")
    unused.discard_if_unused()
    assert not unused.path.exists()
    assert unused.path not in Lock._held  # released
    used = RunDir(tmp_path / "used")
    used.claim()
    (used.path / "metadata.json").write_text("{}")
    used.discard_if_unused()
    assert sorted(p.name for p in used.path.iterdir()) == [run_dir.LOCK, "metadata.json"]
    odd = RunDir(tmp_path / "odd")
    odd.claim()
    (odd.path / "notes.txt").write_text("")
    odd.discard_if_unused()
    assert odd.path.exists()
    RunDir(tmp_path / "never made").discard_if_unused()  # nothing there: nothing to do


def test_the_lock_names_its_owner_and_is_idempotent(tmp_path):
    Lock.acquire(tmp_path)
    fd = Lock._held[tmp_path]
    Lock.acquire(tmp_path)
    assert Lock._held[tmp_path] == fd
    text = f"process {os.getpid()} on {socket.gethostname()}\n"
    assert (tmp_path / run_dir.LOCK).read_text() == text
    assert Lock.owner(tmp_path) == text.strip()
    assert Lock.is_held(tmp_path) is True
    Lock.release(tmp_path)
    assert tmp_path not in Lock._held
    Lock.release(tmp_path)  # twice: nothing held, nothing to do
    assert Lock.is_held(tmp_path) is False
    (tmp_path / run_dir.LOCK).write_text("")
    assert Lock.owner(tmp_path) == "another process"
    assert Lock.owner(tmp_path / "absent") == "another process"
    assert Lock.is_held(tmp_path / "absent") is False


def test_the_lock_file_can_be_read_by_others_to_name_the_owner(tmp_path):
    umask = os.umask(0o022)
    try:
        Lock.acquire(tmp_path)
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / run_dir.LOCK).stat().st_mode) == 0o644
    Lock.release(tmp_path)


def test_a_claim_makes_the_dir_and_its_parents_or_names_why_it_cannot(tmp_path):
    nested = RunDir(tmp_path / "a" / "b" / "run")
    nested.claim()
    assert (tmp_path / "a" / "b" / "run" / run_dir.LOCK).is_file()
    nested.release()
    (tmp_path / "file").write_text("")
    with pytest.raises(RecordsError) as refused:
        RunDir(tmp_path / "file" / "run").claim()
    message = f"cannot write {tmp_path / 'file' / 'run'}: Not a directory."
    assert str(refused.value).startswith(message)


def test_a_busy_dir_names_its_owner_and_the_way_out(tmp_path):
    (tmp_path / run_dir.LOCK).write_text("process 7 on elsewhere\n")
    held = os.open(tmp_path / run_dir.LOCK, os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # another open file description: as another process
    try:
        with pytest.raises(RunDirBusy) as busy:
            Lock.acquire(tmp_path)
    finally:
        os.close(held)
    assert str(busy.value) == (
        f"{tmp_path} is in use by process 7 on elsewhere: wait for it to end, or choose "
        "another hydra.run.dir (hydra.sweep.dir for -m)."
    )


def test_a_file_system_without_locks_is_warned_about_and_used(tmp_path, monkeypatch, caplog):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING, logger="aeff.records.lock"):
        Lock.acquire(tmp_path)
    Lock.release(tmp_path)
    assert [r.getMessage() for r in caplog.records] == [
        f"No flock in {tmp_path} ([Errno 37] No locks available): its ownership cannot be checked."
    ]


def test_a_lock_that_cannot_be_opened_names_the_file(tmp_path):
    with pytest.raises(RecordsError, match=r"absent/\.aeff\.lock: No such file or directory\."):
        Lock.acquire(tmp_path / "absent")


def test_unreadable_records_are_named(tmp_path):
    assert run_dir.read_metadata(tmp_path) is None
    path = tmp_path / "metadata.json"
    for text, message in (
        ("[1]", f"{path} holds no JSON object: move it aside."),
        (
            '{"status": "done"}',
            f"{path} records no status aeff writes ('done', not one of running, completed, "
            "diverged, failed, interrupted): move it aside.",
        ),
        (
            "{",
            f"{path} is unreadable (JSONDecodeError: Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1)): move it aside, or choose another "
            "hydra.run.dir.",
        ),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError) as refused:
            run_dir.read_metadata(tmp_path)
        assert str(refused.value) == message


def test_the_latest_checkpoint_is_the_highest_numbered_step_dir(tmp_path):
    assert run_dir.latest_checkpoint_step(tmp_path / "absent") is None
    assert run_dir.latest_checkpoint_step(tmp_path) is None
    for name in ("8", "12", "tmp", "3"):
        (tmp_path / name).mkdir()
    assert run_dir.latest_checkpoint_step(tmp_path) == 12


def test_the_last_step_recorded_is_that_of_the_last_whole_row(tmp_path):
    metrics = tmp_path / "metrics.csv"
    assert run_dir.last_global_step(metrics) == -1
    metrics.write_text("global_step,x\n")
    assert run_dir.last_global_step(metrics) == -1
    metrics.write_text("global_step,x\n4,a\n9,b\n1")
    assert run_dir.last_global_step(metrics) == 9


def test_differences_name_each_key_on_either_side_with_both_values():
    assert differing({"a": 1, "b": 2}, {"b": 3, "c": 4}) == [
        "a=1 (now None)",
        "b=2 (now 3)",
        "c=None (now 4)",
    ]


def test_a_running_record_is_interrupted_only_when_no_process_holds_it(tmp_path):
    (tmp_path / "metrics.csv").write_text("global_step\n7\n")
    assert run_dir.status_of(tmp_path, {"status": "completed", "global_step": 7}) == "completed"
    assert run_dir.status_of(tmp_path, {"status": "running"}) == "interrupted"
    (tmp_path / run_dir.LOCK).write_text("")
    assert run_dir.status_of(tmp_path, {"status": "running"}) == "interrupted"


def test_an_attempt_is_decided_by_the_record_the_checkpoint_and_the_settings(tmp_path):
    owner = RunDir(tmp_path)
    assert owner.attempt({}, 5, True, False) == Attempt(rng_seed=5)
    assert owner.attempt({}, 5, False, True) == Attempt(rng_seed=5)
    (tmp_path / "metadata.json").write_text(json.dumps({"status": "failed", "attempt": 3}))
    assert owner.attempt({}, 5, True, False) == Attempt(4, 5, move_aside=True)
    with pytest.raises(ConfigError, match="holds an earlier trial: add resume=true"):
        owner.attempt({}, 5, False, False)
    with pytest.raises(ConfigError, match="holds records: resume it with logging=default"):
        RunDir(tmp_path, write_records=False).attempt({}, 5, True, False)
    (tmp_path / "metadata.json").write_text(json.dumps({"status": "diverged", "global_step": 5}))
    (tmp_path / "metrics.csv").write_text("global_step\n5\n")
    with pytest.raises(ConfigError, match="ended diverged: nothing to resume"):
        owner.attempt({}, None, True, False)
    record = {"status": "failed", "identity": {"k": 1}, "rng_seed": 7, "attempt": 1}
    (tmp_path / "metadata.json").write_text(json.dumps(record))
    assert owner.attempt({"k": 1}, 7, True, False) == Attempt(2, 7, move_aside=True)
    with pytest.raises(ConfigError) as refused:
        owner.attempt({"k": 2}, 8, True, False)
    assert str(refused.value) == (
        f"resume=true continues only the same trial, but {tmp_path} recorded k=1 (now 2), "
        "rng_seed=7 (now 8): run with the recorded values, or choose another hydra.run.dir."
    )
    (tmp_path / "checkpoints" / "4").mkdir(parents=True)
    assert owner.attempt({"k": 1}, None, True, True) == Attempt(1, 7, checkpoint_step=4)
    with pytest.raises(
        ConfigError, match=r"checkpoint of step 4: resume it with checkpoint\.enabled=true"
    ):
        owner.attempt({"k": 1}, None, True, False)
    with pytest.raises(ConfigError, match="holds an earlier trial"):
        owner.attempt({"k": 1}, None, False, True)
    (tmp_path / "metadata.json").unlink()
    with pytest.raises(ConfigError) as unchecked:
        owner.attempt({"k": 1}, None, True, True)
    assert str(unchecked.value) == (
        f"{tmp_path} holds a checkpoint but no metadata.json (logging=off?), so which trial it "
        "holds cannot be checked: start afresh in another dir."
    )
    with pytest.raises(ConfigError) as earlier:  # a checkpoint alone is an earlier trial
        owner.attempt({"k": 1}, None, False, True)
    assert str(earlier.value) == (
        f"{tmp_path} holds an earlier trial: add resume=true to continue it, or choose "
        "another hydra.run.dir."
    )


def test_after_a_kill_between_moving_aside_and_the_next_record_the_newest_aside_goes_on(tmp_path):
    owner = RunDir(tmp_path)
    (tmp_path / ".attempts" / "notes").mkdir(parents=True)
    assert owner.attempt({}, 5, True, False) == Attempt(rng_seed=5)  # nothing numbered aside
    for number, attempt in (("0", 0), ("2", 2)):
        (tmp_path / ".attempts" / number).mkdir()
        record = {"status": "failed", "identity": {}, "rng_seed": 3, "attempt": attempt}
        (tmp_path / ".attempts" / number / "metadata.json").write_text(json.dumps(record))
    # The newest one aside is continued, and not moved aside again.
    assert owner.attempt({}, None, True, False) == Attempt(3, 3)


def test_an_earlier_attempt_is_moved_aside_whole(tmp_path, caplog):
    for name in ("metadata.json", "metrics.csv", "packages.txt", "config_resolved.yaml"):
        (tmp_path / name).write_text(name)
    for name in ("submission.py", "workload.py", "search_space.json", "notes.txt", "aeff.log"):
        (tmp_path / name).write_text(name)
    (tmp_path / "checkpoints" / "3").mkdir(parents=True)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("old")
    owner = RunDir(tmp_path)
    owner.claim()
    with caplog.at_level(logging.INFO, logger="aeff.records.run_dir"):
        owner.begin(Attempt(2, move_aside=True), {"identity": {}}, "cfg", None)
    aside = tmp_path / ".attempts" / "1"
    assert caplog.messages == [f"The earlier attempt's records are in {aside}."]
    assert sorted(p.name for p in aside.iterdir()) == [
        ".hydra",
        "checkpoints",
        "config_resolved.yaml",
        "metadata.json",
        "metrics.csv",
        "packages.txt",
        "search_space.json",
        "submission.py",
        "workload.py",
    ]
    assert (aside / "metrics.csv").read_text() == "metrics.csv"
    assert (aside / ".hydra" / "config.yaml").read_text() == "old"
    assert not (tmp_path / "metrics.csv").exists() and not (tmp_path / "packages.txt").exists()
    assert not (tmp_path / ".hydra").exists() and not (tmp_path / "submission.py").exists()
    assert (tmp_path / "notes.txt").exists() and (tmp_path / "aeff.log").exists()
    assert (tmp_path / "config_resolved.yaml").read_text() == "cfg"  # this attempt's
    owner.release()
    again = RunDir(tmp_path)
    again.claim()
    again.begin(Attempt(2, move_aside=True), {}, "", None)  # 1 is taken: the next free one
    assert sorted(p.name for p in (tmp_path / ".attempts").iterdir()) == ["1", "2"]
    moved = tmp_path / ".attempts" / "2"
    assert sorted(p.name for p in moved.iterdir()) == ["config_resolved.yaml", "metadata.json"]
    assert json.loads((moved / "metadata.json").read_text())["attempt"] == 2
    again.release()


def test_an_attempt_that_cannot_be_moved_aside_names_the_folder(tmp_path, monkeypatch):
    (tmp_path / "metadata.json").write_text("{}")
    owner = RunDir(tmp_path)
    owner.claim()

    def refuse(self, target):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(run_dir.Path, "rename", refuse)
    with pytest.raises(RecordsError, match=r"\.attempts/0: Permission denied"):
        owner.begin(Attempt(1, move_aside=True), {}, "", None)
    owner.release()


def test_a_resume_keeps_the_first_start_and_rows_up_to_the_checkpoint(tmp_path):
    (tmp_path / "metrics.csv").write_text("global_step,x\n4,a\n8,b\n")
    earlier = {"status": "interrupted", "identity": {}, "datetime": "T0", "attempt": 0}
    earlier["error_message"] = "stopped by SIGTERM"  # no longer true once it continues
    (tmp_path / "metadata.json").write_text(json.dumps(earlier))
    owner = RunDir(tmp_path)
    owner.claim()
    owner.begin(Attempt(0, checkpoint_step=8), {"identity": {}, "datetime": "T1"}, "", None)
    assert metadata(tmp_path)["first_datetime"] == "T0"
    assert "error_message" not in metadata(tmp_path)
    assert metadata(tmp_path)["resumed_from_step"] == 8
    assert (tmp_path / "metrics.csv").read_text() == "global_step,x\n4,a\n8,b\n"
    assert not (tmp_path / ".attempts").exists()  # nothing after the checkpoint
    owner.release()


@pytest.mark.parametrize(
    ("checkpoint_step", "first"),
    [(8, "T0"), (None, "T2")],  # a second resume keeps the first start; a new start is its own
)
def test_the_first_start_is_kept_by_resumes_only(tmp_path, checkpoint_step, first):
    (tmp_path / "metrics.csv").write_text("global_step,x\n4,a\n8,b\n")
    earlier = {"status": "interrupted", "identity": {}, "first_datetime": "T0", "datetime": "T1"}
    (tmp_path / "metadata.json").write_text(json.dumps(earlier))
    owner = RunDir(tmp_path)
    owner.claim()
    owner.begin(Attempt(0, checkpoint_step=checkpoint_step), {"datetime": "T2"}, "", None)
    assert metadata(tmp_path)["first_datetime"] == first
    owner.release()


def test_a_resume_appends_in_the_columns_of_the_rows_file_and_keeps_hydras_folder(tmp_path):
    (tmp_path / "metrics.csv").write_text("global_step,x\n4,a\n")
    earlier = {"status": "interrupted", "identity": {}, "datetime": "T0"}
    (tmp_path / "metadata.json").write_text(json.dumps(earlier))
    (tmp_path / ".hydra").mkdir()
    owner = RunDir(tmp_path)
    owner.claim()
    owner.begin(Attempt(0, checkpoint_step=4), {}, "", None, {"config.yaml": "a: 2\n"})
    owner.append({"x": "b", "global_step": 8})  # another order than the file's
    assert (tmp_path / "metrics.csv").read_text() == "global_step,x\n4,a\n8,b\n"
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == "a: 2\n"
    owner.release()


def test_rows_after_a_checkpoint_go_aside_next_to_earlier_attempts(tmp_path):
    (tmp_path / ".attempts" / "0").mkdir(parents=True)  # an earlier attempt, moved aside
    (tmp_path / "metrics.csv").write_text("global_step,x\n4,a\n8,b\n")
    (tmp_path / "metadata.json").write_text(json.dumps({"status": "running", "attempt": 1}))
    owner = RunDir(tmp_path)
    owner.claim()
    owner.begin(Attempt(1, checkpoint_step=4), {"identity": {}}, "", None)
    aside = tmp_path / ".attempts" / "1.rows_after_step_4.csv"
    assert aside.read_text() == "global_step,x\n8,b\n"
    assert (tmp_path / "metrics.csv").read_text() == "global_step,x\n4,a\n"
    owner.release()


def test_a_resume_cut_keeps_every_value_as_written(tmp_path):
    path = tmp_path / "metrics.csv"
    for step in (4, 8):
        files.append_csv_row(
            path, ["global_step", "meta.note"], {"global_step": step, "meta.note": "a\rb\r\nc"}
        )
    (tmp_path / "metadata.json").write_text(json.dumps({"status": "interrupted", "attempt": 0}))
    owner = RunDir(tmp_path)
    owner.claim()
    owner.begin(Attempt(0, checkpoint_step=4), {"identity": {}}, "", None)
    assert run_dir.read_rows(path) == (["global_step", "meta.note"], [["4", "a\rb\r\nc"]])
    owner.release()


def test_an_earlier_step_is_refused_naming_the_rows_file(owner):
    owner.append({"global_step": 8, "x": 1})
    owner.append({"global_step": 8, "x": 1})  # handed out again after a signal: skipped
    with pytest.raises(RecordsError, match=r"metrics\.csv: step 4 was recorded already"):
        owner.append({"global_step": 4, "x": 1})
    assert len(run_dir.read_rows(owner.path / "metrics.csv")[1]) == 1


def test_a_finished_record_without_its_last_step_is_damaged(tmp_path):
    """A `completed` record always names the step of its last row; one that does not was
    edited, and its rows cannot be checked."""
    (tmp_path / "metrics.csv").write_text("global_step\n7\n")
    for step in (None, "7", 6):
        record = {"status": "completed", **({} if step is None else {"global_step": step})}
        assert run_dir.status_of(tmp_path, record) == run_dir.DAMAGED
    assert run_dir.damage(tmp_path, {"status": "completed"}) == (
        f"{tmp_path / 'metadata.json'} says the trial completed but records no last step "
        "(global_step: None): it was edited since. resume=true trains the trial again (the "
        "damaged records go to .attempts/)."
    )


@pytest.mark.parametrize("written", ["whole", "torn", "nothing"])
def test_a_row_whose_append_a_signal_cut_short_is_in_the_file_once(owner, monkeypatch, written):
    """SIGTERM as a row is appended: after its write reached the file (before the owner
    noted it), amid the write, or before it. The runner hands the row out again; it is then
    in the file once, whole. (Seen in a vectorized sweep signalled as its first rows were
    written: step 20 twice.)"""
    owner.begin(Attempt(), {}, "", None)
    owner.append({"global_step": 10, "x": 0})
    append = run_dir.append_csv_row

    def cut_short(path, columns, row):
        monkeypatch.setattr(run_dir, "append_csv_row", append)  # once
        if written == "whole":
            append(path, columns, row)
        elif written == "torn":
            with path.open("a") as rows:
                rows.write("20,")
        raise TrialInterrupted(signal.SIGTERM)

    monkeypatch.setattr(run_dir, "append_csv_row", cut_short)
    with pytest.raises(TrialInterrupted):
        owner.append({"global_step": 20, "x": 1})
    owner.append({"global_step": 20, "x": 1})  # handed out again on the way out
    owner.append({"global_step": 40, "x": 2})
    rows = [["10", "0"], ["20", "1"], ["40", "2"]]
    assert run_dir.read_rows(owner.path / "metrics.csv")[1] == rows


def test_rows_from_step_0_on_are_recorded(owner):
    """Step 0: a signal before the first launch still gets its row."""
    owner.begin(Attempt(), {}, "", None)
    for step in (0, 1):
        owner.append({"global_step": step, "x": step})
    assert run_dir.read_rows(owner.path / "metrics.csv")[1] == [["0", "0"], ["1", "1"]]


def test_an_unreadable_rows_file_is_named_with_the_reason(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("global_step,x\n4\n")
    with pytest.raises(ConfigError) as error:
        run_dir.read_rows(path)
    assert str(error.value) == (
        f"{path} is unreadable (ValueError: a row of 1 fields under 2 columns): move it "
        "aside, or choose another hydra.run.dir."
    )
