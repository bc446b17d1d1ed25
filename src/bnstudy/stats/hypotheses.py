"""Pre-registered hypotheses judged: one row per hypothesis, estimate to verdict.

Each hypothesis (``design.HypothesisDesign``) is a comparison the analysis already knows how
to make, restricted to a subset of the conditions: its rows (``where``, and the two arms) are
analysed by :func:`bnstudy.stats.analysis.analyze` under the study's design with that control,
that variant and that one metric (margin from the hypothesis), and the primary
(intention-to-treat) overall estimate of the hypothesis' estimand is read off. So a
hypothesis gets exactly the model, imputation, tuning and prediction interval of the main
analysis, never a second implementation of them.

Interactions ("effect at ratio 100 minus effect at ratio 1") use the analysis' moderator
contrast: the subset is cut to the two levels, the factor is the only moderator, and the
contrast row of the paired model d ~ level + (1 | condition) is the estimate. It is preferred
over a per-seed difference-in-differences because it keeps the condition random effect (other
factors varying inside the subset) and the imputation of failed trials, and needs no pairing
of blocks across levels, which the design does not provide (a block is one condition).

Multiplicity: the confirmatory family is the pre-registered hypotheses (hash in the results
file's registration). Their p-values (difference test for ``higher``/``lower``, TOST for
``equivalent``) are Holm-adjusted together; exploratory hypotheses keep their unadjusted p
and say so. Verdicts from the (adjusted) p, alpha = 1 - confidence:

- ``higher``/``lower``: the estimate (variant - control, on the metric's own scale) is
  tested against the margin in the expected direction (+margin for ``higher``, -margin for
  ``lower``; 0 for a metric without a margin): t of sign x estimate - margin on the
  estimate's SE and df. ``supported`` when p < alpha with the estimate beyond the margin
  (its CI wholly beyond it), ``contradicted`` when p < alpha with the estimate short of it,
  else ``inconclusive``. So "higher, margin 2" means "higher by more than 2", as it does for
  one condition of an ``any`` claim; ``note`` names the threshold. Holm gives adjusted
  p-values, not adjusted intervals; the CI shown is per comparison.
- ``equivalent``: ``equivalent`` when the TOST p < alpha (the 1 - 2 alpha CI inside
  +-margin); ``not equivalent`` when the CI lies entirely beyond the margin on one side;
  else ``inconclusive``.

A tuned hypothesis whose subset's tuned comparison rests on a level chosen at an edge of the
tuning grid (not a declared bound; :func:`bnstudy.stats.edges.rests_on_edge`) reads
``inconclusive (tuning grid edge)`` whatever its p, and ``note`` says where; its p still
counts in the adjustment over hypotheses.

Quantifiers (``quantifier`` column; ``in:`` in the protocol). The above is ``average``: the
mean effect over the subset's conditions. ``any`` and ``all`` judge the subset's conditions
one by one, Holm-adjusted over them (:func:`bnstudy.stats.regimes.quantified_test`), and the
estimate, CI and PI shown stay the average's, for context; ``note`` says which conditions
decided. ``p`` is the Holm-over-conditions p the verdict rests on, adjusted again over the
pre-registered hypotheses like any other, so the familywise error rate holds over hypotheses
and conditions together. The same words, other tests:

- ``higher``/``lower`` in ``any``: ``supported`` when at least one condition lies beyond the
  margin (0 for a metric without one) in the expected direction, ``contradicted`` when every
  condition is shown short of it; in ``all``: ``supported`` when every condition lies beyond
  it, ``contradicted`` when some condition is shown short of it; else ``inconclusive``.
- ``equivalent`` in ``any``: ``equivalent`` when at least one condition's TOST passes,
  ``not equivalent`` when every condition lies beyond the margin; in ``all``: ``equivalent``
  when every condition's TOST passes, ``not equivalent`` when some condition lies beyond
  it; else ``inconclusive``. As for the average, ``not equivalent`` rests on the conditions'
  own (Holm) tests, not on the adjustment over hypotheses.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bnstudy.catalogue import METRICS
from bnstudy.spec.design import Design, HypothesisDesign, MetricDesign
from bnstudy.stats.analysis import CONTRAST_SUFFIX, analyze
from bnstudy.stats.edges import rests_on_edge
from bnstudy.stats.imputation import ITT
from bnstudy.stats.inference import EDGE_VERDICT, adjust, p_value
from bnstudy.stats.regimes import directional_delta, quantified_test

PREREGISTERED = "pre-registered"
EXPLORATORY = "exploratory"
#: Appended to the verdict of an exploratory hypothesis (unadjusted, not confirmatory).
EXPLORATORY_VERDICT = " (exploratory, unadjusted)"
#: Verdicts of directional and of equivalence hypotheses.
DIRECTIONAL_VERDICTS = ("supported", "contradicted", "inconclusive", EDGE_VERDICT)
EQUIVALENCE_VERDICTS = ("equivalent", "not equivalent", "inconclusive", EDGE_VERDICT)
NO_ESTIMATE = "no estimate"
#: Replicates of the effect-size bootstrap run inside each hypothesis' analysis; the
#: hypotheses table uses none of it, so a token number keeps evaluation cheap.
_BOOTSTRAP_REPLICATES = 50

#: Carried from a hypothesis' estimate to its verdict, then dropped: whether the p of an
#: ``any``/``all`` claim is evidence for it, whether its conditions refute equivalence, and
#: whether its tuned comparison rests on a level chosen at an edge of the tuning grid.
_PREDICTED, _REFUTED, _EDGE = "_predicted", "_refuted", "_edge"

HYPOTHESIS_COLUMNS = [
    "id",
    "claim",
    "metric",
    "variant",
    "control",
    "subset",
    "expect",
    "margin",
    "estimand",
    "quantifier",
    "registration",
    "estimate",
    "ci_low",
    "ci_high",
    "pi_low",
    "pi_high",
    "p",
    "p_adj",
    "n_pairs",
    "n_conditions",
    "verdict",
    "unit",
    "scope",
    "sha256",
    "note",
]


def subset_label(h: HypothesisDesign) -> str:
    """The conditions a hypothesis is about, in words ("all conditions" when unrestricted)."""
    parts = [f"{k} in {{{', '.join(map(str, v))}}}" for k, v in h.where.items()]
    if h.interaction is not None:
        f, low, high = h.interaction
        parts.append(f"effect at {f}={high} minus at {f}={low}")
    return "; ".join(parts) or "all conditions"


def evaluate_hypotheses(
    table: pd.DataFrame,
    design: Design,
    hypotheses: Sequence[HypothesisDesign],
    registered: set[str] | None,
) -> pd.DataFrame:
    """One row per hypothesis (:data:`HYPOTHESIS_COLUMNS`), in the order given.

    ``registered``: the hashes the results file registered (None: no registration, so every
    hypothesis is exploratory). ``p`` is the test the verdict uses (TOST for equivalence),
    ``p_adj`` its Holm-adjusted value over the pre-registered ones (NaN for exploratory).
    """
    rows = [_estimate(table, design, h) for h in hypotheses]
    frame = pd.DataFrame(rows, columns=[*HYPOTHESIS_COLUMNS, _PREDICTED, _REFUTED, _EDGE])
    if frame.empty:
        return frame[HYPOTHESIS_COLUMNS]
    confirmatory = frame["sha256"].isin(registered or set()).to_numpy()
    frame["registration"] = np.where(confirmatory, PREREGISTERED, EXPLORATORY)
    p_adj = np.full(len(frame), np.nan)
    p_adj[confirmatory] = adjust(frame.loc[confirmatory, "p"].to_numpy(float), "holm")
    frame["p_adj"] = p_adj
    alpha = 1 - design.confidence
    predicted = frame[_PREDICTED].to_numpy(bool)
    refuted = frame[_REFUTED].to_numpy(bool)
    edge = frame[_EDGE].to_numpy(bool)
    verdicts = []
    for i, r in enumerate(frame.itertuples(index=False)):
        if r.verdict == NO_ESTIMATE:
            verdicts.append(NO_ESTIMATE)
            continue
        p = p_adj[i] if confirmatory[i] else r.p
        if edge[i]:
            words = EDGE_VERDICT
        elif r.quantifier == "average" and r.expect == "equivalent":
            words = _equivalence_verdict(r.ci_low, r.ci_high, p, r.margin, alpha)
        else:
            words = _quantified_verdict(r.expect, p, alpha, predicted[i], refuted[i])
        verdicts.append(words if confirmatory[i] else words + EXPLORATORY_VERDICT)
    frame["verdict"] = verdicts
    return frame[HYPOTHESIS_COLUMNS]


def _equivalence_verdict(ci_low, ci_high, p, margin, alpha) -> str:
    if math.isfinite(p) and p < alpha:
        return "equivalent"
    if ci_low > margin or ci_high < -margin:
        return "not equivalent"
    return "inconclusive"


def _quantified_verdict(expect, p, alpha, predicted: bool, refuted: bool) -> str:
    """The verdict of an ``any``/``all`` claim from its (adjusted) p, whether that p speaks
    for the claim, and (equivalence) whether its conditions refute it (module docstring)."""
    significant = math.isfinite(p) and p < alpha
    if expect == "equivalent":
        if significant:
            return "equivalent"
        return "not equivalent" if refuted else "inconclusive"
    if not significant:
        return "inconclusive"
    return "supported" if predicted else "contradicted"


def _estimate(table: pd.DataFrame, design: Design, h: HypothesisDesign) -> dict:
    row = {
        "id": h.id,
        "claim": h.claim,
        "metric": h.metric,
        "variant": h.variant,
        "control": h.control,
        "subset": subset_label(h),
        "expect": h.expect,
        "margin": h.margin if h.margin is not None else math.nan,
        "estimand": h.estimand,
        "quantifier": h.quantifier,
        "registration": "",
        "unit": METRICS[h.metric].unit,
        "sha256": h.sha256,
        "note": "",
        **dict.fromkeys(["estimate", "ci_low", "ci_high", "pi_low", "pi_high", "p"], math.nan),
        "p_adj": math.nan,
        "n_pairs": 0,
        "n_conditions": 0,
        "verdict": "",
        "scope": "overall",
        **{_PREDICTED: True, _REFUTED: False, _EDGE: False},
    }
    sub = _subset(table, design, h)
    moderators = {}
    if h.interaction is not None:
        moderators = {h.interaction[0]: "identity"}
        row["scope"] = h.interaction[0] + CONTRAST_SUFFIX
    tuned = h.estimand == "tuned" and bool(design.tuning)
    sub_design = dataclasses.replace(
        design,
        control=h.control,
        variants=(h.variant,),
        metrics={h.metric: MetricDesign(METRICS[h.metric].direction, h.margin)},
        moderators=moderators,
        correction="none",
        family="overall",
        bootstrap_replicates=_BOOTSTRAP_REPLICATES,
        tuning=design.tuning if tuned else (),
        select_by=design.select_by if tuned else None,
    )
    analysis = analyze(sub, sub_design) if len(sub) else None
    found = _pick(analysis, h, row["scope"]) if analysis is not None else None
    if found is None:
        why = "no rows in the subset" if analysis is None else _why(analysis, h)
        return {**row, "verdict": NO_ESTIMATE, "note": why}
    est, equiv = found
    row.update(
        estimate=est["estimate"],
        ci_low=est["ci_low"],
        ci_high=est["ci_high"],
        pi_low=est["pi_low"],
        pi_high=est["pi_high"],
        p=equiv if h.expect == "equivalent" else est["p"],
        n_pairs=int(est["n_pairs"]),
        n_conditions=_n_conditions(analysis, h),
    )
    if h.quantifier == "average" and h.expect != "equivalent":
        row.update(_beyond_threshold(est, h))
    if h.quantifier != "average":
        test = quantified_test(
            _per_condition(analysis, h),
            h.expect,
            h.quantifier,
            h.margin,
            design.confidence,
            METRICS[h.metric].unit,
        )
        row.update(
            {
                "p": test.p,
                "n_conditions": test.n_conditions,
                "note": test.note,
                _PREDICTED: test.predicted,
                _REFUTED: test.refuted,
            }
        )
    if tuned and (edge := rests_on_edge(analysis.tuning_edges, h.metric, h.variant, ITT)):
        row.update({_EDGE: True, "note": "; ".join(n for n in (row["note"], edge) if n)})
    return row


def _beyond_threshold(est: dict, h: HypothesisDesign) -> dict:
    """The test of a ``higher``/``lower`` claim about the average: t of
    :func:`~bnstudy.stats.regimes.directional_delta` on the estimate's SE and df, two-sided,
    so that "supported" means the CI lies wholly beyond the margin and "contradicted" that it
    lies wholly short of it, as for one condition of an ``any`` claim."""
    delta = directional_delta(est["estimate"], h.expect, h.margin)
    note = ""
    if h.margin:
        line = h.margin if h.expect == "higher" else -h.margin
        note = f"tested against {line:+g} {METRICS[h.metric].unit}".rstrip() + " (the margin)"
    return {"p": p_value(delta, est["se"], est["df"]), _PREDICTED: bool(delta > 0), "note": note}


def _subset(table: pd.DataFrame, design: Design, h: HypothesisDesign) -> pd.DataFrame:
    keep = table[design.treatment].isin([h.control, h.variant]).to_numpy().copy()
    for factor, levels in h.where.items():
        keep &= table[factor].isin(list(levels)).to_numpy()
    if h.interaction is not None:
        factor, low, high = h.interaction
        keep &= table[factor].isin([low, high]).to_numpy()
    return table[keep].reset_index(drop=True)


def _pick(analysis, h: HypothesisDesign, scope: str) -> tuple[dict, float] | None:
    """The primary overall (or contrast) row of the estimand, and its TOST p."""
    est = analysis.primary()
    est = est[(est["scope"] == scope) & (est["estimand"] == h.estimand)]
    if est.empty:
        return None
    r = est.iloc[0].to_dict()
    if h.interaction is not None:
        # The analysis contrasts "second level minus first" (levels sorted); turn it round
        # when the hypothesis names the levels the other way.
        _, low, high = h.interaction
        if high < low:
            r["estimate"], r["ci_low"], r["ci_high"] = -r["estimate"], -r["ci_high"], -r["ci_low"]
        return r, math.nan  # no equivalence for an interaction (the schema allows it: nan)
    eq = analysis.equivalence
    eq = eq[(eq["population"] == ITT) & (eq["scope"] == scope) & (eq["estimand"] == h.estimand)]
    return r, float(eq["p_tost"].iloc[0]) if len(eq) else math.nan


def _n_conditions(analysis, h: HypothesisDesign) -> int:
    pc = _per_condition(analysis, h)
    return int(pc["condition"].nunique()) if len(pc) else 0


def _per_condition(analysis, h: HypothesisDesign) -> pd.DataFrame:
    """The per-condition effects of the hypothesis' metric, arms and estimand."""
    pc = analysis.per_condition
    if pc.empty:
        return pc
    keep = (pc["metric"] == h.metric) & (pc["estimand"] == h.estimand)
    for role in ("variant", "control"):
        if role in pc.columns:
            keep &= pc[role] == getattr(h, role)
    return pc[keep].reset_index(drop=True)


def _why(analysis, h: HypothesisDesign) -> str:
    diag = analysis.diagnostics
    if len(diag):
        return str(diag["message"].iloc[-1])
    return f"no {h.estimand} estimate of {h.metric} ({h.variant} vs {h.control}) in the subset"
