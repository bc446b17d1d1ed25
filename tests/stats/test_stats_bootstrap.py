"""The bootstrap's estimand: resampling conditions generalises, resampling pairs does not."""

import numpy as np
import pytest

from bnstudy.stats import analyze
from bnstudy.stats.bootstrap import (
    CONDITIONAL,
    GENERALISING,
    MIN_CONDITIONS,
    block_bootstrap,
    condition_bootstrap,
    effect_size_bootstrap,
    stratified_bootstrap,
    wilson_effective,
)
from bnstudy.stats.effect_fit import paired_effect_fit
from bnstudy.stats.failures import wilson_interval
from bnstudy.stats.simulate import grid_protocol, simulate_paired, simulate_results

SMALL = dict(datasets=("d0", "d1"), ratios=(1.0, 10.0, 100.0), lrs=(0.05,))


def width(low_high) -> float:
    return low_high[2] - low_high[1]


def test_condition_bootstrap_matches_the_model_and_pairs_do_not():
    """The effect varies across conditions (tau = 1): resampling pairs (within conditions or
    not) sees only the seed noise and is far too narrow for a generalising claim."""
    d, g, _ = simulate_paired(30, 10, -1.0, tau=1.0, seed=2)
    fit = paired_effect_fit(d, np.ones((len(d), 1)), g, ["all"])
    model = fit.t_interval(0.95)
    model_width = model[1][0] - model[0][0]
    general = condition_bootstrap(d, g, "higher", 2000, 0, 0.95)
    conditional = stratified_bootstrap(d, g, "higher", 2000, 0, 0.95)
    iid = block_bootstrap(d, "higher", 2000, 0, 0.95)  # what "over blocks" used to do
    assert general.resampled == GENERALISING and conditional.resampled == CONDITIONAL
    assert 0.75 < width(general.values["mean_difference"]) / model_width < 1.15
    assert width(conditional.values["mean_difference"]) < 0.6 * model_width
    assert width(iid["mean_difference"]) < 0.6 * model_width
    assert "resampling conditions" in general.method["mean_difference"]


def test_condition_bootstrap_covers_the_mean_effect():
    hits, reps = 0, 120
    for rep in range(reps):
        d, g, _ = simulate_paired(24, 8, 0.5, tau=0.7, seed=100 + rep)
        low, high = condition_bootstrap(d, g, "higher", 400, rep, 0.95).values["mean_difference"][
            1:
        ]
        hits += low <= 0.5 <= high
    assert hits / reps >= 0.85  # slightly liberal with 24 units, as bootstraps are


def test_every_pair_improving_is_not_a_degenerate_interval():
    """All 60 pairs improve: the bootstrap interval was "1 (1 to 1)". The Wilson interval at
    the level the bootstrap resamples (the 12 conditions) is not."""
    d, g, _ = simulate_paired(12, 5, 5.0, sigma=0.5, seed=1)
    assert (d > 0).all()
    boot = condition_bootstrap(d, g, "higher", 1000, 0, 0.95)
    est, low, high = boot.values["probability_of_improvement"]
    assert est == 1.0 and high == 1.0 and low < 1.0
    assert low == pytest.approx(wilson_interval(12, 12, 0.95)[0])
    assert "12 effective units" in boot.method["probability_of_improvement"]
    # conditional on the conditions, the pairs are the units
    low_pairs = stratified_bootstrap(d, g, "higher", 1000, 0, 0.95).values[
        "probability_of_improvement"
    ][1]
    assert low_pairs == pytest.approx(wilson_interval(60, 60, 0.95)[0]) and low < low_pairs


def test_effective_units_come_from_the_bootstrap_variance():
    d, g, _ = simulate_paired(40, 10, 0.3, tau=0.5, seed=4)
    boot = condition_bootstrap(d, g, "higher", 2000, 0, 0.95)
    p, low, high = boot.values["probability_of_improvement"]
    assert 0 < p < 1 and low < p < high
    n_eff = float(boot.method["probability_of_improvement"].split(" on ")[1].split()[0])
    assert 40 <= n_eff <= 400
    assert (low, high) == pytest.approx(wilson_effective(p, n_eff, 0.95), abs=1e-3)


def test_analysis_labels_what_was_resampled():
    protocol = grid_protocol(6, **SMALL)  # 6 conditions: too few to resample
    a = analyze(simulate_results(protocol, tau=0.5, seed=3), protocol.design())
    assert set(a.effect_sizes["resampled"]) == {CONDITIONAL}
    assert a.effect_sizes["method"].str.contains("pairs within conditions").all()
    rob = a.robustness.iloc[0]
    assert rob.bootstrap_resampled == CONDITIONAL and "conditional" in rob.note
    protocol = grid_protocol(4, lrs=(0.01, 0.1), datasets=("d0", "d1"))  # 16 conditions
    a = analyze(simulate_results(protocol, tau=0.5, seed=3), protocol.design())
    assert MIN_CONDITIONS <= 16 and set(a.effect_sizes["resampled"]) == {GENERALISING}
    assert (
        a.effect_sizes.query("statistic == 'mean_difference'")
        .method.iloc[0]
        .startswith("BCa bootstrap resampling conditions")
    )


def test_effect_size_bootstrap_chooses_by_the_number_of_conditions():
    d, g, _ = simulate_paired(MIN_CONDITIONS - 1, 5, seed=0)
    assert effect_size_bootstrap(d, g, "higher", 200, 0, 0.95).resampled == CONDITIONAL
    d, g, _ = simulate_paired(MIN_CONDITIONS, 5, seed=0)
    assert effect_size_bootstrap(d, g, "higher", 200, 0, 0.95).resampled == GENERALISING
