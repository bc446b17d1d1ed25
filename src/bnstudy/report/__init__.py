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
from bnstudy.protocol import METRICS, TREATMENT, Factors, Protocol
from bnstudy.report import figures
from bnstudy.stats import Analysis

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
    est = analysis.estimates
    overall = est[est["scope"] == "overall"]
    sentences = [_sentence(analysis, r.metric, r.variant) for r in overall.itertuples()]
    context = {
        "version": __version__,
        "protocol": protocol,
        "protocol_text": protocol.source_text,
        "protocol_sha": metadata.get("protocol_sha256", protocol.sha256),
        "written_at": metadata.get("written_at", "unknown"),
        "n_trials": len(table),
        "headline": sentences[0] if sentences else None,
        "overall_sentences": sentences[1:],
        "no_estimate_reason": _no_estimate_reason(analysis),
        "conf_pct": f"{100 * analysis.confidence:g}",
        "correction": protocol.analysis.correction,
        "moderator_figures": _moderator_figures(est, protocol),
        "estimates_table": _html_table(est),
        "effect_sizes_table": _html_table(getattr(analysis, "effect_sizes", None)),
        "robustness_table": _html_table(getattr(analysis, "robustness", None)),
        "heterogeneity_table": _html_table(analysis.heterogeneity),
        "forest_figures": _forest_figures(analysis, protocol),
        "status_table": _html_table(_status_counts(table), index=True),
        "failures_table": _html_table(analysis.failures),
        "diagnostics": _diagnostics(analysis.diagnostics),
        "provenance_table": _html_table(_provenance(metadata, protocol)),
    }
    return _ENV.get_template("report.html.j2").render(**context)


def _sentence(analysis: Analysis, metric: str, variant: str) -> dict[str, str]:
    row = analysis.headline(metric, variant)
    detail = f" Adjusted p = {row['p_adj']:.3g}." if row["p_adj"] == row["p_adj"] else ""
    return {
        "sentence": f"{row['text']}; {row['n_pairs']} pairs.{detail}",
        "verdict": row["verdict"],
        "verdict_words": _VERDICT_WORDS.get(row["verdict"], row["verdict"]),
    }


def _no_estimate_reason(analysis: Analysis) -> str:
    diag = analysis.diagnostics
    if diag is not None and len(diag):
        return str(diag["message"].iloc[0])
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
        overall = analysis.estimates.query(
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
