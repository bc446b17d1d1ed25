"""Bias of the tuned estimand: selecting each arm's level on the same seeds it is evaluated on,
against cross-fitting the seeds (``bnstudy.stats.tuning``), by simulation.

The scenario: two arms with identical means at every one of 4 learning rates (the true tuned
effect is 0), differing only in their seed-to-seed spread: each trial's luck, shared by its
validation and test scores, has SD 1.5 pp for bn and 0.5 pp for plain
(``simulate_results(..., trial_sd=...)``). Everything else is the simulator's default: a
block intercept per seed x setting shared by both arms (SD 2 pp) and independent residuals of
SD 1 pp on test and on validation. 48 base conditions (12 datasets x 4 imbalance ratios),
20 seeds each (10 per fold); condition intercepts 0 so that every level is truly as good as
every other.

Each replicate simulates one results table and computes the tuned pairs of balanced_acc
(bn - plain) twice, through the package's own code:

- same seeds: ``tuning.same_seed_selection`` (each arm's level chosen on the mean
  val_balanced_acc over all 20 seeds, evaluated on the test scores of those seeds): the
  selection before cross-fitting, kept only for this comparison;
- cross-fitted: ``tuning.select_levels`` (the estimand: chosen on one fold's 10 seeds,
  evaluated on the other fold's pairs, both folds together).

The estimate per replicate is the mean paired difference (every condition has the same
number of pairs, so it is the paired model's estimate of the overall effect too). The bias is
the mean over replicates (truth 0); its Monte Carlo SE is the replicates' SD / sqrt(R). The
expected bias of the same-seed selection is E[max of 4 N(0,1)] / sqrt(n) * sum over arms of
+-(block^2 + luck^2) / sqrt(block^2 + luck^2 + val_sigma^2) (the winner's curse of each arm;
"theory" below).

Run: python benchmarks/tuned_bias.py [replicates]   (output: tuned_bias.txt)
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
from scipy import integrate, stats

from bnstudy.execution.devices import cpu_model
from bnstudy.stats.imputation import ITT, score_trials
from bnstudy.stats.paired import condition_columns
from bnstudy.stats.simulate import grid_protocol, simulate_results
from bnstudy.stats.tuning import same_seed_selection, select_levels, tuned_differences

SEEDS = 20
LRS = (0.01, 0.03, 0.1, 0.3)
DATASETS = tuple(f"d{i}" for i in range(12))
RATIOS = (1.0, 10.0, 50.0, 100.0)
LUCK = {"bn": 1.5, "plain": 0.5}  # trial_sd per arm (pp)
BLOCK_SD = 2.0  # the simulator's default
SIGMA = VAL_SIGMA = 1.0  # the simulator's defaults
METRIC = "balanced_acc"
METHODS = (("same seeds (old)", same_seed_selection), ("cross-fitted (now)", select_levels))


def expected_max(k: int) -> float:
    """E[max of k independent N(0, 1)]."""
    density = lambda x: x * k * stats.norm.pdf(x) * stats.norm.cdf(x) ** (k - 1)  # noqa: E731
    return integrate.quad(density, -np.inf, np.inf)[0]


def same_seed_theory(n_seeds: int) -> float:
    """The expected bias of the same-seed selection in this scenario (module docstring)."""

    def curse(luck: float) -> float:
        shared = BLOCK_SD**2 + luck**2
        return shared / np.sqrt(shared + VAL_SIGMA**2)

    return expected_max(len(LRS)) / np.sqrt(n_seeds) * (curse(LUCK["bn"]) - curse(LUCK["plain"]))


def replicate(protocol, seed: int) -> list[float]:
    """The mean tuned paired difference bn - plain of one simulated table, per method."""
    design = protocol.design()
    table = simulate_results(
        protocol,
        effect=0.0,
        condition_sd=0.0,
        block_sd=BLOCK_SD,
        sigma=SIGMA,
        val_sigma=VAL_SIGMA,
        trial_sd=LUCK,
        seed=seed,
    )
    scored = score_trials(
        table, METRIC, condition_columns(design, table), ITT, design.failed_score, "higher"
    )
    out = []
    for _, select in METHODS:
        pairs = tuned_differences(table, design, METRIC, "bn", scored, select(table, design))
        assert pairs.n_pairs == len(DATASETS) * len(RATIOS) * SEEDS, pairs.n_pairs
        out.append(float(pairs.frame["d"].mean()))
    return out


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    t0 = time.perf_counter()
    protocol = grid_protocol(
        SEEDS,
        datasets=DATASETS,
        ratios=RATIOS,
        lrs=LRS,
        metrics=(METRIC,),
        extra_analysis="  tune: [lr]\n",
    )
    estimates = np.array([replicate(protocol, seed) for seed in range(reps)])
    wall = time.perf_counter() - t0
    theory = (same_seed_theory(SEEDS), 0.0)
    lines = [
        f"# python benchmarks/tuned_bias.py {reps}",
        f"# machine: {platform.machine()} {cpu_model() or 'unknown CPU'}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        "",
        "Tuned estimand of balanced_acc (bn - plain, pp); truth 0: identical means at each of "
        f"{len(LRS)} lrs {LRS}.",
        f"Trial luck (shared by a trial's validation and test scores) SD {LUCK['bn']} pp (bn) "
        f"vs {LUCK['plain']} pp (plain); block intercept SD {BLOCK_SD} pp (both arms);",
        f"independent residual SD {SIGMA} pp (test) and {VAL_SIGMA} pp (validation). "
        f"{len(DATASETS) * len(RATIOS)} base conditions x {SEEDS} seeds "
        f"= {len(DATASETS) * len(RATIOS) * SEEDS} pairs per replicate.",
        f"{reps} replicates (tables); bias = mean of the replicates' mean paired difference; "
        "MC SE = SD / sqrt(replicates).",
        "",
        f"{'selection':<20} {'bias (pp)':>10} {'MC SE':>7} {'bias/SE':>8} {'theory':>7} "
        f"{'SD':>6} {'RMSE':>6}",
    ]
    for j, (name, _) in enumerate(METHODS):
        est = estimates[:, j]
        bias, sd = est.mean(), est.std(ddof=1)
        se = sd / np.sqrt(reps)
        rmse = np.sqrt(np.mean(est**2))
        lines.append(
            f"{name:<20} {bias:>+10.3f} {se:>7.3f} {bias / se:>+8.1f} {theory[j]:>+7.3f} "
            f"{sd:>6.3f} {rmse:>6.3f}"
        )
    diff = estimates[:, 0] - estimates[:, 1]
    lines += [
        "",
        f"same seeds - cross-fitted, same tables: {diff.mean():+.3f} pp "
        f"(MC SE {diff.std(ddof=1) / np.sqrt(reps):.3f}).",
        "theory: E[max of 4 N(0,1)] / sqrt(seeds) * sum over arms of +-(block^2 + luck^2) / "
        "sqrt(block^2 + luck^2 + val_sigma^2); SD: of one replicate's estimate.",
        f"({wall:.0f} s wall, one process)",
    ]
    print("\n".join(lines), flush=True)
    with open(__file__.replace(".py", ".txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
