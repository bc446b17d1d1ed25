import pickle

import numpy as np
import pytest

from bnstudy.data import DatasetError, check_dataset, load_pool
from bnstudy.data.cifar import RestrictedUnpickler, read_cifar, restricted_load


def test_reads_python2_batches_of_cifar10(cifar10_dir):
    data = read_cifar("cifar10", cifar10_dir)
    assert data["x_train"].shape == (100, 3, 32, 32) and data["x_train"].dtype == np.uint8
    assert data["x_test"].shape == (30, 3, 32, 32)
    assert np.bincount(data["y_train"]).tolist() == [10] * 10
    # The fixture wrote each image's label into its first (red, top-left) byte.
    assert np.array_equal(data["x_train"][:, 0, 0, 0], data["y_train"])


def test_reads_cifar100_fine_labels(cifar100_dir):
    data = read_cifar("cifar100", cifar100_dir)
    assert np.bincount(data["y_train"]).tolist() == [3] * 100
    assert data["y_test"].tolist() == list(range(100))


def test_pool_holds_out_val_and_keeps_uint8(cifar10_dir):
    pool = load_pool("cifar10", {"path": str(cifar10_dir)})
    assert pool.input_shape == (3, 32, 32) and pool.x_train.dtype == np.uint8
    assert pool.class_counts() == [9] * 10
    assert np.bincount(pool.y_val).tolist() == [1] * 10
    assert pool.mean.shape == (3,) and pool.std.shape == (3,)


@pytest.mark.parametrize(
    "payload",
    [
        b"cos\nsystem\n",
        b"cposix\nsystem\n",
        b"cbuiltins\neval\n",
        b"cnumpy\nload\n",  # numpy, but not one of the three array globals
    ],
)
def test_restricted_unpickler_refuses_other_globals_without_calling_them(tmp_path, payload):
    marker = tmp_path / "pwned"
    command = f"touch {marker}".encode()
    evil = b"\x80\x02" + payload + b"U" + bytes([len(command)]) + command + b"\x85R."
    with pytest.raises(pickle.UnpicklingError, match="is not allowed"):
        restricted_load(evil)
    assert not marker.exists()
    if payload.startswith(b"cos"):  # the same bytes really are dangerous to plain pickle
        assert isinstance(RestrictedUnpickler, type) and issubclass(
            RestrictedUnpickler, pickle.Unpickler
        )


def test_malicious_batch_file_is_a_one_line_dataset_error(cifar10_dir, tmp_path):
    marker = tmp_path / "pwned"
    command = f"touch {marker}".encode()
    (cifar10_dir / "data_batch_3").write_bytes(
        b"\x80\x02cos\nsystem\nU" + bytes([len(command)]) + command + b"\x85R."
    )
    with pytest.raises(DatasetError) as info:
        check_dataset("cifar10", {"path": str(cifar10_dir)})
    message = str(info.value)
    assert "\n" not in message and "data_batch_3" in message and "os.system" in message
    assert not marker.exists()


def test_object_dtype_arrays_are_refused():
    evil = b"\x80\x02cnumpy\ndtype\nU\x02O8K\x00K\x01\x87R."  # np.dtype("O8", 0, 1)
    with pytest.raises(pickle.UnpicklingError, match="object"):
        restricted_load(evil)


def test_missing_files_are_named_in_one_line(cifar10_dir):
    (cifar10_dir / "data_batch_3").unlink()
    (cifar10_dir / "test_batch").unlink()
    with pytest.raises(DatasetError) as info:
        check_dataset("cifar10", {"path": str(cifar10_dir)})
    message = str(info.value)
    assert message == (
        f"{cifar10_dir}: missing data_batch_3, test_batch (expected the CIFAR-10 "
        "python-version batch files data_batch_1..5, test_batch)"
    )


def test_missing_directory_and_garbage_file(tmp_path, cifar100_dir):
    with pytest.raises(DatasetError, match="not a directory.*CIFAR-100"):
        check_dataset("cifar100", {"path": str(tmp_path / "nowhere")})
    (cifar100_dir / "test").write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetError, match=r"test: not a CIFAR python-version batch file"):
        check_dataset("cifar100", {"path": str(cifar100_dir)})


def test_wrong_keys_and_shapes_are_reported(cifar10_dir):
    from conftest import py2_pickle

    (cifar10_dir / "data_batch_1").write_bytes(py2_pickle({b"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DatasetError, match=r"data_batch_1: expected a dict with keys b'data'"):
        read_cifar("cifar10", cifar10_dir)
    (cifar10_dir / "data_batch_1").write_bytes(
        py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(DatasetError, match="100 columns, expected 3072"):
        read_cifar("cifar10", cifar10_dir)
    (cifar10_dir / "data_batch_1").write_bytes(
        py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    )
    with pytest.raises(DatasetError, match=r"labels must lie in 0\.\.9"):
        read_cifar("cifar10", cifar10_dir)


def test_batches_repickled_by_python3_at_protocol_2_are_read(cifar10_dir):
    # Python 3 writes bytes at protocol 2 as _codecs.encode(str, "latin1"): the NumPy array
    # data and the byte-string keys alike.
    rng = np.random.default_rng(3)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [c for c in range(10) for _ in range(2)]
        batch = {
            b"batch_label": b"re-pickled",
            b"labels": labels,
            b"data": rng.integers(0, 256, size=(20, 3072), dtype=np.uint8),
            b"filenames": [b"img.png"] * 20,
        }
        blob = pickle.dumps(batch, protocol=2)
        assert b"c_codecs\nencode\n" in blob
        (cifar10_dir / name).write_bytes(blob)
        written[name] = batch
    data = read_cifar("cifar10", cifar10_dir)
    train = [written[f"data_batch_{i}"] for i in range(1, 6)]
    expected = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32)
    assert np.array_equal(data["x_train"], expected) and data["x_train"].dtype == np.uint8
    assert data["y_train"].tolist() == [y for b in train for y in b[b"labels"]]
    assert np.array_equal(data["x_test"].reshape(20, -1), written["test_batch"][b"data"])


def test_codecs_encode_is_allowed_for_latin1_only():
    latin1 = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00\xc3\xa9X\x06\x00\x00\x00latin1\x86R."
    assert restricted_load(latin1) == "é".encode("latin1") == pickle.loads(latin1)
    hex_codec = b"\x80\x02c_codecs\nencode\nC\x01aX\x03\x00\x00\x00hex\x86R."
    with pytest.raises(pickle.UnpicklingError, match="latin1"):
        restricted_load(hex_codec)
