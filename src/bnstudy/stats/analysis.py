"""``analyze``: a results table and its protocol in, an :class:`Analysis` of tidy tables out.

Populations. The primary analysis is intention to treat (:mod:`bnstudy.stats.imputation`):
collapsed trials count with their measured metrics, and trials without metrics (diverged,
failed, timed out, ...) with the protocol's declared ``failed_score`` (chance, or the worst
value measured in their condition), so a head that breaks training cannot flatter itself by
leaving the comparison. A block in which neither arm has metrics measured nothing and is left
out of the metric comparison (its difference would be exactly 0); failure rates count it.
The analysis of trials with status ok only is repeated beside it as a sensitivity check: its
rows carry ``population == "ok only"``, are never in the multiplicity family, and their
verdict reads e.g. "worse (sensitivity, unadjusted)".

For each primary metric and each variant against the control, from the complete pairing
blocks (paired differences d = variant - control, analysis units):

- overall effect, per-moderator-level effects and the slope on log(imbalance_ratio), from
  the paired model d ~ moderators + (1 | condition) (``mixed.paired_effect_fit``);
- TOST equivalence, multiplicity adjustment and verdicts (``inference``);
- per-condition effects and tau^2 / I^2 (``meta``);
- effect sizes with BCa cluster-bootstrap CIs (``bootstrap``) and a robustness check
  (bootstrap CI and Wilcoxon signed-rank test next to the model);
- failure rates by arm (``failures``) and the values imputed per arm (``imputations``).

Everything is computed for the intention-to-treat population; the ok-only sensitivity
analysis repeats the model estimates (overall, per moderator level, slope) and the
equivalence tests only.

The report and the CLI read the same Analysis; nothing is computed twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bnstudy.catalogue import METRICS
from bnstudy.protocol import TREATMENT, Protocol
from bnstudy.stats.bootstrap import STATISTICS, block_bootstrap
from bnstudy.stats.failures import FAILURE_COLUMNS, failure_rates
from bnstudy.stats.imputation import ITT, OK_ONLY, POPULATIONS, Scored, score_trials
from bnstudy.stats.inference import adjust, p_value, tost_p, verdict
from bnstudy.stats.meta import heterogeneity, i_squared, per_condition_effects
from bnstudy.stats.mixed import EffectFit, paired_effect_fit
from bnstudy.stats.paired import Pairs, condition_columns, condition_labels, paired_differences

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
]
IMPUTATION_COLUMNS = [
    "metric",
    "head",
    "status",
    "rule",
    "n_trials",
    "value_low",
    "value_high",
]
SLOPE_SCOPE = "log_imbalance_ratio_slope"
#: Appended to the verdict of every sensitivity (ok-only) row.
SENSITIVITY_VERDICT = " (sensitivity, unadjusted)"
REQUIRED_COLUMNS = ["block_id", "status", TREATMENT]


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Everything estimated from one results table, as tidy DataFrames.

    ``estimates`` has exactly :data:`ESTIMATE_COLUMNS`; population is "intention-to-treat"
    (primary) or "ok only" (sensitivity; verdict suffixed :data:`SENSITIVITY_VERDICT`, no
    p_adj); scope is "overall", a moderator name or :data:`SLOPE_SCOPE`; level is "all"
    (overall), the moderator level as a string, or "slope" (effect change per unit of log
    imbalance ratio); n_imputed counts the declared (not measured) values among the row's
    pairs, both arms together. ``equivalence`` and ``model_summaries`` carry the same
    population column; effect sizes, heterogeneity, per-condition effects and robustness are
    of the primary population only. ``imputations`` (:data:`IMPUTATION_COLUMNS`) counts, per
    metric x head x status, the trials without metrics and the rule that scored them (values
    in analysis units; rule "not imputable" where none could). ``failed_score`` is the
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

    def primary(self) -> pd.DataFrame:
        """The estimates of the primary (intention-to-treat) analysis."""
        return self.estimates[self.estimates["population"] == ITT]

    def sensitivity(self) -> pd.DataFrame:
        """The estimates of the ok-only sensitivity analysis."""
        return self.estimates[self.estimates["population"] == OK_ONLY]

    def headline(self, metric: str | None = None, variant: str | None = None) -> dict[str, Any]:
        """The primary (intention-to-treat) overall row of ``metric`` x ``variant`` (default:
        the first of each) as a dict, with ``text`` like "bn − plain on balanced_acc: −0.42 pp
        (95% CI −0.90 to 0.06), inconclusive". Empty dict when there is no such estimate."""
        metric = metric or (self.metrics[0] if self.metrics else None)
        variant = variant or (self.variants[0] if self.variants else None)
        est = self.primary()
        row = est[
            (est["metric"] == metric) & (est["variant"] == variant) & (est["scope"] == "overall")
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
        r["text"] = (
            f"{variant} − {self.control} on {metric}: {_num(r['estimate'])}{spaced}"
            f" ({_percent(self.confidence)} CI {_num(r['ci_low'])} to {_num(r['ci_high'])}"
            f"{adjusted}), {r['verdict']}"
        )
        return r

    def to_records(self) -> dict[str, Any]:
        """JSON-friendly form: each table as a list of row dicts, plus the settings."""
        tables = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), pd.DataFrame)
        }
        out: dict[str, Any] = {
            k: v.astype(object).where(v.notna(), None).to_dict("records") for k, v in tables.items()
        }
        out.update(
            confidence=self.confidence,
            units=self.units,
            control=self.control,
            variants=self.variants,
            metrics=self.metrics,
            correction=self.correction,
            family=self.family,
            failed_score=self.failed_score,
        )
        return out


