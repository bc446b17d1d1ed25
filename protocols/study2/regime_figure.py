"""The regime figure: BN − plain against batch size, one line per network × dataset, with CIs.

    python protocols/study2/regime_figure.py      # from the repository root, bnstudy installed

Reads ``data/results/study2_claims12_batch.parquet`` (the small networks, lines over batch
size) and, where it exists, ``study2_claims12_deep_cpu.parquet`` (the deep networks at batch
32, squares), each with the protocol it records, runs the analysis ``bnstudy report`` runs
and plots the per-condition effects of the primary estimand (each arm at its own best
learning rate, cross-fitted over seeds; unadjusted 95% CIs of the paired differences), so
every point is a number of the reports. Writes ``reports/study2_regime.png`` and prints the
plotted numbers.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bnstudy import study  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "data" / "results" / "study2_claims12_batch.parquet"
DEEP = ROOT / "data" / "results" / "study2_claims12_deep_cpu.parquet"
FIGURE = ROOT / "reports" / "study2_regime.png"
METRIC = "balanced_acc"
#: Claim 2's margin (PLAN.md): a cost beyond it is "severe".
SEVERE_PP = 2.0


def regime_table(path: Path = RESULTS) -> pd.DataFrame:
    """Per condition (network × dataset × batch size): the primary estimate and its CI."""
    recorded = study.load_results(path)
    analysis = study.analyze_with_protocol(recorded)
    pc = analysis.per_condition
    keep = (
        (pc["metric"] == METRIC)
        & (pc["estimand"] == analysis.primary_estimand)
        & (pc["variant"] == "bn")
    )
    cols = ["architecture", "dataset", "batch_size", "estimate", "ci_low", "ci_high"]
    table = pc.loc[keep, [*cols, "n_pairs", "verdict"]].copy()
    table["batch_size"] = table["batch_size"].astype(int)
    return table.sort_values(["architecture", "dataset", "batch_size"]).reset_index(drop=True)


def plot(table: pd.DataFrame, path: Path = FIGURE, deep: pd.DataFrame | None = None) -> None:
    """``table``'s conditions as lines over batch size; ``deep``'s as squares, no lines."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=130)
    deep = deep if deep is not None else table.iloc[:0]
    groups = [(key, g, True) for key, g in table.groupby(["architecture", "dataset"], sort=True)]
    groups += [(key, g, False) for key, g in deep.groupby(["architecture", "dataset"], sort=True)]
    width = 0.06 * (len(groups) - 1)  # dodge the lines so their CIs do not overlap
    for i, ((arch, dataset), g, line) in enumerate(groups):
        shift = 2 ** (-width / 2 + 0.06 * i)
        x = g["batch_size"] * shift
        yerr = [g["estimate"] - g["ci_low"], g["ci_high"] - g["estimate"]]
        ax.errorbar(
            x,
            g["estimate"],
            yerr=yerr,
            marker="o" if line else "s",
            ms=4,
            capsize=2,
            lw=1.2 if line else 0,
            elinewidth=1.2,
            label=f"{arch} · {dataset}" + ("" if line else " (deep)"),
        )
    ax.axhline(0, color="black", lw=0.8)
    for y in (-SEVERE_PP, SEVERE_PP):
        ax.axhline(y, color="grey", lw=0.6, ls="--")
    ax.set_xscale("log", base=2)
    sizes = sorted(set(table["batch_size"]) | set(deep["batch_size"]))
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("batch size (lines: 20 epochs at every size; squares: 8 epochs)")
    ax.set_ylabel("BN − plain, balanced accuracy (pp)")
    ax.set_title(
        "BatchNorm before the final FC, each arm at its own best learning rate", fontsize=10
    )
    ax.legend(fontsize=8, ncol=2, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    table = regime_table()
    deep = regime_table(DEEP) if DEEP.exists() else None
    plot(table, deep=deep)
    print(f"wrote {FIGURE.relative_to(ROOT)}\n")
    for part in (table, deep):
        if part is not None:
            print(part.to_string(index=False, float_format=lambda v: f"{v:+.2f}"), "\n")


if __name__ == "__main__":
    main()
