"""``mnist1d``: the MNIST-1D benchmark (Greydanus 2020), generated offline by its package.

The ``mnist1d`` package is imported only here, lazily, when the pool is built: importing it
pulls in ``requests`` and ``matplotlib``, and its generator reseeds NumPy's and Python's global
random generators. Both global states are saved and restored around import and generation, so
building the pool leaves every other random draw of the process as it was. Its download path
is never used.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np

from bnstudy.data.spec import DatasetError

SIGNAL_SHAPE = (1, 40)
NUM_CLASSES = 10


@contextlib.contextmanager
def global_rng_preserved() -> Iterator[None]:
    """Restore NumPy's and Python's global random states on exit."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def check_mnist1d(num_train: int, num_test: int) -> None:
    if (num_train + num_test) % NUM_CLASSES:
        raise DatasetError(
            f"datasets.mnist1d: num_train + num_test = {num_train + num_test} must be a "
            f"multiple of {NUM_CLASSES} (the generator makes the same number of each class)"
        )


def generate_mnist1d(num_train: int, num_test: int, seed: int) -> dict[str, np.ndarray]:
    """x float32 (n, 1, 40), y int64 (n,), train and test, from ``mnist1d``'s generator.

    At the defaults (4000, 1000, 42) this is the published MNIST-1D split: the generator makes
    ``num_train + num_test`` signals, shuffles them and the first ``num_train`` are training.
    """
    check_mnist1d(num_train, num_test)
    with global_rng_preserved():
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError as exc:
            raise DatasetError(
                f"datasets.mnist1d: needs the mnist1d package (pip install mnist1d): {exc}"
            ) from None
        args = get_dataset_args()
        args.num_samples = num_train + num_test
        # The split is done here: with train_split 1 the generator returns every signal in
        # its shuffled order, standardised over all of them, exactly as before its own split.
        args.train_split = 1.0
        args.seed = seed
        data = make_dataset(args)
    x = np.asarray(data["x"], dtype=np.float32)[:, None, :]
    y = np.asarray(data["y"], dtype=np.int64)
    return {
        "x_train": x[:num_train],
        "y_train": y[:num_train],
        "x_test": x[num_train:],
        "y_test": y[num_train:],
    }
