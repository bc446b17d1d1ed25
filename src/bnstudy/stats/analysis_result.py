"""The result of an analysis: the :class:`Analysis` of tidy tables, the columns of each
table, and their JSON form. Computes nothing; :func:`bnstudy.stats.analysis.analyze` fills it."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.spec.design import Design
from bnstudy.stats.edges import EDGE_COLUMNS
from bnstudy.stats.imputation import ITT, OK_ONLY
from bnstudy.stats.levels import LEVEL_TABLE_COLUMNS, levels_by
from bnstudy.stats.regimes import REGIME_COLUMNS
from bnstudy.stats.tuning import FIXED, SELECTION_COLUMNS, TUNED

#: The columns that name an estimate row; the equivalence table has a row for each estimate
#: row, named the same way.
_ESTIMATE_KEYS = [
    "metric",
    "variant",
    "control",
    "population",
    "scope",
    "level",
]
ESTIMATE_COLUMNS = [
    *_ESTIMATE_KEYS,
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_adj",
    "se",
    "df",
    "verdict",
    "n_pairs",
    "n_imputed",
    "method",
    "estimand",
    "pi_low",
    "pi_high",
    "moderator",
    "kind",
]
EQUIVALENCE_COLUMNS = [
    *_ESTIMATE_KEYS,
    "margin",
    "tost_ci_low",
    "tost_ci_high",
    "p_tost",
    "p_tost_adj",
    "estimand",
    "pi_low",
    "pi_high",
    "pi_within_margin",
    "moderator",
    "kind",
    "pi_claim_low",
    "pi_claim_high",
]
EFFECT_SIZE_COLUMNS = [
    "metric",
    "variant",
    "control",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "n_pairs",
    "method",
    "estimand",
    "resampled",
]
HETEROGENEITY_COLUMNS = [
    "metric",
    "variant",
    "control",
    "estimator",
    "k",
    "tau2",
    "tau",
    "i2",
    "q",
    "q_df",
    "q_p",
    "pooled",
    "pooled_ci_low",
    "pooled_ci_high",
    "note",
    "estimand",
    "ci_method",
    "pooled_se",
    "tau2_ci_low",
    "tau2_ci_high",
]
PER_CONDITION_COLUMNS = [
    "metric",
    "variant",
    "control",
    "condition",
    "estimate",
    "ci_low",
    "ci_high",
    "n_pairs",
    "se",
    "estimand",
    "p",
    "p_adj",
    "p_tost",
    "p_tost_adj",
    "verdict",
]
#: The regimes table: per metric x variant x estimand, how many conditions are better, worse,
#: equivalent, inconclusive (:func:`bnstudy.stats.regimes.regimes`).
REGIME_TABLE_COLUMNS = ["metric", "variant", "control", "estimand", *REGIME_COLUMNS]
#: The moderator variance table: the share of the between-condition variance tau^2 each
#: moderator explains, and the between-levels Q test (:mod:`bnstudy.stats.estimates`).
MODERATOR_VARIANCE_COLUMNS = [
    "metric",
    "variant",
    "control",
    "estimand",
    "population",
    "moderator",
    "tau2_without",
    "tau2_with",
    "share_explained",
    "q_between",
    "df",
    "p",
]
ROBUSTNESS_COLUMNS = [
    "metric",
    "variant",
    "control",
    "model_estimate",
    "model_ci_low",
    "model_ci_high",
    "model_p",
    "bootstrap_estimate",
    "bootstrap_ci_low",
    "bootstrap_ci_high",
    "wilcoxon_p",
    "wilcoxon_unit",
    "n_pairs",
    "n_dropped_blocks",
    "n_conditions",
    "agree",
    "note",
    "estimand",
    "bootstrap_resampled",
    "signflip_p",
    "signflip_min_p",
]
DIAGNOSTIC_COLUMNS = ["metric", "variant", "model", "level", "message"]
SUMMARY_COLUMNS = [
    "metric",
    "variant",
    "population",
    "model",
    "method",
    "optimiser",
    "converged",
    "boundary",
    "n_obs",
    "n_groups",
    "df",
    "fixed_effects",
    "fixed_se",
    "tau2",
    "tau",
    "residual_sd",
    "llf",
    "estimand",
]
#: The imputations table's columns; :func:`imputation_columns` adds the treatment's.
IMPUTATION_COLUMNS = [
    "metric",
    "status",
    "rule",
    "n_trials",
    "value_low",
    "value_high",
    "arm",
]


def imputation_columns(treatment: str) -> list[str]:
    """:data:`IMPUTATION_COLUMNS` with the arm repeated under the treatment's name after
    ``metric`` (for readers written before the column ``arm``; deprecated), unless the
    treatment is ``arm`` itself."""
    repeat = [treatment] if treatment and treatment != "arm" else []
    return [IMPUTATION_COLUMNS[0], *repeat, *IMPUTATION_COLUMNS[1:]]


#: What an estimate row estimates (its ``kind``): the effect over every condition, at one
#: level of a moderator, a contrast between two of its levels, or its slope.
OVERALL, LEVEL, CONTRAST, SLOPE = "overall", "level", "contrast", "slope"
ESTIMATE_KINDS = (OVERALL, LEVEL, CONTRAST, SLOPE)
#: Suffix of a slope's scope, e.g. "lr_slope"; its level is "slope".
SLOPE_SUFFIX = "_slope"
#: Suffix of a moderator contrast's scope, e.g. "lr_contrast"; its level reads
#: "0.1 - 0.01" (the effect at lr 0.1 minus the effect at the first level, 0.01).
CONTRAST_SUFFIX = "_contrast"


def scope_of(kind: str, moderator: str) -> str:
    """The ``scope`` of an estimate row of ``kind`` and ``moderator``: "overall", the
    moderator (a level), ``moderator + "_contrast"`` or ``moderator + "_slope"``."""
    suffix = {CONTRAST: CONTRAST_SUFFIX, SLOPE: SLOPE_SUFFIX}.get(kind, "")
    return OVERALL if kind == OVERALL else moderator + suffix


#: How the prediction interval (``pi_low``, ``pi_high``) is computed.
PI_METHOD = (
    "prediction interval for the effect in a new condition: estimate +- t_{G-p-1} "
    "sqrt(tau^2 + se^2), tau^2 the paired model's between-condition variance (REML), on one "
    "degree of freedom fewer than the model's G - p (Higgins, Thompson & Spiegelhalter 2009; "
    "IntHout et al. 2016); 'equivalent (PI within margin)' needs it inside the margin and the "
    "same interval with tau^2 at its Q-profile upper confidence bound inside it too "
    "(pi_claim_low/pi_claim_high, decisions.pi_claim)"
)
#: Appended to the verdict of every sensitivity (ok-only) row.
SENSITIVITY_VERDICT = " (sensitivity, unadjusted)"
#: The robustness table no longer runs a Wilcoxon test; its two old columns stay, empty.
WILCOXON_REPLACED = "not computed: replaced by the sign-flip test (signflip_p)"


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Everything estimated from one results table, as tidy DataFrames.

    ``estimates`` has exactly :data:`ESTIMATE_COLUMNS`; population is "intention-to-treat"
    (primary) or "ok only" (sensitivity; verdict suffixed :data:`SENSITIVITY_VERDICT`, no
    p_adj); estimand is "fixed" or "tuned" (:mod:`bnstudy.stats.tuning`); ``kind`` says
    what a row estimates (:data:`ESTIMATE_KINDS`) and ``moderator`` of which moderator
    ("" for overall rows): "overall"; "level" (level: the moderator's value as a string),
    "contrast" (level "b - a": the effect at level b minus at the first level a) or "slope"
    (level "slope": the change of the effect per unit of the moderator on its declared
    scale, the method says which). ``scope`` names the same in one string, as it always
    has: "overall", the moderator, ``moderator + "_contrast"`` or ``moderator + "_slope"``
    (read ``kind`` and ``moderator`` rather than take it apart). ``pi_low``/``pi_high``
    is the prediction interval for a new condition (:data:`PI_METHOD`; overall and level
    rows); n_imputed counts the declared (not measured) values among the row's pairs, both
    arms together; ``se`` and ``df`` are the standard error and degrees of freedom of the t
    behind the CI and p.
    Rows in the multiplicity family (``primary_estimand``, and with family "overall" the
    overall scope) carry verdicts; other rows read "unadjusted: ..." (not a verdict).

    ``equivalence``, ``model_summaries``, ``effect_sizes``, ``heterogeneity``,
    ``per_condition`` and ``robustness`` carry the estimand column; the last four are of the
    primary population only. ``imputations`` (:func:`imputation_columns`) counts, per
    metric x arm x status, the trials without metrics and the rule that scored them (values
    in analysis units). ``selected_levels`` (:data:`~bnstudy.stats.tuning.SELECTION_COLUMNS`
    plus the base-condition and tuning-factor columns) records the level each arm was tuned
    to per condition and population; empty without tuning factors. ``failed_score`` is the
    declared rule. ``units`` maps metric -> unit.

    ``design`` is the design the tables were estimated under (its treatment, conditions,
    moderators and metrics' margins), so that a reader need not rebuild it; ``arm_levels``
    (:data:`~bnstudy.stats.levels.LEVEL_TABLE_COLUMNS`) is each arm's mean level of every
    primary metric, with its CI over trials, overall, per level of each varying condition
    factor and per condition (intention to treat; :meth:`levels_by` picks one grouping).

    ``per_condition`` carries each condition's verdict (p, p_adj, p_tost, p_tost_adj,
    verdict: Holm over the conditions of each metric x variant x estimand,
    :func:`bnstudy.stats.regimes.condition_verdicts`; a tuned condition resting on a tuning
    grid edge reads :data:`~bnstudy.stats.tuning.EDGE_VERDICT`); ``regimes``
    (:data:`REGIME_TABLE_COLUMNS`) counts them per metric x variant x estimand ("better in k,
    worse in m, ..."); ``moderator_variance`` (:data:`MODERATOR_VARIANCE_COLUMNS`) is the
    share of the between-condition variance tau^2 each moderator explains, with the
    between-levels Q test; ``tuning_edges``
    (:data:`~bnstudy.stats.edges.EDGE_COLUMNS` plus the base-condition factors) says per
    population x metric x variant x base condition whether the tuned comparison rests on a
    level chosen at an edge of the tuning grid (empty without tuning factors).
    """

    estimates: pd.DataFrame
    equivalence: pd.DataFrame
    effect_sizes: pd.DataFrame
    heterogeneity: pd.DataFrame
    per_condition: pd.DataFrame
    robustness: pd.DataFrame
    failures: pd.DataFrame
    imputations: pd.DataFrame
    diagnostics: pd.DataFrame
    model_summaries: pd.DataFrame
    confidence: float
    units: dict[str, str]
    control: str
    variants: list[str]
    metrics: list[str]
    correction: str
    family: str
    failed_score: str
    selected_levels: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=SELECTION_COLUMNS)
    )
    treatment: str = ""
    primary_estimand: str = FIXED
    #: The protocol's pre-registered hypotheses judged, one row each
    #: (``stats.hypotheses.HYPOTHESIS_COLUMNS``); filled by
    #: ``study.analyze_with_protocol``, which knows the results file's registration. Empty
    #: when the protocol states none.
    hypotheses: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    tuning: list[str] = dataclasses.field(default_factory=list)
    select_by: str | None = None
    design: Design | None = None
    arm_levels: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=LEVEL_TABLE_COLUMNS)
    )
    regimes: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=REGIME_TABLE_COLUMNS)
    )
    moderator_variance: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=MODERATOR_VARIANCE_COLUMNS)
    )
    tuning_edges: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=EDGE_COLUMNS)
    )

    def primary(self) -> pd.DataFrame:
        """The estimates of the primary (intention-to-treat) analysis, every estimand."""
        return self.estimates[self.estimates["population"] == ITT]

    def sensitivity(self) -> pd.DataFrame:
        """The estimates of the ok-only sensitivity analysis."""
        return self.estimates[self.estimates["population"] == OK_ONLY]

    def levels_by(self, by: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
        """Each arm's levels grouped by the factors ``by`` (``()``: over every trial), as
        :func:`~bnstudy.stats.levels.summarize_levels` gives them; empty when the analysis
        has no such grouping."""
        return levels_by(self.arm_levels, by)

    def headline(
        self, metric: str | None = None, variant: str | None = None, estimand: str | None = None
    ) -> dict[str, Any]:
        """The primary (intention-to-treat) overall row of ``metric`` x ``variant`` (default:
        the first of each) for ``estimand`` (default: the primary one) as a dict, with
        ``text`` like "bn − plain on balanced_acc: −0.42 pp (95% CI −0.90 to 0.06;
        prediction interval for a new condition −1.3 to 0.5; p = 0.08, holm-adjusted 0.16),
        inconclusive". Empty dict when there is no such estimate."""
        metric = metric or (self.metrics[0] if self.metrics else None)
        variant = variant or (self.variants[0] if self.variants else None)
        estimand = estimand or self.primary_estimand
        est = self.primary()
        row = est[
            (est["metric"] == metric)
            & (est["variant"] == variant)
            & (est["kind"] == OVERALL)
            & (est["estimand"] == estimand)
        ]
        if row.empty:
            return {}
        r = row.iloc[0].to_dict()
        unit = self.units.get(metric, "")
        r.update(unit=unit, confidence=self.confidence)
        spaced = f" {unit}" if unit else ""
        # The CI is per comparison; the verdict uses the multiplicity-adjusted p. Say both,
        # so a CI that excludes 0 beside an "inconclusive" verdict is not a puzzle.
        adjusted = (
            f"; p = {r['p']:.2g}, {self.correction}-adjusted {r['p_adj']:.2g}"
            if np.isfinite(r["p_adj"]) and self.correction != "none"
            else f"; p = {r['p']:.2g}"
        )
        pi = (
            f"; prediction interval for a new condition {_num(r['pi_low'])} to {_num(r['pi_high'])}"
            if np.isfinite(r["pi_low"])
            else ""
        )
        tuned = (
            f" (each arm at its best {', '.join(self.tuning)} by {self.select_by})"
            if estimand == TUNED
            else ""
        )
        r["text"] = (
            f"{variant} − {self.control} on {metric}{tuned}: {_num(r['estimate'])}{spaced}"
            f" ({_percent(self.confidence)} CI {_num(r['ci_low'])} to {_num(r['ci_high'])}"
            f"{pi}{adjusted}), {r['verdict']}"
        )
        return r

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table, by name (the DataFrame fields, in declaration order)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), pd.DataFrame)
        }

    def settings(self) -> dict[str, Any]:
        """The analysis settings and roles behind the tables (JSON-friendly)."""
        return dict(
            confidence=self.confidence,
            units=dict(self.units),
            treatment=self.treatment,
            control=self.control,
            variants=list(self.variants),
            metrics=list(self.metrics),
            correction=self.correction,
            family=self.family,
            failed_score=self.failed_score,
            primary_estimand=self.primary_estimand,
            tuning=list(self.tuning),
            select_by=self.select_by,
            prediction_interval=PI_METHOD,
        )

    def to_records(self) -> dict[str, Any]:
        """JSON-friendly form: each table as a list of row dicts, plus the settings, all at
        the top level (see :meth:`to_document` for tables and settings kept apart)."""
        out: dict[str, Any] = {k: _records(v) for k, v in self.tables().items()}
        out.update(self.settings())
        return out

    def to_document(self) -> dict[str, Any]:
        """Every table as one JSON-friendly document with named tables::

            {"format": "bnstudy.analysis", "version": 2, "settings": {...},
             "tables": {"estimates": [{column: value, ...}, ...], "equivalence": [...], ...}}

        Values are plain Python (str, int, float, bool, None); NaN and infinities are None,
        so ``json.dumps(doc, allow_nan=False)`` succeeds.
        """
        return {
            "format": "bnstudy.analysis",
            "version": 2,
            "settings": _jsonable(self.settings()),
            "tables": {k: _records(v) for k, v in self.tables().items()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_document` as strict JSON text."""
        return json.dumps(self.to_document(), indent=indent, allow_nan=False)


def _jsonable(value: Any) -> Any:
    """Plain-Python, strict-JSON form of a value from a table or the settings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    return str(value)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [str(c) for c in frame.columns]
    return [
        {c: _jsonable(v) for c, v in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def _percent(confidence: float) -> str:
    """0.95 -> "95%", 0.975 -> "97.5%" (a plain ".0%" would print 98%)."""
    return f"{round(confidence * 100, 6):g}%"


def _num(x: float) -> str:
    return f"{x:.2f}".replace("-", "−") if np.isfinite(x) else "n/a"
