"""Print every number the README quotes about the second edition, as Markdown.

    python protocols/study2/summary.py          # from the repository root, bnstudy installed

Reads the committed tables (``data/results/anchor_mnist1d_paper.parquet`` and
``data/results/study2_*.parquet``) with the protocol each records and runs the analysis
``bnstudy report`` runs, so its numbers are the reports' numbers. A protocol whose table is
not there yet is named and skipped. Per protocol: where it ran, each pre-registered
hypothesis with its quantifier and verdict, the regimes (per-condition verdicts, Holm within
each metric × variant), every condition's tuned effect, and where a tuning choice still sits
at an edge of its grid; for claim 3 also an exploratory table (not registered) of the share
of trials that did not learn, for claim 5 the inactive fractions per width, and for the
deep networks a labelled secondary table at each fixed learning rate.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pandas as pd

from bnstudy import stats, study
from bnstudy.spec.design import MetricDesign

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = [
    "claims12_batch",
    "claims12_deep_cpu",
    "claim3_fail",
    "claim4_lt",
    "claim5_width",
    "claim5_pretrain",
]


def _script(relative: str):
    """A helper script of this repository loaded as a module (they are not a package)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The first edition's helpers (where a table ran, Markdown tables) and the anchor's table.
FIRST = _script("protocols/study/summary.py")
ANCHOR = _script("protocols/anchors/mnist1d_paper_table.py")


def main() -> None:
    anchor = ROOT / "data" / "results" / "anchor_mnist1d_paper.parquet"
    if anchor.exists():
        print("## anchor_mnist1d_paper: the MNIST-1D paper's table\n")
        print(anchor_table(anchor), "\n")
    for name in PROTOCOLS:
        path = ROOT / "data" / "results" / f"study2_{name}.parquet"
        if not path.exists():
            print(f"## study2_{name}: no table yet ({path.relative_to(ROOT)})\n")
            continue
        recorded = study.load_results(path)
        analysis = study.analyze_with_protocol(recorded)
        table = recorded.results.table
        print(f"## study2_{name}: {len(table)} trials\n")
        print(FIRST._where(table, recorded.results.metadata), "\n")
        print(_hypotheses(analysis.hypotheses), "\n")
        print(_regimes(analysis.regimes), "\n")
        print(_conditions(analysis), "\n")
        print(_edges(analysis), "\n")
        if name.startswith("claim5"):
            print(inactive_levels(table, analysis.design.treatment), "\n")
        if name == "claim3_fail":
            print(not_learned(table, analysis.design), "\n")
        if name == "claims12_deep_cpu":
            print(fixed_lr(table, analysis), "\n")


def anchor_table(path: Path) -> str:
    """Plain- and BN-head test accuracy per network (mean ± SD over seeds) next to the paper's."""
    return ANCHOR.markdown(ANCHOR.summary(pd.read_parquet(path)))


def inactive_levels(table: pd.DataFrame, treatment: str) -> str:
    """Claim 5's level: the plain network's per-input inactive fraction of the FC's input
    units (mean ± SD over seeds, %), per condition and arm, each at the learning rate with
    the best mean validation balanced accuracy over the seeds (descriptive: chosen and
    reported on the same seeds), beside the fraction dead for every input."""
    ok = table[table["status"] == "ok"]
    keys = list(dict.fromkeys(["architecture", "dataset", "hidden_width", treatment]))
    rows = []
    for key, g in ok.groupby(keys, sort=True):
        best_lr = g.groupby("lr")["val_balanced_acc"].mean().idxmax()
        at = g[g["lr"] == best_lr]
        inactive, dead = 100 * at["head_inactive_frac"], 100 * at["head_dead_frac"]
        rows.append(
            [
                *key,
                best_lr,
                f"{inactive.mean():.1f} ± {inactive.std(ddof=1):.1f}",
                f"{dead.mean():.1f} ± {dead.std(ddof=1):.1f}",
                len(at),
            ]
        )
    header = [*keys, "best lr", "inactive per input, %", "dead for every input, %", "seeds"]
    return FIRST.markdown(header, rows)


