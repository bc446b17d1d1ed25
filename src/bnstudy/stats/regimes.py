"""Per-condition verdicts and regimes: where the variant is better, worse, equivalent.

An average hides regimes: "equivalent on average" over twelve conditions may be "worse by
3 pp in two of them, better in one". These pure functions read a per-condition effects table
(as :func:`bnstudy.stats.meta.per_condition_effects` returns it, labelled as in
``Analysis.per_condition``: metric, variant, control, condition, estimate, se, n_pairs and,
when present, estimand and population) and give

- :func:`condition_verdicts`: a verdict per condition, ``better`` / ``worse`` /
  ``equivalent`` / ``inconclusive``;
- :func:`regimes`: per metric x variant (x estimand): "better in k, worse in m, equivalent in
  e, inconclusive in the rest of G conditions", with the worse and the better conditions by
  label;
- :func:`headline_sentence`: the average and the regimes in one sentence;
- :func:`quantified_test`: the test of a hypothesis about ``any`` or ``all`` conditions.

**The method.** Each condition's effect is the mean of its paired differences, se = sd /
sqrt(n), t on n - 1 degrees of freedom (a condition with one pair has no test). The
conditions of one metric x variant x estimand (x population) are one family, adjusted by
Holm's step-down method, which controls the familywise error rate (the chance of any false
"better", "worse" or "equivalent" among the conditions) at alpha = 1 - confidence whatever
the dependence between the tests:

- the difference test (H0: effect = 0, two-sided t) gets Holm-adjusted p-values over the
  conditions; a condition is ``better`` or ``worse`` when its adjusted p < alpha, the sign
  read through the metric's direction;
- the equivalence test (TOST, H0: |effect| >= margin; p = the larger one-sided p) gets its
  own Holm adjustment over the same conditions; a condition is ``equivalent`` when its
  adjusted TOST p < alpha. Equivalence takes precedence, as for the overall verdicts
  (:mod:`bnstudy.stats.inference`): an effect shown to lie inside the margin is negligible
  even when it is also shown to be non-zero;
- anything else is ``inconclusive``, never "no difference".

Conditions are independent samples (different trials), so Holm's directional decisions
(better vs worse) keep their error rate too (Shaffer 1980).

**Quantified hypotheses** (``in: any`` / ``in: all``, :func:`quantified_test`): for
``higher`` / ``lower`` each condition's effect is tested against the threshold (the margin;
0 for a metric without one) in the expected direction: delta = sign x effect - threshold
(sign +1 for ``higher``, -1 for ``lower``), two-sided t-test of delta = 0, Holm over the
conditions. A condition is *beyond* the threshold when its adjusted p < alpha with delta > 0
(its Holm-adjusted interval lies wholly beyond the margin in the expected direction), *short
of* it when adjusted p < alpha with delta < 0. ``any`` is supported when at least one
condition is beyond, contradicted when every condition is short of it; ``all`` is supported
when every condition is beyond, contradicted when at least one is short of it; otherwise
inconclusive. For ``equivalent``: ``any`` is equivalent when at least one condition's
Holm-adjusted TOST p < alpha, ``all`` when every condition's is; not equivalent when every
condition (``any``) or some condition (``all``) lies beyond the margin (|effect| - margin
tested as above, Holm). The returned p is the adjusted p the verdict rests on, so that a set
of hypotheses can be adjusted again across hypotheses (each such p is a valid p-value for its
claim: the smallest Holm-adjusted p is Bonferroni's test of "none beyond", the largest one a
conservative intersection-union test of "some not beyond").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.catalogue import METRICS
from bnstudy.spec.design import MetricDesign
from bnstudy.stats.inference import adjust, p_value, tost_p

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"
#: The verdicts of a single condition.
CONDITION_VERDICTS = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE)
#: The columns that make one Holm family of conditions, those a table has.
FAMILY_KEYS = ("metric", "variant", "control", "estimand", "population")
CONDITION_VERDICT_COLUMNS = [
    "df",
    "p",
    "p_adj",
    "p_tost",
    "p_tost_adj",
    "margin",
    "verdict",
]
REGIME_COLUMNS = [
    "n_conditions",
    "n_better",
    "n_worse",
    "n_equivalent",
    "n_inconclusive",
    "better",
    "worse",
    "regimes",
]
#: Separates condition labels (a label itself is "factor=level, factor=level").
LABEL_SEPARATOR = "; "
#: Phrases a headline may use only when no condition is better or worse after adjustment.
NO_DIFFERENCE_PHRASES = ("no difference", "no harm", "no effect", "harmless", "does not hurt")
#: How many conditions a headline names per regime before "and N more".
HEADLINE_LABELS = 6


def _metric(name: str, metrics: Mapping[str, MetricDesign] | None) -> tuple[str, float | None]:
    """Direction and equivalence margin of ``name``: the design's, else the catalogue's."""
    if metrics is not None and name in metrics:
        m = metrics[name]
        return m.direction, m.equivalence_margin
    info = METRICS[name]
    return info.direction, info.default_margin


def condition_verdicts(
    per_condition: pd.DataFrame,
    metrics: Mapping[str, MetricDesign] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """``per_condition`` with :data:`CONDITION_VERDICT_COLUMNS` added: the difference and
    TOST p-values, each Holm-adjusted over the conditions of its family (:data:`FAMILY_KEYS`),
    and the verdict (see the module docstring).

    ``metrics``: direction and margin per metric (a design's ``metrics``); a metric not in it
    takes the catalogue's. A condition without a test (one pair) is ``inconclusive`` and
    does not count in its family's adjustment.
    """
    out = per_condition.copy().reset_index(drop=True)
    n = len(out)
    for c in CONDITION_VERDICT_COLUMNS:
        out[c] = np.full(n, np.nan) if c != "verdict" else np.full(n, INCONCLUSIVE, object)
    if n == 0:
        return out
    alpha = 1 - confidence
    est = out["estimate"].to_numpy(float)
    se = out["se"].to_numpy(float)
    df = np.maximum(out["n_pairs"].to_numpy(float) - 1, 0)
    direction, margin = zip(*(_metric(m, metrics) for m in out["metric"]), strict=True)
    margins = np.array([np.nan if m is None else m for m in margin], float)
    out["df"] = df
    out["margin"] = margins
    out["p"] = [_p(e, s, d) for e, s, d in zip(est, se, df, strict=True)]
    out["p_tost"] = [_tost(e, s, d, m) for e, s, d, m in zip(est, se, df, margins, strict=True)]
    keys = [k for k in FAMILY_KEYS if k in out.columns]
    groups = out.groupby(keys, sort=False, dropna=False).indices if keys else {0: np.arange(n)}
    p_adj = np.full(n, np.nan)
    tost_adj = np.full(n, np.nan)
    for index in groups.values():
        p_adj[index] = adjust(out["p"].to_numpy(float)[index], "holm")
        tost_adj[index] = adjust(out["p_tost"].to_numpy(float)[index], "holm")
    out["p_adj"] = p_adj
    out["p_tost_adj"] = tost_adj
    verdicts = []
    for e, p, t, d in zip(est, p_adj, tost_adj, direction, strict=True):
        if np.isfinite(t) and t < alpha:
            verdicts.append(EQUIVALENT)
        elif np.isfinite(p) and p < alpha:
            improves = e > 0 if d == "higher" else e < 0
            verdicts.append(BETTER if improves else WORSE)
        else:
            verdicts.append(INCONCLUSIVE)
    out["verdict"] = verdicts
    return out


def directional_delta(estimate, expect: str, margin: float | None):
    """sign x estimate - margin for a ``higher``/``lower`` claim (sign +1 / -1; margin 0 for a
    metric without one): > 0 when the effect lies beyond the margin the expected way. Its
    t-test against 0 is the claim's test, for one condition or for the average."""
    threshold = 0.0 if margin is None else float(margin)
    return (1.0 if expect == "higher" else -1.0) * estimate - threshold


def _p(estimate: float, se: float, df: float) -> float:
    if not df >= 1:
        return math.nan
    return p_value(estimate, se, df)


def _tost(estimate: float, se: float, df: float, margin: float) -> float:
    if not (df >= 1 and np.isfinite(margin)):
        return math.nan
    return tost_p(estimate, se, df, float(margin))


def regimes(verdicts: pd.DataFrame) -> pd.DataFrame:
    """One row per family (:data:`FAMILY_KEYS` present in ``verdicts``, e.g. metric x
    variant x control x estimand) of :func:`condition_verdicts`' output: how many conditions
    are better, worse, equivalent, inconclusive; the better and the worse ones by label
    (joined by :data:`LABEL_SEPARATOR`, in the table's order); and ``regimes``, the phrase
    "better in k, worse in m, equivalent in e, inconclusive in the rest of G conditions"."""
    keys = [k for k in FAMILY_KEYS if k in verdicts.columns]
    if verdicts.empty:
        return pd.DataFrame(columns=[*keys, *REGIME_COLUMNS])
    rows = []
    grouped = verdicts.groupby(keys, sort=False, dropna=False) if keys else [((), verdicts)]
    for key, group in grouped:
        key = key if isinstance(key, tuple) else (key,)
        v = group["verdict"].to_numpy()
        source = group["condition"] if "condition" in group.columns else group.index
        labels = np.array([str(c) for c in source], dtype=object)
        row = dict(zip(keys, key, strict=True))
        row.update(
            n_conditions=len(group),
            n_better=int((v == BETTER).sum()),
            n_worse=int((v == WORSE).sum()),
            n_equivalent=int((v == EQUIVALENT).sum()),
            # "inconclusive (tuning grid edge)" is inconclusive too
            n_inconclusive=int(sum(str(x).startswith(INCONCLUSIVE) for x in v)),
            better=LABEL_SEPARATOR.join(labels[v == BETTER]),
            worse=LABEL_SEPARATOR.join(labels[v == WORSE]),
        )
        row["regimes"] = regime_phrase(row, max_labels=0)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, *REGIME_COLUMNS])


