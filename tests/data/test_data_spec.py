import subprocess
import sys
from pathlib import Path

import pytest

from bnstudy.data import (
    SPECS,
    DatasetError,
    dataset_names,
    dataset_options,
    identity_options,
    input_kind,
    input_shape,
    num_classes,
    resolve_options,
)


def test_registry_names():
    assert dataset_names() == [
        "cifar10",
        "cifar100",
        "digits",
        "fashion_mnist",
        "mnist",
        "mnist1d",
        "mnist5k",
        "npz",
        "synthetic",
    ]


def test_path_only_locates_and_every_dataset_has_a_val_fraction():
    for name in SPECS:
        options = dataset_options(name)
        if "path" in options:
            assert not options["path"].identity and options["path"].required
        if name != "synthetic":
            assert options["val_fraction"].identity and options["val_fraction"].default == 0.1


def test_identity_omits_path_and_defaults():
    assert identity_options("cifar10", {"path": "~/a"}) == {}
    assert identity_options("cifar10", {"path": "/b", "val_fraction": 0.1}) == {}
    assert identity_options("cifar10", {"path": "/b", "val_fraction": 0.2}) == {"val_fraction": 0.2}
    assert identity_options("mnist1d", {"num_train": 2000}) == {"num_train": 2000}
    assert identity_options("synthetic") == {}


def test_resolve_fills_defaults_and_expands_home():
    resolved = resolve_options("mnist", {"path": "~/mnist"})
    assert resolved == {"path": Path("~/mnist").expanduser(), "val_fraction": 0.1}
    assert resolve_options("digits", {"val_fraction": 0}) == {
        "test_fraction": 0.2,
        "val_fraction": 0.0,
    }


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("cifar10", {}, r"datasets\.cifar10\.path: required"),
        ("cifar10", {"path": "x", "pth": 1}, r"unknown option 'pth'.*allowed: path, val_fraction"),
        ("mnist1d", {"num_train": "many"}, r"num_train: expected int, got 'many'"),
        ("mnist1d", {"num_train": True}, r"expected int"),
        ("mnist1d", {"num_train": 5}, r"at least 10"),
        ("digits", {"val_fraction": 0.5}, r"must be below 0\.5"),
        ("npz", {"path": "x", "layout": "nchw"}, r"'nchw' is not one of auto, nhwc, ncl, nl"),
        ("synthetic", {"val_fraction": 0.2}, r"unknown option.*allowed: task"),
        ("synthetic", {"task": -1}, r"task"),
        ("cifar", {}, r"unknown dataset 'cifar' \(did you mean 'cifar10', 'cifar100'"),
    ],
)
def test_bad_options_are_one_line_errors(name, options, message):
    with pytest.raises(DatasetError, match=message) as info:
        resolve_options(name, options)
    assert "\n" not in str(info.value)


def test_input_shapes_and_kinds():
    assert input_shape("synthetic") == (3, 16, 16) and input_kind("synthetic") == "image"
    assert input_shape("mnist1d") == (1, 40) and input_kind("mnist1d") == "signal"
    assert input_shape("digits") == (1, 8, 8)
    assert input_shape("cifar100", {"path": "anywhere"}) == (3, 32, 32)
    assert num_classes("cifar100", {"path": "anywhere"}) == 100
    assert input_shape("fashion_mnist", {"path": "anywhere"}) == (1, 28, 28)


def test_options_and_checks_import_without_torch():
    code = (
        "import sys; import bnstudy.data as d; d.check_dataset('synthetic'); "
        "d.identity_options('mnist1d', {}); d.input_kind('digits'); "
        "assert 'torch' not in sys.modules and 'mnist1d' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
