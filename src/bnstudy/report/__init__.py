"""One self-contained HTML report from an Analysis: CSS inline, figures inline as SVG.

Everything user-supplied (protocol text, names, factor levels, error messages) goes through
Jinja2's autoescaping or pandas' escaping; nothing in the page refers to a network address.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files

import jinja2
import pandas as pd

from bnstudy import __version__
from bnstudy.catalogue import COLLAPSED, MEASURED_STATUSES, METRICS
from bnstudy.protocol import TREATMENT, Factors, Protocol
from bnstudy.report import figures
from bnstudy.stats import Analysis
from bnstudy.stats.imputation import NOT_IMPUTABLE

_ENV = jinja2.Environment(
    loader=jinja2.FunctionLoader(lambda name: files(__package__).joinpath(name).read_text("utf-8")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

_VERDICT_WORDS = {
    "better": "Better.",
    "worse": "Worse.",
    "equivalent": "Equivalent within the margin.",
    "inconclusive": "Inconclusive: neither a difference nor equivalence is shown.",
}


def render(
    analysis: Analysis,
    table: pd.DataFrame,
    protocol: Protocol,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """The report as one HTML string."""
    metadata = dict(metadata or {})
    est = analysis.primary()
    sensitivity = analysis.sensitivity()
    overall = est[est["scope"] == "overall"]
    sentences = [_sentence(analysis, r.metric, r.variant) for r in overall.itertuples()]
    context = {
        "version": __version__,
        "protocol": protocol,
        "protocol_text": protocol.source_text,
        "protocol_sha": metadata.get("protocol_sha256", protocol.sha256),
        "written_at": metadata.get("written_at", "unknown"),
        "n_trials": len(table),
        "ignored_rows": int(metadata.get("ignored_rows", 0)),
        "headline": sentences[0] if sentences else None,
        "verdict_grid": _html_table(_verdict_grid(overall, analysis.units), index=True),
        "itt": _itt_summary(analysis, table),
        "itt_table": _html_table(_population_view(analysis)),
        "imbalance_sentences": _imbalance_sentences(analysis, protocol),
        "few_conditions": _few_conditions(analysis),
        "no_estimate_reason": _no_estimate_reason(analysis),
        "conf_pct": f"{100 * analysis.confidence:g}",
        "alpha": f"{1 - analysis.confidence:.3g}",
        "correction": protocol.analysis.correction,
        "moderator_figures": _moderator_figures(est, protocol),
        "estimates_table": _html_table(_estimates_view(est)),
        "methods": sorted(set(est["method"])),
        "sensitivity_table": _html_table(_estimates_view(sensitivity)),
        "sensitivity_methods": sorted(set(sensitivity["method"])),
        "effect_sizes_table": _html_table(_with_ci(analysis.effect_sizes, _EFFECT_SIZE_VIEW)),
        "robustness_table": _html_table(_robustness_view(analysis.robustness)),
        "heterogeneity_table": _html_table(_heterogeneity_view(analysis.heterogeneity)),
        "forest_figures": _forest_figures(analysis, protocol),
        "status_table": _html_table(_status_counts(table), index=True),
        "failures_table": _html_table(_with_ci(analysis.failures, _FAILURE_VIEW)),
        "diagnostics": _diagnostics(analysis.diagnostics),
        "provenance_table": _html_table(_provenance(metadata, protocol)),
    }
    return _ENV.get_template("report.html.j2").render(**context)


def _sentence(analysis: Analysis, metric: str, variant: str) -> dict[str, str]:
    row = analysis.headline(metric, variant)
    imputed = (
        f", {row['n_imputed']} of whose values are declared scores of trials without metrics"
        if row["n_imputed"]
        else ""
    )
    return {
        "sentence": f"{row['text']}; {row['n_pairs']} pairs{imputed}.",
        "verdict": row["verdict"],
        "verdict_words": _VERDICT_WORDS.get(row["verdict"], row["verdict"]),
        "sensitivity": _sensitivity_sentence(analysis, row),
    }


def _sensitivity_sentence(analysis: Analysis, primary: Mapping) -> str:
    """The ok-only overall effect beside the headline, when it rests on other trials."""
    sens = analysis.sensitivity()
    rows = sens[
        (sens["metric"] == primary["metric"])
        & (sens["variant"] == primary["variant"])
        & (sens["scope"] == "overall")
    ]
    if rows.empty:  # every ok pair is also an intention-to-treat pair: these differ
        return "Sensitivity check (ok trials only): no estimate, fewer than 2 pairs of ok trials."
    r = rows.iloc[0]
    if r.n_pairs == primary["n_pairs"] and not primary["n_imputed"]:
        return ""  # the same trials: nothing to add
    unit = analysis.units.get(r.metric, "")
    return (
        "Sensitivity check (ok trials only, dropping every block with a collapsed, diverged "
        f"or failed arm): {_signed(r.estimate)} {unit} ({100 * analysis.confidence:g}% CI "
        f"{_signed(r.ci_low)} to {_signed(r.ci_high)}), {r.n_pairs} pairs; not the verdict."
    ).replace("  ", " ")


def _signed(x: float) -> str:
    """+1.23 / −1.23, with the minus sign the headline uses."""
    return f"{x:+.2f}".replace("-", "−")


_RULE_WORDS = {
    "chance": "chance (a uniform random guesser's score)",
    "worst": "the worst value measured in their condition (any arm)",
}


def _itt_summary(analysis: Analysis, table: pd.DataFrame) -> dict:
    """What intention to treat did to this table: collapsed trials kept, and which score the
    trials without metrics got, per metric (the rule actually used and the values)."""
    status = table["status"].astype(str) if len(table) else pd.Series(dtype=str)
    heads = table[TREATMENT] if len(table) else pd.Series(dtype=str)
    collapsed = heads[status == COLLAPSED]
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
            why = (
                f"{metric} has no chance level"
                if METRICS[metric].chance is None
                else "the number of classes is unknown"
            )
            fallback = (
                f", {_RULE_WORDS.get(rule, rule)}, since {why}"
                if rule != analysis.failed_score
                else ""
            )
            parts.append(f"{n} trial(s) scored {value} {unit}".rstrip() + fallback)
        per_metric.append(f"{metric}: " + "; ".join(parts))
    return {
        "rule": analysis.failed_score,
        "rule_words": _RULE_WORDS.get(analysis.failed_score, analysis.failed_score),
        "n_collapsed": len(collapsed),
        "collapsed_by_head": by(collapsed),
        "n_no_metrics": int(no_metrics.sum()),
        "no_metrics_by_status": by(status[no_metrics]),
        "no_metrics_by_head": by(heads[no_metrics]),
        "per_metric": per_metric,
    }


def _population_view(analysis: Analysis) -> pd.DataFrame:
    """The overall effects side by side: intention to treat (primary) and ok only."""
    est = analysis.estimates
    overall = est[est["scope"] == "overall"]
    if overall.empty:
        return pd.DataFrame()
    rows = []
    keys = list(dict.fromkeys(zip(overall["metric"], overall["variant"], strict=True)))
    for metric, variant in keys:
        row = {"metric": metric, "variant": variant}
        for name, population in (("ITT", analysis.primary()), ("ok only", analysis.sensitivity())):
            r = population[
                (population["metric"] == metric)
                & (population["variant"] == variant)
                & (population["scope"] == "overall")
            ]
            if r.empty:
                row.update({f"{name} estimate [CI]": "no estimate", f"{name} pairs": None})
                continue
            r = r.iloc[0]
            row[f"{name} estimate [CI]"] = f"{r.estimate:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
            row[f"{name} pairs"] = r.n_pairs
            if name == "ITT":
                row["ITT imputed values"] = r.n_imputed
            row[f"{name} verdict"] = r.verdict
        rows.append(row)
    return pd.DataFrame(rows)


def _imbalance_sentences(analysis: Analysis, protocol: Protocol) -> list[dict[str, str]]:
    """Does imbalance change the effect? The log-ratio slope, and the effect at each ratio."""
    est = analysis.primary()
    out = []
    for row in est[est["scope"] == "log_imbalance_ratio_slope"].itertuples():
        unit = analysis.units.get(row.metric, "")
        levels = est[
            (est["metric"] == row.metric)
            & (est["variant"] == row.variant)
            & (est["scope"] == "imbalance_ratio")
        ]
        by_ratio = ", ".join(
            f"{float(r.level):g}: {r.estimate:+.2f}"
            for r in levels.sort_values("level", key=lambda s: s.astype(float)).itertuples()
        )
        sentence = (
            f"{row.variant} − {protocol.control} on {row.metric} changes by {row.estimate:+.2f} "
            f"{unit} per unit of ln(imbalance ratio) ({100 * analysis.confidence:g}% CI "
            f"{row.ci_low:+.2f} to {row.ci_high:+.2f}; p = {row.p:.2g}); effect at ratio "
            f"{by_ratio}."
        )
        out.append(
            {"sentence": sentence.replace("  ", " "), "verdict": row.verdict, "method": row.method}
        )
    return out


def _verdict_grid(overall: pd.DataFrame, units: Mapping[str, str]) -> pd.DataFrame:
    """Variants by metrics: each cell "estimate unit [CI] verdict" of the overall effect."""
    if overall.empty:
        return pd.DataFrame()
    cells = overall.assign(
        cell=[
            f"{r.estimate:+.2f} {units.get(r.metric, '')} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] "
            f"{r.verdict}".replace("  ", " ")
            for r in overall.itertuples()
        ]
    )
    grid = cells.pivot(index="variant", columns="metric", values="cell")
    grid = grid.reindex(index=list(dict.fromkeys(overall["variant"])))
    grid = grid[list(dict.fromkeys(overall["metric"]))]
    grid.index.name = f"vs {overall['control'].iloc[0]}"
    grid.columns.name = None
    return grid


def _few_conditions(analysis: Analysis, below: int = 5) -> dict[str, float] | None:
    """The overall model's condition count and df, when too few conditions make its CI wide."""
    fits = analysis.model_summaries
    if fits is None or fits.empty:
        return None
    overall = fits[(fits["model"] == "overall") & (fits["population"] == "intention-to-treat")]
    if overall.empty or overall["n_groups"].max() >= below:
        return None
    return {"n": int(overall["n_groups"].max()), "df": float(overall["df"].max())}


