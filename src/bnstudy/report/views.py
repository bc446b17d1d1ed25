"""Table views: the columns a reader needs from the Analysis' tidy tables, as DataFrames.

Every view returns a plain DataFrame without a meaningful index (the writers in
:mod:`bnstudy.report.tables` never print one). Interval pairs ``x_low``/``x_high`` become one
"low to high" column; columns the analysis adds later (a prediction interval, an estimand
label) are shown after the known ones rather than dropped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bnstudy.report.roles import Roles, primary_rows
from bnstudy.results_format import MetadataValue, Provenance
from bnstudy.stats import Analysis
from bnstudy.stats.analysis_result import OVERALL

#: Columns no table shows: constant within a report, or said in the prose around it (an
#: estimate's moderator and kind are in its scope and level).
_HIDDEN = {"control", "population", "method", "se", "moderator", "kind"}
#: Interval prefixes with a display name; any other ``p_low``/``p_high`` pair is shown as p.
_INTERVAL_NAMES = {
    "ci": "CI",
    "model_ci": "model CI",
    "bootstrap_ci": "bootstrap CI",
    "tost_ci": "TOST CI",
    "pooled_ci": "pooled CI",
    "pi": "PI",
    "pi_claim": "PI (τ² at its upper bound)",
    "tau2_ci": "τ² CI",
    "value": "value",
}
#: Column prefixes a prediction interval may come under (``pi_low``/``pi_high`` etc.).
PI_PREFIXES = ("pi", "prediction", "pred", "prediction_interval")
#: Estimate-identifying columns beyond metric x variant x scope x level, when present.
_KEY_EXTRAS = ("estimand",)


def interval_text(low: float, high: float) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "–"
    return f"{low:.3g} to {high:.3g}"


def interval_pairs(columns: Iterable[str]) -> list[str]:
    """Prefixes p with both p_low and p_high among ``columns``, in column order."""
    cols = list(columns)
    return [c[: -len("_low")] for c in cols if c.endswith("_low") and c[:-4] + "_high" in cols]


def find_interval(
    df: pd.DataFrame, prefixes: Sequence[str] = PI_PREFIXES
) -> tuple[str, str] | None:
    """The (low, high) column names of the first of ``prefixes`` present in ``df`` with at
    least one value."""
    for p in prefixes:
        low, high = f"{p}_low", f"{p}_high"
        if low in df.columns and high in df.columns and df[low].notna().any():
            return low, high
    return None


def tidy(df: pd.DataFrame | None, first: Sequence[str], hide: Iterable[str] = ()) -> pd.DataFrame:
    """``df`` with interval pairs joined, the ``first`` columns (those present) leading and
    every other column except hidden ones after them."""
    if df is None or df.empty:
        return pd.DataFrame()
    hidden = _HIDDEN | set(hide)
    out = df.copy()
    for p in interval_pairs(df.columns):
        if out[f"{p}_low"].isna().all() and out[f"{p}_high"].isna().all():
            out = out.drop(columns=[f"{p}_low", f"{p}_high"])
            continue
        name = _INTERVAL_NAMES.get(p, p.replace("_", " "))
        at = list(out.columns).index(f"{p}_low")
        values = [interval_text(lo, hi) for lo, hi in zip(out[f"{p}_low"], out[f"{p}_high"],
                                                           strict=True)]  # fmt: skip
        out = out.drop(columns=[f"{p}_low", f"{p}_high"])
        out.insert(min(at, len(out.columns)), name, values)
    # A column with no value in any row says nothing (p_adj of unadjusted rows, a test
    # the analysis no longer runs).
    hidden |= {c for c in out.columns if out[c].isna().all()}
    # An estimand column that holds one estimand says nothing the prose does not.
    hidden |= {k for k in _KEY_EXTRAS if k in out.columns and out[k].nunique(dropna=False) <= 1}
    lead = [c for c in first if c in out.columns and c not in hidden]
    rest = [c for c in out.columns if c not in lead and c not in hidden]
    return out[lead + rest].reset_index(drop=True)


# -- the verdict -------------------------------------------------------------------------


def verdict_grid(overall: pd.DataFrame, units: Mapping[str, str], control: str) -> pd.DataFrame:
    """Variants by metrics: each cell "estimate unit [CI] verdict" of the overall effect."""
    if overall.empty:
        return pd.DataFrame()
    # An estimand column only when the rows hold several (fixed and tuned).
    keys = [
        "variant",
        *[k for k in _KEY_EXTRAS if k in overall.columns and overall[k].nunique() > 1],
    ]
    cells = overall.assign(
        cell=[
            f"{r.estimate:+.2f} {units.get(r.metric, '')} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] "
            f"{r.verdict}".replace("  ", " ")
            for r in overall.itertuples()
        ]
    )
    grid = cells.pivot_table(
        index=keys, columns="metric", values="cell", aggfunc="first", sort=False
    )
    grid = grid[[m for m in dict.fromkeys(overall["metric"]) if m in grid.columns]]
    grid.columns.name = None
    grid = grid.reset_index().rename(columns={"variant": f"variant (vs {control})"})
    return grid


def population_view(analysis: Analysis) -> pd.DataFrame:
    """The overall effects side by side: intention to treat (primary) and ok only."""
    est = primary_rows(analysis.estimates, analysis)
    overall = est[est["kind"] == OVERALL]
    if overall.empty:
        return pd.DataFrame()
    rows = []
    keys = list(dict.fromkeys(zip(overall["metric"], overall["variant"], strict=True)))
    for metric, variant in keys:
        row: dict[str, object] = {"metric": metric, "variant": variant}
        populations = (
            ("ITT", primary_rows(analysis.primary(), analysis)),
            ("ok only", primary_rows(analysis.sensitivity(), analysis)),
        )
        for name, population in populations:
            r = population[
                (population["metric"] == metric)
                & (population["variant"] == variant)
                & (population["kind"] == OVERALL)
            ]
            # Each population's verdict first, so that both stay in view of a narrow page.
            if r.empty:
                row.update({f"{name} verdict": None, f"{name} estimate [CI]": "no estimate",
                            f"{name} pairs": None})  # fmt: skip
                continue
            r = r.iloc[0]
            row[f"{name} verdict"] = r.verdict
            row[f"{name} estimate [CI]"] = f"{r.estimate:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
            row[f"{name} pairs"] = r.n_pairs
            if name == "ITT":
                row["ITT imputed values"] = r.n_imputed
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in ("ITT pairs", "ok only pairs", "ITT imputed values"):
        if c in out.columns:
            out[c] = out[c].astype("Int64")
    return out


# -- estimates ---------------------------------------------------------------------------

#: The verdict straight after the labels: it is what a reader looks for, and a wide table
#: scrolls its last columns out of view on a laptop.
_ESTIMATE_FIRST = ["metric", "variant", *_KEY_EXTRAS, "scope", "level", "verdict", "estimate",
                   "CI", "PI", "p", "p_adj", "n_pairs", "n_imputed"]  # fmt: skip


def estimates_view(est: pd.DataFrame) -> pd.DataFrame:
    return tidy(est, _ESTIMATE_FIRST)


def effect_sizes_view(es: pd.DataFrame) -> pd.DataFrame:
    return tidy(es, ["metric", "variant", *_KEY_EXTRAS, "statistic", "estimate", "CI", "n_pairs"])


def robustness_view(rob: pd.DataFrame) -> pd.DataFrame:
    if rob is not None and "wilcoxon_p" in rob.columns and rob["wilcoxon_p"].isna().all():
        rob = rob.drop(columns=[c for c in ("wilcoxon_p", "wilcoxon_unit") if c in rob.columns])
    return tidy(
        rob,
        ["metric", "variant", *_KEY_EXTRAS, "agree", "model_estimate", "model CI", "model_p",
         "bootstrap CI", "signflip_p", "wilcoxon_p", "wilcoxon_unit", "n_pairs", "note"],
        hide=["bootstrap_estimate", "n_dropped_blocks", "n_conditions"],
    )  # fmt: skip


def selected_view(selected: pd.DataFrame | None) -> pd.DataFrame:
    """The tuned comparison's choices: per population, arm, condition and fold of seeds, the
    fold whose pairs were evaluated at it, whether it lies at an edge of the grid, the level
    selected and the validation value it won with."""
    return tidy(
        selected,
        ["population", "arm", "condition", "fold", "evaluated_on", "at_edge", "selected",
         "select_by", "value", "next_best", "next_best_value", "n_levels", "n_trials"],
    )  # fmt: skip


def per_condition_view(analysis: Analysis) -> pd.DataFrame:
    """Each condition's effect and verdict (Holm over the conditions of each metric x variant)
    for the primary estimand: worse and better first, then equivalent, then the rest."""
    pc = primary_rows(getattr(analysis, "per_condition", None), analysis)
    if pc is None or pc.empty or "verdict" not in pc.columns:
        return pd.DataFrame()
    order = {"worse": 0, "better": 1, "equivalent": 2}
    pc = pc.assign(
        _m=pd.factorize(pc["metric"])[0],
        _v=pd.factorize(pc["variant"])[0],
        _r=pc["verdict"].map(order).fillna(3),
    ).sort_values(["_m", "_v", "_r"], kind="stable")
    keep = ["metric", "variant", "condition", "verdict", "estimate", "ci_low", "ci_high", "p",
            "p_adj", "p_tost_adj", "n_pairs"]  # fmt: skip
    first = [c for c in keep if c not in ("ci_low", "ci_high")]
    first.insert(first.index("estimate") + 1, "CI")
    return tidy(pc[[c for c in keep if c in pc.columns]], first)


def moderator_variance_view(analysis: Analysis) -> pd.DataFrame:
    """The share of the between-condition variance each moderator explains (primary
    estimand), with the between-levels Q test."""
    mv = primary_rows(getattr(analysis, "moderator_variance", None), analysis)
    if mv is None or mv.empty:
        return pd.DataFrame()
    # "moderator" is a column no other table shows (it is in their scope): here it is the key.
    out = mv.assign(**{"share explained (%)": 100 * mv["share_explained"]}).rename(
        columns={"moderator": "factor"}
    )
    return tidy(
        out.drop(columns=["share_explained"]),
        ["metric", "variant", "factor", "share explained (%)", "tau2_without", "tau2_with",
         "q_between", "df", "p"],
    )  # fmt: skip


def heterogeneity_view(het: pd.DataFrame) -> pd.DataFrame:
    if het is None or het.empty:
        return pd.DataFrame()
    out = het.assign(**{"I² (%)": 100 * het["i2"]}).drop(columns=["i2"])
    return tidy(
        out,
        ["metric", "variant", *_KEY_EXTRAS, "estimator", "k", "tau", "I² (%)", "q_p", "pooled",
         "pooled CI", "PI"],
        hide=["tau2", "q", "q_df", "note"],
    )  # fmt: skip


def equivalence_view(analysis: Analysis, roles: Roles) -> pd.DataFrame:
    """Primary equivalence tests with a margin: TOST interval and p, the verdict, and the
    prediction interval (and whether it lies inside the margin) when the analysis has one."""
    eq = analysis.equivalence
    if eq is None or eq.empty:
        return pd.DataFrame()
    eq = eq[(eq["population"] == "intention-to-treat") & eq["margin"].notna()]
    if eq.empty:
        return pd.DataFrame()
    keys = ["metric", "variant", "scope", "level",
            *[k for k in _KEY_EXTRAS if k in eq.columns]]  # fmt: skip
    est = analysis.primary()
    take = [c for c in [*keys, "estimate", "verdict"] if c in est.columns]
    pi = find_interval(est) or find_interval(eq)
    if pi and pi[0] in est.columns and pi[0] not in eq.columns:
        take += list(pi)
    merged = eq.merge(est[take], on=[k for k in keys if k in est.columns], how="left")
    tost_pct = f"{100 * (1 - 2 * (1 - roles.confidence)):g}%"
    view = merged.rename(columns={"tost_ci_low": "tost_low", "tost_ci_high": "tost_high"})
    view[f"{tost_pct} CI (TOST)"] = [
        interval_text(lo, hi) for lo, hi in zip(view["tost_low"], view["tost_high"], strict=True)
    ]
    if pi:
        lo, hi = view[pi[0]].astype(float), view[pi[1]].astype(float)
        m = view["margin"].astype(float)
        view["PI"] = [interval_text(a, b) for a, b in zip(lo, hi, strict=True)]
        if "pi_within_margin" in view.columns:  # the analysis' own call
            inside = view.pop("pi_within_margin")
        else:
            inside = (lo > -m) & (hi < m)
        view["PI inside ±margin"] = np.where(lo.notna() & hi.notna(), inside, None)
        view = view.drop(columns=list(pi))
    view = view.drop(columns=["tost_low", "tost_high"])
    # The overall tests (the verdicts) first, then the per-level ones.
    view = view.iloc[np.argsort((view["kind"] != OVERALL).to_numpy(), kind="stable")]
    return tidy(
        view,
        ["metric", "variant", *_KEY_EXTRAS, "scope", "level", "verdict", "estimate", "margin",
         f"{tost_pct} CI (TOST)", "PI", "PI inside ±margin", "p_tost", "p_tost_adj"],
    )  # fmt: skip


# -- levels ------------------------------------------------------------------------------


def level_text(mean: float, low: float, high: float) -> str:
    """ "29.9 [27.1, 32.6]"; three significant digits below 10 ("0.693 [0.61, 0.78]")."""
    if pd.isna(mean):
        return "–"

    def f(x: float) -> str:
        if pd.isna(x):
            return "–"
        return f"{x:.1f}" if abs(x) >= 10 else f"{x:.3g}"

    if pd.isna(low) or pd.isna(high):
        return f(mean)
    return f"{f(mean)} [{f(low)}, {f(high)}]"


def levels_wide(levels: pd.DataFrame, keys: Sequence[str], arms: Sequence[str]) -> pd.DataFrame:
    """One row per ``keys`` group, one "mean [CI]" column per arm, then the trials per arm
    ("10" when equal, else "10 / 9") and, when any, the declared (imputed) values."""
    if levels is None or levels.empty:
        return pd.DataFrame()
    keys = list(keys)
    shown = [a for a in arms if (levels["arm"] == a).any()]
    group = (
        levels.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
        if keys
        else np.zeros(len(levels), int)
    )
    cells = levels.assign(
        _group=group,
        _cell=[
            level_text(m, lo, hi)
            for m, lo, hi in zip(levels["mean"], levels["ci_low"], levels["ci_high"], strict=True)
        ],
    )
    first = cells.drop_duplicates("_group").sort_values("_group")
    out = first[keys].reset_index(drop=True) if keys else pd.DataFrame(index=[0])
    text = cells.pivot_table(index="_group", columns="arm", values="_cell", aggfunc="first")
    n = cells.pivot_table(index="_group", columns="arm", values="n", aggfunc="sum", fill_value=0)
    groups = first["_group"].to_numpy()
    for arm in shown:
        out[arm] = text[arm].reindex(groups).fillna("–").to_numpy()
    counts = n.reindex(groups).reindex(columns=shown, fill_value=0).to_numpy(dtype=int)
    out["trials per arm"] = [
        str(row[0]) if len(set(row)) == 1 else " / ".join(map(str, row)) for row in counts
    ]
    declared = cells.groupby("_group")["n_imputed"].sum().reindex(groups).to_numpy(dtype=int)
    if declared.any():
        out["declared"] = declared
    return out


# -- trials, diagnostics, provenance -----------------------------------------------------


def status_counts(table: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """Trials per arm (rows, headed by what the arms are) and status (columns), with a total."""
    treatment, arms = roles.treatment, roles.arms
    if table.empty or treatment not in table.columns:
        return pd.DataFrame()
    counts = table.groupby([treatment, "status"]).size().unstack(fill_value=0)
    order = [a for a in arms if a in counts.index] + [a for a in counts.index if a not in arms]
    counts = counts.reindex(order)
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    return counts.rename_axis(roles.treatment_name).reset_index()


def failures_view(failures: pd.DataFrame, roles: Roles) -> pd.DataFrame:
    """Failure rates; the arm's column once (the analysis names it ``arm`` and repeats it
    under the treatment's column), headed by what the arms are (``optimizer``)."""
    if failures is None or failures.empty:
        return pd.DataFrame()
    arm = next(c for c in ("arm", roles.treatment, failures.columns[0]) if c in failures.columns)
    hide = [roles.treatment] if roles.treatment != arm else []
    cols = [arm, "comparison", "status", "n", "n_failed", "rate", "CI", "p"]
    return tidy(failures, cols, hide=hide).rename(columns={arm: roles.treatment_name})


