"""The cache is keyed by the source files (path, size, mtime), checked on every use, and the
files a run read are recorded with its results; a cache write that fails names the file."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import bnstudy.data as data
from bnstudy.data import (
    DatasetError,
    cache_path,
    check_dataset,
    load_pool,
    prepare_dataset,
)
from conftest import IDX_NAMES, _images, idx_bytes, py2_pickle


def _bump_mtime(path: Path) -> None:
    """A later mtime whatever the file system's clock granularity."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_a_missing_path_fails_even_when_a_pool_is_cached(cifar10_dir, tmp_path):
    prepare_dataset("cifar10", {"path": str(cifar10_dir)})
    gone = {"path": str(tmp_path / "gone")}
    for step in (check_dataset, prepare_dataset, load_pool, cache_path):
        with pytest.raises(DatasetError, match="gone: not a directory"):
            step("cifar10", gone)


def test_validate_refuses_a_missing_path_after_a_run(cifar10_dir, tmp_path):
    from bnstudy import study
    from bnstudy.spec.errors import ProtocolError
    from tiny_protocol import tiny_text

    text = tiny_text(seeds=1, imbalance_ratio=1, batch_size=8).replace(
        "dataset: synthetic", "dataset: cifar10"
    )
    text = text.replace("train_per_class: 40", "train_per_class: 5")
    protocol = tmp_path / "p.yaml"
    protocol.write_text(text + f"datasets: {{cifar10: {{path: '{cifar10_dir}'}}}}\n")
    study.load(protocol)  # builds and caches the pool
    protocol.write_text(text + f"datasets: {{cifar10: {{path: '{tmp_path / 'nowhere'}'}}}}\n")
    with pytest.raises(ProtocolError, match=r"datasets\.cifar10: .*nowhere: not a directory"):
        study.load(protocol)


def test_replaced_cifar_files_are_read_again(cifar10_dir):
    options = {"path": str(cifar10_dir)}
    before = load_pool("cifar10", options)
    labels = [c for c in range(10) for _ in range(2)]
    batch = {b"labels": labels, b"data": _images(np.random.default_rng(7), labels)}
    target = cifar10_dir / "data_batch_1"
    target.write_bytes(py2_pickle(batch))
    _bump_mtime(target)
    after = load_pool("cifar10", options)
    assert after is not before
    rows = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}  # noqa: E731
    fresh = rows(batch[b"data"])
    assert fresh <= rows(after.x_train) | rows(after.x_val)
    assert not fresh & (rows(before.x_train) | rows(before.x_val))


def test_replaced_idx_files_are_read_again_even_at_the_same_size(make_idx_dir):
    directory = make_idx_dir()
    options = {"path": str(directory)}
    before = load_pool("mnist", options)
    target = directory / IDX_NAMES["x_test"]
    size = target.stat().st_size
    target.write_bytes(idx_bytes(np.full((20, 28, 28), 7, np.uint8)))
    _bump_mtime(target)
    assert target.stat().st_size == size
    after = load_pool("mnist", options)
    assert (after.x_test == 7).all() and not (before.x_test == 7).all()


def test_source_fingerprint_lists_each_file_read(cifar10_dir, make_idx_dir, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(cifar10_dir)
    found = data.source_fingerprint("cifar10", {"path": str(link)})
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    expected = []
    for name in names:
        st = (cifar10_dir / name).stat()
        path = str((cifar10_dir / name).resolve())  # through the link: the real file
        expected.append({"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    assert found == {"files": expected}
    assert json.loads(json.dumps(found)) == found

    gz = data.source_fingerprint("mnist", {"path": str(make_idx_dir(gz=True))})
    assert [Path(f["path"]).name for f in gz["files"]] == [f"{n}.gz" for n in IDX_NAMES.values()]

    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=np.zeros((2, 1)), y_train=[0, 1], x_test=np.zeros((2, 1)), y_test=[0, 1])
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    pinned = data.source_fingerprint("npz", {"path": str(npz), "sha256": digest.upper()})
    assert pinned["sha256"] == digest and [f["path"] for f in pinned["files"]] == [str(npz)]
    for generated in ("synthetic", "mnist1d", "digits"):
        assert data.source_fingerprint(generated) is None


def test_source_fingerprint_needs_no_torch(cifar10_dir):
    code = (
        "import sys; from bnstudy.data import source_fingerprint; "
        f"print(len(source_fingerprint('cifar10', {{'path': {str(cifar10_dir)!r}}})['files'])); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["6", "False"]


def _vectors(path: Path) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x = rng.normal(size=(90, 4)).astype(np.float32) + y[:, None]
    np.savez(path, x_train=x, y_train=y, x_test=x[::10], y_test=y[::10])
    return path


def test_a_run_records_its_source_files_in_the_results_metadata(tmp_path):
    from bnstudy import study
    from bnstudy.execution import runner
    from bnstudy.spec.loading import parse_protocol
    from tiny_protocol import tiny, tiny_text

    npz = _vectors(tmp_path / "vectors.npz")
    text = tiny_text(seeds=1, imbalance_ratio=1, epochs=1, batch_size=8)
    text = text.replace("dataset: synthetic", "dataset: npz")
    text = text.replace("train_per_class: 40", "train_per_class: 20")
    text += f"datasets: {{npz: {{path: '{npz}'}}}}\n"
    protocol = parse_protocol(text, "t.yaml", known=study.known_names())
    results = tmp_path / "r.parquet"
    assert runner.run_protocol(protocol, results, jobs=1).ran == 2
    recorded = json.loads(pq.read_table(results).schema.metadata[b"bnstudy.dataset_sources"])
    st = npz.stat()
    file = {"path": str(npz.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    assert recorded == {"npz": {"files": [file]}}
    # a generated dataset has no files
    assert runner.provenance(tiny(), "cpu")["dataset_sources"] == '{"synthetic": null}'


def test_a_failed_cache_write_names_the_file(cifar10_dir, monkeypatch, _cache_in_tmp):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", disk_full)
    options = {"path": str(cifar10_dir)}
    with pytest.raises(DatasetError) as info:
        prepare_dataset("cifar10", options)
    assert str(info.value) == (
        f"{cache_path('cifar10', options)}: cannot write the dataset cache: No space left on device"
    )
    assert os.listdir(_cache_in_tmp) == []  # no temporary file left behind


def test_a_file_size_limit_is_a_one_line_error_naming_the_cache_file(tmp_path, _cache_in_tmp):
    npz = _vectors(tmp_path / "vectors.npz")
    code = (
        "import resource; from bnstudy.data import DatasetError, cache_path, prepare_dataset\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))\n"
        f"options = {{'path': {str(npz)!r}}}\n"
        "try:\n"
        "    prepare_dataset('npz', options)\n"
        "except DatasetError as exc:\n"
        "    print(cache_path('npz', options)); print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    path, message = out.stdout.splitlines()
    assert message == f"{path}: cannot write the dataset cache: File too large"
    assert os.listdir(_cache_in_tmp) == []
