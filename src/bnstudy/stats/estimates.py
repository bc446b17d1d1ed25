"""Model estimates of one comparison's pairs: the overall effect, per moderator level, contrasts
between levels and slopes (paired model, t CIs, TOST p, prediction intervals), and, for the
primary population, per-condition effects and heterogeneity. Rows are returned unjudged."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from bnstudy.spec.design import LOG_BASES, slope_unit
from bnstudy.stats.analysis_result import CONTRAST, LEVEL, OVERALL, SLOPE, scope_of
from bnstudy.stats.effect_fit import EffectFit, paired_effect_fit
from bnstudy.stats.findings import Comparison, Findings
from bnstudy.stats.inference import p_value, tost_p
from bnstudy.stats.meta import heterogeneity, i_squared, per_condition_effects, tau2_reml
from bnstudy.stats.paired import Pairs, condition_labels


@dataclasses.dataclass(frozen=True)
class _RowMaker:
    """Makes the estimate rows of one comparison."""

    cmp: Comparison
    imputed: np.ndarray  # (N,) declared values per pair, both arms

    def rows(
        self,
        kind: str,
        moderator: str,
        levels: Sequence[str],
        est: np.ndarray,
        se: np.ndarray,
        df: float,
        method: str,
        members: np.ndarray,
        pi: tuple[np.ndarray, np.ndarray] | None = None,
        with_margin: bool = True,
        claim: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Findings:
        """One row per level of a ``kind`` of estimate ("overall", "level", "contrast" or
        "slope") of ``moderator`` ("" when overall); ``members`` (N, k) marks the pairs
        behind each one."""
        scope = scope_of(kind, moderator)
        confidence = self.cmp.confidence
        q = _t(confidence, df)
        q_tost = _t(1 - 2 * (1 - confidence), df)
        margin = self.cmp.margin if with_margin else None
        common = self.cmp.keys()
        raw = []
        for i, level in enumerate(levels):
            e, s = float(est[i]), float(se[i])
            pi_low, pi_high = (pi[0][i], pi[1][i]) if pi is not None else (np.nan, np.nan)
            # The interval "equivalent (PI within margin)" is judged on: tau^2 at its upper bound
            claim_low, claim_high = (
                (claim[0][i], claim[1][i]) if claim is not None else (np.nan, np.nan)
            )
            raw.append(
                dict(
                    common,
                    scope=scope,
                    level=level,
                    estimate=e,
                    ci_low=e - q * s,
                    ci_high=e + q * s,
                    p=p_value(e, s, df),
                    se=s,
                    n_pairs=int(members[:, i].sum()),
                    n_imputed=int(self.imputed @ members[:, i]),
                    method=method,
                    p_tost=tost_p(e, s, df, margin),
                    tost_ci_low=e - q_tost * s,
                    tost_ci_high=e + q_tost * s,
                    margin=margin,
                    pi_low=pi_low,
                    pi_high=pi_high,
                    pi_claim_low=claim_low,
                    pi_claim_high=claim_high,
                    pi_within_margin=(
                        None if margin is None else bool(-margin < pi_low < pi_high < margin)
                    ),
                    df=df,
                    slope=kind == SLOPE,
                    moderator=moderator,
                    kind=kind,
                )
            )
        return Findings(raw=tuple(raw))

    def fit_rows(
        self,
        fit: EffectFit,
        kind: str,
        moderator: str,
        levels: Sequence[str],
        members: np.ndarray,
        keep: slice = slice(None),
        with_margin: bool = True,
        predict: bool = True,
        suffix: str = "",
    ) -> Findings:
        """The fit's summary and diagnostics, and rows for its coefficients ``keep``."""
        low, high = fit.prediction_interval(self.cmp.confidence)
        claim = fit.claim_interval(self.cmp.confidence) if predict else None
        rows = self.rows(
            kind,
            moderator,
            list(levels)[keep],
            fit.estimate[keep],
            fit.se[keep],
            fit.df,
            f"{fit.method}, t df={fit.df:g}{suffix}",
            members[:, keep],
            (low[keep], high[keep]) if predict else None,
            with_margin,
            (claim[0][keep], claim[1][keep]) if claim is not None else None,
        )
        return Findings.concat([self.cmp.fitted(fit), rows])


