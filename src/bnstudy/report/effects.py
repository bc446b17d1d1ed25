"""The figures of the paired effects: per moderator level (evidence), the equivalence tests
(equivalence) and the per-condition forest plots (heterogeneity). They draw the Analysis'
rows as they are, picked by their ``kind`` and ``moderator`` columns."""

from __future__ import annotations

import pandas as pd

from bnstudy.report import figures, views
from bnstudy.report.items import FigureList
from bnstudy.report.roles import Roles, primary_rows
from bnstudy.stats import Analysis
from bnstudy.stats.analysis_result import LEVEL, OVERALL

#: The id of a metric's effect figure in the evidence section (the hypotheses link to it).
EVIDENCE_PREFIX = "evidence-effect-"


def tost_percent(roles: Roles) -> str:
    """The confidence of the CI behind a TOST at the report's level: 90% for 95%."""
    return f"{100 * (1 - 2 * (1 - roles.confidence)):g}%"


def moderator_figures(b: FigureList, est: pd.DataFrame, analysis: Analysis, roles: Roles) -> None:
    """Per metric, one figure: the effect at each level of each moderator, side by side."""
    for metric in roles.metrics:
        panels = []
        for factor in roles.moderators:
            rows = est[(est["metric"] == metric) & (est["kind"] == LEVEL)
                       & (est["moderator"] == factor)]  # fmt: skip
            if not rows.empty:
                panels.append((factor, rows, roles.log_scale(factor)))
        if not panels:
            continue
        unit = analysis.units.get(metric, "")
        factors = ", ".join(f for f, _, _ in panels)
        caption = (
            f"{metric}: effect of each variant vs {roles.control} at each level of {factors} "
            f"(points: estimates; bars: {100 * roles.confidence:g}% CIs; dashed: no effect)"
            + (". Each panel averages over the other factors." if len(panels) > 1 else ".")
        )
        b.add(
            "evidence",
            f"effect-{metric}",
            f"{metric} effect by moderator",
            caption,
            lambda panels=panels, unit=unit: figures.draw_effect_panels(
                panels, unit, b.colours, roles.control
            ),
            wide=len(panels) > 1,
        )


def evidence_anchors(items) -> dict[str, str]:
    """metric -> the anchor of its effect figure in the evidence section (the figure ids
    are ``evidence-effect-METRIC``, see :func:`moderator_figures`)."""
    return {f.id[len(EVIDENCE_PREFIX) :]: f.id for f in items if f.id.startswith(EVIDENCE_PREFIX)}


def _forest_labels(rows: pd.DataFrame, roles: Roles) -> pd.Series | str:
    if "condition" in rows.columns:
        return rows["condition"].astype(str)
    cols = [c for c in roles.varying if c in rows.columns]
    return rows[cols].astype(str).agg(", ".join, axis=1) if cols else "all"


def forest_figures(b: FigureList, analysis: Analysis, roles: Roles, missing) -> None:
    """Per metric, the paired effect in each condition, a panel per variant."""
    per = primary_rows(analysis.per_condition, analysis)
    if per is None or per.empty:
        missing.setdefault("heterogeneity", []).append(
            "No per-condition effects (no metric x variant had complete pairs), so no forest plot."
        )
        return
    est = primary_rows(analysis.primary(), analysis)
    for metric in roles.metrics:
        rows = per[per["metric"] == metric]
        if rows.empty:
            continue
        rows = rows.assign(_label=_forest_labels(rows, roles))
        labels = list(dict.fromkeys(rows["_label"]))
        panels = []
        for variant in roles.variants:
            part = rows[rows["variant"] == variant]
            if part.empty:
                continue
            part = part.drop_duplicates("_label").set_index("_label").reindex(labels)
            o = est[(est["metric"] == metric) & (est["variant"] == variant)
                    & (est["kind"] == OVERALL)]  # fmt: skip
            ov = None if o.empty else (o.iloc[0].estimate, o.iloc[0].ci_low, o.iloc[0].ci_high)
            panels.append((variant, part.reset_index(drop=True), ov))
        if not panels:
            continue
        unit = analysis.units.get(metric, "")
        margin = roles.margins.get(metric)
        caption = (
            f"{metric}: paired effect of each variant vs {roles.control} in each condition "
            f"(squares with {100 * roles.confidence:g}% CIs), on one axis for all variants; "
            "the line and band are the overall estimate and its CI"
            + (f"; dotted: the equivalence margin ±{margin:g} {unit}" if margin else "")
            + "."
        )
        b.add(
            "heterogeneity",
            f"forest-{metric}",
            f"{metric} forest plot",
            caption,
            lambda panels=panels, labels=labels, unit=unit, margin=margin: (
                figures.draw_forest_panels(panels, labels, unit, margin, b.colours)
            ),
            wide=True,
        )


def _equivalence_panels(analysis: Analysis, roles: Roles, pi) -> list:
    """(metric, unit, rows) per metric with an overall test against a margin: the TOST
    interval, the estimate and, when the analysis has one, the prediction interval."""
    eq = primary_rows(analysis.equivalence, analysis)
    est = primary_rows(analysis.primary(), analysis)
    panels = []
    for metric in roles.metrics:
        rows = eq[(eq["metric"] == metric) & (eq["population"] == "intention-to-treat")
                  & (eq["kind"] == OVERALL) & eq["margin"].notna()]  # fmt: skip
        if rows.empty:
            continue
        e = est[(est["metric"] == metric) & (est["kind"] == OVERALL)]
        cols = ["variant", "estimate", *(list(pi) if pi and pi[0] in e.columns else [])]
        rows = rows.drop(columns=[c for c in cols[1:] if c in rows.columns]).merge(
            e[cols].drop_duplicates("variant"), on="variant", how="left"
        )
        if pi:
            rows = rows.rename(columns={pi[0]: "pi_low", pi[1]: "pi_high"})
        panels.append((metric, analysis.units.get(metric, ""), rows.reset_index(drop=True)))
    return panels


def equivalence_figure(b: FigureList, analysis: Analysis, roles: Roles, missing) -> None:
    """The overall equivalence tests of every metric with a margin, in one figure."""
    eq = primary_rows(analysis.equivalence, analysis)
    if eq is None or eq.empty:  # the empty table says so
        return
    pi = views.find_interval(primary_rows(analysis.primary(), analysis)) or views.find_interval(eq)
    panels = _equivalence_panels(analysis, roles, pi)
    if not panels:
        missing.setdefault("equivalence", []).append(
            "No overall effect has an equivalence margin, so no equivalence figure."
        )
        return
    pi_words = (
        "; thin line: the prediction interval for the effect in a new condition"
        if pi
        else "; the analysis gives no prediction interval"
    )
    tost = tost_percent(roles)
    caption = (
        f"Equivalence of each variant with {roles.control}: the {tost} CI behind the "
        "TOST (thick) against the ± margin (green band); equivalent when the thick line lies "
        f"inside the band{pi_words}."
    )
    b.add(
        "equivalence",
        "equivalence",
        "equivalence tests",
        caption,
        lambda: figures.draw_equivalence(panels, tost, b.colours, roles.control),
        wide=len(panels) > 1,
    )
