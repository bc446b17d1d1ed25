"""bnstudy.atomic: one atomic write, one permission policy, for every file bnstudy writes."""

import os
import stat

import numpy as np
import pytest

from bnstudy.atomic import write_atomically


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path, umask_022):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    write_atomically(target, lambda f: f.write(b"new content"))
    assert target.read_bytes() == b"new content"
    assert mode(target) == 0o644  # 0666 less the umask, never mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def half_then_fail(file):
        file.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_results_caches_and_checkpoints_share_the_permission_policy(
    tmp_path, umask_022, make_trial
):
    """The store, the dataset cache and pre-trained checkpoints all write through it (they
    used three policies: 0666 less umask, chmod 0644, and mkstemp's 0600)."""
    from bnstudy.data.pool import _write_atomically
    from bnstudy.store import ResultStore

    store = ResultStore(tmp_path / "r.parquet")
    store.append({"trial_id": "a", "status": "ok", "acc": 0.5})
    store.consolidate({"protocol_name": "x"})
    _write_atomically(tmp_path / "pool.npz", {"x": np.zeros(3)})
    written = [tmp_path / "r.parquet", tmp_path / "pool.npz"]
    torch = pytest.importorskip("torch")
    from bnstudy.training.pretrain import save_checkpoint

    save_checkpoint(tmp_path / "ckpt.pt", make_trial(), {"w": torch.zeros(2)}, 0.1)
    written.append(tmp_path / "ckpt.pt")
    assert {p.name: mode(p) for p in written} == {p.name: 0o644 for p in written}
