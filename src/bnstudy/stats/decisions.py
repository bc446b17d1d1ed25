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
    LEVEL,
    SENSITIVITY_VERDICT,
)
from bnstudy.stats.edges import rests_on_edge
from bnstudy.stats.findings import Findings, label
from bnstudy.stats.imputation import ITT, OK_ONLY
from bnstudy.stats.inference import EDGE_VERDICT, adjust, unadjusted_words, verdict
from bnstudy.stats.tuning import FIXED, TUNED

#: The fewest degrees of freedom (G - p) for the verdict "equivalent (PI within margin)": the
#: prediction interval's G - p - 1 must be at least 1. The number of conditions needs no
#: other guard: the claim rests on the Q-profile upper bound of tau^2 (:func:`pi_claim`),
#: which is wide when conditions are few. (It was 19: a guard against REML's tau^2 = 0 with
#: few conditions, which did not help with many: with 10% of conditions outside the margin
#: the prediction interval claimed every condition inside it in 23-29% of analyses of
#: 20-48 conditions.)
PI_CLAIM_MIN_DF = 2


def decide(
    rows: Sequence[dict[str, Any]],
    correction: str,
    family: str,
    alpha: float,
    directions: Mapping[str, str],
    primary_estimand: str = FIXED,
    edges: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, Findings]:
    """Adjust p-values over the declared family and word every row: the estimates and
    equivalence tables, and diagnostics on prediction intervals too thin to claim.

    The family holds primary (intention-to-treat) rows of the primary estimand only: their
    overall effects, or every such estimate with family "all". Rows of the family get
    verdicts; a sensitivity row whose primary twin is in the family gets the verdict of its
    raw p-values and says it is a sensitivity check. Every other row (outside the family) is
    worded "unadjusted: ..." and never "better"/"worse".

    ``edges``: :func:`bnstudy.stats.edges.tuning_edges` of every population. A tuned row
    with a verdict whose conditions (all of them for an overall, contrast or slope row; those
    at its level for a moderator level's row) rest on a level chosen at an edge of the
    tuning grid reads :data:`~bnstudy.stats.tuning.EDGE_VERDICT`, with a warning in the
    diagnostics; its family membership and adjusted p are unchanged.
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
    edge_notes = []
    for i, r in enumerate(raw.itertuples(index=False)):
        if in_rule[i]:
            claim = pi_claim(r)
            w = verdict(r.estimate, use_p[i], use_tost[i], alpha, directions[r.metric], claim)
            if note := _edge_note(edges, r):
                w = EDGE_VERDICT
                where = label(r.scope, r.population, r.estimand)
                edge_notes.append(Findings.note(r.metric, r.variant, where, "warning", note))
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
        Findings.concat([_thin_prediction_notes(raw, in_family), *edge_notes]),
    )


def _edge_note(edges: pd.DataFrame | None, row: Any) -> str:
    """Why a tuned row's verdict rests on a tuning grid edge ("" when it does not): every
    condition counts for an overall, contrast or slope row, the conditions at its level for a
    moderator level's row (:func:`bnstudy.stats.edges.rests_on_edge`)."""
    if edges is None or edges.empty or row.estimand != TUNED:
        return ""
    where = {row.moderator: row.level} if row.kind == LEVEL else {}
    return rests_on_edge(edges, row.metric, row.variant, row.population, where)


def _thin_prediction_notes(raw: pd.DataFrame, in_family: np.ndarray) -> Findings:
    """Say where a family row's prediction interval lies inside the margin but the claim about
    every condition is not made (:func:`pi_claim`)."""
    notes = []
    for i, r in enumerate(raw.itertuples(index=False)):
        if in_family[i] and _is_true(r.pi_within_margin) and not pi_claim(r):
            low, high = _claim_bounds(r)
            if r.df < PI_CLAIM_MIN_DF:
                why = f"it rests on {r.df:g} degrees of freedom (fewer than {PI_CLAIM_MIN_DF})"
            elif np.isfinite(low) and np.isfinite(high):
                why = (
                    f"with the between-condition variance at its upper confidence bound "
                    f"(Q-profile) it spans {low:.3g} to {high:.3g}"
                )
            else:
                why = "no upper confidence bound of the between-condition variance was computed"
            message = (
                f"the prediction interval lies inside +-{r.margin:g}, but {why}: too little "
                "evidence to claim equivalence in every condition"
            )
            where = label(r.scope, ITT, r.estimand)
            notes.append(Findings.note(r.metric, r.variant, where, "info", message))
    return Findings.concat(notes)


def pi_claim(row: Any) -> bool:
    """Whether an estimate row supports "equivalent (PI within margin)" (besides its TOST).

    The rule: the prediction interval (``pi_low``/``pi_high``, t on G - p - 1 df, Higgins,
    Thompson & Spiegelhalter 2009) lies inside +-margin, *and so does the same interval with
    tau^2 at its upper one-sided confidence bound* (``pi_claim_low``/``pi_claim_high``,
    :meth:`bnstudy.stats.effect_fit.EffectFit.claim_interval`: the Q-profile method, Viechtbauer
    2007), on at least :data:`PI_CLAIM_MIN_DF` degrees of freedom. The prediction interval
    alone rests on the point estimate of tau^2, which REML often puts at or near 0 although
    the effect varies. With the bound, the claim is made in at most 2% of analyses when 10%
    of conditions lie outside the margin (12-48 conditions; 5% is the target), and still in
    most analyses of precise studies where the effect is 0 everywhere
    (benchmarks/equivalence_claim_rate.txt). A row without the bound never claims.

    ``row``: a named tuple or mapping with pi_within_margin, df, margin and, optionally,
    pi_claim_low and pi_claim_high.
    """
    if not _is_true(_field(row, "pi_within_margin")):
        return False
    margin = _field(row, "margin")
    low, high = _claim_bounds(row)
    return bool(_field(row, "df") >= PI_CLAIM_MIN_DF and -margin < low < high < margin)


def _field(row: Any, name: str) -> Any:
    return row.get(name, np.nan) if isinstance(row, Mapping) else getattr(row, name, np.nan)


def _is_true(value: Any) -> bool:
    return isinstance(value, bool | np.bool_) and bool(value)


def _claim_bounds(row: Any) -> tuple[float, float]:
    values = (_field(row, "pi_claim_low"), _field(row, "pi_claim_high"))
    return tuple(float(v) if v is not None else np.nan for v in values)  # type: ignore[return-value]


def _method_suffix(in_family: bool, primary: bool, correction: str, family: str) -> str:
    if in_family:
        return f"; {correction} over family '{family}'"
    if primary:
        return "; unadjusted, outside the multiplicity family: a description, not a verdict"
    return f"; unadjusted; sensitivity analysis ({OK_ONLY}), not part of the verdict"
