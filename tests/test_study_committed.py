"""The committed pre-registered study stays whole: every protocol of protocols/study/ expands
to exactly the trials of its committed table (a resume would run nothing), its hypotheses
are the ones the table registered (or marked exploratory in the file), and the verdicts the
README quotes for claim 3 still come out of the table."""

from pathlib import Path

import pytest

from bnstudy import study
from bnstudy.spec.claims import designs, registered_hashes

ROOT = Path(__file__).resolve().parents[1]
STUDY = sorted(
    p
    for p in (ROOT / "protocols" / "study").glob("*.yaml")
    if (ROOT / "data" / "results" / f"study_{p.stem}.parquet").exists()
)


def test_the_study_tables_are_committed():
    assert [p.stem for p in STUDY] == ["claim3", "claim4", "claim5", "claims12", "claims12_deep"]


@pytest.mark.parametrize("path", STUDY, ids=lambda p: p.stem)
def test_each_protocol_expands_to_its_committed_trials(path: Path):
    protocol = study.load(path)
    recorded = study.load_results(ROOT / "data" / "results" / f"study_{path.stem}.parquet")
    table = recorded.results.table
    assert set(table["trial_id"]) == {t.trial_id for t in protocol.expand()}
    assert len(table) == protocol.n_trials  # one row per trial, none duplicated
    registered = registered_hashes(recorded.results.metadata)
    assert registered, "the table registered its hypotheses with its first rows"
    # A hypothesis the table did not register must be one the protocol says came later.
    late = [d.id for d in designs(protocol) if d.sha256 not in registered]
    text = path.read_text()
    assert len(late) == text.count("Added after the results existed"), late
    for hypothesis_id in late:
        assert text.index("Added after the results existed") < text.index(hypothesis_id)


def test_claim3_verdicts_are_those_the_readme_quotes():
    analysis = study.analyze(ROOT / "data" / "results" / "study_claim3.parquet")
    verdicts = analysis.hypotheses.set_index("id")["verdict"].to_dict()
    assert verdicts["c3_bn_fails_more"] == "contradicted"
    assert analysis.hypotheses.set_index("id").loc["c3_bn_fails_more", "estimate"] == (
        pytest.approx(-22.5, abs=0.01)
    )
