"""``analyze``: a results table and its design in, an :class:`Analysis` of tidy tables out.

Populations. The primary analysis is intention to treat (:mod:`bnstudy.stats.imputation`):
collapsed trials count with their measured metrics, and trials without metrics (diverged,
failed, timed out, ...) with the design's declared ``failed_score`` (chance, or the worst
value measured in their condition), so a head that breaks training cannot flatter itself by
leaving the comparison. A block in which neither arm has metrics measured nothing and is left
out of the metric comparison (its difference would be exactly 0); failure rates count it.
The analysis of trials with status ok only is repeated beside it as a sensitivity check: its
rows carry ``population == "ok only"``, are never in the multiplicity family, and their
verdict reads e.g. "worse (sensitivity, unadjusted)".

Estimands. Every row says which comparison it estimates (column ``estimand``): ``fixed``
compares the arms at each setting of every factor (a learning rate is a condition like any
other); ``tuned`` (when the design declares tuning factors, :mod:`bnstudy.stats.tuning`)
compares each arm at its own best level of them, chosen on the validation metric
``select_by``. With tuning factors the tuned comparison is the primary estimand (its rows form
the multiplicity family) and the fixed one is secondary.

For each primary metric, variant and estimand, from the complete pairs (paired differences
d = variant - control, analysis units):

- overall effect and per-moderator-level effects from the paired model
  d ~ moderators + (1 | condition) (``mixed.paired_effect_fit``), each with a prediction
  interval for the effect in a new condition (``pi_low``/``pi_high``: estimate +-
  t_{G-p} sqrt(tau^2 + se^2), :data:`PI_METHOD`);
- contrasts between moderator levels (each level minus the first, with CIs), and a slope per
  numeric moderator on the scale its transform declares (``design.moderators``: ``log`` or
  ``identity``), scope ``f"{moderator}_slope"``;
- TOST equivalence, multiplicity adjustment and verdicts (``inference``): rows in the
  declared family get verdicts ("better", "worse", "equivalent (PI within margin)",
  "equivalent (on average)", "inconclusive"); rows outside it are described, never judged
  ("unadjusted: higher", ...);
- per-condition effects and tau^2 / I^2 with Hartung-Knapp pooled CIs (``meta``);
- effect sizes with bootstrap CIs, resampling conditions when there are enough of them
  (``bootstrap``), and a robustness check: that bootstrap and an exact sign-flip test on
  condition means (``signflip``) next to the model;
- failure rates by arm (``failures``) and the values imputed per arm (``imputations``);
- the level each arm was tuned to per condition (``selected_levels``).

Everything is computed for the intention-to-treat population; the ok-only sensitivity
analysis repeats the model estimates (overall, per moderator level, contrasts, slopes) and
the equivalence tests only.

The report and the CLI read the same Analysis; nothing is computed twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bnstudy.catalogue import METRICS
from bnstudy.design import Design
from bnstudy.stats.bootstrap import GENERALISING, STATISTICS, effect_size_bootstrap
from bnstudy.stats.derived import with_derived_metrics
from bnstudy.stats.failures import FAILURE_COLUMNS, failure_rates
from bnstudy.stats.imputation import ITT, OK_ONLY, POPULATIONS, Scored, score_trials
from bnstudy.stats.inference import adjust, p_value, tost_p, unadjusted_words, verdict
from bnstudy.stats.meta import heterogeneity, i_squared, per_condition_effects
from bnstudy.stats.mixed import EffectFit, paired_effect_fit
from bnstudy.stats.paired import (
    Pairs,
    as_design,
    condition_columns,
    condition_labels,
    paired_differences,
)
from bnstudy.stats.signflip import sign_flip_test
from bnstudy.stats.tuning import (
    FIXED,
    SELECTION_COLUMNS,
    TUNED,
    base_design,
    select_levels,
    tuned_differences,
)

ESTIMATE_COLUMNS = [
    "metric",
    "variant",
    "control",
    "population",
    "scope",
    "level",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_adj",
    "verdict",
    "n_pairs",
    "n_imputed",
    "method",
    "estimand",
    "pi_low",
    "pi_high",
]
EQUIVALENCE_COLUMNS = [
    "metric",
    "variant",
    "control",
    "population",
    "scope",
    "level",
    "margin",
    "tost_ci_low",
    "tost_ci_high",
    "p_tost",
    "p_tost_adj",
    "estimand",
    "pi_low",
    "pi_high",
    "pi_within_margin",
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
IMPUTATION_COLUMNS = [
    "metric",
    "head",
    "status",
    "rule",
    "n_trials",
    "value_low",
    "value_high",
    "arm",
]
#: Suffix of a slope's scope, e.g. "lr_slope"; its level is "slope".
SLOPE_SUFFIX = "_slope"
#: Suffix of a moderator contrast's scope, e.g. "lr_contrast"; its level reads
#: "0.1 - 0.01" (the effect at lr 0.1 minus the effect at the first level, 0.01).
CONTRAST_SUFFIX = "_contrast"
#: How the prediction interval (``pi_low``, ``pi_high``) is computed.
PI_METHOD = (
    "prediction interval for the effect in a new condition: estimate +- t_{G-p} "
    "sqrt(tau^2 + se^2), tau^2 the paired model's between-condition variance (REML), on the "
    "model's own G - p degrees of freedom; 'equivalent (PI within margin)' needs it inside "
    "the margin and tau^2 estimated on at least 19 degrees of freedom (about 20 conditions)"
)
#: The fewest degrees of freedom (G - p) behind tau^2 for the verdict "equivalent (PI within
#: margin)". With fewer conditions REML often puts tau^2 at 0 although the effect varies,
#: the interval collapses to the CI, and the claim about every condition is made too often:
#: with condition effects spread over +-0.8 pp (margin 0.5 pp, 10 seeds), the PI landed
#: inside the margin in 7-10% of 12-condition analyses, 2-3% with 24 and 1% with 48
#: (tests/stats/test_stats_prediction.py, benchmarks/simulate_coverage.txt). The interval is
#: reported whatever the number of conditions.
PI_CLAIM_MIN_DF = 19
#: Appended to the verdict of every sensitivity (ok-only) row.
SENSITIVITY_VERDICT = " (sensitivity, unadjusted)"
#: The robustness table no longer runs a Wilcoxon test; its two old columns stay, empty.
WILCOXON_REPLACED = "not computed: replaced by the sign-flip test (signflip_p)"


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Everything estimated from one results table, as tidy DataFrames.

    ``estimates`` has exactly :data:`ESTIMATE_COLUMNS`; population is "intention-to-treat"
    (primary) or "ok only" (sensitivity; verdict suffixed :data:`SENSITIVITY_VERDICT`, no
    p_adj); estimand is "fixed" or "tuned" (:mod:`bnstudy.stats.tuning`); scope is
    "overall", a moderator name (level: its value as a string), ``moderator + "_contrast"``
    (level "b - a": the effect at level b minus at the first level a) or ``moderator +
    "_slope"`` (level "slope": the change of the effect per unit of the moderator on its
    declared scale, the method says which); ``pi_low``/``pi_high`` is the prediction
    interval for a new condition (:data:`PI_METHOD`; overall and level rows); n_imputed
    counts the declared (not measured) values among the row's pairs, both arms together.
    Rows in the multiplicity family (``primary_estimand``, and with family "overall" the
    overall scope) carry verdicts; other rows read "unadjusted: ..." (not a verdict).

    ``equivalence``, ``model_summaries``, ``effect_sizes``, ``heterogeneity``,
    ``per_condition`` and ``robustness`` carry the estimand column; the last four are of the
    primary population only. ``imputations`` (:data:`IMPUTATION_COLUMNS`) counts, per
    metric x arm x status, the trials without metrics and the rule that scored them (values
    in analysis units). ``selected_levels`` (:data:`~bnstudy.stats.tuning.SELECTION_COLUMNS`
    plus the base-condition and tuning-factor columns) records the level each arm was tuned
    to per condition and population; empty without tuning factors. ``failed_score`` is the
    declared rule. ``units`` maps metric -> unit.
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
    #: (``stats.hypotheses.HYPOTHESIS_COLUMNS``); filled by ``study.analyze_recorded``, which
    #: knows the results file's registration. Empty when the protocol states none.
    hypotheses: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    tuning: list[str] = dataclasses.field(default_factory=list)
    select_by: str | None = None

    def primary(self) -> pd.DataFrame:
        """The estimates of the primary (intention-to-treat) analysis, every estimand."""
        return self.estimates[self.estimates["population"] == ITT]

    def sensitivity(self) -> pd.DataFrame:
        """The estimates of the ok-only sensitivity analysis."""
        return self.estimates[self.estimates["population"] == OK_ONLY]

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
            & (est["scope"] == "overall")
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


def analyze(table: pd.DataFrame, design: Design | Any) -> Analysis:
    """Analyse a results table (one row per trial) under ``design``'s roles and settings.

    ``design``: a :class:`~bnstudy.design.Design` (a ``Protocol`` is accepted too and read
    through its ``design()``). Never raises on thin data (no complete pairs, one seed): the
    affected estimates are absent and ``diagnostics`` says why. Raises ValueError when a
    required column (block_id, status, the treatment) is missing.
    """
    design = as_design(design)
    required = ["block_id", "status", design.treatment]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {missing}; has {list(table.columns)}")
    table = with_derived_metrics(table)  # e.g. failure, so it can be a primary metric
    conf = design.confidence
    cond_cols = condition_columns(design, table)
    out = _Collector()
    present = {}
    for metric, spec in design.metrics.items():
        if metric in table.columns:
            present[metric] = spec
        else:
            out.diag(metric, "", "table", "warning", f"metric column {metric!r} not in table")
    imputations = []
    selections = []
    tuned = base_design(design) if design.tuning else None
    for population in POPULATIONS:
        selection = _selection(out, table, design, population) if design.tuning else None
        if selection is not None:
            selections.append(selection.table)
        for metric, spec in present.items():
            scored = score_trials(
                table, metric, cond_cols, population, design.failed_score, spec.direction
            )
            if population == ITT:
                for note in scored.notes:
                    out.diag(metric, "", "imputation", "info", note)
                imputations.append(_imputation_rows(table, design, metric, scored))
            for variant in design.variants:
                pairs = paired_differences(table, design, metric, variant, scored=scored)
                _analyze_pairs(out, pairs, design, metric, variant, FIXED)
                if tuned is not None and selection is not None and selection.ok:
                    try:
                        pairs = tuned_differences(table, design, metric, variant, scored, selection)
                    except ValueError as exc:
                        out.diag(metric, variant, "tuned", "warning", str(exc))
                        continue
                    _analyze_pairs(out, pairs, tuned, metric, variant, TUNED)
    primary_estimand = FIXED
    if design.tuning:
        if any(r["estimand"] == TUNED for r in out.raw):
            primary_estimand = TUNED
        else:
            out.diag(
                "",
                "",
                "tuned",
                "warning",
                f"tuning factors {list(design.tuning)} declared but no tuned estimate: the "
                "fixed-setting comparison is the primary estimand",
            )
    estimates, equivalence = _decide(
        out,
        design.correction,
        design.family,
        1 - conf,
        {m: s.direction for m, s in design.metrics.items()},
        primary_estimand,
    )
    if estimates.empty:
        out.diag(
            "",
            "",
            "analyze",
            "warning",
            "no estimates: no metric x variant had at least 2 complete pairs (both arms with "
            "a measured or imputed value)",
        )
    return Analysis(
        estimates=estimates,
        equivalence=equivalence,
        effect_sizes=pd.DataFrame(out.effect_sizes, columns=EFFECT_SIZE_COLUMNS),
        heterogeneity=pd.DataFrame(out.heterogeneity, columns=HETEROGENEITY_COLUMNS),
        per_condition=(
            pd.concat(out.per_condition, ignore_index=True)
            if out.per_condition
            else pd.DataFrame(columns=PER_CONDITION_COLUMNS)
        ),
        robustness=pd.DataFrame(out.robustness, columns=ROBUSTNESS_COLUMNS),
        failures=(
            failure_rates(table, design, conf)
            if len(table)
            else pd.DataFrame(columns=FAILURE_COLUMNS)
        ),
        imputations=(
            pd.concat(imputations, ignore_index=True)
            if imputations
            else pd.DataFrame(columns=IMPUTATION_COLUMNS)
        ),
        diagnostics=pd.DataFrame(out.diagnostics, columns=DIAGNOSTIC_COLUMNS),
        model_summaries=pd.DataFrame(out.summaries, columns=SUMMARY_COLUMNS),
        confidence=conf,
        units={m: METRICS[m].unit for m in design.metrics},
        control=design.control,
        variants=list(design.variants),
        metrics=list(design.metrics),
        correction=design.correction,
        family=design.family,
        failed_score=design.failed_score,
        selected_levels=(
            pd.concat(selections, ignore_index=True)
            if any(len(s) for s in selections)
            else pd.DataFrame(columns=SELECTION_COLUMNS)
        ),
        treatment=design.treatment,
        primary_estimand=primary_estimand,
        tuning=list(design.tuning),
        select_by=design.select_by,
    )


def _selection(out: _Collector, table: pd.DataFrame, design: Design, population: str):
    selection = select_levels(table, design, population)
    model = _label("tuned", population)
    for note in selection.notes:
        out.diag("", "", model, "info" if selection.ok else "warning", note)
    if selection.ok:
        chosen = selection.table.groupby("arm")["selected"].agg(lambda s: s.value_counts().idxmax())
        out.diag(
            "",
            "",
            model,
            "info",
            f"tuned comparison: each arm at its best {', '.join(design.tuning)} per condition "
            f"by the mean {design.select_by} over seeds (most often: "
            + ", ".join(f"{arm} {level}" for arm, level in chosen.items())
            + "); the same seeds select and evaluate, which flatters both arms (see "
            "selected_levels)",
        )
    return selection


def _imputation_rows(
    table: pd.DataFrame, design: Design, metric: str, scored: Scored
) -> pd.DataFrame:
    """Trials without metrics per arm x status x rule, with the range of values they got."""
    need = scored.rule != ""
    if not need.any():
        return pd.DataFrame(columns=IMPUTATION_COLUMNS)
    part = pd.DataFrame(
        {
            "arm": table[design.treatment].to_numpy()[need],
            "status": table["status"].astype(str).to_numpy()[need],
            "rule": scored.rule[need],
            "value": scored.values[need] * METRICS[metric].scale,
        }
    )
    rows = (
        part.groupby(["arm", "status", "rule"], sort=False)["value"]
        .agg(n_trials="size", value_low="min", value_high="max")
        .reset_index()
    )
    rows.insert(0, "metric", metric)
    rows["head"] = rows["arm"]
    return rows[IMPUTATION_COLUMNS]


@dataclasses.dataclass
class _Collector:
    """Rows gathered while analysing; turned into DataFrames once at the end."""

    raw: list[dict] = dataclasses.field(default_factory=list)
    effect_sizes: list[dict] = dataclasses.field(default_factory=list)
    heterogeneity: list[dict] = dataclasses.field(default_factory=list)
    per_condition: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    robustness: list[dict] = dataclasses.field(default_factory=list)
    diagnostics: list[dict] = dataclasses.field(default_factory=list)
    summaries: list[dict] = dataclasses.field(default_factory=list)

    def diag(self, metric: str, variant: str, model: str, level: str, message: str) -> None:
        self.diagnostics.append(
            dict(metric=metric, variant=variant, model=model, level=level, message=message)
        )

    def fit(self, metric: str, variant: str, fit: EffectFit, population: str, estimand: str):
        row = dict(fit.summary, metric=metric, variant=variant, population=population)
        self.summaries.append(dict(row, estimand=estimand))
        label = _label(fit.summary["model"], population, estimand)
        for level, message in fit.diagnostics:
            self.diag(metric, variant, label, level, message)


def _label(model: str, population: str, estimand: str = FIXED) -> str:
    """A diagnostic's "model" label; say which population and estimand when not the usual."""
    tags = [population] if population != ITT else []
    tags += [estimand] if estimand != FIXED else []
    return f"{model} [{', '.join(tags)}]" if tags else model


