"""The results file: durable appends, consolidation, metadata, dedupe, bad files."""

from __future__ import annotations

import datetime as dt
import errno
import math
import os
import re
import stat
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bnstudy.store import ResultStore, StoreError, fcntl, read_results

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def row(trial_id: str, status: str = "ok", acc: float = 0.5, **extra) -> dict:
    return {
        "trial_id": trial_id,
        "block_id": "b" + trial_id,
        "status": status,
        "error": None if status != "failed" else "RuntimeError: boom",
        "seed": 1,
        "head": "bn",
        "imbalance_ratio": 10.0,
        "test_acc": acc,
        "class_counts": [5, 3, 1],
        "curve_train_loss": [2.0, 1.5],
        "started_at": T0,
        "ended_at": T0 + dt.timedelta(seconds=2),
        **extra,
    }


def test_round_trip_with_types_and_metadata(tmp_path: Path):
    path = tmp_path / "r.parquet"
    store = ResultStore(path)
    store.append(row("a"))
    store.append(row("b", status="failed", acc=math.nan))
    store.consolidate({"protocol": "name: x\n", "protocol_sha256": "abc"})
    assert not store.pending_dir.exists()

    table = pd.read_parquet(path)  # plain pandas reads it as is
    assert list(table["trial_id"]) == ["a", "b"]
    assert table["seed"].dtype == "int64"
    assert table["imbalance_ratio"].dtype == "float64"
    assert table.loc[1, "error"] == "RuntimeError: boom"
    assert pd.isna(table.loc[0, "error"])
    assert list(table.loc[0, "class_counts"]) == [5, 3, 1]
    assert str(table["started_at"].dt.tz) == "UTC"

    results = read_results(path)
    assert results.metadata["protocol"] == "name: x\n"
    raw = pq.read_schema(path).metadata
    assert raw[b"bnstudy.protocol_sha256"] == b"abc"


def test_pending_rows_are_visible_before_consolidation(tmp_path: Path):
    store = ResultStore(tmp_path / "r.parquet")
    store.append(row("a"))
    assert not store.path.exists()
    assert list(store.read().table["trial_id"]) == ["a"]
    assert store.finished_ids() == {"a"}


def test_a_killed_run_loses_nothing_and_duplicates_nothing(tmp_path: Path):
    path = tmp_path / "r.parquet"
    first = ResultStore(path)
    first.append(row("a"))
    first.consolidate({"protocol": "p"})
    first.append(row("b"))  # ...then the process dies before consolidating
    # A part that was folded in but not yet removed (crash between replace and unlink):
    first.append(row("a"))
    second = ResultStore(path)
    second.consolidate()
    table = read_results(path).table
    assert sorted(table["trial_id"]) == ["a", "b"]
    assert read_results(path).metadata["protocol"] == "p"


def test_failed_trials_are_not_final_and_a_retry_replaces_them(tmp_path: Path):
    store = ResultStore(tmp_path / "r.parquet")
    store.append(row("a", status="failed", acc=math.nan))
    store.append(row("b", status="diverged", acc=math.nan))
    assert store.finished_ids() == {"b"}
    store.consolidate()
    store.append(row("a", status="ok", acc=0.9))
    store.consolidate()
    table = store.read().table.set_index("trial_id")
    assert len(table) == 2
    assert table.loc["a", "status"] == "ok" and table.loc["a", "test_acc"] == 0.9


def test_new_columns_are_added_and_missing_ones_are_null(tmp_path: Path):
    store = ResultStore(tmp_path / "r.parquet")
    store.append(row("a"))
    store.append(row("b", nll=0.3))
    store.consolidate()
    table = store.read().table.set_index("trial_id")
    assert math.isnan(table.loc["a", "nll"]) and table.loc["b", "nll"] == 0.3


def test_corrupt_results_file_gives_a_one_line_error(tmp_path: Path):
    path = tmp_path / "r.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(StoreError, match=r"r\.parquet: not a readable results file") as info:
        read_results(path)
    assert "\n" not in str(info.value)


def test_missing_results_file(tmp_path: Path):
    with pytest.raises(StoreError, match="results file not found"):
        read_results(tmp_path / "none.parquet")
    assert ResultStore(tmp_path / "none.parquet").finished_ids() == set()


