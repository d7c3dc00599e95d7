"""Bad MNIST files on the command line: a clear error naming the file, before any training."""

import gzip
import shutil

import pytest
from helpers import run_aeff

from aeff.workloads.mnist_data import IDX_FILES


def truncate(path):
    path.write_bytes(path.read_bytes()[:100_000])


def alter(path):
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[5000] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(content), compresslevel=1))


def wrong_format(path):
    path.write_bytes(gzip.compress(b"label,pixel0,pixel1\n5,0,0\n"))  # a CSV, not IDX


CORRUPTIONS = {
    "missing": (lambda path: path.unlink(), "is missing"),
    "truncated": (truncate, "is unreadable, truncated"),
    "altered": (alter, "does not match the sha256"),
    "wrong_format": (wrong_format, "does not match the sha256"),
}


@pytest.mark.slow  # a process each; tests/test_data.py checks the same files in-process
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_bad_mnist_file_is_named_before_training(corruption, tmp_path, mnist_idx_dir):
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    for name in IDX_FILES:
        shutil.copy(mnist_idx_dir / f"{name}.gz", idx_dir)
    spoil, message = CORRUPTIONS[corruption]
    spoil(idx_dir / "train-images-idx3-ubyte.gz")

    out = run_aeff(
        [f"workload.idx_dir={idx_dir}", f"workload.data_dir={tmp_path / 'tfds'}", "max_steps=5"],
        tmp_path,
        timeout=120,
    )
    output = out.stdout + out.stderr
    assert out.returncode == 2
    assert "train-images-idx3-ubyte" in output and message in output
    assert "Traceback" not in output and "step " not in output  # refused before training
    assert not list(tmp_path.rglob("metrics.csv")) and not list(tmp_path.rglob("metadata.json"))
    assert not (tmp_path / "tfds").exists()
