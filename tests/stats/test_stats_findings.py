"""The analysis split into steps that return their rows: the rows add up in call order, and
the names other modules import from ``bnstudy.stats.analysis`` are still there."""

import pandas as pd

import bnstudy.stats
import bnstudy.stats.analysis as analysis
from bnstudy.stats import analysis_result, decisions
from bnstudy.stats.findings import Comparison, Findings, label


def test_findings_concat_keeps_the_call_order_per_table():
    a = Findings(raw=({"i": 1},), per_condition=(pd.DataFrame({"x": [1]}),))
    b = Findings.note("m", "v", "overall", "info", "first")
    c = Findings(raw=({"i": 2},), diagnostics=({"message": "second"},))
    out = Findings.concat([a, b, c])
    assert [r["i"] for r in out.raw] == [1, 2]
    assert [r["message"] for r in out.diagnostics] == ["first", "second"]
    assert len(out.per_condition) == 1 and out.effect_sizes == ()
    assert Findings.concat([]) == Findings()


def test_comparison_labels_its_diagnostics_with_population_and_estimand():
    cmp = Comparison("acc", "bn", "plain", "ok only", "tuned", 0.95, None)
    (row,) = cmp.note("lr", "warning", "why").diagnostics
    assert row == dict(
        metric="acc", variant="bn", model="lr [ok only, tuned]", level="warning", message="why"
    )
    assert label("overall", "intention-to-treat") == "overall"


def test_names_imported_from_the_old_module_still_resolve():
    for name in (
        "Analysis",
        "analyze",
        "CONTRAST_SUFFIX",
        "SLOPE_SUFFIX",
        "SENSITIVITY_VERDICT",
        "ESTIMATE_COLUMNS",
        "EQUIVALENCE_COLUMNS",
        "PI_METHOD",
        "PI_CLAIM_MIN_DF",
        "WILCOXON_REPLACED",
    ):
        assert hasattr(analysis, name), name
    assert analysis.Analysis is analysis_result.Analysis is bnstudy.stats.Analysis
    assert analysis.analyze is bnstudy.stats.analyze
    assert analysis.PI_CLAIM_MIN_DF == decisions.PI_CLAIM_MIN_DF == 2