@dataclasses.dataclass
class _Rows:
    """Adds estimate rows of one metric x variant x population x estimand."""

    out: _Collector
    common: dict[str, Any]
    imputed: np.ndarray  # (N,) declared values per pair, both arms
    confidence: float
    margin: float | None

    def add(
        self,
        scope: str,
        levels: Sequence[str],
        est: np.ndarray,
        se: np.ndarray,
        df: float,
        method: str,
        members: np.ndarray,
        pi: tuple[np.ndarray, np.ndarray] | None = None,
        with_margin: bool = True,
    ) -> None:
        """One row per level; ``members`` (N, k) marks the pairs behind each one."""
        q = _t(self.confidence, df)
        q_tost = _t(1 - 2 * (1 - self.confidence), df)
        margin = self.margin if with_margin else None
        for i, level in enumerate(levels):
            e, s = float(est[i]), float(se[i])
            pi_low, pi_high = (pi[0][i], pi[1][i]) if pi is not None else (np.nan, np.nan)
            self.out.raw.append(
                dict(
                    self.common,
                    scope=scope,
                    level=level,
                    estimate=e,
                    ci_low=e - q * s,
                    ci_high=e + q * s,
                    p=p_value(e, s, df),
                    n_pairs=int(members[:, i].sum()),
                    n_imputed=int(self.imputed @ members[:, i]),
                    method=method,
                    p_tost=tost_p(e, s, df, margin),
                    tost_ci_low=e - q_tost * s,
                    tost_ci_high=e + q_tost * s,
                    margin=margin,
                    pi_low=pi_low,
                    pi_high=pi_high,
                    pi_within_margin=(
                        None if margin is None else bool(-margin < pi_low < pi_high < margin)
                    ),
                    df=df,
                    slope=scope.endswith(SLOPE_SUFFIX),
                )
            )

    def add_fit(
        self,
        fit: EffectFit,
        scope: str,
        levels: Sequence[str],
        members: np.ndarray,
        keep: slice = slice(None),
        with_margin: bool = True,
        predict: bool = True,
        suffix: str = "",
    ) -> None:
        low, high = fit.prediction_interval(self.confidence)
        self.add(
            scope,
            list(levels)[keep],
            fit.estimate[keep],
            fit.se[keep],
            fit.df,
            f"{fit.method}, t df={fit.df:g}{suffix}",
            members[:, keep],
            (low[keep], high[keep]) if predict else None,
            with_margin,
        )


