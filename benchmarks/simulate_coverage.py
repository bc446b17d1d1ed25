"""Empirical coverage, type-I error and verdict rates of ``analyze``, by simulation.

Each replicate simulates a results table (``bnstudy.stats.simulate``), runs the full
``analyze`` (moderators dataset, imbalance ratio and lr, with their levels, contrasts and
slopes) and records, for the overall effect of bn vs plain on balanced_acc:

- whether the 95% CI covers the true mean effect, next to the naive random-intercept-only
  model ``y ~ head + (1 | block)`` fitted on the long table (statsmodels MixedLM, REML) that
  ignores how the effect varies across conditions;
- whether the 95% prediction interval covers the effect of a *new* condition drawn from the
  same distribution (averaged over 4,000 draws per replicate);
- whether the generalising bootstrap CI (resampling conditions) covers the true effect;
- the verdicts: significant (Holm-adjusted p < 0.05), "equivalent (on average)",
  "equivalent (PI within margin)";
- the sign-flip test on condition means rejecting at 5% (its type-I error in null scenarios);
- whether any row outside the multiplicity family (moderator levels, contrasts, slopes) is
  worded "better"/"worse" (must be 0: they read "unadjusted: ..."), and whether any reads
  "unadjusted: higher/lower/increasing/decreasing" (the chance findings a reader must not
  take for verdicts).

Run: python benchmarks/simulate_coverage.py [replicates] [workers]
(output: simulate_coverage.txt)
"""

from __future__ import annotations

import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import statsmodels.api as sm
from scipy import stats

from bnstudy.stats import analyze
from bnstudy.stats.inference import UNADJUSTED
from bnstudy.stats.simulate import grid_protocol, simulate_results

# name, effect (pp), tau (pp, normal), spread (pp, uniform), failed, absent, datasets
# (conditions = datasets x 4 ratios x 3 lrs)
SCENARIOS = [
    ("homogeneous", -1.0, 0.0, 0.0, 0.0, 0.0, 4),
    ("heterogeneous tau=0.5", -1.0, 0.5, 0.0, 0.0, 0.0, 4),
    ("heterogeneous + missing", -1.0, 0.5, 0.0, 0.10, 0.05, 4),
    ("few conditions (12), tau=0.5", -1.0, 0.5, 0.0, 0.05, 0.0, 1),
    ("equivalence: effect 0.1, tau=0", 0.1, 0.0, 0.0, 0.05, 0.0, 4),
    ("equivalence: effect 0.1, tau=0.2", 0.1, 0.2, 0.0, 0.05, 0.0, 4),
    ("null, tau=0", 0.0, 0.0, 0.0, 0.0, 0.0, 4),
    ("null, tau=0.5", 0.0, 0.5, 0.0, 0.0, 0.0, 4),
    ("null, tau=0.5, 12 conditions", 0.0, 0.5, 0.0, 0.0, 0.0, 1),
    ("null, spread +-0.8", 0.0, 0.0, 0.8, 0.0, 0.0, 4),
    ("null, spread +-0.8, 12 conditions", 0.0, 0.0, 0.8, 0.0, 0.0, 1),
]
SEEDS = 10
EXTRA = "  bootstrap:\n    replicates: 500\n"
NEW_CONDITIONS = 4000


