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
  t_{G-p-1} sqrt(tau^2 + se^2), one degree of freedom fewer than the CI's, Higgins,
  Thompson & Spiegelhalter 2009, IntHout et al. 2016; :data:`PI_METHOD`);
- contrasts between moderator levels (each level minus the first, with CIs), and a slope per
  numeric moderator on the scale its transform declares (``design.moderators``: ``log`` or
  ``identity``), scope ``f"{moderator}_slope"``;
- TOST equivalence, multiplicity adjustment and verdicts (``inference``): rows in the
  declared family get verdicts ("better", "worse", "equivalent (PI within margin)",
  "equivalent (on average)", "inconclusive"); rows outside it are described, never judged
  ("unadjusted: higher", ...). "equivalent (PI within margin)" also needs the prediction
  interval with tau^2 at its Q-profile upper bound inside the margin
  (``pi_claim_low``/``pi_claim_high``, ``decisions.pi_claim``). A tuned verdict that rests
  on a level chosen at an edge of the tuning grid (``tuning_edges``, not a declared bound)
  reads "inconclusive (tuning grid edge)";
- per-condition effects with a verdict each (Holm over the conditions of each metric x
  variant x estimand, ``regimes``) and their counts (``regimes``: "better in k, worse in
  m, ..."); tau^2 / I^2 with Hartung-Knapp pooled CIs (``meta``); the share of tau^2 each
  moderator explains, with the between-levels Q test (``moderator_variance``);
- effect sizes with bootstrap CIs, resampling conditions when there are enough of them
  (``bootstrap``), and a robustness check: that bootstrap and an exact sign-flip test on
  condition means (``signflip``) next to the model;
- failure rates by arm (``failures``) and the values imputed per arm (``imputations``);
- the level each arm was tuned to per condition (``selected_levels``);
- each arm's own level of every primary metric, overall, per level of each varying factor
  and per condition (``arm_levels``, :func:`~bnstudy.stats.levels.level_table`).

Everything is computed for the intention-to-treat population; the ok-only sensitivity
analysis repeats the model estimates (overall, per moderator level, contrasts, slopes) and
the equivalence tests only.

The report and the CLI read the same Analysis; nothing is computed twice.

This module orchestrates; each step returns its rows (:class:`~bnstudy.stats.findings.Findings`)
and ``analyze`` adds them up: :mod:`~bnstudy.stats.pairing` builds the pairs,
:mod:`~bnstudy.stats.estimates` fits the models, :mod:`~bnstudy.stats.robustness` runs the
checks beside them, :mod:`~bnstudy.stats.decisions` adjusts and words the rows, and
:mod:`~bnstudy.stats.analysis_result` holds the result, its columns and its JSON form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from bnstudy.catalogue import METRICS
from bnstudy.spec.design import Design, MetricDesign
from bnstudy.stats.analysis_result import (
    CONTRAST_SUFFIX,
    DIAGNOSTIC_COLUMNS,
    EFFECT_SIZE_COLUMNS,
    EQUIVALENCE_COLUMNS,
    ESTIMATE_COLUMNS,
    HETEROGENEITY_COLUMNS,
    IMPUTATION_COLUMNS,
    MODERATOR_VARIANCE_COLUMNS,
    PER_CONDITION_COLUMNS,
    PI_METHOD,
    REGIME_TABLE_COLUMNS,
    ROBUSTNESS_COLUMNS,
    SENSITIVITY_VERDICT,
    SLOPE_SUFFIX,
    SUMMARY_COLUMNS,
    WILCOXON_REPLACED,
    Analysis,
    imputation_columns,
)
from bnstudy.stats.decisions import PI_CLAIM_MIN_DF, decide
from bnstudy.stats.derived import with_derived_metrics
from bnstudy.stats.edges import EDGE_COLUMNS, tuning_edges
from bnstudy.stats.estimates import (
    heterogeneity_rows,
    model_estimates,
    moderator_variance_rows,
)
from bnstudy.stats.failures import failure_columns, failure_rates
from bnstudy.stats.findings import Comparison, Findings, label
from bnstudy.stats.imputation import ITT, POPULATIONS, Scored, score_trials
from bnstudy.stats.inference import EDGE_VERDICT
from bnstudy.stats.levels import level_table
from bnstudy.stats.paired import as_design, condition_columns
from bnstudy.stats.pairing import Paired, build_pairs
from bnstudy.stats.regimes import CONDITION_VERDICT_COLUMNS, condition_verdicts, regimes
from bnstudy.stats.robustness import robustness_rows
from bnstudy.stats.tuning import FIXED, SELECTION_COLUMNS, TUNED, Selection, select_levels

# The result's names were defined here before the module was split; their users import them
# from here, so they stay importable from here.
__all__ = [
    "CONTRAST_SUFFIX",
    "DIAGNOSTIC_COLUMNS",
    "EFFECT_SIZE_COLUMNS",
    "EQUIVALENCE_COLUMNS",
    "ESTIMATE_COLUMNS",
    "HETEROGENEITY_COLUMNS",
    "IMPUTATION_COLUMNS",
    "PER_CONDITION_COLUMNS",
    "PI_CLAIM_MIN_DF",
    "PI_METHOD",
    "ROBUSTNESS_COLUMNS",
    "SENSITIVITY_VERDICT",
    "SLOPE_SUFFIX",
    "SUMMARY_COLUMNS",
    "WILCOXON_REPLACED",
    "Analysis",
    "analyze",
]


def analyze(table: pd.DataFrame, design: Design | Any) -> Analysis:
    """Analyse a results table (one row per trial) under ``design``'s roles and settings.

    ``design``: a :class:`~bnstudy.spec.design.Design` (a ``Protocol`` is accepted too and read
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
    present = {m: spec for m, spec in design.metrics.items() if m in table.columns}
    found = [
        Findings.note(metric, "", "table", "warning", f"metric column {metric!r} not in table")
        for metric in design.metrics
        if metric not in present
    ]
    imputations: list[pd.DataFrame] = []
    selections: list[pd.DataFrame] = []
    edge_frames: list[pd.DataFrame] = []
    for population in POPULATIONS:
        part, imputed, selection, edges = _analyze_population(table, design, present, population)
        found.append(part)
        imputations += imputed
        if selection is not None:
            selections.append(selection.table)
        if edges is not None and len(edges):
            edge_frames.append(edges)
    edges = _concat(edge_frames, EDGE_COLUMNS)
    raw = Findings.concat(found).raw
    primary_estimand, chosen = _primary_estimand(design, raw)
    estimates, equivalence, decided = decide(
        raw,
        design.correction,
        design.family,
        1 - design.confidence,
        {m: s.direction for m, s in design.metrics.items()},
        primary_estimand,
        edges=edges,
    )
    found += [chosen, decided]
    if estimates.empty:
        found.append(_NO_ESTIMATES)
    tables = _tables(Findings.concat(found))
    tables["per_condition"] = _condition_verdicts(tables["per_condition"], design, edges)
    return Analysis(
        estimates=estimates,
        equivalence=equivalence,
        **tables,
        regimes=_regimes(tables["per_condition"]),
        tuning_edges=edges,
        failures=(
            failure_rates(table, design, design.confidence)
            if len(table)
            else pd.DataFrame(columns=failure_columns(design.treatment))
        ),
        imputations=_concat(imputations, imputation_columns(design.treatment)),
        selected_levels=(
            pd.concat(selections, ignore_index=True)
            if any(len(s) for s in selections)
            else pd.DataFrame(columns=SELECTION_COLUMNS)
        ),
        primary_estimand=primary_estimand,
        arm_levels=_arm_levels(table, design),
        **_settings(design),
    )


_NO_ESTIMATES = Findings.note(
    "",
    "",
    "analyze",
    "warning",
    "no estimates: no metric x variant had at least 2 complete pairs (both arms with "
    "a measured or imputed value)",
)


def _analyze_population(
    table: pd.DataFrame, design: Design, present: Mapping[str, MetricDesign], population: str
) -> tuple[Findings, list[pd.DataFrame], Selection | None, pd.DataFrame | None]:
    """Every comparison of one population: its rows, the imputation counts (intention to
    treat only) and, with tuning factors, the selection of each arm's levels and where the
    tuned comparison rests on a tuning grid edge (:func:`~bnstudy.stats.edges.tuning_edges`)."""
    selection = select_levels(table, design, population) if design.tuning else None
    edges = tuning_edges(selection, design) if selection is not None else None
    found = [_selection_notes(selection, design, population)] if selection is not None else []
    imputations = []
    cond_cols = condition_columns(design, table)
    for metric, spec in present.items():
        scored = score_trials(
            table, metric, cond_cols, population, design.failed_score, spec.direction
        )
        if population == ITT:
            found += [Findings.note(metric, "", "imputation", "info", n) for n in scored.notes]
            imputations.append(_imputation_rows(table, design, metric, scored))
        for variant in design.variants:
            # build_pairs is lazy: the fixed pairs are analysed before the tuned ones are built.
            for paired in build_pairs(table, design, metric, variant, scored, selection):
                found.append(paired.notes)
                if paired.usable:
                    found.append(_analyze_pairs(paired, metric, variant))
    return Findings.concat(found), imputations, selection, edges


def _analyze_pairs(paired: Paired, metric: str, variant: str) -> Findings:
    """The model estimates of one comparison and, for the primary population, heterogeneity,
    effect sizes and robustness."""
    pairs, design = paired.pairs, paired.design
    assert pairs is not None  # paired.usable
    cmp = Comparison(
        metric=metric,
        variant=variant,
        control=design.control,
        population=pairs.population,
        estimand=paired.estimand,
        confidence=design.confidence,
        margin=design.metrics[metric].equivalence_margin,
    )
    overall, found = model_estimates(cmp, pairs.frame, design.moderators)
    if overall is None or not cmp.primary:
        return found
    return Findings.concat(
        [
            found,
            heterogeneity_rows(cmp, pairs, overall),
            moderator_variance_rows(cmp, pairs, overall, found, design.moderators),
            robustness_rows(cmp, pairs, overall, design),
        ]
    )


def _primary_estimand(design: Design, raw: Sequence[dict[str, Any]]) -> tuple[str, Findings]:
    """Tuned when the design has tuning factors and a tuned estimate was made, else fixed (with
    a warning when tuning factors were declared)."""
    if not design.tuning:
        return FIXED, Findings()
    if any(r["estimand"] == TUNED for r in raw):
        return TUNED, Findings()
    return FIXED, Findings.note(
        "",
        "",
        "tuned",
        "warning",
        f"tuning factors {list(design.tuning)} declared but no tuned estimate: the "
        "fixed-setting comparison is the primary estimand",
    )


def _tables(found: Findings) -> dict[str, pd.DataFrame]:
    """The Analysis tables made of the steps' rows (estimates and equivalence: ``decide``)."""
    return dict(
        effect_sizes=pd.DataFrame(list(found.effect_sizes), columns=EFFECT_SIZE_COLUMNS),
        heterogeneity=pd.DataFrame(list(found.heterogeneity), columns=HETEROGENEITY_COLUMNS),
        per_condition=_concat(found.per_condition, PER_CONDITION_COLUMNS),
        robustness=pd.DataFrame(list(found.robustness), columns=ROBUSTNESS_COLUMNS),
        diagnostics=pd.DataFrame(list(found.diagnostics), columns=DIAGNOSTIC_COLUMNS),
        model_summaries=pd.DataFrame(list(found.summaries), columns=SUMMARY_COLUMNS),
        moderator_variance=pd.DataFrame(
            list(found.moderator_variance), columns=MODERATOR_VARIANCE_COLUMNS
        ),
    )


#: The per-condition verdict columns the per_condition table keeps.
_VERDICT_COLUMNS = [c for c in CONDITION_VERDICT_COLUMNS if c not in ("df", "margin")]


def _condition_verdicts(
    per_condition: pd.DataFrame, design: Design, edges: pd.DataFrame
) -> pd.DataFrame:
    """The per-condition effects with each condition's verdict (Holm over the conditions of
    each metric x variant x estimand, :func:`~bnstudy.stats.regimes.condition_verdicts`); a
    tuned condition whose comparison rests on a tuning grid edge reads :data:`EDGE_VERDICT`
    (its p-values and the adjustment unchanged)."""
    judged = condition_verdicts(per_condition, design.metrics, design.confidence)
    out = per_condition.reset_index(drop=True).assign(
        **{c: judged[c].to_numpy() for c in _VERDICT_COLUMNS}
    )
    if len(out) and len(edges):
        hit = edges[(edges["population"] == ITT) & edges["edge"].astype(bool)]
        keys = set(zip(hit["metric"], hit["variant"], hit["condition"].astype(str), strict=True))
        at_edge = [
            e == TUNED and (m, v, str(c)) in keys
            for e, m, v, c in zip(
                out["estimand"], out["metric"], out["variant"], out["condition"], strict=True
            )
        ]
        out.loc[at_edge, "verdict"] = EDGE_VERDICT
    return out


def _regimes(per_condition: pd.DataFrame) -> pd.DataFrame:
    """Better in k, worse in m, ... conditions, per metric x variant x estimand."""
    if per_condition.empty:
        return pd.DataFrame(columns=REGIME_TABLE_COLUMNS)
    return regimes(per_condition)[REGIME_TABLE_COLUMNS]


def _concat(frames: Sequence[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _arm_levels(table: pd.DataFrame, design: Design) -> pd.DataFrame:
    """Each arm's intention-to-treat levels of the primary metrics, in every grouping."""
    return level_table(
        table,
        list(design.metrics),
        treatment=design.treatment,
        conditions=design.conditions,
        arms=(design.control, *design.variants),
        failed_score=design.failed_score,
        directions={m: s.direction for m, s in design.metrics.items()},
        confidence=design.confidence,
    )


def _settings(design: Design) -> dict[str, Any]:
    """The Analysis fields read from the design (and the design itself)."""
    return dict(
        design=design,
        confidence=design.confidence,
        units={m: METRICS[m].unit for m in design.metrics},
        control=design.control,
        variants=list(design.variants),
        metrics=list(design.metrics),
        correction=design.correction,
        family=design.family,
        failed_score=design.failed_score,
        treatment=design.treatment,
        tuning=list(design.tuning),
        select_by=design.select_by,
    )


def _selection_notes(selection: Selection, design: Design, population: str) -> Findings:
    """What the selection of each arm's tuned levels said, and which levels it chose."""
    model = label("tuned", population)
    severity = "info" if selection.ok else "warning"
    found = [Findings.note("", "", model, severity, note) for note in selection.notes]
    if selection.ok:
        chosen = selection.table.groupby("arm")["selected"].agg(lambda s: s.value_counts().idxmax())
        message = (
            f"tuned comparison: each arm at its best {', '.join(design.tuning)} per condition "
            f"by the mean {design.select_by} over seeds (most often: "
            + ", ".join(f"{arm} {level}" for arm, level in chosen.items())
            + "); cross-fitted: levels chosen on one half of each condition's seeds (alternate "
            "seeds in ascending order) are evaluated on the other half's pairs, so no seed both "
            "selects and is evaluated (see selected_levels)"
        )
        found.append(Findings.note("", "", model, "info", message))
    return Findings.concat(found)


def _imputation_rows(
    table: pd.DataFrame, design: Design, metric: str, scored: Scored
) -> pd.DataFrame:
    """Trials without metrics per arm x status x rule, with the range of values they got."""
    columns = imputation_columns(design.treatment)
    need = scored.rule != ""
    if not need.any():
        return pd.DataFrame(columns=columns)
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
    rows[design.treatment] = rows["arm"]  # deprecated: see imputation_columns
    return rows[columns]
