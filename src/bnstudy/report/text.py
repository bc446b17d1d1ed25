"""The report's sentences: the verdict, intention to treat, moderators and arm levels in words.

Plain strings; the HTML template escapes them, the Markdown writer prints them as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bnstudy.catalogue import COLLAPSED, MEASURED_STATUSES, METRICS
from bnstudy.report.roles import Roles, primary_rows
from bnstudy.report.views import level_text
from bnstudy.spec.design import slope_unit
from bnstudy.stats import Analysis
from bnstudy.stats.analysis_result import LEVEL, OVERALL, SLOPE
from bnstudy.stats.imputation import NOT_IMPUTABLE
from bnstudy.stats.inference import EDGE_VERDICT, EQUIVALENT_ON_AVERAGE, EQUIVALENT_PI
from bnstudy.stats.regimes import headline_sentence, regime_phrase
from bnstudy.stats.tuning import TUNED

#: How many better and worse conditions the headline names (the table below has them all).
HEADLINE_LABELS = 3

VERDICT_WORDS = {
    "better": "Better.",
    "worse": "Worse.",
    "equivalent": "Equivalent within the margin.",
    "equivalent (PI within margin)": (
        "Equivalent in every condition we can foresee: the prediction interval for a new "
        "condition lies within the margin."
    ),
    "equivalent (on average)": (
        "Equivalent on average: the mean effect lies within the margin, but the effect in a "
        "new condition may not."
    ),
    "inconclusive": "Inconclusive: neither a difference nor equivalence is shown.",
    EDGE_VERDICT: (
        "Inconclusive: the tuned comparison rests on a level chosen at the edge of the tuning "
        "grid, and the best level may lie outside it."
    ),
}
RULE_WORDS = {
    "chance": "chance (a uniform random guesser's score)",
    "worst": "the worst value measured in their condition (any arm)",
}


def treatment_sentence(roles: Roles) -> str:
    """What is compared with what: "Each optimizer variant (adamw) is compared with the
    control sgd, within pairing blocks that share every other setting." """
    variants = ", ".join(roles.variants) or "none"
    return (
        f"Each {roles.treatment_name} variant ({variants}) is compared with the control "
        f"{roles.control}, within pairing blocks that share every other setting."
    )


def signed(x: float) -> str:
    """+1.23 / −1.23, with the minus sign the headline uses."""
    return f"{x:+.2f}".replace("-", "−")


def headline(analysis: Analysis, metric: str, variant: str) -> dict[str, str]:
    """The verdict sentence of one metric x variant (the average and, when the analysis has
    per-condition verdicts, its regimes: "better in k, worse in m, ..."), its verdict word and
    the ok-only check."""
    row = analysis.headline(metric, variant)
    if not row:
        return {}
    imputed = (
        f", {row['n_imputed']} of whose values are declared scores of trials without metrics"
        if row.get("n_imputed")
        else ""
    )
    regime = regime_of(analysis, metric, variant, str(row["estimand"]))
    verdict = str(row["verdict"])
    if regime is None:
        sentence = f"{row['text']}; {row['n_pairs']} pairs{imputed}."
    else:
        # An average "equivalent in every condition" beside a condition better or worse
        # after adjustment would contradict it: the sentence and the words say "on average".
        if int(regime["n_better"]) + int(regime["n_worse"]) and verdict == EQUIVALENT_PI:
            verdict = EQUIVALENT_ON_AVERAGE
        sentence = (
            headline_sentence(
                row,
                regime,
                analysis.units.get(metric, ""),
                analysis.confidence,
                _margin(analysis, metric),
                qualifier=_tuned_words(analysis, str(row["estimand"])),
                max_labels=HEADLINE_LABELS,
            )
            + f" {_details(analysis, row)}; {row['n_pairs']} pairs{imputed}."
        )
    return {
        "sentence": sentence,
        "verdict": verdict,
        "verdict_words": VERDICT_WORDS.get(verdict, verdict),
        "multiplicity": multiplicity_sentence(analysis, row),
        "sensitivity": sensitivity_sentence(analysis, row),
    }


def regime_of(analysis: Analysis, metric: str, variant: str, estimand: str) -> dict | None:
    """The regimes row (``Analysis.regimes``) of one metric x variant x estimand, or None."""
    reg = getattr(analysis, "regimes", None)
    if reg is None or reg.empty:
        return None
    rows = reg[(reg["metric"] == metric) & (reg["variant"] == variant)
               & (reg["estimand"] == estimand)]  # fmt: skip
    return rows.iloc[0].to_dict() if len(rows) else None