def _t(confidence: float, df: float) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def _analyze_pairs(
    out: _Collector,
    pairs: Pairs,
    design: Design,
    metric: str,
    variant: str,
    estimand: str,
) -> None:
    conf = design.confidence
    control = design.control
    spec = design.metrics[metric]
    population = pairs.population
    primary = population == ITT
    where = _label("pairing", population, estimand)
    if pairs.n_dropped:
        why = (
            "no trial, the metric undefined, no score could be imputed, or no metrics in either arm"
            if primary
            else "not ok, absent, or the metric undefined"
        )
        out.diag(
            metric,
            variant,
            where,
            "info",
            f"{pairs.n_dropped} of {pairs.n_blocks} blocks lack a usable {control} or "
            f"{variant} value ({why}) and are not paired",
        )
    if pairs.n_unmeasured:
        out.diag(
            metric,
            variant,
            where,
            "info",
            f"{pairs.n_unmeasured} of {pairs.n_blocks} blocks have no metrics in either arm "
            f"(e.g. both diverged): they measured nothing and are left out of the {metric} "
            "comparison; the failure rates count them",
        )
    if primary and (pairs.n_imputed_control or pairs.n_imputed_variant):
        out.diag(
            metric,
            variant,
            where,
            "info",
            f"intention to treat: of {pairs.n_pairs} pairs, {pairs.n_imputed_variant} {variant} "
            f"and {pairs.n_imputed_control} {control} values are the declared score of a "
            f"trial without metrics (failed_score {design.failed_score!r})",
        )
    if pairs.n_pairs < 2:
        out.diag(
            metric,
            variant,
            where,
            "warning",
            f"{pairs.n_pairs} complete pair(s): no estimate for {variant} vs {control}",
        )
        return
    frame = pairs.frame
    d = frame["d"].to_numpy()
    groups = frame["condition"].to_numpy()
    imputed = (
        frame["control_imputed"].astype(int) + frame["variant_imputed"].astype(int)
    ).to_numpy()
    rows = _Rows(
        out,
        dict(
            metric=metric,
            variant=variant,
            control=control,
            population=population,
            estimand=estimand,
        ),
        imputed,
        conf,
        spec.equivalence_margin,
    )
    try:
        overall = paired_effect_fit(d, np.ones((len(d), 1)), groups, ["all"], model="overall")
    except ValueError as exc:
        out.diag(metric, variant, _label("overall", population, estimand), "warning", str(exc))
        return
    out.fit(metric, variant, overall, population, estimand)
    rows.add_fit(overall, "overall", ["all"], np.ones((len(d), 1), bool))
    _moderation(out, rows, frame, design, metric, variant, population, estimand)
    if not primary:
        return
    _heterogeneity(out, pairs, overall, metric, variant, control, conf, estimand)
    _effect_sizes_and_robustness(
        out, pairs, overall, metric, variant, control, spec.direction, design, estimand
    )


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _moderation(
    out: _Collector,
    rows: _Rows,
    frame: pd.DataFrame,
    design: Design,
    metric: str,
    variant: str,
    population: str,
    estimand: str,
) -> None:
    d = frame["d"].to_numpy()
    groups = frame["condition"].to_numpy()
    for mod, transform in design.moderators.items():
        where = _label(mod, population, estimand)
        if mod not in frame.columns:
            out.diag(metric, variant, where, "warning", f"moderator {mod!r} is not a table column")
            continue
        values = frame[mod]
        levels = sorted(values.unique())
        if len(levels) < 2:
            out.diag(
                metric,
                variant,
                where,
                "info",
                f"moderator {mod!r} takes one value among complete pairs; no moderation",
            )
            continue
        X = (values.to_numpy()[:, None] == np.array(levels, dtype=object)[None, :]).astype(float)
        names = [str(v) for v in levels]
        try:
            fit = paired_effect_fit(d, X, groups, names, model=mod)
        except ValueError as exc:
            out.diag(metric, variant, where, "warning", str(exc))
            continue
        out.fit(metric, variant, fit, population, estimand)
        members = X.astype(bool)
        rows.add_fit(fit, mod, names, members)
        _contrasts(rows, fit, mod, names, members)
        if _is_numeric(values):
            _slope(
                out, rows, d, groups, values, mod, transform, metric, variant, population, estimand
            )


