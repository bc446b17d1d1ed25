"""The results file: durable appends, consolidation, metadata, dedupe, bad files."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from bnstudy.store import ResultStore, StoreError, read_results

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
    store.consolidate()
    assert not store.pending_dir.exists()