def _margin(analysis: Analysis, metric: str) -> float | None:
    design = getattr(analysis, "design", None)
    spec = design.metrics.get(metric) if design is not None else None
    return spec.equivalence_margin if spec is not None else None


def _tuned_words(analysis: Analysis, estimand: str) -> str:
    if estimand != TUNED:
        return ""
    return f" (each arm at its best {', '.join(analysis.tuning)} by {analysis.select_by})"


def _details(analysis: Analysis, row: Mapping) -> str:
    """ "Prediction interval for a new condition a to b; p = x, holm-adjusted y" (what the
    headline sentence leaves out)."""
    parts = []
    if np.isfinite(row["pi_low"]) and np.isfinite(row["pi_high"]):
        # the numbers as the sentence before them writes them
        parts.append(
            f"prediction interval for a new condition {row['pi_low']:+.3g} to {row['pi_high']:+.3g}"
        )
    p = f"p = {row['p']:.2g}"
    if np.isfinite(row["p_adj"]) and analysis.correction != "none":
        p += f", {analysis.correction}-adjusted {row['p_adj']:.2g}"
    parts.append(p)
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


def edge_warning(analysis: Analysis) -> str:
    """One line when a tuned verdict (primary population) rests on a level chosen at an edge
    of the tuning grid, saying which and where; "" when none does."""
    est = analysis.primary()
    hit = est[est["verdict"] == EDGE_VERDICT]
    if hit.empty:
        return ""
    which = ", ".join(
        dict.fromkeys(f"{v} − {analysis.control} on {m}" for m, v in zip(hit["metric"],
                                                                         hit["variant"],
                                                                         strict=True))
    )  # fmt: skip
    edges = getattr(analysis, "tuning_edges", None)
    example = ""
    if edges is not None and len(edges):
        at = edges[(edges["population"] == est["population"].iloc[0]) & edges["edge"].astype(bool)]
        if len(at):
            example = (
                f" In {at['condition'].nunique()} of {edges['condition'].nunique()} "
                f"condition(s) a choice lies at an edge, e.g. {at['condition'].iloc[0]}: "
                f"{at['detail'].iloc[0]}."
            )
    return (
        f"{len(hit)} tuned verdict(s) ({which}) rest on a level chosen at the edge of the "
        f'tuning grid and read "{EDGE_VERDICT}": the best level may lie outside the grid.'
        f"{example} Widen the grid (analysis.tune extend) or declare the bound."
    )


def regime_lines(analysis: Analysis) -> list[str]:
    """Per metric x variant of the primary estimand: where the variant is better, worse,
    equivalent, inconclusive, condition by condition (Holm over the conditions)."""
    reg = primary_rows(getattr(analysis, "regimes", None), analysis)
    if reg is None or reg.empty:
        return []
    pc = primary_rows(analysis.per_condition, analysis)
    out = []
    for r in reg.to_dict("records"):
        line = (
            f"{r['variant']} − {r['control']} on {r['metric']}: "
            f"{regime_phrase(r, HEADLINE_LABELS)} (Holm over "
            f"the {r['n_conditions']} conditions)"
        )
        if "verdict" in pc.columns:
            mine = pc[(pc["metric"] == r["metric"]) & (pc["variant"] == r["variant"])]
            if n_edge := int((mine["verdict"] == EDGE_VERDICT).sum()):
                line += f"; {n_edge} of the inconclusive ones rest on a tuning grid edge"
        out.append(line + ".")
    return out


def variance_sentences(analysis: Analysis) -> list[str]:
    """Per metric x variant of the primary estimand, how much of the between-condition
    variance each moderator explains, largest share first ("batch_size explains 70% of the
    spread")."""
    mv = primary_rows(getattr(analysis, "moderator_variance", None), analysis)
    if mv is None or mv.empty:
        return []
    out = []
    for (metric, variant), rows in mv.groupby(["metric", "variant"], sort=False):
        unit = analysis.units.get(metric, "")
        rows = rows.sort_values("share_explained", ascending=False, na_position="last")
        parts = []
        for k, r in enumerate(rows.itertuples(index=False)):
            share = (
                f"{100 * r.share_explained:.0f}%"
                if np.isfinite(r.share_explained)
                else "an undefined share (no spread to explain)"
            )
            q = (
                f" (Q between levels {r.q_between:.3g} on {r.df:g} df, p = {r.p:.2g})"
                if np.isfinite(r.q_between)
                else ""
            )
            what = " explains" if k == 0 else ""
            tail = " of the spread" if k == 0 else ""
            parts.append(f"{r.moderator}{what} {share}{tail}{q}")
        tau = np.sqrt(max(float(rows["tau2_without"].iloc[0]), 0.0))
        spaced = f" {unit}" if unit else ""
        out.append(
            f"{variant} − {analysis.control} on {metric}, τ = {tau:.3g}{spaced} between "
            f"conditions: " + ", ".join(parts) + "."
        )
    return out