def _contrasts(rows: _Rows, fit: EffectFit, mod: str, names: list[str], members) -> None:
    """Each level's effect minus the first level's, with a t CI on the fit's df."""
    est, se = [], []
    for j in range(1, len(names)):
        w = np.zeros(len(names))
        w[j], w[0] = 1.0, -1.0
        e, s = fit.contrast(w)
        est.append(e)
        se.append(s)
    both = members[:, 1:] | members[:, [0]]
    rows.add(
        mod + CONTRAST_SUFFIX,
        [f"{b} - {names[0]}" for b in names[1:]],
        np.array(est),
        np.array(se),
        fit.df,
        f"{fit.method}, t df={fit.df:g}; effect at the level minus effect at {mod}={names[0]}",
        both,
        None,
        with_margin=False,
    )


def _slope(
    out,
    rows: _Rows,
    d,
    groups,
    values: pd.Series,
    mod,
    transform,
    metric,
    variant,
    population,
    estimand,
) -> None:
    scope = mod + SLOPE_SUFFIX
    x = values.to_numpy(dtype=float)
    if transform == "log":
        if np.any(x <= 0):
            out.diag(
                metric,
                variant,
                _label(scope, population, estimand),
                "warning",
                f"moderator {mod!r} has values <= 0: no slope on the log scale",
            )
            return
        x, per = np.log(x), f"per unit of ln({mod})"
    else:
        per = f"per unit of {mod}"
    X = np.column_stack([np.ones(len(d)), x - x.mean()])
    try:
        fit = paired_effect_fit(d, X, groups, ["intercept", "slope"], model=scope)
    except ValueError as exc:
        out.diag(metric, variant, _label(scope, population, estimand), "warning", str(exc))
        return
    out.fit(metric, variant, fit, population, estimand)
    # No equivalence margin for a slope: the margin is in effect units, not per moderator unit.
    rows.add_fit(
        fit,
        scope,
        ["intercept", "slope"],
        np.ones((len(d), 2), bool),
        slice(1, 2),
        with_margin=False,
        predict=False,
        suffix=f"; slope {per} ({transform} scale)",
    )


