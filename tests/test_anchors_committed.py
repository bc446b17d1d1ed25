"""The committed MNIST-1D anchor stays whole: its protocol expands to exactly the trials of its
committed table (a resume would train nothing), the table in protocols/anchors/README.md is
the one its script prints from that table, and every plain-head accuracy is within 3 pp of
the paper's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from bnstudy import study

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ROOT / "protocols" / "anchors"
RESULTS = ROOT / "data" / "results" / "anchor_mnist1d_paper.parquet"


def table_script():
    spec = importlib.util.spec_from_file_location(
        "anchor_table", ANCHORS / "mnist1d_paper_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_protocol_expands_to_its_committed_trials():
    protocol = study.load(ANCHORS / "mnist1d_paper.yaml")
    recorded = study.load_results(RESULTS)
    # the table records the protocol as committed: the report's description is the file's
    assert recorded.protocol.source_text == protocol.source_text
    table = recorded.results.table
    assert set(table["trial_id"]) == {t.trial_id for t in protocol.expand()}
    assert len(table) == protocol.n_trials == 30
    assert (table["status"] == "ok").all() and (table["steps_run"] == 6000).all()


def test_the_readme_quotes_the_table_and_the_plain_head_matches_the_paper():
    script = table_script()
    rows = script.summary(pd.read_parquet(RESULTS))
    readme = (ANCHORS / "README.md").read_text()
    for line in script.markdown(rows).splitlines():
        assert line in readme, line
    assert (rows["plain_minus_paper"].abs() <= script.TOLERANCE_PP).all()
    assert (rows["plain_n"] == 5).all()
