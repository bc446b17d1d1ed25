"""A sceptic's second read of the first edition's tables, straight from the raw rows.

Prints, per condition, BN − plain in balanced accuracy (pp) with each arm at its own best
validation learning rate (mean over seeds of ``val_balanced_acc``; ties to the first level),
a paired t 95% CI over seeds (unadjusted), and where each arm's chosen rate sits in the grid;
then claim 3's failures by learning rate. It needs only pandas and scipy:

    python protocols/study/reread.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from scipy import stats

RESULTS = Path(__file__).resolve().parents[2] / "data" / "results"
CONDITION = ["architecture", "dataset", "batch_size"]


def best_lr(rows: pd.DataFrame) -> float:
    """The learning rate with the highest mean validation balanced accuracy."""
    return rows.groupby("lr")["val_balanced_acc"].mean().idxmax()


def tuned_effects(table: pd.DataFrame, variant: str, control: str = "plain") -> pd.DataFrame:
    """One row per condition: each arm at its best validation lr, paired over seeds."""
    out = []
    for condition, rows in table.groupby(CONDITION):
        grid = sorted(rows["lr"].unique())
        chosen = {arm: best_lr(rows[rows["head"] == arm]) for arm in (variant, control)}
        score = {
            arm: rows[(rows["head"] == arm) & (rows["lr"] == lr)].set_index("seed")["balanced_acc"]
            for arm, lr in chosen.items()
        }
        diff = ((score[variant] - score[control]) * 100).dropna()
        low, high = stats.t.interval(0.95, len(diff) - 1, diff.mean(), stats.sem(diff))
        edge = {
            arm: "low" if lr == grid[0] else "high" if lr == grid[-1] else ""
            for arm, lr in chosen.items()
        }
        out.append(
            dict(zip(CONDITION, condition, strict=True))
            | {f"lr_{variant}": chosen[variant], f"edge_{variant}": edge[variant]}
            | {f"lr_{control}": chosen[control], f"edge_{control}": edge[control]}
            | {"effect_pp": diff.mean(), "ci_low": low, "ci_high": high, "pairs": len(diff)}
        )
    return pd.DataFrame(out)


def main() -> None:
    pd.set_option("display.width", 120)
    for name in ("study_claims12", "study_claim3"):
        table = pd.read_parquet(RESULTS / f"{name}.parquet")
        print(f"\n{name}: bn − plain, each arm at its best validation lr (pp, unadjusted 95% CI)")
        print(tuned_effects(table, "bn").round(2).to_string(index=False))
    claim3 = pd.read_parquet(RESULTS / "study_claim3.parquet")
    failed = claim3["status"] != "ok"
    print("\nstudy_claim3: failed trials (collapsed or diverged) by head and lr")
    print(failed.groupby([claim3["head"], claim3["lr"]]).sum().unstack().to_string())


if __name__ == "__main__":
    main()