def not_learned(table: pd.DataFrame, design) -> str:
    """Claim 3 read as its words: "it would not learn". Exploratory, defined after the
    results were read (the registered ``failure`` counts statuses, and BN networks that
    predict at chance end ok): the paired difference in the share of trials that did not
    learn (``not_learned``: failed, or balanced accuracy below 19% on 10 classes), each arm
    at its own cross-fitted best learning rate, per condition. Not a registered hypothesis
    and outside the Holm family: a description."""
    design = dataclasses.replace(design, metrics={"not_learned": MetricDesign("lower", None)})
    per_condition = stats.analyze(table, design).per_condition
    tuned = per_condition[per_condition["estimand"] == "tuned"]
    # No CI: a t interval on 6 pairs of 0/1 outcomes runs past ±100 pp; +100 is "BN did not
    # learn in every pair and plain learned in each".
    rows = [[r.condition, f"{r.estimate:+.1f}", r.n_pairs] for r in tuned.itertuples(index=False)]
    header = ["condition", "bn − plain, share that did not learn (pp)", "pairs"]
    return (
        "Exploratory (defined after the results; not registered): did not learn, "
        "each arm at its own best learning rate\n\n" + FIRST.markdown(header, rows)
    )


def fixed_lr(table: pd.DataFrame, analysis) -> str:
    """The secondary, fixed-lr reading of a table (labelled so): per condition and learning
    rate, each arm's mean balanced accuracy over its ok trials, how many of its trials did
    not end ok, and the BN − plain effect at that rate (intention to treat) with its
    unadjusted CI. Shows what a comparison at one shared rate would have said."""
    design = analysis.design
    keys = [k for k in design.conditions if k != "lr" and table[k].nunique() > 1] + ["lr"]
    pc = analysis.per_condition
    pc = pc[(pc["metric"] == "balanced_acc") & (pc["estimand"] == "fixed")]
    effect = pc.set_index(keys)
    rows = []
    for key, g in table.groupby(keys, sort=True):
        arms = []
        for arm in (design.control, "bn"):
            a = g[g[design.treatment] == arm]
            ok = a.loc[a["status"] == "ok", "balanced_acc"]
            mean = f"{100 * ok.mean():.1f}" if len(ok) else "–"
            arms.append(f"{mean} ({(a['status'] != 'ok').sum()} of {len(a)} not ok)")
        r = effect.loc[key] if key in effect.index else None
        diff = "–" if r is None else f"{r.estimate:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        rows.append([*key, *arms, diff])
    header = [*keys, "plain: mean %", "bn: mean %", "bn − plain at this lr, pp [95% CI]"]
    return "Secondary, fixed learning rates (not the claims' estimand):\n\n" + FIRST.markdown(
        header, rows
    )


def _hypotheses(hyp: pd.DataFrame | None) -> str:
    if hyp is None or hyp.empty:
        return "(no hypotheses)"
    rows = []
    for r in hyp.itertuples(index=False):
        unit = f" {r.unit}" if r.unit else ""
        est = (
            "–"
            if pd.isna(r.estimate)
            else f"{r.estimate:+.2f}{unit} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        )
        p = r.p_adj if pd.notna(r.p_adj) else r.p
        rows.append(
            [
                r.id,
                r.quantifier,
                r.expect,
                r.margin,
                r.estimand,
                est,
                "–" if pd.isna(p) else f"{p:.3g}",
                r.verdict,
                r.n_conditions,
                r.n_pairs,
            ]
        )
    header = [
        "id",
        "in",
        "expect",
        "margin",
        "estimand",
        "estimate [95% CI]",
        "p (Holm)",
        "verdict",
        "conditions",
        "pairs",
    ]
    return FIRST.markdown(header, rows)


def _regimes(regimes: pd.DataFrame) -> str:
    rows = [[r.metric, r.variant, r.estimand, r.regimes] for r in regimes.itertuples()]
    return FIRST.markdown(["metric", "variant", "estimand", "regimes"], rows)


def _conditions(analysis) -> str:
    """Every condition's effect at the primary estimand, with its verdict."""
    pc = analysis.per_condition
    keep = pc["estimand"] == analysis.primary_estimand
    rows = [
        [
            r.metric,
            r.variant,
            r.condition,
            f"{r.estimate:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]",
            r.n_pairs,
            r.verdict,
        ]
        for r in pc[keep].itertuples(index=False)
    ]
    return FIRST.markdown(
        ["metric", "variant", "condition", "estimate [95% CI]", "pairs", "verdict (Holm)"], rows
    )


def _edges(analysis) -> str:
    edges = analysis.tuning_edges
    if edges.empty or not edges["edge"].any():
        return "Tuning: every arm's choice is interior or at a declared bound."
    hit = edges[edges["edge"]]
    return "Tuning choices at an open edge of the grid:\n\n" + FIRST.markdown(
        ["metric", "variant", "condition", "detail"],
        [[r.metric, r.variant, r.condition, r.detail] for r in hit.itertuples()],
    )


if __name__ == "__main__":
    main()
