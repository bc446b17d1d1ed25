"""Decisions: the multiplicity family, adjusted p-values (Holm, ...) and the words of every
estimate row: verdicts for the family ("better", "equivalent (PI within margin)", ...),
descriptions ("unadjusted: ...") for the rest. Turns raw rows into the estimates and
equivalence tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.stats.analysis_result import (
    EQUIVALENCE_COLUMNS,
    ESTIMATE_COLUMNS,
    SENSITIVITY_VERDICT,
)
from bnstudy.stats.findings import Findings, label
from bnstudy.stats.imputation import ITT, OK_ONLY
from bnstudy.stats.inference import adjust, unadjusted_words, verdict
from bnstudy.stats.tuning import FIXED

#: The fewest degrees of freedom (G - p) behind tau^2 for the verdict "equivalent (PI within
#: margin)". With fewer conditions REML often puts tau^2 at 0 although the effect varies,
#: the interval collapses to the CI, and the claim about every condition is made too often:
#: with condition effects spread over +-0.8 pp (margin 0.5 pp, 10 seeds), the PI landed
#: inside the margin in 7-10% of 12-condition analyses, 2-3% with 24 and 1% with 48
#: (tests/stats/test_stats_prediction.py, benchmarks/simulate_coverage.txt). The interval is
#: reported whatever the number of conditions.
PI_CLAIM_MIN_DF = 19


def decide(
    rows: Sequence[dict[str, Any]],
    correction: str,
    family: str,
    alpha: float,
    directions: Mapping[str, str],
    primary_estimand: str = FIXED,
) -> tuple[pd.DataFrame, pd.DataFrame, Findings]:
    """Adjust p-values over the declared family and word every row: the estimates and
    equivalence tables, and diagnostics on prediction intervals too thin to claim.

    The family holds primary (intention-to-treat) rows of the primary estimand only: their
    overall effects, or every such estimate with family "all". Rows of the family get
    verdicts; a sensitivity row whose primary twin is in the family gets the verdict of its
    raw p-values and says it is a sensitivity check. Every other row (outside the family) is
    worded "unadjusted: ..." and never "better"/"worse".
    """
    raw = pd.DataFrame(list(rows))
    if raw.empty:
        empty = pd.DataFrame(columns=ESTIMATE_COLUMNS), pd.DataFrame(columns=EQUIVALENCE_COLUMNS)
        return (*empty, Findings())
    primary = (raw["population"] == ITT).to_numpy()
    in_rule = (raw["estimand"] == primary_estimand).to_numpy() & (
        (raw["scope"] == "overall").to_numpy() if family == "overall" else True
    )
    in_family = primary & in_rule
    p_adj = np.full(len(raw), np.nan)
    p_tost_adj = np.full(len(raw), np.nan)
    p_adj[in_family] = adjust(raw.loc[in_family, "p"].to_numpy(float), correction)
    p_tost_adj[in_family] = adjust(raw.loc[in_family, "p_tost"].to_numpy(float), correction)
    raw["p_adj"] = p_adj
    raw["p_tost_adj"] = p_tost_adj
    # Family rows are judged on adjusted p-values, every other row on its own.
    use_p = np.where(in_family, p_adj, raw["p"].to_numpy(float))
    use_tost = np.where(in_family, p_tost_adj, raw["p_tost"].to_numpy(float))
    words = []
    for i, r in enumerate(raw.itertuples(index=False)):
        if in_rule[i]:
            pi_claim = _pi_claim(r.pi_within_margin, r.df)
            w = verdict(r.estimate, use_p[i], use_tost[i], alpha, directions[r.metric], pi_claim)
            words.append(w + ("" if primary[i] else SENSITIVITY_VERDICT))
        else:
            w = unadjusted_words(r.estimate, use_p[i], use_tost[i], alpha, bool(r.slope))
            words.append(w + ("" if primary[i] else " (sensitivity)"))
    raw["verdict"] = words
    raw["method"] = [
        m + _method_suffix(f, first, correction, family)
        for m, f, first in zip(raw["method"], in_family, primary, strict=True)
    ]
    return (
        raw[ESTIMATE_COLUMNS].reset_index(drop=True),
        raw[EQUIVALENCE_COLUMNS].reset_index(drop=True),
        _thin_prediction_notes(raw, in_family),
    )


def _thin_prediction_notes(raw: pd.DataFrame, in_family: np.ndarray) -> Findings:
    """Say where a family row's prediction interval lies inside the margin but rests on too
    few conditions for the claim (:data:`PI_CLAIM_MIN_DF`)."""
    notes = []
    for i, r in enumerate(raw.itertuples(index=False)):
        if in_family[i] and r.pi_within_margin is True and not _pi_claim(True, r.df):
            message = (
                f"the prediction interval lies inside +-{r.margin:g}, but tau^2 rests on "
                f"{r.df:g} degrees of freedom (fewer than {PI_CLAIM_MIN_DF}): too few "
                "conditions to claim equivalence in every condition"
            )
            where = label(r.scope, ITT, r.estimand)
            notes.append(Findings.note(r.metric, r.variant, where, "info", message))
    return Findings.concat(notes)


def _pi_claim(pi_within_margin: Any, df: float) -> bool:
    """Whether a row supports "equivalent (PI within margin)" (see :data:`PI_CLAIM_MIN_DF`)."""
    inside = isinstance(pi_within_margin, bool | np.bool_) and bool(pi_within_margin)
    return inside and df >= PI_CLAIM_MIN_DF


def _method_suffix(in_family: bool, primary: bool, correction: str, family: str) -> str:
    if in_family:
        return f"; {correction} over family '{family}'"
    if primary:
        return "; unadjusted, outside the multiplicity family: a description, not a verdict"
    return f"; unadjusted; sensitivity analysis ({OK_ONLY}), not part of the verdict"