def multiplicity_sentence(analysis: Analysis, primary: Mapping) -> str:
    """Why a CI that excludes 0 comes with an inconclusive verdict: the CI is of this one
    comparison, the verdict uses the p adjusted over the multiplicity family."""
    p_adj = primary.get("p_adj")
    if (
        primary["verdict"] != "inconclusive"
        or analysis.correction == "none"
        or p_adj is None
        or not np.isfinite(p_adj)
        or not (primary["ci_low"] > 0 or primary["ci_high"] < 0)
    ):
        return ""
    est = analysis.primary()
    n = int(est["p_adj"].notna().sum())  # the family: the rows that got an adjusted p
    what = (
        "overall effects (each variant on each primary metric)"
        if analysis.family == "overall"
        else f"estimates of the family '{analysis.family}'"
    )
    return (
        f"The {100 * analysis.confidence:g}% CI excludes 0, but it is unadjusted: after "
        f"{analysis.correction} adjustment across the {n} {what} tested together, "
        f"p = {p_adj:.2g}, not below α = {1 - analysis.confidence:.3g}, so the average is not "
        "declared different from 0."
    )


def sensitivity_sentence(analysis: Analysis, primary: Mapping) -> str:
    """The ok-only overall effect beside the headline, when it rests on other trials: of the
    headline's own estimand (tuned or fixed), or, when the analysis has no ok-only estimate
    of it, of another one, named."""
    sens = analysis.sensitivity()
    rows = sens[
        (sens["metric"] == primary["metric"])
        & (sens["variant"] == primary["variant"])
        & (sens["kind"] == OVERALL)
    ]
    estimand = primary.get("estimand")
    same = rows[rows["estimand"] == estimand] if "estimand" in rows.columns else rows
    if rows.empty:  # every ok pair is also an intention-to-treat pair: these differ
        return "Sensitivity check (ok trials only): no estimate, fewer than 2 pairs of ok trials."
    r = (same if len(same) else rows).iloc[0]
    if (
        len(same)
        and r.n_pairs == primary["n_pairs"]
        and not primary.get("n_imputed")
        and np.isclose(r.estimate, primary["estimate"])
    ):
        return ""  # the same trials (and, tuned, the same selections): nothing to add
    # Name the estimand wherever there is more than one, so the two numbers are not mixed up.
    if not len(same):
        which = (
            f"; the {r.estimand} comparison: the analysis has no ok-only estimate of the "
            f"{estimand} one"
        )
    elif "estimand" in rows.columns and rows["estimand"].nunique() > 1:
        which = f"; the {estimand} comparison, as above"
    else:
        which = ""
    unit = analysis.units.get(r.metric, "")
    return (
        "Sensitivity check (ok trials only, dropping every block with a collapsed, diverged "
        f"or failed arm{which}): {signed(r.estimate)} {unit} ({100 * analysis.confidence:g}% "
        f"CI {signed(r.ci_low)} to {signed(r.ci_high)}), {r.n_pairs} pairs; not the verdict."
    ).replace("  ", " ")


