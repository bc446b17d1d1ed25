"""The second edition's committed tables stay whole: every protocol of protocols/study2/
whose table is committed expands (with the levels its grid grew) to exactly the trials of
that table, so re-running it trains nothing; its pre-registered hypotheses are the ones the
table registered with its first rows (the anchor: tests/test_anchors_committed.py)."""

from pathlib import Path

import pytest

from bnstudy import study
from bnstudy.spec.claims import designs, registered_hashes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "data" / "results"
STUDY2 = sorted(
    p
    for p in (ROOT / "protocols" / "study2").glob("*.yaml")
    if (RESULTS / f"study2_{p.stem}.parquet").exists()
)


@pytest.mark.parametrize("path", STUDY2, ids=lambda p: p.stem)
def test_each_protocol_expands_to_its_committed_trials(path: Path):
    table_path = RESULTS / f"study2_{path.stem}.parquet"
    protocol = study.grown_protocol(study.load(path), table_path)
    table = study.load_results(table_path).results.table
    assert set(table["trial_id"]) == {t.trial_id for t in protocol.expand()}
    assert table["trial_id"].is_unique  # one row per trial, none duplicated


@pytest.mark.parametrize("path", STUDY2, ids=lambda p: p.stem)
def test_hypotheses_are_the_registered_ones(path: Path):
    recorded = study.load_results(RESULTS / f"study2_{path.stem}.parquet")
    registered = registered_hashes(recorded.results.metadata)
    assert {d.sha256 for d in designs(study.load(path))} <= registered
