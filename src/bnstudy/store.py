"""The results file: the one module that knows the Parquet layout.

``data/results/NAME.parquet`` holds one row per trial. While a run is in progress each
finished trial is first written as its own small Parquet file under ``NAME.pending/``
(written to a temporary name, fsynced, then renamed, so a part is either whole or absent);
:meth:`ResultStore.consolidate` folds the parts into the main table with one atomic
replace. A run killed at any moment therefore loses at most the trials in flight, and a
trial recorded twice (a crash between the replace and the clean-up, or a retried failure)
is deduplicated by ``trial_id``, the newest row winning.

The protocol text, its hash and the software versions live in the file's key-value
metadata under ``bnstudy.*`` keys, so a lone results file explains itself. It does so from
the first row on, whenever a run is killed: each pending part carries the run's metadata in
its own schema too, and a reader takes the main table's metadata, filling what it lacks
(no main table yet: everything) from the newest part. A run also gives every consolidation
the protocol keys, so a main table never lacks them once a run has touched it. (Chosen over
an empty main table written at start-up, which would make "a file with no row" a third state
every reader must handle, and over a sidecar file, which could be separated from the table.)
What the columns and the keys mean is :mod:`bnstudy.results_format`'s; the store keeps them.

The store works on the resolved path: a symlink to a results file shares its lock and its
pending parts, and stays a symlink (the target is replaced). Files are created like any
other file, 0666 less the umask. Every write failure (a full disk, no permission) and every
value that cannot be stored is a :class:`StoreError` that names the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bnstudy.atomic import write_atomically
from bnstudy.catalogue import FINAL_STATUSES
from bnstudy.results_format import PROTOCOL_NAME, REQUIRED_COLUMNS

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: runs are not guarded against each other
    fcntl = None

META_PREFIX = "bnstudy."


#: Columns whose type cannot be inferred from a single row (null, or an empty list in a
#: failed row, which would otherwise turn the integer counts of every row into floats).
_FIXED_TYPES = {"error": pa.string(), "class_counts": pa.list_(pa.int64())}

#: Consolidate after this many pending parts, so a long run does not pile up small files.
CONSOLIDATE_EVERY = 256


class StoreError(RuntimeError):
    """A results file that cannot be read or written; the message names the path."""


@dataclass(frozen=True)
class Results:
    """A results table with its file metadata (``bnstudy.*`` keys, prefix stripped)."""

    table: pd.DataFrame
    metadata: dict[str, str]
    path: Path


class ResultStore:
    """Durable, append-only storage of trial rows for one results file."""

    def __init__(self, path: str | Path):
        # Resolved once: the lock, the pending parts and the atomic replace all belong to the
        # real file, whichever symlink names it (a replace of the link would cut it off).
        self.path = Path(path).resolve()
        self.pending_dir = self.path.with_suffix(".pending")

    # -- writing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the write lock of this results file for the duration of a run.

        Two runs folding parts into one table at once could each replace it with their own
        view and lose the other's rows, so the second one is refused. The lock is released
        when the process ends, however it ends; the ``.lock`` file itself is harmless.
        """
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory; expected a results file (.parquet)")
        with _writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path.with_suffix(".lock"), "w")  # noqa: SIM115 - closed below
        with handle:
            if fcntl is not None:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise StoreError(
                        f"{self.path}: another bnstudy run is writing these results; "
                        "wait for it to finish or stop it"
                    ) from None
            yield

    def append(self, row: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
        """Persist one trial row; it is on disk when this returns.

        ``metadata`` (``bnstudy.*`` keys) goes with the row, so that a run killed before any
        consolidation still leaves rows that name their protocol. Raises StoreError, naming
        the file (and the column, for a value that cannot be stored), when the row cannot be
        written.
        """
        table = _row_table(self.path, row).replace_schema_metadata(_prefixed(metadata or {}))
        # Names sort in write order: a later row for the same trial (a retry) wins.
        final = self.pending_dir / f"{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.parquet"
        with _writing(self.path):
            self.pending_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(table, final, self.path)

    def consolidate(self, metadata: Mapping[str, str] | None = None) -> None:
        """Fold pending parts into the main table, with ``metadata`` (``bnstudy.*`` keys).

        With no parts pending, the main table is rewritten only if ``metadata`` changes it.
        """
        parts = self._parts()
        # The schema alone says whether the metadata changes: no full read when nothing does.
        old_meta = _user_metadata(_read_schema(self.path)) if self.path.exists() else {}
        if not parts and (not self.path.exists() or not _changes(old_meta, metadata or {})):
            return
        main = self._read_main()
        tables = [_read_parquet(p) for p in parts]
        # What the main table lacks (none yet, or written before runs recorded it) is taken
        # from the newest part, as a reader would; the caller's ``metadata`` wins over both.
        meta = {**_newest_metadata(tables), **old_meta, **(metadata or {})}
        table = _dedupe([t for t in [main] if t is not None] + tables)
        table = table.replace_schema_metadata(_prefixed(meta))
        with _writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(table, self.path, self.path)
        for part in parts:  # only after the main table holds them
            part.unlink(missing_ok=True)
        # Half-written by a killed run (only the lock holder calls this, so none is live).
        stale = [
            *self.pending_dir.glob(".*.tmp"),
            *self.path.parent.glob(f".{self.path.name}.*.tmp"),
        ]
        for path in stale:
            path.unlink(missing_ok=True)
        if self.pending_dir.is_dir() and not any(self.pending_dir.iterdir()):
            self.pending_dir.rmdir()

    def exists(self) -> bool:
        """Whether any result (consolidated or pending) has been written."""
        return self.path.exists() or bool(self._parts())

    def pending_count(self) -> int:
        return len(self._parts())

    def metadata(self) -> dict[str, str]:
        """The ``bnstudy.*`` metadata (prefix stripped) that :meth:`read` would give.

        From the schemas alone (no rows read): cheap enough to check before a run writes.
        """
        newest: dict[str, str] = {}
        if parts := self._parts():
            with contextlib.suppress(FileNotFoundError):  # folded in meanwhile: main has it
                newest = _user_metadata(_read_schema(parts[-1]))
        main = _user_metadata(_read_schema(self.path)) if self.path.exists() else {}
        return {**newest, **main}

    def check_study(self, name: str, remedy: str) -> None:
        """Raise StoreError (ending in ``remedy``) when the file holds another study's results.

        The study is the protocol name the metadata records; an edited protocol keeps its
        name, so a file written before an edit is still this study's. A file that records no
        name (none yet, or written before names were recorded) is not refused.
        """
        recorded = self.metadata().get(PROTOCOL_NAME)
        if recorded is not None and recorded != name:
            raise StoreError(
                f"{self.path}: holds results of study {recorded!r}, not {name!r}; {remedy}"
            )

    # -- reading ----------------------------------------------------------------------

    def read(self) -> Results:
        """The table as it stands, pending parts included (usable during a run)."""
        if not self.exists():
            raise StoreError(f"{self.path}: results file not found")
        for _ in range(3):
            try:
                # Parts before the main table: a run that folds parts in between has them in
                # the main table by then (read the other way round, they would be in neither).
                parts = [_read_parquet(p) for p in self._parts()]
                main = self._read_main()
                break
            except FileNotFoundError:  # a running run folded a part in meanwhile: read again
                continue
        else:
            raise StoreError(f"{self.path}: results kept changing while being read; try again")
        meta = {
            **_newest_metadata(parts),
            **(_user_metadata(main.schema) if main is not None else {}),
        }
        tables = [t for t in [main] if t is not None] + parts
        return Results(_dedupe(tables).to_pandas(), meta, self.path)

    def finished_ids(self) -> set[str]:
        """Ids of trials with a final outcome (these are skipped when a run resumes)."""
        if not self.exists():
            return set()
        table = self.read().table
        return set(table.loc[table["status"].isin(FINAL_STATUSES), "trial_id"])

    def _parts(self) -> list[Path]:
        if not self.pending_dir.is_dir():
            return []
        return sorted(self.pending_dir.glob("*.parquet"))

    def _read_main(self) -> pa.Table | None:
        return _read_parquet(self.path) if self.path.exists() else None


def read_results(path: str | Path) -> Results:
    """Read a results file (and any parts a running or killed run left pending)."""
    return ResultStore(path).read()


def is_parquet(path: str | Path) -> bool:
    """Whether ``path`` is a file that starts as a Parquet file does (its magic, ``PAR1``)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_PARQUET_MAGIC)) == _PARQUET_MAGIC
    except OSError:  # missing, a directory, no permission: the reader says which
        return False


_PARQUET_MAGIC = b"PAR1"


# -- helpers ----------------------------------------------------------------------------


def _row_table(path: Path, row: Mapping[str, Any]) -> pa.Table:
    """One row as a table, or a StoreError naming the file, the column and the value."""
    types = {k: _FIXED_TYPES.get(k) or _arrow_type(path, k, v) for k, v in row.items()}
    try:
        return pa.Table.from_pylist([dict(row)], schema=pa.schema(list(types.items())))
    except _CONVERSION_ERRORS:
        pass
    for name, value in row.items():  # which value pyarrow choked on: convert one by one
        items = list(enumerate(value)) if isinstance(value, list | tuple) else [(None, value)]
        item_type = types[name].value_type if items and items[0][0] is not None else types[name]
        for index, item in items:
            try:
                pa.array([item], type=item_type)
            except _CONVERSION_ERRORS as exc:
                raise _unstorable(path, name, index, item, exc) from None
    raise StoreError(f"{path}: cannot store the row of trial {row.get('trial_id')!r}")


#: What pyarrow raises for a value its type cannot hold (an int beyond int64, a lone surrogate).
_CONVERSION_ERRORS = (pa.ArrowException, OverflowError, ValueError, TypeError)


def _unstorable(path: Path, name: str, index: int | None, value: Any, exc: Exception) -> StoreError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    where = "" if index is None else f" at index {index}"
    if isinstance(exc, OverflowError) or "too large to fit int64" in str(exc):
        why = "an integer outside the 64-bit range"
    else:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StoreError(f"{path}: column {name!r}: cannot store the value {shown}{where} ({why})")


def _arrow_type(path: Path, name: str, value: Any) -> pa.DataType:
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    if isinstance(value, str):
        return pa.string()
    if isinstance(value, dt.datetime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(value, list | tuple):
        integral = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        return pa.list_(pa.int64() if integral and value else pa.float64())
    if value is None:
        return pa.float64()  # an undefined number; strings that may be null are in _FIXED_TYPES
    raise StoreError(
        f"{path}: column {name!r}: cannot store a value of type {type(value).__name__}"
    )


def _atomic_write(table: pa.Table, final: Path, results: Path) -> None:
    """Write ``table`` to ``final`` whole or not at all; failures name the ``results`` file."""
    with _writing(results):
        write_atomically(final, lambda file: pq.write_table(table, file))


@contextlib.contextmanager
def _writing(results: Path) -> Iterator[None]:
    """Turn an OSError (a full disk, no permission) into a one-line error naming the file."""
    try:
        yield
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise StoreError(f"{results}: cannot write results: {why}") from exc


def _read_parquet(path: Path) -> pa.Table:
    _refuse_directory(path)  # pyarrow would read every Parquet file inside as one table
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(path, exc) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise StoreError(
            f"{path}: not a bnstudy results file (columns missing: {', '.join(map(repr, missing))})"
        )
    return table


def _read_schema(path: Path) -> pa.Schema:
    _refuse_directory(path)
    try:
        return pq.read_schema(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(path, exc) from None


def _refuse_directory(path: Path) -> None:
    if path.is_dir():
        raise StoreError(f"{path}: is a directory; expected a results file (.parquet)")


def _unreadable(path: Path, exc: Exception) -> StoreError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StoreError(f"{path}: not a readable results file ({first})")


def _changes(old: Mapping[str, str], new: Mapping[str, str]) -> bool:
    """Whether ``new`` metadata says something ``old`` does not."""
    return any(old.get(k) != v for k, v in new.items())


def _dedupe(tables: Iterable[pa.Table]) -> pa.Table:
    """Concatenate and keep the last row per trial_id (tables are given oldest first)."""
    tables = [t.replace_schema_metadata(None) for t in tables]
    if not tables:
        return pa.table({})
    table = pa.concat_tables(tables, promote_options="permissive")
    if table.num_rows == 0:
        return table
    ids = table.column("trial_id").to_pylist()
    last = {trial_id: i for i, trial_id in enumerate(ids)}
    keep = sorted(last.values())
    return table.take(pa.array(keep)) if len(keep) < table.num_rows else table


def _newest_metadata(parts: list[pa.Table]) -> dict[str, str]:
    """The metadata of the newest part (parts are given oldest first), if any."""
    return _user_metadata(parts[-1].schema) if parts else {}


def _prefixed(metadata: Mapping[str, str]) -> dict[str, str]:
    return {META_PREFIX + k: v for k, v in metadata.items()}


def _user_metadata(schema: pa.Schema) -> dict[str, str]:
    raw = schema.metadata or {}
    prefix = META_PREFIX.encode()
    return {k[len(prefix) :].decode(): v.decode() for k, v in raw.items() if k.startswith(prefix)}
