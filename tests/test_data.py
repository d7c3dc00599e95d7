"""MNIST import: real IDX files are verified, bad ones refused with the file named."""

import errno
import gzip
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from aeff.workloads import mnist_data
from aeff.workloads.mnist import MnistWorkload
from aeff.workloads.mnist_data import IDX_FILES, DataError, load_mnist, read_idx_dir

# From the dataset's README: label counts of the train and test splits.
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def idx_copy(tmp_path, mnist_idx_dir):
    for name in IDX_FILES:
        shutil.copy(mnist_idx_dir / f"{name}.gz", tmp_path)
    return tmp_path


def test_real_files_decode_to_the_known_shapes_and_labels(mnist_idx_dir):
    arrays = read_idx_dir(mnist_idx_dir)
    assert arrays.train_images.shape == (60000, 28, 28)
    assert arrays.test_images.shape == (10000, 28, 28)
    assert np.bincount(arrays.train_labels).tolist() == TRAIN_LABEL_COUNTS
    assert np.bincount(arrays.test_labels).tolist() == TEST_LABEL_COUNTS


def test_raw_files_are_accepted(idx_copy):
    name = "t10k-labels-idx1-ubyte"
    (idx_copy / name).write_bytes(gzip.decompress((idx_copy / f"{name}.gz").read_bytes()))
    (idx_copy / f"{name}.gz").unlink()
    assert np.bincount(read_idx_dir(idx_copy).test_labels).tolist() == TEST_LABEL_COUNTS


def test_missing_file_is_named(idx_copy):
    (idx_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\(\.gz\) is missing"):
        read_idx_dir(idx_copy)


def test_truncated_file_is_named(idx_copy):
    path = idx_copy / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is unreadable, truncated"):
        read_idx_dir(idx_copy)


def test_altered_file_is_refused(idx_copy):
    path = idx_copy / "train-images-idx3-ubyte.gz"
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[5000] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(content), compresslevel=1))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz does not match the sha256"):
        read_idx_dir(idx_copy)


def test_wrong_file_is_refused(idx_copy):
    shutil.copy(idx_copy / "t10k-labels-idx1-ubyte.gz", idx_copy / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz does not match"):
        read_idx_dir(idx_copy)


def test_no_idx_files_and_nothing_prepared_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_data, "bundled_idx_dir", lambda: tmp_path / "none")
    with pytest.raises(DataError) as error:
        load_mnist(tmp_path / "data", None)
    assert "is missing from" in str(error.value) and "workload.idx_dir=" in str(error.value)


def test_a_data_dir_that_cannot_be_made_is_named_with_the_way_out(tmp_path, monkeypatch):
    """An OSError while preparing (a folder it cannot make, a full disk) is one line."""
    (tmp_path / "file").write_text("")
    data_dir = tmp_path / "file" / "data"  # below a file: no folder can be made there
    with pytest.raises(DataError) as error:
        mnist_data.load_mnist(data_dir, None)
    assert str(error.value) == (
        f"cannot prepare MNIST in {data_dir}: Not a directory ({data_dir / 'mnist' / '3.0.1'}). "
        "Choose a folder you can write as workload.data_dir, or free space."
    )

    def full_disk(path, data):  # a write's error names no file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(mnist_data, "_write_atomically", full_disk)
    with pytest.raises(DataError, match=r"in \S+/data: No space left on device\. Choose"):
        mnist_data.load_mnist(tmp_path / "data", None)


