"""What the report says, independent of its format: sentences, table views and figures.

:func:`build` reads an Analysis, the results table and the protocol once; the HTML page
(:mod:`bnstudy.report.html`), the Markdown file (:mod:`bnstudy.report.markdown`) and the
figure export (:mod:`bnstudy.report.export`) all render the same :class:`Content`. A figure
is kept as a function that draws it, so each format draws it only when it needs it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnstudy import __version__
from bnstudy.catalogue import METRICS
from bnstudy.report import detail, figures, figures_arms, text, views
from bnstudy.report.roles import Roles, primary_rows, roles_of
from bnstudy.spec.claims import registered_at
from bnstudy.spec.protocol import Protocol
from bnstudy.stats import Analysis
from bnstudy.stats.levels import level_unit, summarize_levels, trial_values

#: (anchor, title) of every section, in order; the table of contents lists them all.
SECTIONS = (
    ("evidence", "What the evidence shows"),
    ("levels", "How each arm did"),
    ("estimates", "Estimates"),
    ("equivalence", "Equivalence"),
    ("heterogeneity", "Heterogeneity across conditions"),
    ("mechanisms", "Training and mechanisms"),
    ("trials", "Trials and failures"),
    ("diagnostics", "Diagnostics"),
    ("provenance", "How this was made"),
)

#: (anchor, title) of the section that opens the report when the protocol states hypotheses.
HYPOTHESES_SECTION = ("hypotheses", "Pre-registered hypotheses")

#: Recorded columns shown as mechanisms: (what it is, display scale, unit, log axis).
MECHANISMS: dict[str, tuple[str, float, str, bool]] = {
    "head_dead_frac": ("dead units at the FC input (the head's hidden ReLU layer)", 100, "%",
                       False),
    "head_inactive_frac": ("inactive units per input at the FC input (head's hidden layer)", 100,
                           "%", False),
    "feature_dead_frac": ("dead units among the body's features (the FC input of heads without "
                          "a hidden layer)", 100, "%", False),
    "feature_inactive_frac": ("inactive body features per input", 100, "%", False),
    "train_eval_gap": ("train/eval gap: accuracy with batch statistics minus eval mode", 100,
                       "pp", False),
    "balanced_acc_precise": ("balanced accuracy with PreciseBN statistics", 1, "%", False),
    "fc_weight_norm_rank_corr": ("rank correlation of the per-class FC weight norm with the "
                                 "training class counts", 1, "", False),
    "fold_max_abs_diff": ("largest logit change from folding the BN into the final FC", 1, "",
                          True),
}  # fmt: skip
#: Per-class list columns drawn against the class's training count:
#: (short name, axis label, display scale, divide by the trial's mean).
PER_CLASS: dict[str, tuple[str, str, float, bool]] = {
    "class_recall": ("recall", "test recall of the class (%)", 100.0, False),
    "class_fc_weight_norm": (
        "FC weight norm",
        "FC weight norm ÷ the trial's mean norm",
        1.0,
        True,
    ),
}
#: Mechanism metrics drawn together: figure id -> (title, metrics, one row each).
MECHANISM_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "units": (
        "Dead and inactive units at the FC input",
        ("head_dead_frac", "head_inactive_frac", "feature_dead_frac", "feature_inactive_frac"),
    ),
    "batch-statistics": (
        "Batch statistics and the classifier",
        ("train_eval_gap", "balanced_acc_precise", "fold_max_abs_diff", "fc_weight_norm_rank_corr"),
    ),
}
CURVE_PREFIX = "curve_"


@dataclasses.dataclass(frozen=True)
class FigureItem:
    """One figure: ``id`` (anchor and file stem), its section, a title and caption, and a
    function that draws it (a fresh Figure each call)."""

    id: str
    section: str
    title: str
    caption: str
    draw: Callable[[], Figure]
    #: Spans the page's width (several panels) rather than one column of the figure grid.
    wide: bool = False


@dataclasses.dataclass(frozen=True)
class TableItem:
    title: str
    table: pd.DataFrame
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Content:
    """Everything a report format prints; see the section templates for where each goes."""

    name: str
    description: str
    protocol_text: str
    protocol_sha: str
    version: str
    generated_at: str
    run_written_at: str
    n_trials: int
    ignored_rows: int
    roles: Roles
    conf_pct: str
    tost_pct: str
    alpha: str
    headline: dict | None
    headlines: list[dict]
    no_estimate_reason: str
    verdict_grid: pd.DataFrame
    itt: dict
    itt_table: pd.DataFrame
    few_conditions: dict | None
    moderator_sentences: list[dict]
    levels_sentences: list[str]
    levels_values: str
    levels_tables: list[TableItem]
    estimates_table: pd.DataFrame
    methods: list[str]
    sensitivity_table: pd.DataFrame
    sensitivity_methods: list[str]
    effect_sizes_table: pd.DataFrame
    robustness_table: pd.DataFrame
    #: The level of each tuning factor each arm was set to per condition (tuned comparison).
    selected_table: pd.DataFrame
    tuning: str
    heterogeneity_table: pd.DataFrame
    equivalence_table: pd.DataFrame
    mechanism_table: pd.DataFrame
    status_table: pd.DataFrame
    failures_table: pd.DataFrame
    diagnostics: list[dict]
    n_diagnostics: int
    provenance_table: pd.DataFrame
    figures: list[FigureItem]
    #: Per section, sentences saying which figures could not be drawn and why.
    missing: dict[str, list[str]]
    #: The protocol's hypotheses judged (``views.hypotheses_view``; ``href``: the anchor of
    #: each row's evidence); empty when the protocol states none.
    hypotheses_table: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    #: When the results file registered its hypotheses ("" when it never did).
    hypotheses_registered_at: str = ""

    def figures_in(self, section: str) -> list[FigureItem]:
        return [f for f in self.figures if f.section == section]

    @property
    def sections(self) -> tuple[tuple[str, str], ...]:
        # The claims stated before the run open the report, when there are any.
        return ((HYPOTHESES_SECTION,) if not self.hypotheses_table.empty else ()) + SECTIONS


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def build(
    analysis: Analysis,
    table: pd.DataFrame,
    protocol: Protocol,
    metadata: Mapping[str, str] | None = None,
    generated_at: str | None = None,
) -> Content:
    """The report's content for ``analysis`` of ``table`` under ``protocol``.

    ``metadata``: the results file's key-value metadata (versions, machine, the run's
    ``written_at``); ``generated_at``: the report's own time stamp (default: now, UTC).
    """
    metadata = dict(metadata or {})
    roles = roles_of(protocol.design(), table, analysis)
    est = analysis.primary()  # every estimand: the tables show them all
    sens = analysis.sensitivity()
    overall = est[est["scope"] == "overall"]
    pairs = dict.fromkeys(zip(overall["metric"], overall["variant"], strict=True))
    headlines = [h for m, v in pairs if (h := text.headline(analysis, m, v))]
    conf = roles.confidence
    builder = _Figures(roles)
    missing: dict[str, list[str]] = {}

    _moderator_figures(builder, primary_rows(est, analysis), analysis, roles)
    levels = _levels(builder, table, roles, missing)
    # In page order: the figures list is also the order of the export and the Markdown.
    equivalence = views.equivalence_view(analysis, roles)
    _equivalence_figure(builder, analysis, roles, missing)
    _forest_figures(builder, analysis, roles, missing)
    mechanisms = _mechanisms(builder, table, roles, missing)

    methods = sorted(set(est["method"].astype(str)))
    sensitivity_methods = sorted(set(sens["method"].astype(str)))
    diag = views.group_diagnostics(analysis.diagnostics)
    generated = generated_at or now_utc()
    return Content(
        name=protocol.name,
        description=protocol.description or "",
        protocol_text=protocol.source_text,
        protocol_sha=metadata.get("protocol_sha256", protocol.sha256),
        version=__version__,
        generated_at=generated,
        run_written_at=metadata.get("written_at", ""),
        n_trials=len(table),
        ignored_rows=int(metadata.get("ignored_rows", 0) or 0),
        roles=roles,
        conf_pct=f"{100 * conf:g}",
        tost_pct=f"{100 * (1 - 2 * (1 - conf)):g}",
        alpha=f"{1 - conf:.3g}",
        headline=headlines[0] if headlines else None,
        headlines=headlines,
        no_estimate_reason=text.no_estimate_reason(analysis),
        verdict_grid=views.verdict_grid(overall, analysis.units, roles.control),
        itt=text.itt_summary(analysis, table, roles.treatment),
        itt_table=views.population_view(analysis),
        few_conditions=text.few_conditions(analysis),
        moderator_sentences=text.moderator_sentences(analysis, roles),
        levels_sentences=levels["sentences"],
        levels_values=levels["values"],
        levels_tables=levels["tables"],
        estimates_table=views.estimates_view(est),
        methods=methods,
        sensitivity_table=views.estimates_view(sens),
        sensitivity_methods=sensitivity_methods,
        effect_sizes_table=views.effect_sizes_view(analysis.effect_sizes),
        robustness_table=views.robustness_view(analysis.robustness),
        selected_table=views.selected_view(getattr(analysis, "selected_levels", None)),
        tuning=", ".join(getattr(analysis, "tuning", None) or []),
        heterogeneity_table=views.heterogeneity_view(analysis.heterogeneity),
        equivalence_table=equivalence,
        mechanism_table=mechanisms,
        status_table=views.status_counts(table, roles.treatment, roles.arms),
        failures_table=views.failures_view(analysis.failures, roles.treatment),
        diagnostics=diag,
        n_diagnostics=len(analysis.diagnostics) if analysis.diagnostics is not None else 0,
        provenance_table=views.provenance(
            metadata,
            metadata.get("protocol_sha256", protocol.sha256),
            __version__,
            generated,
            table,
        ),
        figures=builder.items,
        missing=missing,
        hypotheses_table=views.hypotheses_view(
            getattr(analysis, "hypotheses", None), _evidence_anchors(builder.items)
        ),
        hypotheses_registered_at=registered_at(metadata) or "",
    )


def _evidence_anchors(items: list[FigureItem]) -> dict[str, str]:
    """metric -> the anchor of its effect figure in the evidence section (the figure ids
    are ``evidence-effect-METRIC``, see :func:`_moderator_figures`)."""
    prefix = "evidence-effect-"
    return {f.id[len(prefix) :]: f.id for f in items if f.id.startswith(prefix)}


class _Figures:
    """Collects FigureItems with unique ids and the arms' colours."""

    def __init__(self, roles: Roles):
        self.roles = roles
        self.colours = figures.arm_colours(roles.arms, roles.control)
        self.items: list[FigureItem] = []

    def add(
        self,
        section: str,
        key: str,
        title: str,
        caption: str,
        draw: Callable[[], Figure],
        wide: bool = False,
    ) -> None:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{section}-{key}").strip("-").lower()
        taken = {f.id for f in self.items}
        uid, i = stem, 2
        while uid in taken:
            uid, i = f"{stem}-{i}", i + 1
        self.items.append(FigureItem(uid, section, title, caption, draw, wide))