def _no_estimate_reason(analysis: Analysis) -> str:
    diag = analysis.diagnostics
    if diag is not None and len(diag):
        warnings = diag[diag["level"] == "warning"]
        return str((warnings if len(warnings) else diag)["message"].iloc[0])
    return "no complete pairs of trials."


def _moderator_figures(est: pd.DataFrame, protocol: Protocol) -> list[dict[str, str]]:
    out = []
    for metric in protocol.analysis.metrics:
        for factor in protocol.moderators:
            rows = est[(est["metric"] == metric) & (est["scope"] == factor)]
            if rows.empty:
                continue
            unit = METRICS[metric].unit
            svg = figures.effect_by_level(rows, factor, unit, log_x=factor == "imbalance_ratio")
            caption = (
                f"{metric}: effect of each variant vs {protocol.control} by {factor} "
                f"(points: estimates; bars: {100 * protocol.analysis.confidence:g}% CIs)."
            )
            out.append({"svg": svg, "caption": caption})
    return out


def _forest_figures(analysis: Analysis, protocol: Protocol) -> list[dict[str, str]]:
    per = analysis.per_condition
    if per is None or per.empty:
        return []
    metric = next(iter(protocol.analysis.metrics))
    varying = [
        f for f in Factors.model_fields if f != TREATMENT and f in protocol.factors.varying()
    ]
    out = []
    for variant in protocol.variants:
        rows = per[(per["metric"] == metric) & (per["variant"] == variant)]
        if rows.empty:
            continue
        labels = [
            " · ".join(f"{f}={getattr(r, f)}" for f in varying) or "all" for r in rows.itertuples()
        ]
        overall = analysis.primary().query(
            "metric == @metric and variant == @variant and scope == 'overall'"
        )
        if overall.empty:
            continue
        o = overall.iloc[0]
        svg = figures.forest(rows, labels, METRICS[metric].unit, (o.estimate, o.ci_low, o.ci_high))
        caption = (
            f"{metric}: paired effect of {variant} vs {protocol.control} in each condition "
            "(squares with CIs); the band is the overall estimate and its CI."
        )
        out.append({"svg": svg, "caption": caption})
    return out