def _percent(confidence: float) -> str:
    """0.95 -> "95%", 0.975 -> "97.5%" (a plain ".0%" would print 98%)."""
    return f"{round(confidence * 100, 6):g}%"


def _num(x: float) -> str:
    return f"{x:.2f}".replace("-", "−") if np.isfinite(x) else "n/a"


def analyze(table: pd.DataFrame, protocol: Protocol) -> Analysis:
    """Analyse a results table (one row per trial) under ``protocol``'s analysis settings.

    Never raises on thin data (no complete pairs, one seed): the affected estimates are
    absent and ``diagnostics`` says why. Raises ValueError when a required column
    (block_id, status, head) is missing.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {missing}; has {list(table.columns)}")
    settings = protocol.analysis
    conf = settings.confidence
    cond_cols = condition_columns(protocol, table)
    out = _Collector()
    present = {}
    for metric, spec in settings.metrics.items():
        if metric in table.columns:
            present[metric] = spec
        else:
            out.diag(metric, "", "table", "warning", f"metric column {metric!r} not in table")
    imputations = []
    for population in POPULATIONS:
        for metric, spec in present.items():
            scored = score_trials(
                table, metric, cond_cols, population, settings.failed_score, spec.direction
            )
            if population == ITT:
                for note in scored.notes:
                    out.diag(metric, "", "imputation", "info", note)
                imputations.append(_imputation_rows(table, metric, scored))
            for variant in protocol.variants:
                pairs = paired_differences(table, protocol, metric, variant, scored=scored)
                _analyze_pairs(
                    out, pairs, protocol, metric, variant, spec.direction, spec.equivalence_margin
                )
    estimates, equivalence = _decide(
        out,
        settings.correction,
        settings.family,
        1 - conf,
        {m: s.direction for m, s in settings.metrics.items()},
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
            else pd.DataFrame(
                columns=[
                    "metric",
                    "variant",
                    "control",
                    "condition",
                    "estimate",
                    "ci_low",
                    "ci_high",
                    "n_pairs",
                    "se",
                ]
            )
        ),
        robustness=pd.DataFrame(out.robustness, columns=ROBUSTNESS_COLUMNS),
        failures=(
            failure_rates(table, protocol, conf)
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
        units={m: METRICS[m].unit for m in settings.metrics},
        control=protocol.control,
        variants=list(protocol.variants),
        metrics=list(settings.metrics),
        correction=settings.correction,
        family=settings.family,
        failed_score=settings.failed_score,
    )


def _imputation_rows(table: pd.DataFrame, metric: str, scored: Scored) -> pd.DataFrame:
    """Trials without metrics per head x status x rule, with the range of values they got."""
    need = scored.rule != ""
    if not need.any():
        return pd.DataFrame(columns=IMPUTATION_COLUMNS)
    part = pd.DataFrame(
        {
            "head": table[TREATMENT].to_numpy()[need],
            "status": table["status"].astype(str).to_numpy()[need],
            "rule": scored.rule[need],
            "value": scored.values[need] * METRICS[metric].scale,
        }
    )
    rows = (
        part.groupby(["head", "status", "rule"], sort=False)["value"]
        .agg(n_trials="size", value_low="min", value_high="max")
        .reset_index()
    )
    rows.insert(0, "metric", metric)
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

    def fit(self, metric: str, variant: str, fit: EffectFit, population: str) -> None:
        self.summaries.append(
            dict(fit.summary, metric=metric, variant=variant, population=population)
        )
        for level, message in fit.diagnostics:
            self.diag(metric, variant, _label(fit.summary["model"], population), level, message)


def _label(model: str, population: str) -> str:
    """A diagnostic's "model" label; sensitivity analyses say which population they use."""
    return model if population == ITT else f"{model} [{population}]"


