"""What the report says, independent of its format: sentences, table views and figures.

:func:`build` reads an Analysis, the results table and the protocol once; the HTML page
(:mod:`bnstudy.report.html`), the Markdown file (:mod:`bnstudy.report.markdown`) and the
figure export (:mod:`bnstudy.report.export`) all render the same :class:`Content`. A figure
is kept as a function that draws it (:mod:`bnstudy.report.items`), so each format draws it
only when it needs it. The parts are made by :mod:`~bnstudy.report.effects` (the effects'
figures), :mod:`~bnstudy.report.levels` (each arm's levels),
:mod:`~bnstudy.report.mechanisms` (curves, per-class values, mechanism columns),
:mod:`~bnstudy.report.views` (tables) and :mod:`~bnstudy.report.text` (sentences); the
design, moderators and arm levels are the Analysis' own, never recomputed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

import pandas as pd

from bnstudy import __version__
from bnstudy.report import text, views
from bnstudy.report.effects import (
    equivalence_figure,
    evidence_anchors,
    forest_figures,
    moderator_figures,
)
from bnstudy.report.hypotheses import hypotheses_view
from bnstudy.report.items import FigureItem, FigureList, TableItem
from bnstudy.report.levels import LevelsSection, levels_section
from bnstudy.report.mechanisms import mechanisms_section
from bnstudy.report.roles import Roles, primary_rows, roles_of
from bnstudy.results_format import Provenance
from bnstudy.spec.claims import registered_at
from bnstudy.spec.design import Design
from bnstudy.spec.protocol import Protocol
from bnstudy.stats import Analysis
from bnstudy.stats.analysis_result import OVERALL

# FigureItem and TableItem are defined in report.items and importable from here as before.
__all__ = ["Content", "FigureItem", "TableItem", "build"]

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
    #: What is compared with what (:func:`bnstudy.report.text.treatment_sentence`).
    treatment_sentence: str
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
    #: The protocol's hypotheses judged (``hypotheses.hypotheses_view``; ``href``: the
    #: anchor of each row's evidence); empty when the protocol states none.
    hypotheses_table: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    #: When the results file registered its hypotheses ("" when it never did).
    hypotheses_registered_at: str = ""
    #: A warning when a tuned verdict rests on a level chosen at an edge of the tuning grid.
    edge_warning: str = ""
    #: Per metric x variant, "better in k, worse in m, ..." conditions (Holm over them).
    regime_lines: list[str] = dataclasses.field(default_factory=list)
    #: Each condition's effect and verdict.
    per_condition_table: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    #: How much of the between-condition variance each moderator explains, in words and table.
    variance_sentences: list[str] = dataclasses.field(default_factory=list)
    moderator_variance_table: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

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
    recorded = Provenance.read(metadata)  # what the keys mean: bnstudy.results_format
    roles = roles_of(design_of(analysis, protocol), table, analysis)
    est = analysis.primary()  # every estimand: the tables show them all
    sens = analysis.sensitivity()
    overall = est[est["kind"] == OVERALL]
    headlines = _headlines(analysis, overall)
    conf = roles.confidence
    drawn = _Drawn.of(analysis, table, roles)
    generated = generated_at or now_utc()
    return Content(
        name=protocol.name,
        description=protocol.description or "",
        protocol_text=protocol.source_text,
        protocol_sha=recorded.protocol_sha256 or protocol.sha256,
        version=__version__,
        generated_at=generated,
        run_written_at=recorded.written_at or "",
        n_trials=len(table),
        ignored_rows=recorded.ignored_rows,
        roles=roles,
        treatment_sentence=text.treatment_sentence(roles),
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
        levels_sentences=drawn.levels.sentences,
        levels_values=drawn.levels.values,
        levels_tables=drawn.levels.tables,
        estimates_table=views.estimates_view(est),
        methods=sorted(set(est["method"].astype(str))),
        sensitivity_table=views.estimates_view(sens),
        sensitivity_methods=sorted(set(sens["method"].astype(str))),
        effect_sizes_table=views.effect_sizes_view(analysis.effect_sizes),
        robustness_table=views.robustness_view(analysis.robustness),
        selected_table=views.selected_view(getattr(analysis, "selected_levels", None)),
        tuning=", ".join(getattr(analysis, "tuning", None) or []),
        heterogeneity_table=views.heterogeneity_view(analysis.heterogeneity),
        equivalence_table=views.equivalence_view(analysis, roles),
        mechanism_table=drawn.mechanisms,
        status_table=views.status_counts(table, roles),
        failures_table=views.failures_view(analysis.failures, roles),
        diagnostics=views.group_diagnostics(analysis.diagnostics),
        n_diagnostics=len(analysis.diagnostics) if analysis.diagnostics is not None else 0,
        provenance_table=views.provenance(
            metadata,
            recorded.protocol_sha256 or protocol.sha256,
            __version__,
            generated,
            table,
        ),
        figures=drawn.figures,
        missing=drawn.missing,
        hypotheses_table=hypotheses_view(
            getattr(analysis, "hypotheses", None), evidence_anchors(drawn.figures)
        ),
        hypotheses_registered_at=registered_at(metadata) or "",
        **_by_condition(analysis),
    )


def _by_condition(analysis: Analysis) -> dict:
    """What the report says condition by condition: the grid-edge warning, the regimes, each
    condition's verdict and the share of the spread each moderator explains."""
    return dict(
        edge_warning=text.edge_warning(analysis),
        regime_lines=text.regime_lines(analysis),
        per_condition_table=views.per_condition_view(analysis),
        variance_sentences=text.variance_sentences(analysis),
        moderator_variance_table=views.moderator_variance_view(analysis),
    )


def design_of(analysis: Analysis, protocol: Protocol) -> Design:
    """The design the analysis was made under (the protocol's, for an Analysis that does
    not carry one)."""
    return analysis.design if analysis.design is not None else protocol.design()


def _headlines(analysis: Analysis, overall: pd.DataFrame) -> list[dict]:
    """The verdict sentences, one per metric x variant with an overall estimate."""
    pairs = dict.fromkeys(zip(overall["metric"], overall["variant"], strict=True))
    return [h for m, v in pairs if (h := text.headline(analysis, m, v))]


@dataclasses.dataclass(frozen=True)
class _Drawn:
    """The figures, in page order (the export and the Markdown keep it), the notes on those
    that could not be drawn, and the sections made beside them."""

    figures: list[FigureItem]
    missing: dict[str, list[str]]
    levels: LevelsSection
    mechanisms: pd.DataFrame

    @classmethod
    def of(cls, analysis: Analysis, table: pd.DataFrame, roles: Roles) -> _Drawn:
        b = FigureList(roles)
        missing: dict[str, list[str]] = {}
        moderator_figures(b, primary_rows(analysis.primary(), analysis), analysis, roles)
        levels = levels_section(b, analysis, table, roles, missing)
        equivalence_figure(b, analysis, roles, missing)
        forest_figures(b, analysis, roles, missing)
        mechanisms = mechanisms_section(b, table, roles, missing)
        return cls(b.items, missing, levels, mechanisms)
