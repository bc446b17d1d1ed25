"""The pre-registered hypotheses as the report's first table: one display row per judged
hypothesis, its id linking to the evidence for its metric."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from bnstudy.report.views import interval_text

#: The hypotheses table's columns, in order (``href`` is the link target of the id cell).
HYPOTHESIS_VIEW_COLUMNS = [
    "id",
    "claim",
    "test",
    "estimate [CI]",
    "PI",
    "p (Holm)",
    "verdict",
    "registration",
]


def hypotheses_view(hyp: pd.DataFrame | None, evidence: Mapping[str, str]) -> pd.DataFrame:
    """One display row per judged hypothesis (``stats.hypotheses.HYPOTHESIS_COLUMNS``), plus
    ``href``: the anchor of the evidence for its metric (``evidence`` maps metric -> anchor;
    default the estimates section). The test names the estimand ("balanced_acc (tuned
    estimand)") and, for a claim about some or every condition, ends "; in any" / "; in
    all". The p shown is the Holm-adjusted one for pre-registered hypotheses and the
    unadjusted one, marked, for exploratory ones. The verdict carries the hypothesis's note
    (which conditions decided a quantified claim; a tuning edge; why nothing was estimated),
    as the terminal's summary does."""
    if hyp is None or hyp.empty:
        return pd.DataFrame(columns=[*HYPOTHESIS_VIEW_COLUMNS, "href"])
    rows = []
    for r in hyp.itertuples(index=False):
        unit = f" {r.unit}" if r.unit else ""
        expected = r.expect
        if r.expect == "equivalent":
            expected += f" (±{r.margin:g}{unit})"
        adjusted = pd.notna(r.p_adj)
        p = r.p_adj if adjusted else r.p
        metric = f"{r.metric} ({r.estimand} estimand)"
        quantifier = f"; in {r.quantifier}" if r.quantifier != "average" else ""
        estimate = "–" if pd.isna(r.estimate) else f"{r.estimate:.3g}{unit}"
        rows.append(
            {
                "id": r.id,
                "claim": r.claim,
                # One cell for what is compared, so the verdict stays in view on a laptop.
                "test": (
                    f"{metric}: {r.variant} vs {r.control}; {r.subset}; expect {expected}"
                    + quantifier
                ),
                "estimate [CI]": (
                    estimate
                    if pd.isna(r.estimate)
                    else f"{estimate} [{interval_text(r.ci_low, r.ci_high)}]"
                ),
                "PI": interval_text(r.pi_low, r.pi_high),
                "p (Holm)": "–" if pd.isna(p) else f"{p:.3g}" + ("" if adjusted else " (unadj.)"),
                # The note says what decided the verdict: which conditions, for a claim
                # about some or every one (the estimate shown is the average's), which
                # tuning edge, or why nothing was estimated.
                "verdict": f"{r.verdict}: {r.note}" if r.note else r.verdict,
                "registration": r.registration,
                "href": evidence.get(r.metric, "estimates"),
            }
        )
    return pd.DataFrame(rows, columns=[*HYPOTHESIS_VIEW_COLUMNS, "href"])
