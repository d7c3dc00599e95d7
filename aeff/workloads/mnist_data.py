"""MNIST on disk: the four IDX files, checked, in tfds `mnist`'s order, cached as numpy.

The first use reads the IDX files (bundled, or `workload.idx_dir`), checks each
against its known sha256, puts the examples in the order tfds `mnist` 3.0.1 reads
them back, and saves the arrays under `<data_dir>/mnist/3.0.1/`; every later trial
loads those in a second. Only where tfds's `mnist` is already prepared in the data
dir does aeff read it through tfds, once (the `tfds` extra, which brings TensorFlow).
"""

import fcntl
import gzip
import hashlib
import importlib.resources
import io
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from aeff.errors import DataError

log = logging.getLogger(__name__)

TFDS_NAME = "mnist"
TFDS_VERSION = "3.0.1"  # tfds's MNIST builder version; its data lives in mnist/3.0.1
CACHE_NAME = "aeff_arrays.npz"

# sha256 of the decompressed content, IDX magic number and shape of each file.
IDX_FILES = {
    "train-images-idx3-ubyte": (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        2051,
        (60000, 28, 28),
    ),
    "train-labels-idx1-ubyte": (
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        2049,
        (60000,),
    ),
    "t10k-images-idx3-ubyte": (
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        2051,
        (10000, 28, 28),
    ),
    "t10k-labels-idx1-ubyte": (
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        2049,
        (10000,),
    ),
}

HOW_TO_FIX = (
    "Give aeff the four standard MNIST IDX files (.gz or raw), e.g. "
    "`workload.idx_dir=/path/to/mnist`, or point `workload.data_dir` at a folder where "
    "aeff or tfds prepared `mnist`."
)


class MnistArrays(NamedTuple):
    train_images: np.ndarray  # uint8 [60000, 28, 28]
    train_labels: np.ndarray  # uint8 [60000]
    test_images: np.ndarray  # uint8 [10000, 28, 28]
    test_labels: np.ndarray  # uint8 [10000]


def default_data_dir() -> Path:
    """tfds's own default, so data tfds prepared is found; computed without tfds."""
    return Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()


def bundled_idx_dir() -> Path:
    return Path(str(importlib.resources.files("aeff.workloads") / "mnist_idx"))


def read_idx_file(idx_dir: Path, name: str) -> np.ndarray:
    """One IDX file, checked against its known sha256 before it is trusted."""
    expected_sha, _, shape = IDX_FILES[name]
    path = idx_dir / f"{name}.gz"
    if not path.exists():
        path = idx_dir / name
    if not path.exists():
        raise DataError(f"MNIST file {name}(.gz) is missing from {idx_dir}. {HOW_TO_FIX}")
    try:
        content = path.read_bytes()
        if path.suffix == ".gz":
            content = gzip.decompress(content)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(
            f"MNIST file {path} is unreadable, truncated or not gzip data ({error}). {HOW_TO_FIX}"
        ) from None
    if hashlib.sha256(content).hexdigest() != expected_sha:
        raise DataError(
            f"MNIST file {path} does not match the sha256 of the original {name}: it is "
            f"truncated, altered or another file. {HOW_TO_FIX}"
        )
    header_bytes = 4 * (1 + len(shape))  # magic number, then one uint32 per dimension
    return np.frombuffer(content, dtype=np.uint8, offset=header_bytes).reshape(shape)


def read_idx_dir(idx_dir: Path) -> MnistArrays:
    return MnistArrays(*(read_idx_file(idx_dir, name) for name in IDX_FILES))


def load_mnist(data_dir: Path | None, idx_dir: Path | None) -> MnistArrays:
    """The MNIST arrays: from the cache, else from tfds's `mnist` where it is prepared in
    `data_dir`, else from the IDX files in `idx_dir` (default: the bundled copy).

    One process of a host prepares at a time (parallel trials on an empty data dir
    wait for the first); a cache that does not match the digest written beside it is
    rebuilt.
    """
    data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
    tfds_dir = data_dir / TFDS_NAME / TFDS_VERSION
    cache = tfds_dir / CACHE_NAME
    if (arrays := _read_cache(cache)) is not None:
        _say_unread(idx_dir, f"MNIST is prepared in {data_dir} already")
        return arrays
    key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"aeff-mnist-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (arrays := _read_cache(cache)) is not None:
            return arrays  # another process prepared it meanwhile
        if (tfds_dir / "dataset_info.json").exists():
            _say_unread(idx_dir, f"tfds's mnist is prepared in {data_dir}")
            arrays = _read_through_tfds(data_dir)
        else:
            source = Path(idx_dir).expanduser() if idx_dir else bundled_idx_dir()
            log.info("Preparing MNIST once from the IDX files in %s", source)
            arrays = in_tfds_order(read_idx_dir(source))
        try:
            _save_atomically(cache, arrays)
        except OSError as error:  # a folder it cannot make or write, a full disk
            where = f" ({error.filename})" if error.filename else ""
            raise DataError(
                f"cannot prepare MNIST in {data_dir}: {error.strerror or error}{where}. "
                "Choose a folder you can write as workload.data_dir, or free space."
            ) from None
    log.info("MNIST is ready in %s; later trials load it in a second.", cache)
    return arrays