def _moderator_figures(b: _Figures, est: pd.DataFrame, analysis: Analysis, roles: Roles) -> None:
    """Per metric, one figure: the effect at each level of each moderator, side by side."""
    for metric in roles.metrics:
        panels = []
        for factor in roles.moderators:
            rows = est[(est["metric"] == metric) & (est["scope"] == factor)]
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
            lambda panels=panels, unit=unit: figures.draw_effect_panels(panels, unit, b.colours),
            wide=len(panels) > 1,
        )


def _values(table: pd.DataFrame, roles: Roles, metrics) -> pd.DataFrame:
    """Every trial's value of ``metrics`` once; the levels are summaries of it."""
    return trial_values(
        table,
        metrics,
        treatment=roles.treatment,
        conditions=roles.conditions,
        keep=roles.varying,
        failed_score=roles.failed_score,
        directions=roles.directions,
    )


#: At most this many factors get a panel in the level figures.
MAX_LEVEL_PANELS = 4


def level_factors(roles: Roles) -> list[str]:
    """The factors the arms' levels are drawn against: the varying moderators, then any
    other varying condition (a width or a batch size the analysis does not moderate by)."""
    ordered = [f for f in roles.moderators if f in roles.varying]
    ordered += [f for f in roles.varying if f not in ordered]
    return ordered[:MAX_LEVEL_PANELS]


