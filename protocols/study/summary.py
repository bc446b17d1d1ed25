"""Print the study's numbers as Markdown: every hypothesis judged, per-arm means, and where
and how long each protocol ran. The README's "What we found" quotes this output.

    python protocols/study/summary.py            # from the repository root, bnstudy installed

Reads the committed tables ``data/results/study_*.parquet`` with the protocol each records
(the same analysis ``bnstudy report`` runs), so its numbers are the reports' numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bnstudy import study
from bnstudy.catalogue import METRICS

PROTOCOLS = ["claims12", "claims12_deep", "claim3", "claim4", "claim5"]
ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    for name in PROTOCOLS:
        path = ROOT / "data" / "results" / f"study_{name}.parquet"
        recorded = study.load_results(path)
        analysis = study.analyze_with_protocol(recorded)
        table = recorded.results.table
        print(f"## study_{name}: {len(table)} trials\n")
        print(_where(table, recorded.results.metadata), "\n")
        print(_hypotheses(analysis.hypotheses), "\n")
        print(_arms(table, recorded.protocol), "\n")
        print(_levels(analysis), "\n")
        print(_mechanisms(table, recorded.protocol), "\n")


def made_on(machine: dict[str, str]) -> str:
    """The recorded machine in a few words: its GPUs, else its CPU model."""
    return machine.get("gpus") or machine.get("cpu_model") or "a CPU (model not recorded)"


def markdown(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def _where(table: pd.DataFrame, metadata: dict[str, str]) -> str:
    machine = json.loads(metadata.get("machine", "{}"))
    execution = json.loads(metadata.get("execution", "{}"))
    versions = json.loads(metadata.get("versions", "{}"))
    start = pd.to_datetime(table["started_at"]).min()
    end = pd.to_datetime(table["ended_at"]).max()
    return (
        f"Ran on {made_on(machine)} ({machine.get('cpu_count', '?')} CPU cores; devices "
        f"{', '.join(sorted(table['device'].astype(str).unique()))}; "
        f"{execution.get('workers', '?')} workers; torch {versions.get('torch', '?')}): "
        f"{(end - start).total_seconds() / 60:.1f} min from first start to last end, "
        f"{table['wall_s'].sum() / 3600:.2f} trial-hours. Statuses: "
        + ", ".join(f"{k} {v}" for k, v in table["status"].value_counts().items())
    )


def _hypotheses(hyp: pd.DataFrame | None) -> str:
    if hyp is None or hyp.empty:
        return "(no hypotheses)"
    rows = []
    for r in hyp.itertuples(index=False):
        unit = f" {r.unit}" if r.unit else ""
        if pd.isna(r.estimate):
            est, pi = "–", "–"
        else:
            est = f"{r.estimate:+.2f}{unit} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
            pi = "–" if pd.isna(r.pi_low) else f"[{r.pi_low:+.1f}, {r.pi_high:+.1f}]"
        p = r.p_adj if pd.notna(r.p_adj) else r.p
        p_text = "–" if pd.isna(p) else f"{p:.3g}" + ("" if pd.notna(r.p_adj) else " (unadj.)")
        verdict = r.verdict + (f" ({r.note})" if pd.isna(r.estimate) and r.note else "")
        rows.append([r.id, est, pi, p_text, verdict, r.n_pairs, r.registration])
    header = ["id", "estimate [95% CI]", "prediction interval", "p (Holm)", "verdict", "pairs"]
    return markdown([*header, "registration"], rows)


def _levels(analysis) -> str:
    """Each variant's effect per level of every moderator (primary analysis, unadjusted):
    where a claim holds and where it does not."""
    e = analysis.estimates
    keep = (
        (e["population"] == "intention-to-treat")
        & (e["estimand"] == analysis.primary_estimand)
        & ~e["scope"].str.endswith(("_contrast", "_slope"))
        & (e["scope"] != "overall")
    )
    rows = [
        [
            r.metric,
            r.variant,
            f"{r.scope}={r.level}",
            f"{r.estimate:+.2f} {analysis.units.get(r.metric, '')} "
            f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]",
            r.n_pairs,
        ]
        for r in e[keep].itertuples(index=False)
    ]
    header = ["metric", "variant", "level", "estimate [95% CI], unadjusted", "pairs"]
    return markdown(header, rows)


#: Recorded per trial, summarised per arm (ok trials): the train/eval gap (test accuracy in
#: train mode minus eval mode, pp), the fold check (|logits of the BN-folded FC - logits|),
#: PreciseBN's change of balanced accuracy (pp) and the FC input's dead/inactive units (%).
MECHANISMS = {
    "train_eval_gap": ("mean train/eval gap (pp)", "mean", 100.0),
    "fold_max_abs_diff": ("max fold error", "max", 1.0),
    "precise_gain": ("mean PreciseBN - running (pp)", "mean", 100.0),
    "head_dead_frac": ("mean dead FC inputs (%)", "mean", 100.0),
    "head_inactive_frac": ("mean inactive FC inputs per input (%)", "mean", 100.0),
}


def _mechanisms(table: pd.DataFrame, protocol) -> str:
    arm = protocol.design().treatment
    ok = table[table["status"] == "ok"].assign(
        precise_gain=lambda t: t["balanced_acc_precise"] - t["balanced_acc"]
    )
    cols = {k: v for k, v in MECHANISMS.items() if k in ok and ok[k].notna().any()}
    rows = [
        [name] + [f"{getattr(group[k], how)() * scale:.3g}" for k, (_, how, scale) in cols.items()]
        for name, group in ok.groupby(arm)
    ]
    return markdown(["arm (ok trials)", *(label for label, _, _ in cols.values())], rows)


def _arms(table: pd.DataFrame, protocol) -> str:
    """Mean of each primary metric per arm, in the metric's units, and the failure rate."""
    arm = protocol.design().treatment
    out = pd.DataFrame(index=sorted(table[arm].unique()))
    for metric in protocol.analysis.metrics:
        if metric in table.columns:
            scale = METRICS[metric].scale
            out[f"{metric} mean"] = table.groupby(arm)[metric].mean() * scale
    out["not ok (%)"] = table.assign(f=table["status"] != "ok").groupby(arm)["f"].mean() * 100
    rows = [[a, *(f"{v:.2f}" for v in r)] for a, r in out.iterrows()]
    return markdown(["arm", *out.columns], rows)


if __name__ == "__main__":
    main()