_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")


def group_diagnostics(diag: pd.DataFrame | None) -> list[dict[str, object]]:
    """One entry per message pattern: messages that differ only in numbers and in their own
    metric, variant and model names are one entry, with how often it occurred and where.
    Warnings first, then by count.

    Returns dicts with level, text (the group's first message), count, the distinct wheres
    (models or steps), metrics and variants it occurred for, and ``context`` saying them.
    """
    if diag is None or diag.empty:
        return []
    groups: dict[tuple[str, str], dict] = {}
    for row in diag.to_dict("records"):
        message = str(row.get("message") or "")
        metric, variant = str(row.get("metric") or ""), str(row.get("variant") or "")
        where = str(row.get("model") or "")
        base = where.split(" [")[0]  # "overall [ok only]" -> the model's own name
        pattern = message
        for name, slot in ((variant, "<variant>"), (metric, "<metric>"), (base, "<model>")):
            if name:
                pattern = re.sub(rf"(?<![\w]){re.escape(name)}(?![\w])", slot, pattern)
        pattern = _NUMBER.sub("#", pattern)
        level = str(row.get("level") or "info")
        entry = groups.setdefault(
            (level, pattern),
            {"level": level, "text": message, "count": 0, "wheres": [], "metrics": [],
             "variants": []},
        )  # fmt: skip
        entry["count"] += 1
        for key, value in (("wheres", where), ("metrics", metric), ("variants", variant)):
            if value and value not in entry[key]:
                entry[key].append(value)
    out = list(groups.values())
    for e in out:
        parts = [
            f"{label}: {', '.join(e[key])}"
            for key, label in (("wheres", "in"), ("metrics", "metrics"), ("variants", "variants"))
            if e[key]
        ]
        e["context"] = "; ".join(parts)
    out.sort(key=lambda e: (e["level"] != "warning", -e["count"]))
    return out