def itt_summary(analysis: Analysis, table: pd.DataFrame, treatment: str) -> dict:
    """What intention to treat did to this table: collapsed trials kept, and which score the
    trials without metrics got, per metric (the rule actually used and the values)."""
    status = table["status"].astype(str) if len(table) else pd.Series(dtype=str)
    arms = table[treatment] if len(table) else pd.Series(dtype=str)
    collapsed = arms[status == COLLAPSED]
    no_metrics = ~status.isin(MEASURED_STATUSES)

    def by(values: pd.Series) -> str:
        counts = values.value_counts(sort=False)
        return ", ".join(f"{k} {v}" for k, v in counts.items())

    per_metric = []
    imp = analysis.imputations
    for metric in analysis.metrics:
        rows = imp[imp["metric"] == metric] if imp is not None and len(imp) else imp
        if rows is None or rows.empty:
            continue
        unit = analysis.units.get(metric, "")
        parts = []
        for rule, part in rows.groupby("rule", sort=False):
            n = int(part["n_trials"].sum())
            if rule == NOT_IMPUTABLE:
                parts.append(
                    f"{n} could not be scored (no measured value in their condition, or the "
                    "metric undefined there); their blocks drop out"
                )
                continue
            low, high = part["value_low"].min(), part["value_high"].max()
            value = f"{low:.4g}" if low == high else f"{low:.4g} to {high:.4g}"
            # Say the rule only where it is not the declared one (a fallback to "worst").
            info = METRICS.get(metric)
            why = (
                f"{metric} has no chance level"
                if info is None or info.chance is None
                else "the number of classes is unknown"
            )
            fallback = (
                f", {RULE_WORDS.get(rule, rule)}, since {why}"
                if rule != analysis.failed_score
                else ""
            )
            parts.append(f"{n} trial(s) scored {value} {unit}".rstrip() + fallback)
        per_metric.append(f"{metric}: " + "; ".join(parts))
    return {
        "rule": analysis.failed_score,
        "rule_words": RULE_WORDS.get(analysis.failed_score, analysis.failed_score),
        "n_collapsed": len(collapsed),
        "collapsed_by_arm": by(collapsed),
        "n_no_metrics": int(no_metrics.sum()),
        "no_metrics_by_status": by(status[no_metrics]),
        "no_metrics_by_arm": by(arms[no_metrics]),
        "per_metric": per_metric,
    }


def moderator_sentences(analysis: Analysis, roles: Roles) -> list[dict[str, str]]:
    """Does a moderator change the effect? Each slope row, with the effect at each level."""
    est = primary_rows(analysis.primary(), analysis)
    slopes = est[est["kind"] == SLOPE]
    out = []
    for row in slopes.itertuples():
        factor = str(row.moderator)
        if factor not in roles.moderators:
            continue
        unit = analysis.units.get(row.metric, "")
        levels = est[
            (est["metric"] == row.metric)
            & (est["variant"] == row.variant)
            & (est["kind"] == LEVEL)
            & (est["moderator"] == factor)
        ]
        try:
            levels = levels.sort_values("level", key=lambda s: s.astype(float))
            at = ", ".join(f"{float(r.level):g}: {r.estimate:+.2f}" for r in levels.itertuples())
        except (TypeError, ValueError):
            at = ", ".join(f"{r.level}: {r.estimate:+.2f}" for r in levels.itertuples())
        per = slope_unit(roles.moderators.get(factor, "identity"), factor)
        sentence = (
            f"{row.variant} − {roles.control} on {row.metric} changes by {row.estimate:+.2f} "
            f"{unit} {per} ({100 * analysis.confidence:g}% CI "
            f"{row.ci_low:+.2f} to {row.ci_high:+.2f}; p = {row.p:.2g})"
            + (f"; effect at {factor} {at}." if at else ".")
        )
        out.append(
            {"sentence": sentence.replace("  ", " "), "verdict": str(row.verdict),
             "method": str(row.method)}
        )  # fmt: skip
    return out


def few_conditions(analysis: Analysis, below: int = 5) -> dict[str, float] | None:
    """The overall model's condition count and df, when too few conditions make its CI wide."""
    fits = analysis.model_summaries
    if fits is None or fits.empty:
        return None
    overall = fits[(fits["model"] == "overall") & (fits["population"] == "intention-to-treat")]
    if overall.empty or overall["n_groups"].max() >= below:
        return None
    return {"n": int(overall["n_groups"].max()), "df": float(overall["df"].max())}


def no_estimate_reason(analysis: Analysis) -> str:
    diag = analysis.diagnostics
    if diag is not None and len(diag):
        warnings = diag[diag["level"] == "warning"]
        return str((warnings if len(warnings) else diag)["message"].iloc[0])
    return "no complete pairs of trials."


def levels_sentence(overall: pd.DataFrame, metric: str, arms: tuple[str, ...]) -> str:
    """ "Averaged over every trial: plain 79.9% [79.1, 80.7], bn 78.9% [...]" for one metric."""
    rows = overall[overall["metric"] == metric]
    if rows.empty:
        return ""
    unit = str(rows["unit"].iloc[0])
    parts = []
    for arm in arms:
        r = rows[rows["arm"] == arm]
        if r.empty:
            continue
        r = r.iloc[0]
        mean, _, rest = level_text(r["mean"], r["ci_low"], r["ci_high"]).partition(" ")
        parts.append(f"{arm} {mean}{unit if unit == '%' else ' ' + unit if unit else ''} {rest}")
    return (
        f"{metric}, mean over all trials of each arm: " + "; ".join(p.strip() for p in parts) + "."
    )
