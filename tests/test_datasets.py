"""The data loaders: embedded digits, IDX directories, .npz files, and their one-line errors."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest

from dcgan_export import datasets
from dcgan_export.errors import DcganError


def write_idx(path, images, magic=2051, truncate=0, compress=False):
    header = struct.pack(">IIII", magic, len(images), 28, 28)
    data = (header + images.tobytes())[: len(header) + images.size - truncate]
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_embedded_split_is_7000_train_1000_heldout_with_labels():
    train, heldout = datasets.load("mnist-8k"), datasets.load("mnist-8k", split="heldout")
    assert train.images.shape == (7000, 28, 28) and heldout.images.shape == (1000, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels is not None
    assert set(np.unique(heldout.labels)) == set(range(10))
    raw = (datasets.embedded_dir() / "train-images-idx3-ubyte.gz").read_bytes()
    assert train.sha256 == hashlib.sha256(raw).hexdigest() == \
        "c7480abb2a021b36a448f21c3504154cac4b3a924ef8e22eace132a36148ebba"
    assert (datasets.embedded_dir() / "README.md").read_text().count("CC BY-SA 3.0") >= 1


@pytest.mark.parametrize("compress", [False, True])
def test_idx_directory_plain_or_gzipped(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    name = "train-images-idx3-ubyte" + (".gz" if compress else "")
    write_idx(tmp_path / name, images, compress=compress)
    ds = datasets.load(str(tmp_path))
    np.testing.assert_array_equal(ds.images, images)
    assert ds.labels is None


def test_npz_with_x_train(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=images, y_train=np.arange(4))
    ds = datasets.load(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(ds.images, images)
    np.savez(tmp_path / "bad.npz", images=images)
    with pytest.raises(DcganError, match="no x_train"):
        datasets.load(str(tmp_path / "bad.npz"))


@pytest.mark.parametrize("magic,truncate,message", [(2049, 0, "wrong IDX magic number 2049"),
                                                    (2051, 100, "truncated IDX file")])
def test_bad_idx_files(tmp_path, magic, truncate, message):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8), magic, truncate)
    with pytest.raises(DcganError, match=message):
        datasets.load(str(tmp_path))


def test_unknown_name_and_missing_path():
    with pytest.raises(DcganError, match="unknown data set 'cifar'.*mnist-8k"):
        datasets.load("cifar")
    with pytest.raises(DcganError, match="data path not found"):
        datasets.load("/nonexistent/dir")


def test_fashion_mnist_absent_names_the_apt_command(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "FASHION_DIR", tmp_path / "none")
    with pytest.raises(DcganError, match="apt-get install -y dataset-fashion-mnist"):
        datasets.load("fashion-mnist")


def test_full_mnist_offline_names_the_cache_path(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "MNIST_CACHE", tmp_path / "mnist.npz")

    class NoNetwork:
        class datasets:
            class mnist:
                @staticmethod
                def load_data():
                    raise OSError("URL fetch failure")

    monkeypatch.setitem(__import__("sys").modules, "keras", NoNetwork)
    with pytest.raises(DcganError, match=r"mnist\.npz is missing.*--data mnist-8k"):
        datasets.load("mnist")


def test_float_npz_pixels_in_unit_range_are_scaled_and_fractions_refused(tmp_path):
    unit = np.random.default_rng(2).random((3, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "unit.npz", x_train=unit)
    np.testing.assert_array_equal(datasets.load(str(tmp_path / "unit.npz")).images, np.rint(unit * 255).astype(np.uint8))
    np.savez(tmp_path / "frac.npz", x_train=unit * 100)
    with pytest.raises(DcganError, match=r"expected pixels in 0\.\.255"):
        datasets.load(str(tmp_path / "frac.npz"))


def test_corrupt_gzip_is_a_one_line_error(tmp_path):
    good = gzip.compress(b"\x00" * 5000)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(good[:10] + b"\xff" * 40 + good[50:])
    with pytest.raises(DcganError, match="not a valid gzip file"):
        datasets.load(str(tmp_path))


@pytest.mark.parametrize("shape,message", [
    ((65536, 65536, 2), r"65536 x 65536 x 2 = 8,589,934,592 bytes of data, more than"),  # 2^33: wraps uint32
    ((2**32 - 1, 2**32 - 1, 2**32 - 1), r"more than the 2,147,483,648"),  # ~2^96: wraps int64 (np.prod)
    ((2, 28, 28), r"truncated IDX file: header promises 2 x 28 x 28 = 1,568 bytes of data, found 784"),
    ((1, 28, 28), r"IDX file longer than its header says: header promises 1 x 28 x 28 = 784"),
])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_headers_that_lie_are_refused_before_allocating(tmp_path, shape, message, compress):
    import tracemalloc

    raw = struct.pack(">I3I", 2051, *shape) + bytes(784 * (1 if shape[0] == 2 else 2))
    name = "train-images-idx3-ubyte" + (".gz" if compress else "")
    (tmp_path / name).write_bytes(gzip.compress(raw) if compress else raw)
    tracemalloc.start()
    try:
        with pytest.raises(DcganError, match=message):
            datasets.load(str(tmp_path))
        assert tracemalloc.get_traced_memory()[1] < 20 * 2**20  # what arrives, not what the header says
    finally:
        tracemalloc.stop()


def test_a_header_that_promises_gigabytes_of_a_small_file_allocates_nothing(tmp_path):
    import tracemalloc

    (tmp_path / "train-images-idx3-ubyte").write_bytes(struct.pack(">I3I", 2051, 20000, 300, 300) + bytes(100))
    tracemalloc.start()
    try:
        with pytest.raises(DcganError, match="truncated IDX file: header promises 20000 x 300 x 300"):
            datasets.load(str(tmp_path))
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_behind_a_lying_header_is_not_inflated(tmp_path):
    # 1 GiB of zeros compresses to ~1 MB; the header says 3 images: refused after reading 2,353 bytes
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(struct.pack(">I3I", 2051, 3, 28, 28))
        for _ in range(64):
            f.write(bytes(1 << 24))
    with pytest.raises(DcganError, match="longer than its header says"):
        datasets.load(str(tmp_path))
