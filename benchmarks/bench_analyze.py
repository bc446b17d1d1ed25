"""Time ``bnstudy.stats.analyze`` on a 40,000-row results table and print stage timings.

48 conditions (4 datasets x 4 imbalance ratios x 3 learning rates), 417 seeds, 2 arms
(plain, bn): 40,032 trials, 5% failed, 20,016 pairing blocks; 2000 bootstrap replicates.
A third table adds the tuned comparison (each arm at its best lr on val_balanced_acc).
Run: python benchmarks/bench_analyze.py
"""

from __future__ import annotations

import time

import numpy as np

from bnstudy.stats import analyze
from bnstudy.stats.bootstrap import effect_size_bootstrap
from bnstudy.stats.effect_fit import paired_effect_fit
from bnstudy.stats.failures import failure_rates
from bnstudy.stats.meta import heterogeneity, per_condition_effects
from bnstudy.stats.paired import paired_differences
from bnstudy.stats.signflip import sign_flip_test
from bnstudy.stats.simulate import grid_protocol, simulate_results


def timed(fn, *args, repeat: int = 3, **kwargs):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    rows = []
    for metrics, extra in (
        (("balanced_acc",), ""),
        (("balanced_acc", "nll"), ""),
        (("balanced_acc",), "  tune: [lr]\n"),
    ):
        protocol = grid_protocol(417, metrics=metrics, extra_analysis=extra)
        design = protocol.design()
        table = simulate_results(protocol, effect=-0.4, tau=0.5, failed=0.05, seed=1)
        label = f"{len(metrics)} metric(s)" + (", tuned" if extra else "")
        t_all, analysis = timed(analyze, table, design)
        rows.append((label, "analyze (total)", t_all))
        if len(metrics) > 1 or extra:
            continue
        metric, variant = metrics[0], "bn"
        conf = design.confidence
        t, pairs = timed(paired_differences, table, design, metric, variant)
        rows.append((label, "pairing (block differences)", t))
        d = pairs.frame["d"].to_numpy()
        g = pairs.frame["condition"].to_numpy()
        t, _ = timed(paired_effect_fit, d, np.ones((len(d), 1)), g, ["all"])
        rows.append((label, "overall mixed model", t))
        t_mod = t_slope = 0.0
        for mod, transform in design.moderators.items():
            levels = sorted(pairs.frame[mod].unique())
            X = (pairs.frame[mod].to_numpy()[:, None] == np.array(levels)[None, :]).astype(float)
            t_mod += timed(paired_effect_fit, d, X, g, [str(v) for v in levels])[0]
            if pairs.frame[mod].dtype.kind in "if":
                x = pairs.frame[mod].to_numpy(float)
                x = np.log(x) if transform == "log" else x
                X = np.column_stack([np.ones(len(d)), x - x.mean()])
                t_slope += timed(paired_effect_fit, d, X, g, ["intercept", "slope"])[0]
        rows.append((label, f"moderator models ({len(design.moderators)})", t_mod))
        rows.append((label, "slope models (numeric moderators)", t_slope))
        t, pc = timed(per_condition_effects, pairs.frame, pairs.condition_columns, conf)
        t2, _ = timed(heterogeneity, pc["estimate"].to_numpy(), pc["se"].to_numpy() ** 2, conf)
        rows.append((label, "per-condition + DL/PM meta", t + t2))
        t, _ = timed(effect_size_bootstrap, d, g, "higher", 2000, 0, conf)
        rows.append((label, "bootstrap over conditions (B=2000, 3 stats)", t))
        means = pairs.frame.groupby("condition")["d"].mean().to_numpy()
        rows.append((label, "sign-flip test (48 condition means)", timed(sign_flip_test, means)[0]))
        rows.append((label, "failure rates", timed(failure_rates, table, design, conf)[0]))
        print(
            f"table: {len(table)} rows, {pairs.n_pairs} complete pairs, "
            f"{pairs.n_conditions} conditions; headline: {analysis.headline()['text']}"
        )
    total = {label: t for label, stage, t in rows if stage == "analyze (total)"}
    print(f"\n{'table':<20} {'stage':<44} {'seconds':>8} {'share':>7}")
    for label, stage, t in rows:
        print(f"{label:<20} {stage:<44} {t:8.3f} {t / total[label]:7.1%}")
    print("(best of 3; stage rows are standalone calls, so shares need not sum to 100%)")


if __name__ == "__main__":
    main()
