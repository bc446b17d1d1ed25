import gzip
import struct

import numpy as np
import pytest

from bnstudy.data import DatasetError, check_dataset, load_pool
from bnstudy.data.idx import read_idx


@pytest.mark.parametrize("gz", [False, True])
def test_reads_plain_and_gzipped_idx(make_idx_dir, gz):
    data = read_idx("mnist", make_idx_dir(gz=gz))
    assert data["x_train"].shape == (100, 1, 28, 28) and data["x_train"].dtype == np.uint8
    assert data["y_train"].dtype == np.int64 and np.bincount(data["y_train"]).tolist() == [10] * 10
    assert data["x_test"].shape == (20, 1, 28, 28)


def test_plain_and_gz_give_the_same_pool(make_idx_dir):
    a = load_pool("fashion_mnist", {"path": str(make_idx_dir(gz=False))})
    b = load_pool("fashion_mnist", {"path": str(make_idx_dir(gz=True))})
    # Other files, so another cache (each read from its own files), holding the same images.
    assert a is not b
    for split in ("train", "val", "test"):
        assert np.array_equal(getattr(a, f"x_{split}"), getattr(b, f"x_{split}"))
        assert np.array_equal(getattr(a, f"y_{split}"), getattr(b, f"y_{split}"))
    assert a.input_shape == (1, 28, 28) and a.class_counts() == [9] * 10


def test_missing_files_named(make_idx_dir):
    directory = make_idx_dir()
    (directory / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError) as info:
        check_dataset("mnist", {"path": str(directory)})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{directory}: missing t10k-labels-idx1-ubyte (expected the MNIST")


def test_wrong_magic_number(make_idx_dir):
    directory = make_idx_dir()
    labels = directory / "train-labels-idx1-ubyte"
    raw = labels.read_bytes()
    labels.write_bytes(struct.pack(">I", 0x0803) + raw[4:])
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte: magic number 0x00000803"):
        check_dataset("mnist", {"path": str(directory)})


def test_truncated_file(make_idx_dir):
    directory = make_idx_dir(gz=True)
    images = directory / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: .* header .* implies"):
        check_dataset("mnist", {"path": str(directory)})


def test_not_gzip_and_count_mismatch(make_idx_dir):
    directory = make_idx_dir(gz=True)
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes(b"plain bytes")
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz: cannot read"):
        check_dataset("mnist", {"path": str(directory)})
    directory = make_idx_dir(gz=False, name="other")
    y = np.zeros(3, dtype=np.uint8)
    (directory / "t10k-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, 3) + y.tobytes())
    with pytest.raises(DatasetError, match="3 labels for the 20 images"):
        check_dataset("mnist", {"path": str(directory)})