def _log_axis(roles: Roles, values: pd.DataFrame, factor: str) -> bool:
    """The declared scale for a moderator; for another factor, log when its levels are
    positive numbers spanning 16x or more (batch sizes 16 to 256, widths 64 to 1024)."""
    if factor in roles.moderators:
        return roles.log_scale(factor)
    levels = figures.numeric_levels(pd.Series(pd.unique(values[factor])))
    return bool(levels is not None and levels.min() > 0 and levels.max() / levels.min() >= 16)


def _level_panels(values: pd.DataFrame, roles: Roles) -> dict[str, list[figures_arms.LevelPanel]]:
    """Per metric, one panel per :func:`level_factors` factor (the others averaged over), or
    one of the arms alone when nothing varies. One summary per factor serves every metric."""
    out: dict[str, list[figures_arms.LevelPanel]] = {}
    for factor in level_factors(roles) or [None]:
        rows = summarize_levels(
            values, (factor,) if factor else (), arms=roles.arms, confidence=roles.confidence
        )
        log_x = _log_axis(roles, values, factor) if factor else False
        for metric, part in rows.groupby("metric", sort=False):
            out.setdefault(metric, []).append(
                figures_arms.LevelPanel(factor, part.reset_index(drop=True), log_x)
            )
    return out


def _levels(b: _Figures, table: pd.DataFrame, roles: Roles, missing) -> dict:
    """Each arm's level per condition (tables), per moderator level (figures), overall."""
    out = {"sentences": [], "tables": [], "values": ""}
    if table.empty:
        missing.setdefault("levels", []).append("No trials in the table, so no levels.")
        return out
    values = _values(table, roles, roles.metrics)
    if values.empty:
        missing.setdefault("levels", []).append(
            "No arm has a value of any primary metric, so no levels."
        )
        return out
    conf = roles.confidence
    per_condition = summarize_levels(values, roles.varying, arms=roles.arms, confidence=conf)
    overall = summarize_levels(values, (), arms=roles.arms, confidence=conf)
    out["values"] = ", ".join(pd.unique(values["values"]))
    for metric in roles.metrics:
        sentence = text.levels_sentence(overall, metric, roles.arms)
        if sentence:
            out["sentences"].append(sentence)
        rows = per_condition[per_condition["metric"] == metric]
        if rows.empty:
            continue
        unit = level_unit(metric)
        title = f"{metric}" + (f" ({unit})" if unit else "")
        out["tables"].append(TableItem(title, views.levels_wide(rows, roles.varying, roles.arms)))
    pooled = " Each panel averages over the other factors." if len(roles.varying) > 1 else ""
    by_metric = _level_panels(values, roles)
    for metric in roles.metrics:
        panels = by_metric.get(metric, [])
        if not panels:
            continue
        unit = level_unit(metric)
        caption = (
            f"{metric}: each arm's mean with its {100 * conf:g}% CI over trials "
            f"({out['values']} values)." + (pooled if panels[0].factor else "")
        )
        b.add(
            "levels",
            f"levels-{metric}",
            f"{metric} by arm",
            caption,
            lambda panels=panels, ylabel=f"{metric} ({unit})" if unit else metric: (
                figures_arms.draw_levels(panels, ylabel, roles.arms, b.colours)
            ),
            wide=len(panels) > 1,
        )
    return out