def regime_phrase(regime: Mapping[str, Any], max_labels: int = HEADLINE_LABELS) -> str:
    """The phrase "better in k, worse in m, equivalent in e, inconclusive in the rest of G
    conditions"; with ``max_labels`` > 0 the better and worse conditions are named after
    their counts (up to ``max_labels`` each, then "and N more")."""
    g = int(regime["n_conditions"])

    def part(word: str, count: str, labels: str) -> str:
        k = int(regime[count])
        text = f"{word} in {k}"
        names = [s for s in str(labels or "").split(LABEL_SEPARATOR) if s]
        if max_labels > 0 and k and names:
            shown = names[:max_labels]
            more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
            text += f" ({LABEL_SEPARATOR.join(shown)}{more})"
        return text

    return (
        f"{part(BETTER, 'n_better', regime.get('better', ''))}, "
        f"{part(WORSE, 'n_worse', regime.get('worse', ''))}, "
        f"{EQUIVALENT} in {int(regime['n_equivalent'])}, "
        f"{INCONCLUSIVE} in the rest of {g} condition{'s' if g != 1 else ''}"
    )


def headline_sentence(
    average: Mapping[str, Any],
    regime: Mapping[str, Any],
    unit: str = "",
    confidence: float = 0.95,
    margin: float | None = None,
    qualifier: str = "",
    max_labels: int = HEADLINE_LABELS,
) -> str:
    """The average effect and its regimes in one sentence, e.g.

    "bn − plain on balanced_acc: -0.21 pp on average (95% CI -0.52 to +0.10; inconclusive);
    by condition (Holm over 12): better in 0, worse in 2 (architecture=cnn, batch_size=32;
    ...), equivalent in 7, inconclusive in the rest of 12 conditions."

    ``average``: the overall estimate row (metric, variant, control, estimate, ci_low,
    ci_high, verdict); ``regime``: its row of :func:`regimes`; ``qualifier``: said after the
    metric (e.g. " (each arm at its best lr by val_balanced_acc)"); ``max_labels``: how many
    better and worse conditions to name (:func:`regime_phrase`). The sentence never contains a
    phrase of :data:`NO_DIFFERENCE_PHRASES` while any condition is better or worse: "no
    difference beyond the margin" is said only when every condition is equivalent, and an
    average verdict "equivalent (PI within margin)" (a claim about every condition) is
    written "equivalent (on average)" when some condition is better or worse.
    """
    unit_text = f" {unit}" if unit else ""
    who = f"{average.get('variant', 'variant')} − {average.get('control', 'control')}"
    on = f" on {average['metric']}" if average.get("metric") else ""
    on += qualifier
    verdict = str(average.get("verdict", "") or "")
    mixed = int(regime["n_better"]) + int(regime["n_worse"]) > 0
    if mixed and verdict.startswith("equivalent"):
        verdict = "equivalent (on average)"
    estimate = float(average.get("estimate", math.nan))
    low, high = float(average.get("ci_low", math.nan)), float(average.get("ci_high", math.nan))
    if math.isfinite(estimate):
        mean = f"{estimate:+.3g}{unit_text} on average"
        if math.isfinite(low) and math.isfinite(high):
            mean += f" ({round(100 * confidence, 6):g}% CI {low:+.3g} to {high:+.3g}"
            mean += f"; {verdict})" if verdict else ")"
        elif verdict:
            mean += f" ({verdict})"
    else:
        mean = "no average estimate"
    g = int(regime["n_conditions"])
    if g and int(regime["n_equivalent"]) == g and not mixed and margin is not None:
        by = (
            f"equivalent within ±{margin:g}{unit_text} in every one of the {g} conditions "
            f"(Holm): no difference beyond the margin in any condition studied"
        )
    else:
        by = f"by condition (Holm over {g}): {regime_phrase(regime, max_labels)}"
    return f"{who}{on}: {mean}; {by}."