def provenance(
    metadata: Mapping[str, str],
    protocol_sha: str,
    version: str,
    generated_at: str,
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """How the results were made: protocol hash, versions, the parent's machine, the plugins'
    hashes, the files each dataset was read from, and the machines and precisions the trials
    ran on and in (from the rows of ``table``). ``metadata`` is read by
    :class:`bnstudy.results_format.Provenance`."""
    recorded = Provenance.read(metadata)
    rows: list[tuple[str, object]] = [("protocol sha256", protocol_sha)]
    for label, value in (
        ("versions", recorded.versions),
        ("machine", recorded.machine),
        ("plugins", recorded.plugins),
    ):
        if isinstance(value, str):  # not readable as an object: shown as recorded
            rows.append((label, value))
        elif value is not None:
            rows += [(f"{label}: {k}", v) for k, v in value.items()]
    rows += _dataset_files(recorded.dataset_sources)
    if table is not None and len(table):
        rows.append(("trials trained on", _trained_on(table)))
        rows.append(("trials per precision", _per_precision(table)))
    written = recorded.written_at if recorded.written_at is not None else "not recorded"
    rows.append(("run metadata written (start of the run)", written))
    rows.append(("report generated", generated_at))
    rows.append(("report by", f"bnstudy {version}"))
    return pd.DataFrame(rows, columns=["what", "value"])


def _dataset_files(sources: MetadataValue) -> list[tuple[str, object]]:
    """A row per dataset (and pre-training stage): the files it was read from, with their
    size and modification time (UTC), or that it is generated."""
    if sources is None:
        return []
    if isinstance(sources, str):
        return [("dataset files", sources)]
    return [(f"dataset files: {name}", _files_text(found)) for name, found in sources.items()]


def _files_text(fingerprint: Any) -> str:
    """``{"files": [{"path", "size", "mtime_ns"}, ...], "sha256"?}`` (None: generated)."""
    if fingerprint is None:
        return "none (generated)"
    try:
        files = [
            f"{f['path']} ({f['size']:,} bytes, modified "
            f"{dt.datetime.fromtimestamp(f['mtime_ns'] / 1e9, dt.UTC):%Y-%m-%d %H:%M:%S} UTC)"
            for f in fingerprint["files"]
        ]
        pinned = fingerprint.get("sha256")
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError):
        return str(fingerprint)  # another shape than this version writes: as recorded
    return "; ".join(files) + (f"; sha256 {pinned}" if pinned else "")


