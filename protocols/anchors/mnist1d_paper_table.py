"""Print the MNIST-1D anchor's table: bnstudy's test accuracy next to the paper's.

    python protocols/anchors/mnist1d_paper_table.py [data/results/anchor_mnist1d_paper.parquet]

Reads the results of ``protocols/anchors/mnist1d_paper.yaml`` (pandas only, no training) and
prints, per network, the paper's Table 1 accuracy (Greydanus & Kobak 2024), bnstudy's
plain-head and BN-head test accuracy as mean ± SD over the seeds (percent, the 1,000 test
signals), and plain minus paper in percentage points, flagged where it exceeds the anchor's
3 pp tolerance (a mismatch there is a bug to find, not a result).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

RESULTS = Path("data/results/anchor_mnist1d_paper.parquet")
#: Table 1 of the paper: test accuracy (%) of each network.
PAPER = {"linear": 32.0, "mnist1d_mlp": 68.0, "mnist1d_cnn": 94.0}
NAMES = {"linear": "logistic regression", "mnist1d_mlp": "MLP", "mnist1d_cnn": "CNN"}
#: A plain-head mismatch beyond this many percentage points is a bug to find.
TOLERANCE_PP = 3.0


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per network: the paper's accuracy and each head's mean, SD and seed count."""
    ok = table[table["status"] == "ok"]
    acc = ok.assign(pct=100 * ok["test_acc"]).groupby(["architecture", "head"])["pct"]
    stats = acc.agg(["mean", "std", "count"]).unstack("head")
    rows = []
    for arch, paper in PAPER.items():
        row = {"network": NAMES[arch], "architecture": arch, "paper": paper}
        for head in ("plain", "bn"):
            row[f"{head}_mean"] = stats.loc[arch, ("mean", head)]
            row[f"{head}_sd"] = stats.loc[arch, ("std", head)]
            row[f"{head}_n"] = int(stats.loc[arch, ("count", head)])
        row["plain_minus_paper"] = row["plain_mean"] - paper
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(rows: pd.DataFrame) -> str:
    lines = [
        "| network | paper | bnstudy, plain head | plain − paper | bnstudy, BN head |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows.itertuples():
        flag = "" if abs(r.plain_minus_paper) <= TOLERANCE_PP else " (beyond 3 pp)"
        lines.append(
            f"| {r.network} (`{r.architecture}`) | {r.paper:.0f}% "
            f"| {r.plain_mean:.1f} ± {r.plain_sd:.1f}% (n = {r.plain_n}) "
            f"| {r.plain_minus_paper:+.1f} pp{flag} "
            f"| {r.bn_mean:.1f} ± {r.bn_sd:.1f}% (n = {r.bn_n}) |"
        )
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    print(markdown(summary(pd.read_parquet(path))))


if __name__ == "__main__":
    main()