def naive_ci(table, control: str) -> tuple[float, float]:
    """95% CI of the head effect from y ~ head + (1 | block): no random slope by condition."""
    ok = table[(table["status"] == "ok") & table["balanced_acc"].notna()]
    y = ok["balanced_acc"].to_numpy() * 100
    X = np.column_stack([np.ones(len(ok)), (ok["head"] != control).to_numpy(float)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.MixedLM(y, X, groups=ok["block_id"].to_numpy()).fit(reml=True, method="bfgs")
    est, se = fit.fe_params[1], fit.bse_fe[1]
    q = stats.norm.ppf(0.975)
    return est - q * se, est + q * se


def replicate(args: tuple) -> dict:
    (name, effect, tau, spread, failed, absent, n_data), rep = args
    protocol = grid_protocol(
        SEEDS, datasets=tuple(f"d{i}" for i in range(n_data)), extra_analysis=EXTRA
    )
    table = simulate_results(
        protocol,
        effect=effect,
        tau=tau,
        spread=spread,
        failed=failed,
        missing=absent,
        seed=1000 * rep + 7,
    )
    analysis = analyze(table, protocol.design())
    est = analysis.primary()
    # Failures here strike at random, not because of the head: the truth is the effect among
    # ok trials (intention to treat would also count the failures' declared scores).
    population = analysis.sensitivity() if failed else est
    row = population[population["scope"] == "overall"].iloc[0]
    nan = float("nan")
    rng = np.random.default_rng(rep)
    new = effect + rng.normal(0, tau, NEW_CONDITIONS) + rng.uniform(-spread, spread, NEW_CONDITIONS)
    low, high = naive_ci(table, protocol.control)
    boot = analysis.effect_sizes.query("statistic == 'mean_difference'").iloc[0]
    rob = analysis.robustness.iloc[0]
    others = est[est["scope"] != "overall"]["verdict"]
    return dict(
        covered=row.ci_low <= effect <= row.ci_high,
        width=row.ci_high - row.ci_low,
        pi_covered=float(np.mean((row.pi_low <= new) & (new <= row.pi_high))),
        boot_covered=(boot.ci_low <= effect <= boot.ci_high) if not failed else nan,
        significant=(row.p_adj if not failed else row.p) < 0.05,
        equiv_average=row.verdict.startswith("equivalent (on average)"),
        equiv_pi=row.verdict.startswith("equivalent (PI within margin)"),
        signflip=(rob.signflip_p < 0.05) if not failed else nan,
        boundary=row.method.startswith("OLS"),
        naive_covered=low <= effect <= high,
        naive_width=high - low,
        flagged=(not bool(rob.agree)) if not failed else nan,
        judged=bool(others.str.contains("better|worse").any()),
        unadjusted_sign=bool(
            others.str.startswith(UNADJUSTED)
            .where(others.str.contains("higher|lower|increasing|decreasing"), False)
            .any()
        ),
    )


def _cell(value, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if isinstance(value, float) else f"{value:>{width}}"


def main() -> None:
    replicates = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    t0 = time.perf_counter()
    lines = [
        f"Simulated analyses, {replicates} replicates per scenario, {SEEDS} seeds per "
        "condition, conditions = datasets x 4 ratios x 3 lrs, within-arm residual SD 1 pp",
        "(paired SD 1.41 pp); condition effects: normal SD tau and/or uniform +-spread.",
        "cov: 95% CI of the overall effect (paired model, t df G-1) covers the truth "
        "[95% Monte Carlo band].",
        "PI cov: the 95% prediction interval covers a new condition's effect (mean over "
        f"{NEW_CONDITIONS} new conditions).",
        "boot cov: the bootstrap CI of the mean difference covers the truth (resampling "
        "conditions; 12 conditions or more).",
        "naive: y ~ head + (1 | block) on the long table (random-intercept-only, normal CI).",
        "sig: Holm-adjusted p < 0.05 (type-I error in null scenarios). eq avg / eq PI: verdict "
        "'equivalent (on average)' / 'equivalent (PI within margin)', margin 0.5 pp.",
        "flip: sign-flip test on condition means rejects at 5%. flag: robustness check "
        "disagrees with the model. bound.: tau^2 = 0 (boundary, OLS).",
        "judged: some moderator/contrast/slope row (outside the family) says better/worse. "
        "unadj: some such row reads 'unadjusted: higher/lower/...'.",
        "Scenarios with failures (at random) read the ok-only rows (the truth is the effect "
        "among ok trials); boot, flip and flag (intention to treat only) are then '-'.",
        "",
        f"{'scenario':<36}{'G':>4}{'cov':>7}{'[95% MC]':>14}{'width':>7}{'PI cov':>7}"
        f"{'boot':>6}{'naive':>7}{'sig':>6}{'eq avg':>7}{'eq PI':>7}{'flip':>6}{'flag':>6}"
        f"{'bound.':>7}{'judged':>7}{'unadj':>6}",
    ]
    print("\n".join(lines), flush=True)
    with ProcessPoolExecutor(workers) as pool:
        for sc in SCENARIOS:
            res = list(pool.map(replicate, [(sc, r) for r in range(replicates)], chunksize=5))
            mean = {k: float(np.mean([r[k] for r in res])) for k in res[0]}
            mean = {k: (v if np.isfinite(v) else "-") for k, v in mean.items()}
            cov = mean["covered"]
            mc = 1.96 * np.sqrt(cov * (1 - cov) / replicates)
            G = sc[6] * 12
            lines.append(
                f"{sc[0]:<36}{G:>4}{cov:>7.3f}  [{cov - mc:.3f},{min(cov + mc, 1):.3f}]"
                + "".join(
                    _cell(mean[k], width, digits)
                    for k, width, digits in (
                        ("width", 7, 2),
                        ("pi_covered", 7, 3),
                        ("boot_covered", 6, 2),
                        ("naive_covered", 7, 3),
                        ("significant", 6, 3),
                        ("equiv_average", 7, 2),
                        ("equiv_pi", 7, 3),
                        ("signflip", 6, 3),
                        ("flagged", 6, 2),
                        ("boundary", 7, 2),
                        ("judged", 7, 2),
                        ("unadjusted_sign", 6, 2),
                    )
                )
            )
            print(lines[-1], flush=True)
    lines.append(f"\n({time.perf_counter() - t0:.0f} s on {workers} worker processes)")
    print(lines[-1])
    with open(__file__.replace(".py", ".txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