def test_bad_files_are_refused_before_anything_is_written(tmp_path, idx_copy):
    (idx_copy / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
        load_mnist(tmp_path / "data", idx_copy)
    assert not (tmp_path / "data").exists()


@pytest.mark.slow  # a process of its own
def test_a_first_run_prepares_mnist_without_tensorflow(tmp_path):
    code = (
        "import sys; from aeff.workloads.mnist import MnistWorkload;"
        "s = MnistWorkload(data_dir=sys.argv[1]).load_splits();"
        "print(len(s.train.labels), len(s.validation.labels), len(s.test.labels),"
        " 'tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, tmp_path], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["50000", "10000", "10000", "False"]
    assert (tmp_path / "mnist" / "3.0.1" / mnist_data.CACHE_NAME).exists()


def test_tfds_data_without_tensorflow_installed_is_one_line_with_the_way_out(tmp_path, monkeypatch):
    prepared = tmp_path / "mnist" / "3.0.1"
    prepared.mkdir(parents=True)
    (prepared / "dataset_info.json").write_text("{}")

    def no_tensorflow():
        raise ImportError("No module named 'tensorflow'")

    monkeypatch.setattr(mnist_data, "_import_tfds", no_tensorflow)
    with pytest.raises(DataError) as error:
        load_mnist(tmp_path, None)
    assert str(error.value) == (
        f"tfds's mnist is prepared in {tmp_path}; reading it needs TensorFlow: pip install "
        "'aeff[tfds]', or choose another workload.data_dir and aeff prepares MNIST from its "
        "IDX files without it."
    )


@pytest.mark.slow
def test_data_prepared_by_tfds_reads_back_as_aeff_prepares_it(tfds_data_dir, mnist_idx_dir):
    """The same examples in the same order: trials train alike on either."""
    through_tfds = load_mnist(tfds_data_dir, None)
    by_aeff = mnist_data.in_tfds_order(read_idx_dir(mnist_idx_dir))
    for name in mnist_data.MnistArrays._fields:
        np.testing.assert_array_equal(getattr(through_tfds, name), getattr(by_aeff, name))


def test_splits_are_fixed_disjoint_and_normalised(mnist_data_dir, mnist_idx_dir):
    arrays = load_mnist(mnist_data_dir, None)
    raw = read_idx_dir(mnist_idx_dir)
    for split in ("train", "test"):  # the verified files' examples, reordered

        def examples(a, split=split):
            return sorted(
                zip(
                    map(bytes, getattr(a, f"{split}_images")),
                    getattr(a, f"{split}_labels"),
                    strict=True,
                )
            )

        assert examples(arrays) == examples(raw)

    workload = MnistWorkload(data_dir=str(mnist_data_dir))
    splits = workload.load_splits()
    again = MnistWorkload(data_dir=str(mnist_data_dir)).load_splits()
    np.testing.assert_array_equal(splits.validation.inputs, again.validation.inputs)
    np.testing.assert_array_equal(splits.test.inputs[..., 0], arrays.test_images)
    np.testing.assert_allclose(
        workload.preprocess(splits.test.inputs[:1000]),
        (arrays.test_images[:1000, ..., None] / 255.0 - 0.1307) / 0.3081,
        rtol=1e-6,
        atol=1e-6,
    )

    def pixels(inputs):
        return {r.tobytes() for r in inputs[..., 0]}

    train, validation = pixels(splits.train.inputs), pixels(splits.validation.inputs)
    assert train | validation == {r.tobytes() for r in raw.train_images}
    assert len(train & validation) < 10  # MNIST repeats a handful of images


@pytest.mark.slow
def test_damaged_tfds_data_is_named_with_the_way_out(tfds_data_dir, tmp_path):
    damaged = tmp_path / "tfds"
    shutil.copytree(tfds_data_dir, damaged)
    for cached in (damaged / "mnist" / "3.0.1").glob("aeff_arrays.npz*"):
        cached.unlink()  # so the tfds files are read
    (record,) = (damaged / "mnist" / "3.0.1").glob("mnist-train.tfrecord*")
    record.write_bytes(record.read_bytes()[:100_000])
    code = "import sys; from aeff.workloads.mnist_data import load_mnist as l; l(sys.argv[1], None)"
    out = subprocess.run([sys.executable, "-c", code, damaged], capture_output=True, text=True)
    assert out.returncode != 0
    assert f"tfds's mnist in {damaged / 'mnist'} is unreadable" in out.stderr
    assert "delete that folder" in out.stderr


def test_an_idx_dir_given_once_the_data_is_prepared_is_said_to_be_unread(
    mnist_data_dir, mnist_idx_dir, caplog
):
    with caplog.at_level("WARNING", logger="aeff.workloads.mnist_data"):
        load_mnist(mnist_data_dir, mnist_idx_dir)
    assert caplog.messages == [
        f"workload.idx_dir={mnist_idx_dir} is not read: MNIST is prepared in {mnist_data_dir} "
        "already (remove that folder, or choose another workload.data_dir, to prepare it "
        "from yours)."
    ]