def _analyze_pairs(
    out: _Collector,
    pairs: Pairs,
    protocol: Protocol,
    metric: str,
    variant: str,
    direction: str,
    margin: float | None,
) -> None:
    settings = protocol.analysis
    conf = settings.confidence
    control = protocol.control
    population = pairs.population
    primary = population == ITT
    where = _label("pairing", population)
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
            f"trial without metrics (failed_score {settings.failed_score!r})",
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
    common = dict(metric=metric, variant=variant, control=control, population=population)

    def add(
        fit: EffectFit,
        scope: str,
        levels: list[str],
        members: np.ndarray,
        keep: slice = slice(None),
        with_margin: bool = True,
    ) -> None:
        """Rows of ``fit``; ``members`` (N, k) marks the pairs behind each coefficient."""
        out.fit(metric, variant, fit, population)
        low, high = fit.t_interval(conf)
        tlow, thigh = fit.t_interval(1 - 2 * (1 - conf))
        for i in range(len(fit.names))[keep]:
            est, se = fit.estimate[i], fit.se[i]
            out.raw.append(
                dict(
                    common,
                    scope=scope,
                    level=levels[i],
                    estimate=est,
                    ci_low=low[i],
                    ci_high=high[i],
                    p=p_value(est, se, fit.df),
                    n_pairs=int(members[:, i].sum()),
                    n_imputed=int(imputed @ members[:, i]),
                    method=f"{fit.method}, t df={fit.df:g}",
                    p_tost=tost_p(est, se, fit.df, margin if with_margin else None),
                    tost_ci_low=tlow[i],
                    tost_ci_high=thigh[i],
                    margin=margin if with_margin else None,
                )
            )

    try:
        overall = paired_effect_fit(d, np.ones((len(d), 1)), groups, ["all"], model="overall")
    except ValueError as exc:
        out.diag(metric, variant, _label("overall", population), "warning", str(exc))
        return
    add(overall, "overall", ["all"], np.ones((len(d), 1), bool))
    _moderation(out, add, frame, protocol, metric, variant, population)
    if not primary:
        return
    _heterogeneity(out, pairs, overall, metric, variant, control, conf)
    _effect_sizes_and_robustness(
        out, pairs, overall, metric, variant, control, direction, settings, conf
    )


def _moderation(
    out, add, frame: pd.DataFrame, protocol: Protocol, metric: str, variant: str, population: str
) -> None:
    d = frame["d"].to_numpy()
    groups = frame["condition"].to_numpy()
    for mod in protocol.moderators:
        where = _label(mod, population)
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
        add(fit, mod, names, X.astype(bool))
        if mod == "imbalance_ratio":
            log_ratio = np.log(values.to_numpy(dtype=float))
            X = np.column_stack([np.ones(len(d)), log_ratio - log_ratio.mean()])
            try:
                fit = paired_effect_fit(d, X, groups, ["intercept", "slope"], model=SLOPE_SCOPE)
            except ValueError as exc:
                out.diag(metric, variant, _label(SLOPE_SCOPE, population), "warning", str(exc))
                continue
            # No equivalence margin for a slope: the margin is in effect units, not per log unit.
            add(
                fit,
                SLOPE_SCOPE,
                ["intercept", "slope"],
                np.ones((len(d), 2), bool),
                slice(1, 2),
                with_margin=False,
            )


def _heterogeneity(out, pairs: Pairs, overall: EffectFit, metric, variant, control, conf) -> None:
    cols = pairs.condition_columns
    pc = per_condition_effects(pairs.frame, cols, conf)
    pc.insert(0, "condition", condition_labels(pc, cols))
    pc.insert(0, "control", control)
    pc.insert(0, "variant", variant)
    pc.insert(0, "metric", metric)
    out.per_condition.append(pc)
    ok = pc[np.isfinite(pc["se"]) & (pc["se"] > 0)]
    if len(ok) < 2:
        out.diag(
            metric,
            variant,
            "heterogeneity",
            "info",
            f"{len(ok)} condition(s) with >= 2 pairs and a non-zero spread of the "
            "differences: no tau^2 / I^2",
        )
        return
    y, v = ok["estimate"].to_numpy(), ok["se"].to_numpy() ** 2
    meta = heterogeneity(y, v, conf)
    rows = meta.to_dict("records")
    for r in rows:
        if r["note"]:
            out.diag(metric, variant, f"heterogeneity {r['estimator']}", "info", r["note"])
    if np.isfinite(overall.tau2):
        rows.append(
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
                pooled_ci_low=overall.t_interval(conf)[0][0],
                pooled_ci_high=overall.t_interval(conf)[1][0],
                note="paired model; pooled = the model's overall effect (t CI)",
            )
        )
    for r in rows:
        out.heterogeneity.append(dict(r, metric=metric, variant=variant, control=control))