def test_unstorable_value_is_named(tmp_path: Path):
    with pytest.raises(StoreError, match="column 'weird'"):
        ResultStore(tmp_path / "r.parquet").append(row("a", weird=object()))


def test_a_second_writer_is_refused_while_a_run_holds_the_results(tmp_path: Path):
    with ResultStore(tmp_path / "r.parquet").writer():
        second = ResultStore(tmp_path / "r.parquet")
        with pytest.raises(StoreError, match="another bnstudy run is writing"), second.writer():
            pass
    with ResultStore(tmp_path / "r.parquet").writer():  # released afterwards
        pass


def test_stale_temporary_files_of_a_killed_write_are_cleaned_up(tmp_path: Path):
    store = ResultStore(tmp_path / "r.parquet")
    store.append(row("a"))
    (store.pending_dir / ".123-abc.parquet.xyz.tmp").write_bytes(b"half a file")
    assert list(store.read().table["trial_id"]) == ["a"]  # ignored when reading
    main_tmp = tmp_path / ".r.parquet.xyz.tmp"  # a killed write of the main table
    main_tmp.write_bytes(b"half a table")
    store.consolidate()
    assert not store.pending_dir.exists()
    assert not main_tmp.exists()


def test_a_parquet_file_from_another_tool_is_refused_in_one_line(tmp_path: Path):
    path = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)
    with pytest.raises(StoreError, match=r"other\.parquet: not a bnstudy results file"):
        read_results(path)
    with pytest.raises(StoreError, match="not a bnstudy results file"):
        ResultStore(path).finished_ids()


def test_a_directory_is_not_a_results_file(tmp_path: Path):
    """pyarrow reads a directory as one table of every file inside: two studies mixed."""
    for name in ("a", "b"):
        store = ResultStore(tmp_path / "results" / f"{name}.parquet")
        store.append(row(name))
        store.consolidate({"protocol": name})
    with pytest.raises(StoreError, match="is a directory"):
        read_results(tmp_path / "results")
    with (
        pytest.raises(StoreError, match="is a directory"),
        ResultStore(tmp_path / "results").writer(),
    ):
        pass


def test_class_counts_stay_integers_after_a_failed_row(tmp_path: Path):
    store = ResultStore(tmp_path / "r.parquet")
    store.append(row("a", status="failed", acc=math.nan, class_counts=[]))
    store.append(row("b"))
    store.consolidate()
    assert pq.read_schema(store.path).field("class_counts").type.value_type == pa.int64()


def test_a_read_while_a_run_folds_parts_in_misses_nothing(tmp_path: Path, monkeypatch):
    path = tmp_path / "r.parquet"
    store = ResultStore(path)
    store.append(row("a"))
    store.consolidate()
    store.append(row("b"))  # pending
    real_read_main = ResultStore._read_main
    folded = []

    def read_main_then_fold(self):
        main = real_read_main(self)
        if not folded:  # the running run folds "b" in right after this read
            folded.append(True)
            ResultStore(path).consolidate()
        return main

    monkeypatch.setattr(ResultStore, "_read_main", read_main_then_fold)
    assert sorted(read_results(path).table["trial_id"]) == ["a", "b"]


def test_new_metadata_is_written_even_with_no_parts_pending(tmp_path: Path):
    path = tmp_path / "r.parquet"
    store = ResultStore(path)
    store.append(row("a"))
    store.consolidate({"protocol": "old", "versions": "v1"})
    written = path.stat().st_mtime_ns
    store.consolidate({"protocol": "old"})  # nothing new: the file is left alone
    assert path.stat().st_mtime_ns == written
    store.consolidate({"protocol": "edited"})
    results = read_results(path)
    assert results.metadata == {"protocol": "edited", "versions": "v1"}
    assert list(results.table["trial_id"]) == ["a"]


def test_rows_name_their_protocol_before_any_consolidation(tmp_path: Path):
    """A first run killed before it folded anything in leaves parts that explain themselves."""
    path = tmp_path / "r.parquet"
    store = ResultStore(path)
    store.append(row("a"), {"protocol": "p", "protocol_name": "tiny", "versions": "v1"})
    store.append(row("b"), {"protocol": "p", "protocol_name": "tiny", "versions": "v1"})
    assert not path.exists()  # ...and the run is killed here
    expected = {"protocol": "p", "protocol_name": "tiny", "versions": "v1"}
    assert read_results(path).metadata == expected
    assert ResultStore(path).metadata() == expected
    ResultStore(path).consolidate({"protocol": "edited"})  # the next run folds them in
    assert read_results(path).metadata == {**expected, "protocol": "edited"}
    assert sorted(pd.read_parquet(path)["trial_id"]) == ["a", "b"]