def _forest_figures(b: _Figures, analysis: Analysis, roles: Roles, missing) -> None:
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
        if "condition" in rows.columns:
            label_of = rows["condition"].astype(str)
        else:
            cols = [c for c in roles.varying if c in rows.columns]
            label_of = rows[cols].astype(str).agg(", ".join, axis=1) if cols else "all"
        rows = rows.assign(_label=label_of)
        labels = list(dict.fromkeys(rows["_label"]))
        panels = []
        for variant in roles.variants:
            part = rows[rows["variant"] == variant]
            if part.empty:
                continue
            part = part.drop_duplicates("_label").set_index("_label").reindex(labels)
            o = est[(est["metric"] == metric) & (est["variant"] == variant)
                    & (est["scope"] == "overall")]  # fmt: skip
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


def _equivalence_figure(b: _Figures, analysis: Analysis, roles: Roles, missing) -> None:
    eq = primary_rows(analysis.equivalence, analysis)
    if eq is None or eq.empty:  # the empty table says so
        return
    est = primary_rows(analysis.primary(), analysis)
    pi = views.find_interval(est) or views.find_interval(eq)
    panels = []
    for metric in roles.metrics:
        rows = eq[(eq["metric"] == metric) & (eq["population"] == "intention-to-treat")
                  & (eq["scope"] == "overall") & eq["margin"].notna()]  # fmt: skip
        if rows.empty:
            continue
        e = est[(est["metric"] == metric) & (est["scope"] == "overall")]
        cols = ["variant", "estimate", *(list(pi) if pi and pi[0] in e.columns else [])]
        rows = rows.drop(columns=[c for c in cols[1:] if c in rows.columns]).merge(
            e[cols].drop_duplicates("variant"), on="variant", how="left"
        )
        if pi:
            rows = rows.rename(columns={pi[0]: "pi_low", pi[1]: "pi_high"})
        panels.append((metric, analysis.units.get(metric, ""), rows.reset_index(drop=True)))
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
    caption = (
        f"Equivalence of each variant with {roles.control}: the {b_pct(roles)} CI behind the "
        "TOST (thick) against the ± margin (green band); equivalent when the thick line lies "
        f"inside the band{pi_words}."
    )
    b.add(
        "equivalence",
        "equivalence",
        "equivalence tests",
        caption,
        lambda: figures.draw_equivalence(panels, b_pct(roles), b.colours),
        wide=len(panels) > 1,
    )


