"""The results format: a trial's row, and the metadata that says how the rows were made.

The one place that names the results table's columns and its metadata keys. The runner
builds each row with :func:`trial_row` and the run's metadata with
:meth:`Provenance.metadata`; the store writes both (it knows the Parquet layout, not what
the keys mean); the study and the report read the metadata back with
:meth:`Provenance.read`. Standard library only: the parent, the store and the report use it
without torch, pandas or pyarrow.

A results file's metadata (``bnstudy.*`` keys in the Parquet file, prefix stripped here):

- ``protocol``, ``protocol_sha256``, ``protocol_name``: the protocol's text, its hash and the
  study's name (:data:`PROTOCOL_KEYS`: what a run records even when it trains nothing);
- ``versions``, ``machine``, ``execution``: JSON objects: bnstudy's and its libraries'
  versions; the parent's machine (platform, CPU, the devices, GPU names); the run's
  execution settings (backend, devices, slots, packing, determinism, time limit);
- ``dataset_sources``: JSON, per dataset (and ``pretraining.STAGE``) the files it is read
  from (``{"files": [{"path", "size", "mtime_ns"}, ...]}``, null for a generated dataset);
- ``plugins``, ``head_options``: JSON, only with plugins: each plugin file's hash, and the
  options each head takes (to read the results where the plugins are not installed);
- ``architecture_options``, ``metrics``: JSON, only where plugins declared them: the options
  of each plugin architecture (``{name: {option: [default, min, max, doc]}}``) and the
  metrics they registered (``{name: {direction, unit, margin, chance, scale}}``), for the
  same reason;
- ``written_at``: when the run that wrote the rows started (ISO 8601, UTC);
- ``grown_levels``: JSON, only where the run grew a tuning grid (``bnstudy.spec.grow``): per
  factor the levels added, in order, ``[{"level", "round", "where": {factor: level}}]``
  (``where``: the base condition it was added to); a protocol read back with them expands
  to their trials too.

Readers add :data:`IGNORED_ROWS` in memory (rows of trials the protocol no longer declares);
the hypotheses' registration record is :mod:`bnstudy.spec.claims`'s key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bnstudy import __version__
from bnstudy.catalogue import METRICS

if TYPE_CHECKING:  # types only: rows are built from any object with these attributes
    from bnstudy.spec.trial import Trial
    from bnstudy.training.trial_result import TrialResult

# -- metadata keys ----------------------------------------------------------------------

PROTOCOL = "protocol"
PROTOCOL_SHA256 = "protocol_sha256"
PROTOCOL_NAME = "protocol_name"
VERSIONS = "versions"
MACHINE = "machine"
EXECUTION = "execution"
DATASET_SOURCES = "dataset_sources"
PLUGINS = "plugins"
HEAD_OPTIONS = "head_options"
ARCHITECTURE_OPTIONS = "architecture_options"
METRIC_DECLARATIONS = "metrics"
WRITTEN_AT = "written_at"
GROWN_LEVELS = "grown_levels"
#: Not in the file: added by a reader that set aside rows of trials the protocol dropped.
IGNORED_ROWS = "ignored_rows"

#: The metadata keys that describe the protocol (the rest describe how rows were made).
PROTOCOL_KEYS = (PROTOCOL, PROTOCOL_SHA256, PROTOCOL_NAME)

# -- columns ----------------------------------------------------------------------------

#: Columns every results file has; a Parquet file without them was not written by bnstudy.
REQUIRED_COLUMNS = ("trial_id", "status")


def trial_row(
    trial: Trial,
    result: TrialResult,
    *,
    pretrain_checkpoint: str = "",
    packed_with: str = "",
    deterministic: bool = True,
    torch_threads: int = 1,
    timeout_s: float | None = None,
    host: str = "",
    cpu_model: str = "",
) -> dict[str, Any]:
    """The results-table row for one trial: ids, settings, outcome, metrics, detail, and how
    it ran (``pretrain_checkpoint``: the cached body it started from, "" without
    pre-training; ``packed_with``: the trial ids of its pack, "" when unpacked;
    ``deterministic``; the CPU ``torch_threads``; the run's per-trial ``timeout_s``, NaN when
    none; the ``host`` and ``cpu_model`` of the worker that trained it: CPU numbers differ
    between CPU models, and a Dask cluster's workers may differ)."""
    metrics = {name: math.nan for name in METRICS} | dict(result.metrics)
    return {
        "trial_id": trial.trial_id,
        "block_id": trial.block_id,
        "status": result.status,
        "error": result.error,
        **trial.settings(),
        **metrics,
        **{_per_class_column(k): list(v) for k, v in result.per_class.items()},
        **{f"curve_{k}": list(v) for k, v in result.curves.items()},
        "started_at": result.started_at,
        "ended_at": result.ended_at,
        "device": result.device,
        "packed_with": packed_with,
        "pretrain_checkpoint": pretrain_checkpoint,
        "deterministic": deterministic,
        "torch_threads": torch_threads,
        "timeout_s": math.nan if timeout_s is None else float(timeout_s),
        "host": host,
        "cpu_model": cpu_model,
        "bnstudy_version": __version__,
    }


def _per_class_column(key: str) -> str:
    return key if key.startswith("class_") else f"class_{key}"


# -- provenance -------------------------------------------------------------------------

#: A JSON object of the metadata as read back: its items, or the raw text when it is not
#: readable as one (an older or damaged file), or None when the file does not record it.
MetadataValue = Mapping[str, Any] | str | None


@dataclasses.dataclass(frozen=True)
class Provenance:
    """How the results were made: the metadata a run writes, and a reader reads back.

    Written by :meth:`metadata` (every JSON key as an object); read by :meth:`read`, which
    takes any file, however old: what it does not record is None.
    """

    protocol: str | None = None
    protocol_sha256: str | None = None
    protocol_name: str | None = None
    versions: MetadataValue = None
    machine: MetadataValue = None
    execution: MetadataValue = None
    dataset_sources: MetadataValue = None
    plugins: MetadataValue = None
    head_options: MetadataValue = None
    architecture_options: MetadataValue = None
    metrics: MetadataValue = None
    grown_levels: MetadataValue = None
    written_at: str | None = None
    ignored_rows: int = 0

    def metadata(self) -> dict[str, str]:
        """The file's metadata (``written_at`` now, UTC, if not set); keys left None are
        left out."""
        recorded: dict[str, str] = {}
        for key in (*_DECLARED_KEYS, DATASET_SOURCES, GROWN_LEVELS):
            if (value := getattr(self, key)) is not None:
                recorded[key] = json.dumps(value, sort_keys=key == DATASET_SOURCES)
        for key in PROTOCOL_KEYS:
            if (value := getattr(self, key)) is not None:
                recorded[key] = value
        for key in (VERSIONS, MACHINE, EXECUTION):
            recorded[key] = json.dumps(dict(getattr(self, key) or {}), sort_keys=True)
        recorded[WRITTEN_AT] = self.written_at or now_utc()
        return recorded

    @classmethod
    def read(cls, metadata: Mapping[str, str]) -> Provenance:
        """What a results file's metadata (prefix stripped) records."""
        try:
            ignored = int(metadata.get(IGNORED_ROWS, 0) or 0)
        except (TypeError, ValueError):
            ignored = 0
        return cls(
            protocol=metadata.get(PROTOCOL),
            protocol_sha256=metadata.get(PROTOCOL_SHA256),
            protocol_name=metadata.get(PROTOCOL_NAME),
            **{key: _object(metadata.get(key)) for key in _JSON_KEYS},
            written_at=metadata.get(WRITTEN_AT),
            ignored_rows=ignored,
        )


#: What plugins declared: recorded only with plugins (None otherwise).
_DECLARED_KEYS = (PLUGINS, HEAD_OPTIONS, ARCHITECTURE_OPTIONS, METRIC_DECLARATIONS)
_JSON_KEYS = (VERSIONS, MACHINE, EXECUTION, DATASET_SOURCES, *_DECLARED_KEYS, GROWN_LEVELS)


def _object(text: str | None) -> MetadataValue:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:  # JSONDecodeError
        return text
    return value if isinstance(value, dict) else text


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