def _t(confidence: float, df: float) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def model_estimates(
    cmp: Comparison, frame: pd.DataFrame, moderators: Mapping[str, str]
) -> tuple[EffectFit | None, Findings]:
    """The overall fit (None when it fails) and the rows of the overall effect and of each
    moderator; ``frame`` is :attr:`Pairs.frame` with at least 2 pairs."""
    d = frame["d"].to_numpy()
    groups = frame["condition"].to_numpy()
    imputed = (
        frame["control_imputed"].astype(int) + frame["variant_imputed"].astype(int)
    ).to_numpy()
    maker = _RowMaker(cmp, imputed)
    try:
        overall = paired_effect_fit(d, np.ones((len(d), 1)), groups, ["all"], model="overall")
    except ValueError as exc:
        return None, cmp.note("overall", "warning", str(exc))
    found = [maker.fit_rows(overall, OVERALL, "", ["all"], np.ones((len(d), 1), bool))]
    for mod, transform in moderators.items():
        found.append(_moderation(maker, frame, mod, transform))
    return overall, Findings.concat(found)


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _moderation(maker: _RowMaker, frame: pd.DataFrame, mod: str, transform: str) -> Findings:
    """Effects per level of ``mod``, contrasts between levels and, when numeric, a slope."""
    cmp = maker.cmp
    if mod not in frame.columns:
        return cmp.note(mod, "warning", f"moderator {mod!r} is not a table column")
    values = frame[mod]
    levels = sorted(values.unique())
    if len(levels) < 2:
        return cmp.note(
            mod, "info", f"moderator {mod!r} takes one value among complete pairs; no moderation"
        )
    X = (values.to_numpy()[:, None] == np.array(levels, dtype=object)[None, :]).astype(float)
    names = [str(v) for v in levels]
    try:
        fit = paired_effect_fit(
            frame["d"].to_numpy(), X, frame["condition"].to_numpy(), names, model=mod
        )
    except ValueError as exc:
        return cmp.note(mod, "warning", str(exc))
    members = X.astype(bool)
    found = [
        maker.fit_rows(fit, LEVEL, mod, names, members),
        _contrasts(maker, fit, mod, names, members),
    ]
    if _is_numeric(values):
        found.append(_slope(maker, frame, mod, transform))
    return Findings.concat(found)


def _contrasts(
    maker: _RowMaker, fit: EffectFit, mod: str, names: list[str], members: np.ndarray
) -> Findings:
    """Each level's effect minus the first level's, with a t CI on the fit's df."""
    est, se = [], []
    for j in range(1, len(names)):
        w = np.zeros(len(names))
        w[j], w[0] = 1.0, -1.0
        e, s = fit.contrast(w)
        est.append(e)
        se.append(s)
    both = members[:, 1:] | members[:, [0]]
    return maker.rows(
        CONTRAST,
        mod,
        [f"{b} - {names[0]}" for b in names[1:]],
        np.array(est),
        np.array(se),
        fit.df,
        f"{fit.method}, t df={fit.df:g}; effect at the level minus effect at {mod}={names[0]}",
        both,
        None,
        with_margin=False,
    )


def _slope(maker: _RowMaker, frame: pd.DataFrame, mod: str, transform: str) -> Findings:
    """The change of the effect per unit of ``mod`` on its declared scale: per unit, per unit of
    its natural log, per doubling (log2) or per x10 (log10)."""
    scope = scope_of(SLOPE, mod)
    d = frame["d"].to_numpy()
    x = frame[mod].to_numpy(dtype=float)
    if transform in LOG_BASES:
        if np.any(x <= 0):
            return maker.cmp.note(
                scope,
                "warning",
                f"moderator {mod!r} has values <= 0: no slope on the {transform} scale",
            )
        x = np.log(x) / np.log(LOG_BASES[transform])
    per = slope_unit(transform, mod)
    X = np.column_stack([np.ones(len(d)), x - x.mean()])
    try:
        fit = paired_effect_fit(
            d, X, frame["condition"].to_numpy(), ["intercept", "slope"], model=scope
        )
    except ValueError as exc:
        return maker.cmp.note(scope, "warning", str(exc))
    # No equivalence margin for a slope: the margin is in effect units, not per moderator unit.
    return maker.fit_rows(
        fit,
        SLOPE,
        mod,
        ["intercept", "slope"],
        np.ones((len(d), 2), bool),
        slice(1, 2),
        with_margin=False,
        predict=False,
        suffix=f"; slope {per} ({transform} scale)",
    )


def heterogeneity_rows(cmp: Comparison, pairs: Pairs, overall: EffectFit) -> Findings:
    """Per-condition effects, and tau^2 / I^2 by the meta-analytic estimators and by the paired
    model (primary population)."""
    conf = cmp.confidence
    cols = pairs.condition_columns
    pc = per_condition_effects(pairs.frame, cols, conf)
    pc.insert(0, "condition", condition_labels(pc, cols))
    pc.insert(0, "control", cmp.control)
    pc.insert(0, "variant", cmp.variant)
    pc.insert(0, "metric", cmp.metric)
    pc["estimand"] = cmp.estimand
    found = [Findings(per_condition=(pc,))]
    ok = pc[np.isfinite(pc["se"]) & (pc["se"] > 0)]
    if len(ok) < 2:
        message = (
            f"{len(ok)} condition(s) with >= 2 pairs and a non-zero spread of the "
            "differences: no tau^2 / I^2"
        )
        return Findings.concat([*found, cmp.note("heterogeneity", "info", message)])
    y, v = ok["estimate"].to_numpy(), ok["se"].to_numpy() ** 2
    rows = heterogeneity(y, v, conf).to_dict("records")
    for r in rows:
        if r["note"]:
            model = f"heterogeneity {r['estimator']}"
            found.append(Findings.note(cmp.metric, cmp.variant, model, "info", r["note"]))
    if np.isfinite(overall.tau2):
        rows.append(_model_heterogeneity(overall, v, conf))
    keys = dict(cmp.arms(), estimand=cmp.estimand)
    found.append(Findings(heterogeneity=tuple(dict(r, **keys) for r in rows)))
    return Findings.concat(found)


