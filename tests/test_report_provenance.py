"""The report's provenance names the machines the trials ran on and the plugins' hashes."""

from __future__ import annotations

import json

import pandas as pd

from bnstudy.report import views


def test_provenance_counts_trials_per_worker_machine_and_lists_plugins():
    rows = pd.DataFrame(
        {
            "host": ["node1", "node1", "node2", None],
            "cpu_model": ["EPYC 9654", "EPYC 9654", "Xeon 8480", None],
        }
    )
    metadata = {
        "plugins": json.dumps({"/lab/my_heads.py": "ab" * 32}),
        "machine": json.dumps({"cpu_model": "EPYC 9654"}),
    }
    view = views.provenance(metadata, "sha", "1.0", "now", rows).set_index("what")["value"]
    assert view["trials trained on"] == (
        "node1 (EPYC 9654): 2 trials; node2 (Xeon 8480): 1 trial; "
        "not recorded (rows written before bnstudy recorded it): 1 trial"
    )
    assert view["plugins: /lab/my_heads.py"] == "ab" * 32
    assert view["machine: cpu_model"] == "EPYC 9654"


def test_a_table_from_before_hosts_were_recorded_says_so():
    view = views.provenance({}, "sha", "1.0", "now", pd.DataFrame({"seed": [0, 1]}))
    trained_on = view.set_index("what")["value"]["trials trained on"]
    assert trained_on == "not recorded (rows written before bnstudy recorded it): 2 trials"


def test_provenance_shows_the_files_each_dataset_was_read_from():
    sources = {
        "npz": {
            "files": [{"path": "/data/v.npz", "size": 12345, "mtime_ns": 1_700_000_000 * 10**9}],
            "sha256": "ef" * 32,
        },
        "synthetic": None,
        "odd": ["a shape this version does not write"],
    }
    view = views.provenance({"dataset_sources": json.dumps(sources)}, "sha", "1.0", "now")
    shown = view.set_index("what")["value"]
    assert shown["dataset files: npz"] == (
        f"/data/v.npz (12,345 bytes, modified 2023-11-14 22:13:20 UTC); sha256 {'ef' * 32}"
    )
    assert shown["dataset files: synthetic"] == "none (generated)"
    assert shown["dataset files: odd"] == "['a shape this version does not write']"
    assert "dataset files" not in views.provenance({}, "sha", "1.0", "now")["what"].str.cat()


def test_provenance_counts_trials_per_precision():
    rows = pd.DataFrame({"precision": ["fp32", "bf16", "bf16", None]})
    view = views.provenance({}, "sha", "1.0", "now", rows).set_index("what")["value"]
    assert view["trials per precision"] == "fp32: 2 trials; bf16: 2 trials"
    older = views.provenance({}, "sha", "1.0", "now", pd.DataFrame({"seed": [0]}))
    assert older.set_index("what")["value"]["trials per precision"] == "fp32: 1 trial"