def in_tfds_order(arrays: MnistArrays) -> MnistArrays:
    """The examples in the order tfds `mnist` 3.0.1 stores and reads them back.

    tfds keys example i by i and writes examples sorted by the md5 of the split's
    name followed by str(i) (tensorflow_datasets/core/hashing.py, salt = split name),
    so data prepared here and data prepared by tfds train alike, example for example.
    """

    def order(split: str, count: int) -> np.ndarray:
        salted = hashlib.md5(split.encode())

        def digest(i: int) -> bytes:
            md5 = salted.copy()
            md5.update(str(i).encode())
            return md5.digest()

        return np.array(sorted(range(count), key=digest))

    train = order("train", len(arrays.train_labels))
    test = order("test", len(arrays.test_labels))
    return MnistArrays(
        arrays.train_images[train],
        arrays.train_labels[train],
        arrays.test_images[test],
        arrays.test_labels[test],
    )


def _say_unread(idx_dir: Path | None, because: str) -> None:
    if idx_dir is not None:
        log.warning(
            "workload.idx_dir=%s is not read: %s (remove that folder, or choose another "
            "workload.data_dir, to prepare it from yours).",
            idx_dir,
            because,
        )


def _read_cache(cache: Path) -> MnistArrays | None:
    """The cached arrays, or None when there are none or they are not what was written."""
    digest = Path(f"{cache}.sha256")
    if not cache.exists():
        return None
    try:
        data = cache.read_bytes()
        if not digest.exists():
            raise ValueError(f"no {digest.name} beside it")
        if digest.read_text().strip() != hashlib.sha256(data).hexdigest():
            raise ValueError(f"it does not match {digest.name}, written with it")
        with np.load(io.BytesIO(data)) as arrays:
            return MnistArrays(**{k: arrays[k] for k in MnistArrays._fields})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        log.warning("The MNIST cache %s is unusable (%s); preparing it again.", cache, error)
        return None


def _read_through_tfds(data_dir: Path) -> MnistArrays:
    """tfds's prepared `mnist`, read once with TensorFlow (the `tfds` extra)."""
    try:
        tfds = _import_tfds()
    except ImportError:
        raise DataError(
            f"tfds's mnist is prepared in {data_dir}; reading it needs TensorFlow: "
            "pip install 'aeff[tfds]', or choose another workload.data_dir and aeff prepares "
            "MNIST from its IDX files without it."
        ) from None
    builder = tfds.builder(TFDS_NAME, data_dir=str(data_dir))
    try:
        splits = {
            split: tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
            for split in ("train", "test")
        }
    except Exception as error:  # TensorFlow's DataLossError for a truncated file, say
        raise DataError(
            f"tfds's mnist in {data_dir / TFDS_NAME} is unreadable ({type(error).__name__}): "
            "delete that folder and run again to prepare it afresh."
        ) from None
    return MnistArrays(
        train_images=splits["train"]["image"][..., 0],
        train_labels=splits["train"]["label"].astype(np.uint8),
        test_images=splits["test"]["image"][..., 0],
        test_labels=splits["test"]["label"].astype(np.uint8),
    )


def _import_tfds():
    """tensorflow_datasets, with TensorFlow kept off every GPU and quiet."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # else it logs that oneDNN is on
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tf.config.set_visible_devices([], "GPU")
    tfds.disable_progress_bar()
    return tfds


def _save_atomically(path: Path, arrays: MnistArrays) -> None:
    """The arrays, then the sha256 of the file beside it (`<cache>.sha256`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays._asdict())
    data = buffer.getvalue()
    _write_atomically(path, data)
    _write_atomically(Path(f"{path}.sha256"), hashlib.sha256(data).hexdigest().encode())


def _write_atomically(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