def _status_counts(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame()
    counts = table.groupby(["head", "status"]).size().unstack(fill_value=0)
    counts.columns.name = None
    return counts


def _diagnostics(diag: pd.DataFrame | None) -> list[dict[str, str]]:
    if diag is None or diag.empty:
        return []
    out = []
    for row in diag.to_dict("records"):
        where = " / ".join(str(row[k]) for k in ("metric", "variant", "model") if row.get(k))
        out.append({"level": row.get("level", ""), "text": f"{where}: {row.get('message', '')}"})
    return out


def _provenance(metadata: Mapping[str, str], protocol: Protocol) -> pd.DataFrame:
    rows = [("protocol sha256", metadata.get("protocol_sha256", protocol.sha256))]
    for key in ("versions", "machine"):
        try:
            rows += [(f"{key}: {k}", v) for k, v in json.loads(metadata.get(key, "{}")).items()]
        except json.JSONDecodeError:
            rows.append((key, metadata[key]))
    rows.append(("results written", metadata.get("written_at", "unknown")))
    rows.append(("report by", f"bnstudy {__version__}"))
    return pd.DataFrame(rows, columns=["what", "value"])


def _html_table(df: pd.DataFrame | None, index: bool = False) -> str:
    if df is None or df.empty:
        return ""
    return df.to_html(
        index=index, border=0, escape=True, na_rep="–", float_format=lambda x: f"{x:.4g}"
    )


# -- table views: the columns a reader needs, CIs as one "low to high" column -------------

_EFFECT_SIZE_VIEW = ["metric", "variant", "statistic", "estimate", "CI", "n_pairs"]
_FAILURE_VIEW = ["head", "comparison", "status", "n", "n_failed", "rate", "CI", "p"]


def _ci_column(df: pd.DataFrame, low: str = "ci_low", high: str = "ci_high") -> list[str]:
    return [
        "–" if pd.isna(lo) or pd.isna(hi) else f"{lo:.3g} to {hi:.3g}"
        for lo, hi in zip(df[low], df[high], strict=True)
    ]


def _with_ci(df: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    if df is None or df.empty:
        return pd.DataFrame()
    return df.assign(CI=_ci_column(df))[columns]


def _estimates_view(est: pd.DataFrame) -> pd.DataFrame:
    view = ["metric", "variant", "scope", "level", "estimate", "CI", "p", "p_adj", "verdict"]
    return _with_ci(est, [*view, "n_pairs", "n_imputed"])


def _robustness_view(rob: pd.DataFrame | None) -> pd.DataFrame:
    if rob is None or rob.empty:
        return pd.DataFrame()
    out = rob.assign(
        **{
            "model CI": _ci_column(rob, "model_ci_low", "model_ci_high"),
            "bootstrap CI": _ci_column(rob, "bootstrap_ci_low", "bootstrap_ci_high"),
        }
    )
    return out[["metric", "variant", "model_estimate", "model CI", "model_p", "bootstrap CI",
                "wilcoxon_p", "n_pairs", "agree"]]  # fmt: skip


def _heterogeneity_view(het: pd.DataFrame | None) -> pd.DataFrame:
    if het is None or het.empty:
        return pd.DataFrame()
    out = het.assign(**{"I² (%)": 100 * het["i2"]})
    return out[["metric", "variant", "estimator", "k", "tau", "I² (%)", "q_p"]]