def test_a_table_without_metadata_takes_it_from_the_newest_part(tmp_path: Path):
    """A table folded in without metadata (before runs recorded it) is filled in, never
    overridden: the table's own keys win."""
    store = ResultStore(tmp_path / "r.parquet")
    store.append(row("a"))
    store.consolidate()
    store.append(row("b"), {"protocol": "old", "protocol_name": "tiny"})
    store.append(row("c"), {"protocol": "new", "protocol_name": "tiny"})
    assert read_results(store.path).metadata == {"protocol": "new", "protocol_name": "tiny"}
    store.consolidate()
    assert read_results(store.path).metadata == {"protocol": "new", "protocol_name": "tiny"}
    store.append(row("d"), {"protocol": "newer", "written_at": "t"})
    assert read_results(store.path).metadata == {
        "protocol": "new",
        "protocol_name": "tiny",
        "written_at": "t",
    }


def test_files_get_the_mode_the_umask_allows(tmp_path: Path):
    old = os.umask(0o027)
    try:
        store = ResultStore(tmp_path / "r.parquet")
        store.append(row("a"))
        (part,) = store.pending_dir.glob("*.parquet")
        assert stat.S_IMODE(part.stat().st_mode) == 0o640
        store.consolidate({"protocol": "p"})
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o640
        os.umask(0o002)
        store.consolidate({"protocol": "edited"})  # a rewrite is a new file too
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o664
    finally:
        os.umask(old)


@pytest.mark.skipif(fcntl is None, reason="no file locks on this platform")
def test_a_symlink_to_the_results_shares_its_lock_and_stays_a_symlink(tmp_path: Path):
    real = tmp_path / "real" / "r.parquet"
    real.parent.mkdir()
    link = tmp_path / "link.parquet"
    link.symlink_to(real)
    via_link = ResultStore(link)
    via_link.append(row("a"))
    via_link.consolidate({"protocol": "p"})
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert list(read_results(real).table["trial_id"]) == ["a"]
    with (
        ResultStore(real).writer(),
        pytest.raises(StoreError, match="another bnstudy run is writing"),
        via_link.writer(),
    ):
        pass
    with via_link.writer():
        with pytest.raises(StoreError, match="another bnstudy run"), ResultStore(real).writer():
            pass
        via_link.append(row("b"))
        via_link.consolidate()
    assert link.is_symlink()
    assert sorted(read_results(link).table["trial_id"]) == ["a", "b"]
    # the lock and the pending parts live beside the real file, nothing beside the link
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.parquet", "real"]


def test_a_full_disk_is_a_one_line_error_naming_the_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "r.parquet"
    store = ResultStore(path)
    store.append(row("a"))
    store.consolidate({"protocol": "p"})
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", disk_full)
    expected = rf"{re.escape(str(path.resolve()))}: cannot write results: No space left on device"
    with pytest.raises(StoreError, match=expected) as info:
        store.append(row("b"))
    assert "\n" not in str(info.value)
    assert store.pending_count() == 0
    with pytest.raises(StoreError, match=expected):
        store.consolidate({"protocol": "edited"})  # a metadata change rewrites the table
    assert path.read_bytes() == before  # the old table is intact
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no half-written file left behind


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("seed", 2**64, "18446744073709551616"),
        ("seed", -(2**63) - 1, "-9223372036854775809"),
        ("class_counts", [1, 2**70], "1180591620717411303424"),
        ("head", "bn\udc80", "bn"),
    ],
)
def test_a_value_the_file_cannot_hold_is_named_with_its_column(
    tmp_path: Path, column, value, shown
):
    store = ResultStore(tmp_path / "r.parquet")
    with pytest.raises(StoreError, match=rf"r\.parquet: column '{column}': .*{shown}") as info:
        store.append(row("a", **{column: value}))
    assert "\n" not in str(info.value)
    assert not store.exists()