def b_pct(roles: Roles) -> str:
    return f"{100 * (1 - 2 * (1 - roles.confidence)):g}%"


def _mechanisms(b: _Figures, table: pd.DataFrame, roles: Roles, missing) -> pd.DataFrame:
    """Training curves, per-class figures and mechanism metrics; returns the summary table."""
    notes = missing.setdefault("mechanisms", [])
    if table.empty:
        notes.append("No trials in the table.")
        return pd.DataFrame()
    by = list(roles.varying)
    curves = [c for c in table.columns if c.startswith(CURVE_PREFIX)]
    drawn_curve = False
    for column in curves:
        if not detail.has_lists(table, column):
            continue
        panels, pooled = detail.curve_panels(table, column, roles.treatment, roles.arms, by)
        if not panels:
            continue
        drawn_curve = True
        what = column[len(CURVE_PREFIX) :].replace("_", " ")
        pooled_words = f" Pooled over {', '.join(pooled)}." if pooled else ""
        # One diverged trial must not set the axis for every median line: say what is cut.
        span = figures_arms.curve_range(panels)
        clipped = ""
        if span.highest > span.top:
            clipped += (
                f" The y axis stops at {span.top:.3g} so that the median lines stay readable: "
                f"some interquartile bands reach {span.highest:.3g} (trials that diverged); "
                "each panel they leave says how far."
            )
        if span.lowest < span.bottom:
            clipped += f" Some bands go down to {span.lowest:.3g}, below the axis."
        caption = (
            f"{what.capitalize()} during training: median (line) and interquartile range (band) "
            f"over each arm's trials, one panel per condition.{pooled_words} Points are logged "
            "once per epoch (every fixed number of steps when the training length is in steps)."
            + clipped
        )
        b.add(
            "mechanisms",
            column,
            f"{what} curves",
            caption,
            lambda panels=panels, what=what: figures_arms.draw_curves(
                panels, roles.arms, b.colours, ylabel=what
            ),
            wide=len(panels) > 1,
        )
    if not drawn_curve:
        notes.append(
            "No training curves: the table has no non-empty curve_train_loss (or other curve_*) "
            "column."
        )
    balanced: list[str] = []
    count = 0.0
    for column, (short, what, scale, relative) in PER_CLASS.items():
        rows = detail.per_class_rows(table, column, roles.treatment, relative=relative, scale=scale)
        if rows.empty:
            why = (
                "the table has no class_counts column"
                if "class_counts" not in table.columns
                else f"no trial has a non-empty {column} list as long as its class_counts"
            )
            notes.append(f"No figure of {short} per class against the class's count: {why}.")
            continue
        if rows["count"].nunique() == 1:  # balanced data: one point per arm, nothing to read
            balanced.append(short)
            count = float(rows["count"].iloc[0])
            continue
        caption = (
            f"{what[0].upper() + what[1:]} against the number of training images of that class, "
            "pooled over every measured trial of each arm: mean (line) and interquartile range "
            "(band) over the classes in each count bin."
            + (
                " Each trial's norms are divided by their mean, so networks of different scale "
                "pool."
                if relative
                else ""
            )
        )
        b.add(
            "mechanisms",
            f"per-class-{column}",
            f"{short} per class against class count",
            caption,
            lambda rows=rows, what=what: figures_arms.draw_per_class(
                rows, what, roles.arms, b.colours
            ),
        )
    if balanced:
        notes.append(
            f"No figure of {' or '.join(balanced)} per class against the class's count: every "
            f"class of every measured trial had {count:g} training images (balanced data), so "
            "there is no count to draw it against."
        )
    present = [m for m in MECHANISMS if m in table.columns and _any_finite(table[m])]
    absent = [m for m in MECHANISMS if m not in present]
    if absent:
        notes.append("Not recorded (or undefined for every trial): " + ", ".join(absent) + ".")
    if not present:
        return pd.DataFrame()
    values = _display(_values(table, roles, present))
    overall = summarize_levels(values, (), arms=roles.arms, confidence=roles.confidence)
    summary = views.levels_wide(overall, ["metric"], roles.arms)
    summary.insert(1, "unit", [MECHANISMS[m][2] for m in summary["metric"]])
    summary["what"] = [MECHANISMS[m][0] for m in summary["metric"]]
    factors = level_factors(roles)
    against = (
        f" against {', '.join(factors)} (each panel averages over the other factors)"
        if factors
        else ""
    )
    by_metric = _level_panels(values, roles)
    for key, (title, members) in MECHANISM_GROUPS.items():
        grid = []
        for metric in [m for m in members if m in present]:
            what, _, unit, log_y = MECHANISMS[metric]
            panels = by_metric.get(metric, [])
            if panels:
                grid.append((metric, f"{metric} ({unit})" if unit else metric, panels, log_y))
        if not grid:
            continue
        rows = "; ".join(
            f"{metric}: {MECHANISMS[metric][0]}"
            + (" (intention-to-treat values)" if _imputed(metric) else " (measured values)")
            for metric, *_ in grid
        )
        caption = (
            f"{title}: each arm's mean with its {100 * roles.confidence:g}% CI over trials"
            f"{against}. Rows: {rows}."
        )
        b.add(
            "mechanisms",
            key,
            title,
            caption,
            lambda grid=grid: figures_arms.draw_level_grid(
                [(ylabel, panels, log_y) for _, ylabel, panels, log_y in grid],
                roles.arms,
                b.colours,
            ),
            wide=True,
        )
    return summary


def _imputed(metric: str) -> bool:
    """Whether failed trials get a declared score for ``metric`` (a catalogue metric whose
    ``imputed`` is set); otherwise its levels are of measured values only."""
    return metric in METRICS and METRICS[metric].imputed


def _any_finite(values: pd.Series) -> bool:
    return bool(np.isfinite(pd.to_numeric(values, errors="coerce").to_numpy(float)).any())


def _display(values: pd.DataFrame) -> pd.DataFrame:
    """Mechanism trial values in display units (fractions as %), with their display unit."""
    if values.empty:
        return values
    scale = values["metric"].map(lambda m: MECHANISMS[m][1] if m not in METRICS else 1.0)
    return values.assign(
        value=values["value"] * scale, unit=values["metric"].map(lambda m: MECHANISMS[m][2])
    )
