"""A read-only output folder and a disk that fills up mid-trial: a clear error, files intact.

Both run aeff inside a private mount namespace (`unshare -m`, root only) with a
read-only bind mount or a small tmpfs; they are skipped where that is not allowed.
"""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import data_overrides, run_aeff
from helpers.records import assert_records_parseable, fingerprint


def namespace_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = "mount -t tmpfs -o size=1m tmpfs /mnt"
    return subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(
    not namespace_works(), reason="needs `unshare -m` with mount rights (root)"
)


def aeff_command(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "aeff", *args])


def in_namespace(script: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["unshare", "-m", "bash", "-euc", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_only(directory: Path) -> str:
    d = shlex.quote(str(directory))
    return f"mount --bind {d} {d}; mount -o remount,bind,ro {d}; "


def test_read_only_output_folder_fails_before_anything_runs(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    out = in_namespace(f"{read_only(folder)} cd {folder}; {aeff_command('max_steps=5')}", tmp_path)
    assert out.returncode == 2
    assert "cannot write" in out.stderr and "hydra.run.dir" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list(folder.iterdir())


@pytest.mark.slow
def test_resume_into_a_read_only_run_dir_leaves_its_files_as_they_were(tmp_path, mnist_data_dir):
    run_dir = tmp_path / "run"
    args = [
        "max_steps=40",
        "eval_every_steps=20",
        f"hydra.run.dir={run_dir}",
        *data_overrides(mnist_data_dir),
    ]
    assert run_aeff(args, tmp_path).returncode == 0
    before = fingerprint(run_dir)
    out = in_namespace(f"{read_only(run_dir)} {aeff_command(*args, 'resume=true')}", tmp_path)
    assert out.returncode == 2
    assert f"cannot write {run_dir}" in out.stderr
    assert fingerprint(run_dir) == before


@pytest.mark.slow
def test_a_full_disk_mid_trial_stops_it_with_a_clear_error_and_whole_records(
    tmp_path, mnist_data_dir
):
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    command = aeff_command(
        "stop_at_target=false",
        "eval_every_steps=20",
        "checkpoint.interval_sec=0.2",
        f"hydra.run.dir={disk / 'run'}",
        *data_overrides(mnist_data_dir),
    )
    metrics = shlex.quote(str(disk / "run" / "metrics.csv"))
    script = f"""
        mount -t tmpfs -o size=16m tmpfs {disk}
        {command} > {tmp_path}/stdout 2> {tmp_path}/stderr &
        pid=$!
        until [ "$(cat {metrics} 2>/dev/null | wc -l)" -ge 4 ]; do sleep 0.05; done
        dd if=/dev/zero of={disk}/filler bs=64k 2> /dev/null || true
        status=0; wait $pid || status=$?
        echo $status > {tmp_path}/status
        rm {disk}/filler
        cp -a {disk}/run {kept}
    """
    out = in_namespace(script, tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "status").read_text().strip() == "2"
    output = (tmp_path / "stdout").read_text() + (tmp_path / "stderr").read_text()
    assert "cannot write" in output and "No space left on device" in output
    assert "intact" in output
    assert_records_parseable(kept)
    assert json.loads((kept / "metadata.json").read_text())["status"] in ("running", "failed")
    assert (kept / "metrics.csv").read_text().count("\n") >= 4
    assert "# Python packages" in (kept / "packages.txt").read_text()
