"""A committed head study analyses to the estimates it gave before the treatment became a
protocol setting, written as ``control: hidden`` (as recorded) or as ``treatment: {factor:
head, control: hidden}``: same trials, same blocks, same numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnstudy import study
from bnstudy.results_format import PROTOCOL
from bnstudy.spec.loading import parse_protocol
from bnstudy.stats import analyze

TABLE = Path(__file__).resolve().parents[2] / "data" / "results" / "study_claim5.parquet"
#: (metric, variant) -> overall fixed estimate, CI low, CI high, as the code before
#: ``treatment:`` existed computed them from this table (pp).
BEFORE = {
    ("head_dead_frac", "hidden_bn_relu"): (-4.567464, -7.144660, -1.990268),
    ("head_dead_frac", "hidden_relu_bn"): (22.837321, 16.496403, 29.178239),
    ("balanced_acc", "hidden_bn_relu"): (4.149479, 2.546102, 5.752857),
    ("balanced_acc", "hidden_relu_bn"): (3.919792, 2.139118, 5.700465),
}


def _overall(analysis) -> dict:
    est = analysis.primary()
    est = est[est["kind"] == "overall"]
    return {(r.metric, r.variant): (r.estimate, r.ci_low, r.ci_high) for r in est.itertuples()}


@pytest.mark.skipif(not TABLE.exists(), reason="the committed study table is not here")
def test_the_short_and_the_explicit_head_treatment_give_the_committed_estimates():
    recorded = study.load_results(TABLE)
    short = study.analyze_with_protocol(recorded)
    overall = _overall(short)
    assert overall.keys() == BEFORE.keys()
    for key, numbers in BEFORE.items():
        assert overall[key] == pytest.approx(numbers, abs=1e-5), key
    text = recorded.results.metadata[PROTOCOL]
    assert "\ncontrol: hidden\n" in text
    explicit = parse_protocol(
        text.replace("\ncontrol: hidden\n", "\ntreatment: {factor: head, control: hidden}\n")
    )
    assert explicit.design() == recorded.protocol.design()
    assert [t.block_id for t in explicit.expand()] == [
        t.block_id for t in recorded.protocol.expand()
    ]
    again = analyze(recorded.results.table, explicit.design())
    assert _overall(again) == _overall(short)