def _effect_sizes_and_robustness(
    out, pairs: Pairs, overall: EffectFit, metric, variant, control, direction, settings, conf
) -> None:
    frame = pairs.frame
    d = frame["d"].to_numpy()
    boot = block_bootstrap(
        d, direction, settings.bootstrap.replicates, settings.bootstrap.seed, conf
    )
    method = f"BCa cluster bootstrap over blocks, B={settings.bootstrap.replicates}"
    for stat in STATISTICS:
        est, low, high = boot[stat]
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
                method=method,
            )
        )
    # Wilcoxon on the unit the model generalises over: condition means when there are enough
    # conditions for the test to reach significance, else the blocks of the lone condition(s).
    means = frame.groupby("condition")["d"].mean().to_numpy()
    unit, x = ("condition means", means) if len(means) >= 10 else ("blocks", d)
    try:
        w_p = float(stats.wilcoxon(x).pvalue) if np.any(x != 0) else 1.0
    except ValueError as exc:
        w_p = np.nan
        out.diag(metric, variant, "wilcoxon", "info", f"Wilcoxon not computed: {exc}")
    m_est = overall.estimate[0]
    m_low, m_high = (v[0] for v in overall.t_interval(conf))
    m_p = p_value(m_est, overall.se[0], overall.df)
    b_est, b_low, b_high = boot["mean_difference"]
    alpha = 1 - conf
    model_sig = m_p < alpha
    notes = []
    if np.isfinite(b_low) and model_sig != (b_low > 0 or b_high < 0):
        notes.append("model and bootstrap CI disagree on significance")
    if np.isfinite(w_p) and model_sig != (w_p < alpha):
        notes.append("model and Wilcoxon disagree on significance")
    if (m_low > 0 and b_high < 0) or (m_high < 0 and b_low > 0):
        notes.append("model and bootstrap CIs disagree on sign")
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
            wilcoxon_p=w_p,
            wilcoxon_unit=unit,
            n_pairs=len(d),
            n_dropped_blocks=pairs.n_dropped,
            n_conditions=pairs.n_conditions,
            agree=not notes,
            note="; ".join(notes),
        )
    )
    if notes:
        out.diag(
            metric,
            variant,
            "robustness",
            "warning",
            "; ".join(notes) + " (the bootstrap "
            "over blocks is conditional on the observed conditions; the model is not)",
        )


def _decide(
    out: _Collector, correction: str, family: str, alpha: float, directions: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Adjust p-values over the declared family and assign verdicts.

    The family holds primary (intention-to-treat) rows only: the overall effects, or every
    primary estimate with family "all". Sensitivity rows are never adjusted; their verdict
    reads the raw p-values and says it is a sensitivity check.
    """
    raw = pd.DataFrame(out.raw)
    if raw.empty:
        return (pd.DataFrame(columns=ESTIMATE_COLUMNS), pd.DataFrame(columns=EQUIVALENCE_COLUMNS))
    primary = (raw["population"] == ITT).to_numpy()
    in_family = primary & ((raw["scope"] == "overall").to_numpy() if family == "overall" else True)
    p_adj = np.full(len(raw), np.nan)
    p_tost_adj = np.full(len(raw), np.nan)
    p_adj[in_family] = adjust(raw.loc[in_family, "p"].to_numpy(float), correction)
    p_tost_adj[in_family] = adjust(raw.loc[in_family, "p_tost"].to_numpy(float), correction)
    raw["p_adj"] = p_adj
    raw["p_tost_adj"] = p_tost_adj
    # Outside the family (family="overall": moderator rows) nothing is adjusted and the verdict
    # reads the raw p-values; the method column says so.
    use_p = np.where(in_family, p_adj, raw["p"].to_numpy(float))
    use_tost = np.where(in_family, p_tost_adj, raw["p_tost"].to_numpy(float))
    raw["verdict"] = [
        verdict(e, p, q, alpha, directions[m]) + ("" if first else SENSITIVITY_VERDICT)
        for e, p, q, m, first in zip(
            raw["estimate"], use_p, use_tost, raw["metric"], primary, strict=True
        )
    ]
    adj = "none" if correction == "none" else correction
    raw["method"] = [
        m
        + (
            f"; {adj} over family '{family}'"
            if f
            else "; unadjusted"
            if first
            else f"; unadjusted; sensitivity analysis ({OK_ONLY}), not part of the verdict"
        )
        for m, f, first in zip(raw["method"], in_family, primary, strict=True)
    ]
    return (
        raw[ESTIMATE_COLUMNS].reset_index(drop=True),
        raw[EQUIVALENCE_COLUMNS].reset_index(drop=True),
    )
