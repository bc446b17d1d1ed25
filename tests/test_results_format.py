"""The results format: the metadata a run writes reads back the same, and any file's reads."""

from __future__ import annotations

import json

from bnstudy import results_format as fmt
from bnstudy.results_format import Provenance


def test_provenance_written_reads_back_the_same():
    written = Provenance(
        protocol="name: t\n",
        protocol_sha256="ab" * 32,
        protocol_name="t",
        versions={"bnstudy": "1.0", "torch": "2.5"},
        machine={"cpu_model": "EPYC", "device": "cpu"},
        execution={"backend": "loky", "devices": ["cpu"]},
        dataset_sources={"synthetic": None, "npz": {"files": []}},
        plugins={"/lab/heads.py": "cd" * 32},
        head_options={"mine": {"width": 2}},
        written_at="2025-01-01T00:00:00+00:00",
    )
    metadata = written.metadata()
    assert set(metadata) == {
        fmt.PROTOCOL, fmt.PROTOCOL_SHA256, fmt.PROTOCOL_NAME, fmt.VERSIONS, fmt.MACHINE,
        fmt.EXECUTION, fmt.DATASET_SOURCES, fmt.PLUGINS, fmt.HEAD_OPTIONS, fmt.WRITTEN_AT,
    }  # fmt: skip
    assert all(isinstance(v, str) for v in metadata.values())
    assert metadata[fmt.DATASET_SOURCES] == '{"npz": {"files": []}, "synthetic": null}'
    assert Provenance.read(metadata) == written


def test_without_plugins_no_plugin_keys_and_written_at_is_now():
    metadata = Provenance(protocol="p", protocol_sha256="s", protocol_name="n").metadata()
    assert fmt.PLUGINS not in metadata and fmt.HEAD_OPTIONS not in metadata
    assert json.loads(metadata[fmt.VERSIONS]) == {} and metadata[fmt.WRITTEN_AT]
    assert {k: metadata[k] for k in fmt.PROTOCOL_KEYS} == {
        "protocol": "p", "protocol_sha256": "s", "protocol_name": "n"
    }  # fmt: skip


def test_an_old_or_damaged_file_reads_what_it_has():
    read = Provenance.read({"machine": "not json", "versions": "[1, 2]", "ignored_rows": "3"})
    assert read.machine == "not json" and read.versions == "[1, 2]"  # shown as recorded
    assert read.protocol is None and read.dataset_sources is None and read.written_at is None
    assert read.ignored_rows == 3
    assert Provenance.read({}) == Provenance()


def test_every_column_of_a_row_is_named_in_the_results_page(make_trial):
    """docs/results.md lists the results table's columns: a column added to a row (a new
    setting, ``trial_function``) without a word there is refused here."""
    import re
    from pathlib import Path

    from bnstudy.training.trial_result import TrialResult, now

    trial = make_trial(trial_function="my_trial.py:run")
    row = fmt.trial_row(trial, TrialResult.failed("", started_at=now(), device="cpu"))
    page = (Path(__file__).parents[1] / "docs" / "results.md").read_text()
    named = set(re.findall(r"`([a-z_0-9]+)\*?`", page))
    prefixes = tuple(re.findall(r"`([a-z_0-9]+)\*`", page))  # `feature_*`
    missing = [c for c in row if c not in named and not c.startswith(prefixes)]
    assert not missing, f"docs/results.md does not name the column(s) {missing}"
