"""``digits``: scikit-learn's 8x8 handwritten digits (1,797 real images shipped with it).

``sklearn.datasets.load_digits`` reads a file inside the scikit-learn package; nothing is
downloaded. The test split is a fixed stratified holdout seeded from the dataset name.
"""

from __future__ import annotations

import numpy as np

from bnstudy.data.spec import DatasetError
from bnstudy.data.splits import stratified_holdout

IMAGE_SHAPE = (1, 8, 8)
NUM_CLASSES = 10


def load_digits_split(test_fraction: float) -> dict[str, np.ndarray]:
    """x uint8 (n, 1, 8, 8) with values 0..16, y int64 (n,), train and test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetError(
            f"datasets.digits: needs scikit-learn (pip install scikit-learn): {exc}"
        ) from None
    bunch = load_digits()
    x = np.asarray(bunch.images, dtype=np.uint8).reshape(-1, *IMAGE_SHAPE)
    y = np.asarray(bunch.target, dtype=np.int64)
    test = stratified_holdout(y, test_fraction, "digits/test")
    return {"x_train": x[~test], "y_train": y[~test], "x_test": x[test], "y_test": y[test]}