def _heterogeneity(
    out: _Collector, pairs: Pairs, overall: EffectFit, metric, variant, control, conf, estimand
) -> None:
    cols = pairs.condition_columns
    pc = per_condition_effects(pairs.frame, cols, conf)
    pc.insert(0, "condition", condition_labels(pc, cols))
    pc.insert(0, "control", control)
    pc.insert(0, "variant", variant)
    pc.insert(0, "metric", metric)
    pc["estimand"] = estimand
    out.per_condition.append(pc)
    ok = pc[np.isfinite(pc["se"]) & (pc["se"] > 0)]
    if len(ok) < 2:
        out.diag(
            metric,
            variant,
            _label("heterogeneity", ITT, estimand),
            "info",
            f"{len(ok)} condition(s) with >= 2 pairs and a non-zero spread of the "
            "differences: no tau^2 / I^2",
        )
        return
    y, v = ok["estimate"].to_numpy(), ok["se"].to_numpy() ** 2
    meta = heterogeneity(y, v, conf)
    found = meta.to_dict("records")
    for r in found:
        if r["note"]:
            out.diag(metric, variant, f"heterogeneity {r['estimator']}", "info", r["note"])
    if np.isfinite(overall.tau2):
        low, high = overall.t_interval(conf)
        found.append(
            dict(
                estimator="REML (paired model)",
                k=len(ok),
                tau2=overall.tau2,
                tau=np.sqrt(overall.tau2),
                i2=i_squared(overall.tau2, v),
                q=np.nan,
                q_df=np.nan,
                q_p=np.nan,
                pooled=overall.estimate[0],
                pooled_ci_low=low[0],
                pooled_ci_high=high[0],
                ci_method=f"paired model, t on {overall.df:g} df",
                note="paired model; pooled = the model's overall effect (t CI)",
            )
        )
    for r in found:
        out.heterogeneity.append(
            dict(r, metric=metric, variant=variant, control=control, estimand=estimand)
        )