def moderator_variance_rows(
    cmp: Comparison,
    pairs: Pairs,
    overall: EffectFit,
    fits: Findings,
    moderators: Mapping[str, str],
) -> Findings:
    """How much of the between-condition variance each moderator explains (primary
    population): tau^2 of the overall paired model (``tau2_without``) against tau^2 of the
    model with the moderator's levels as fixed effects (``tau2_with``, the level model
    :func:`model_estimates` fitted; read from ``fits``' summaries), ``share_explained`` =
    1 - tau2_with / tau2_without floored at 0 (nan when tau2_without is 0), and Cochran's
    between-levels Q of the per-condition effects under the mixed-effects subgroup model
    (:func:`between_levels_q`)."""
    tau2 = {s["model"]: s["tau2"] for s in fits.summaries}
    without = float(overall.tau2)
    pc = per_condition_effects(pairs.frame, pairs.condition_columns, cmp.confidence)
    rows = []
    for mod in moderators:
        if mod not in tau2 or mod not in pc.columns:
            continue  # no level model (one level, a failed fit) or not a condition factor
        with_ = float(tau2[mod])
        share = (
            max(0.0, 1.0 - with_ / without)
            if without > 0 and np.isfinite(without) and np.isfinite(with_)
            else np.nan
        )
        q, df, p = between_levels_q(pc, mod)
        rows.append(
            dict(
                cmp.keys(),
                moderator=mod,
                tau2_without=without,
                tau2_with=with_,
                share_explained=share,
                q_between=q,
                df=df,
                p=p,
            )
        )
    return Findings(moderator_variance=tuple(rows))


def between_levels_q(
    per_condition: pd.DataFrame, factor: str, tau2: float | None = None
) -> tuple[float, int, float]:
    """Cochran's Q between the levels of ``factor`` (a subgroup analysis of the conditions'
    effects): Q = sum over levels of W_g (mean_g - mean)^2, W_g the level's total weight,
    mean_g its weighted mean and mean the weighted mean of all, with the weights
    1 / (se^2 + tau2) of the mixed-effects subgroup model, chi^2 on (levels - 1) df under
    "the effect does not depend on the level".

    ``tau2``: the between-condition variance left *within* the levels (default: its REML
    estimate with the levels as fixed effects, pooled over the levels: Borenstein, Hedges,
    Higgins & Rothstein 2009, ch. 19; metafor's QM test of a factor). With ``tau2 = 0`` this
    is the fixed-effect Q_between, which counts the spread left within the levels as a
    difference between them: with a factor that explains nothing of a large tau^2 it
    rejects nearly always. Conditions without a positive finite se are left out; (nan, df,
    nan) with fewer than 2 levels."""
    ok = per_condition[np.isfinite(per_condition["se"]) & (per_condition["se"] > 0)]
    v = ok["se"].to_numpy(float) ** 2
    y = ok["estimate"].to_numpy(float)
    codes, levels = pd.factorize(ok[factor], sort=True)
    df = len(levels) - 1
    if df < 1:
        return np.nan, max(df, 0), np.nan
    if tau2 is None:
        X = (codes[:, None] == np.arange(len(levels))[None, :]).astype(float)
        tau2 = tau2_reml(y, v, X) if len(y) > len(levels) else 0.0
    w = 1.0 / (v + tau2)
    mean = np.sum(w * y) / np.sum(w)
    weight = np.bincount(codes, weights=w, minlength=len(levels))
    level_mean = np.bincount(codes, weights=w * y, minlength=len(levels)) / weight
    q = float(np.sum(weight * (level_mean - mean) ** 2))
    return q, df, float(stats.chi2.sf(q, df))


def _model_heterogeneity(overall: EffectFit, v: np.ndarray, conf: float) -> dict:
    """The paired model's tau^2 as a heterogeneity row; ``v`` the conditions' variances."""
    low, high = overall.t_interval(conf)
    return dict(
        estimator="REML (paired model)",
        k=len(v),
        tau2=overall.tau2,
        tau=np.sqrt(overall.tau2),
        i2=i_squared(overall.tau2, v),
        q=np.nan,
        q_df=np.nan,
        q_p=np.nan,
        pooled=overall.estimate[0],
        pooled_se=overall.se[0],
        pooled_ci_low=low[0],
        pooled_ci_high=high[0],
        ci_method=f"paired model, t on {overall.df:g} df",
        note="paired model; pooled = the model's overall effect (t CI)",
    )