NOT_RECORDED = "not recorded (rows written before bnstudy recorded it)"


def _trained_on(table: pd.DataFrame) -> str:
    """``host (CPU model): N trials; ...`` from the rows (a Dask cluster's workers differ)."""
    where = pd.DataFrame({c: table.get(c) for c in ("host", "cpu_model")}, index=table.index)
    where = where.fillna("").astype(str)
    counts = where.value_counts(sort=True)
    parts = []
    for (host, cpu), n in counts.items():
        machine = f"{host} ({cpu})" if host else NOT_RECORDED
        parts.append(f"{machine}: {n} trial{'s' if n != 1 else ''}")
    return "; ".join(parts)


def _per_precision(table: pd.DataFrame) -> str:
    """``fp32: N trials; bf16: M trials`` from the rows' ``precision``, in that order (rows
    written before it was a setting trained in fp32, its default)."""
    column = table.get("precision")
    precision = pd.Series("fp32", index=table.index) if column is None else column.fillna("fp32")
    counts = precision.astype(str).value_counts()
    order = [p for p in ("fp32", "bf16") if p in counts.index]
    counts = counts.reindex(order + sorted(set(counts.index) - set(order)))
    return "; ".join(f"{p}: {n} trial{'s' if n != 1 else ''}" for p, n in counts.items())