def _effect_sizes_and_robustness(
    out: _Collector,
    pairs: Pairs,
    overall: EffectFit,
    metric: str,
    variant: str,
    control: str,
    direction: str,
    design: Design,
    estimand: str,
) -> None:
    conf = design.confidence
    frame = pairs.frame
    d = frame["d"].to_numpy()
    groups = frame["condition"].to_numpy()
    boot = effect_size_bootstrap(
        d, groups, direction, design.bootstrap_replicates, design.bootstrap_seed, conf
    )
    for stat in STATISTICS:
        est, low, high = boot.values[stat]
        out.effect_sizes.append(
            dict(
                metric=metric,
                variant=variant,
                control=control,
                statistic=stat,
                estimate=est,
                ci_low=low,
                ci_high=high,
                n_pairs=len(d),
                method=boot.method[stat],
                estimand=estimand,
                resampled=boot.resampled,
            )
        )
    means = frame.groupby("condition")["d"].mean().to_numpy()
    flip = sign_flip_test(means, seed=design.bootstrap_seed)
    m_est = overall.estimate[0]
    m_low, m_high = (v[0] for v in overall.t_interval(conf))
    m_p = p_value(m_est, overall.se[0], overall.df)
    b_est, b_low, b_high = boot.values["mean_difference"]
    alpha = 1 - conf
    model_sig = m_p < alpha
    notes, remarks = [], []
    if boot.resampled == GENERALISING:
        if np.isfinite(b_low) and model_sig != (b_low > 0 or b_high < 0):
            notes.append("model and bootstrap CI disagree on significance")
        if (m_low > 0 and b_high < 0) or (m_high < 0 and b_low > 0):
            notes.append("model and bootstrap CIs disagree on sign")
    else:
        remarks.append(
            f"bootstrap conditional on the {pairs.n_conditions} observed condition(s) (too "
            "few to resample): not compared with the model"
        )
    if flip.can_reject(alpha):
        if np.isfinite(flip.p) and model_sig != (flip.p < alpha):
            notes.append("model and sign-flip test disagree on significance")
    else:
        remarks.append(
            f"sign-flip test has no power with {flip.n_units} condition(s) (smallest "
            f"attainable p {flip.min_p:.2g}): not compared with the model"
        )
    out.robustness.append(
        dict(
            metric=metric,
            variant=variant,
            control=control,
            model_estimate=m_est,
            model_ci_low=m_low,
            model_ci_high=m_high,
            model_p=m_p,
            bootstrap_estimate=b_est,
            bootstrap_ci_low=b_low,
            bootstrap_ci_high=b_high,
            wilcoxon_p=np.nan,
            wilcoxon_unit=WILCOXON_REPLACED,
            n_pairs=len(d),
            n_dropped_blocks=pairs.n_dropped,
            n_conditions=pairs.n_conditions,
            agree=not notes,
            note="; ".join(notes + remarks),
            estimand=estimand,
            bootstrap_resampled=boot.resampled,
            signflip_p=flip.p,
            signflip_min_p=flip.min_p,
        )
    )
    if notes:
        out.diag(metric, variant, _label("robustness", ITT, estimand), "warning", "; ".join(notes))


