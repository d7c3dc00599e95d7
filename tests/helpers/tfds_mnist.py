"""Prepare tfds's `mnist` offline from the bundled IDX files, as tfds itself would from a
download: `python tfds_mnist.py DATA_DIR`. Run in a child process, so TensorFlow never
enters the test process. Needs the `tfds` extra."""

import contextlib
import io
import sys
import tempfile
from pathlib import Path

from aeff.workloads import mnist_data
from aeff.workloads.mnist_data import IDX_FILES


def prepare(data_dir: Path) -> None:
    """tfds's own MNIST builder fed the decompressed, verified files (tfds checks the gzip
    bytes of the original mirrors, which the bundled, re-compressed copies don't match)."""
    tfds = mnist_data._import_tfds()
    arrays = mnist_data.read_idx_dir(mnist_data.bundled_idx_dir())
    with tempfile.TemporaryDirectory() as raw_dir:
        for name, array in zip(IDX_FILES, arrays, strict=True):
            _, magic, shape = IDX_FILES[name]
            header = b"".join(n.to_bytes(4, "big") for n in (magic, *shape))
            (Path(raw_dir) / name).write_bytes(header + array.tobytes())
        mnist_builder = type(tfds.builder("mnist", data_dir=str(data_dir)))

        class OfflineMnist(mnist_builder, skip_registration=True):
            name = "mnist"

            def _split_generators(self, dl_manager):
                return [
                    tfds.core.SplitGenerator(
                        name=split,
                        gen_kwargs=dict(
                            num_examples=IDX_FILES[f"{prefix}-labels-idx1-ubyte"][2][0],
                            data_path=f"{raw_dir}/{prefix}-images-idx3-ubyte",
                            label_path=f"{raw_dir}/{prefix}-labels-idx1-ubyte",
                        ),
                    )
                    for split, prefix in (("train", "train"), ("test", "t10k"))
                ]

        with contextlib.redirect_stdout(io.StringIO()):  # "Downloading and preparing ..."
            OfflineMnist(data_dir=str(data_dir)).download_and_prepare()


if __name__ == "__main__":
    prepare(Path(sys.argv[1]))