@dataclasses.dataclass(frozen=True)
class QuantifiedTest:
    """The test of a hypothesis about ``any`` or ``all`` conditions (module docstring).

    ``p``: the Holm-adjusted p the verdict rests on (nan: no test); ``predicted``: whether
    ``p`` is evidence for the claim (True) or against it (False), as the sign of the
    estimate is for a claim about the average; ``refuted``: for ``equivalent``, the
    conditions lie beyond the margin as the claim forbids ("not equivalent"); ``beyond`` /
    ``short``: the labels of the conditions shown beyond / short of the threshold (for
    ``equivalent``: shown equivalent / shown beyond the margin).
    """

    p: float
    predicted: bool
    refuted: bool
    n_conditions: int
    beyond: tuple[str, ...]
    short: tuple[str, ...]
    note: str


def quantified_test(
    per_condition: pd.DataFrame,
    expect: str,
    quantifier: str,
    margin: float | None,
    confidence: float = 0.95,
    unit: str = "",
) -> QuantifiedTest:
    """The test of "``expect`` in ``quantifier`` (any / all) of the conditions" over the
    conditions of one family (``per_condition``: estimate, se, n_pairs, condition; one
    metric x variant x estimand). See the module docstring for the rule."""
    if quantifier not in ("any", "all"):
        raise ValueError(f"quantifier must be 'any' or 'all', got {quantifier!r}")
    alpha = 1 - confidence
    est = per_condition["estimate"].to_numpy(float)
    se = per_condition["se"].to_numpy(float)
    df = np.maximum(per_condition["n_pairs"].to_numpy(float) - 1, 0)
    labels = [str(c) for c in per_condition.get("condition", pd.Series(range(len(est))))]
    g = len(est)
    unit_text = f" {unit}" if unit else ""
    if expect == "equivalent":
        if margin is None:
            raise ValueError("an equivalence claim needs a margin")
        favour = np.array([_tost(e, s, d, margin) for e, s, d in zip(est, se, df, strict=True)])
        delta = np.abs(est) - margin  # > 0: beyond the margin, either side
        what = f"equivalent within ±{margin:g}{unit_text}"
    else:
        threshold = 0.0 if margin is None else float(margin)
        delta = directional_delta(est, expect, margin)
        favour = None
        side, sign = ("above", 1) if expect == "higher" else ("below", -1)
        what = f"{side} {sign * threshold:+g}{unit_text}" if threshold else f"{side} 0"
    against = np.array([_p(x, s, d) for x, s, d in zip(delta, se, df, strict=True)])
    q = adjust(against, "holm")
    shown = np.isfinite(q) & (q < alpha)
    beyond, short = shown & (delta > 0), shown & (delta < 0)
    if favour is not None:  # equivalence: for the claim, the TOST; against it, beyond
        q_for = adjust(favour, "holm")
        ok = np.isfinite(q_for) & (q_for < alpha)
        names_for = tuple(lab for lab, s in zip(labels, ok, strict=True) if s)
        names_against = tuple(lab for lab, s in zip(labels, beyond, strict=True) if s)
        if quantifier == "any":
            p = _min(q_for)
            refuted = g > 0 and bool(beyond.all())
        else:
            p = math.nan if g == 0 or not np.isfinite(q_for).all() else float(np.max(q_for))
            refuted = bool(beyond.any())
        note = (
            f"{what} in {len(names_for)} of {g} conditions (Holm)"
            + _named(names_for)
            + f"; beyond the margin in {len(names_against)}"
            + _named(names_against)
        )
        return QuantifiedTest(p, True, refuted, g, names_for, names_against, note)
    names_beyond = tuple(lab for lab, s in zip(labels, beyond, strict=True) if s)
    names_short = tuple(lab for lab, s in zip(labels, short, strict=True) if s)
    up = delta > 0
    if quantifier == "any":
        if up.any():
            p, predicted = _min(q[up]), True
        else:
            p, predicted = _max_all(q), False
    elif g and up.all():
        p, predicted = _max_all(q), True
    else:
        p, predicted = _min(q[~up]), False
    note = (
        f"{what} in {len(names_beyond)} of {g} conditions (Holm)"
        + _named(names_beyond)
        + f"; short of it in {len(names_short)}"
        + _named(names_short)
    )
    return QuantifiedTest(p, predicted, False, g, names_beyond, names_short, note)


def _min(q: np.ndarray) -> float:
    finite = q[np.isfinite(q)]
    return float(finite.min()) if len(finite) else math.nan


def _max_all(q: np.ndarray) -> float:
    """The largest adjusted p; nan when some condition has no test (it can be shown nothing)."""
    return float(q.max()) if len(q) and np.isfinite(q).all() else math.nan


def _named(labels: Sequence[str], limit: int = HEADLINE_LABELS) -> str:
    if not labels:
        return ""
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return f" ({LABEL_SEPARATOR.join(labels[:limit])}{more})"