def _decide(
    out: _Collector,
    correction: str,
    family: str,
    alpha: float,
    directions: dict[str, str],
    primary_estimand: str = FIXED,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Adjust p-values over the declared family and word every row.

    The family holds primary (intention-to-treat) rows of the primary estimand only: their
    overall effects, or every such estimate with family "all". Rows of the family get
    verdicts; a sensitivity row whose primary twin is in the family gets the verdict of its
    raw p-values and says it is a sensitivity check. Every other row (outside the family) is
    worded "unadjusted: ..." and never "better"/"worse".
    """
    raw = pd.DataFrame(out.raw)
    if raw.empty:
        return (pd.DataFrame(columns=ESTIMATE_COLUMNS), pd.DataFrame(columns=EQUIVALENCE_COLUMNS))
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
    use_p = np.where(in_family, p_adj, raw["p"].to_numpy(float))
    use_tost = np.where(in_family, p_tost_adj, raw["p_tost"].to_numpy(float))
    words: list[str] = []
    for i, r in enumerate(raw.itertuples(index=False)):
        if in_family[i] and r.pi_within_margin is True and not _pi_claim(True, r.df):
            out.diag(
                r.metric,
                r.variant,
                _label(r.scope, ITT, r.estimand),
                "info",
                f"the prediction interval lies inside +-{r.margin:g}, but tau^2 rests on "
                f"{r.df:g} degrees of freedom (fewer than {PI_CLAIM_MIN_DF}): too few "
                "conditions to claim equivalence in every condition",
            )
        if in_rule[i]:
            w = verdict(
                r.estimate,
                use_p[i],
                use_tost[i],
                alpha,
                directions[r.metric],
                _pi_claim(r.pi_within_margin, r.df),
            )
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
    )


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
