"""The sign-flip robustness check on condition means: exact, calibrated, honest about power."""

import numpy as np
import pytest

from bnstudy.stats import analyze
from bnstudy.stats.signflip import EXACT_MAX, sign_flip_test
from bnstudy.stats.simulate import grid_protocol, simulate_results


def test_exact_p_by_hand():
    # |+-1 +-2 +-3| over the 8 sign patterns: 6, 4, 2, 0, 0, 2, 4, 6; observed 6
    flip = sign_flip_test(np.array([1.0, 2.0, 3.0]))
    assert flip.exact and flip.p == pytest.approx(2 / 8) and flip.min_p == pytest.approx(2 / 8)
    assert not flip.can_reject(0.05)  # 3 conditions: no power at 5%
    # observed 2 = |1 - 2 + 3|: reached by 6 of 8 patterns (6, 4, 2, 2, 4, 6)
    assert sign_flip_test(np.array([1.0, -2.0, 3.0])).p == pytest.approx(6 / 8)
    assert sign_flip_test(np.zeros(4)).p == 1.0
    assert np.isnan(sign_flip_test(np.array([])).p)


def test_monte_carlo_agrees_with_enumeration():
    m = np.random.default_rng(0).normal(0.3, 1.0, EXACT_MAX + 1)
    exact_half = sign_flip_test(m[:EXACT_MAX])
    assert exact_half.exact and not sign_flip_test(m).exact
    # MC p of the first EXACT_MAX means, forced through the MC branch by one zero mean added
    mc = sign_flip_test(np.append(m[:EXACT_MAX], 0.0), replicates=40_000, seed=1)
    assert mc.p == pytest.approx(exact_half.p, abs=0.01)


@pytest.mark.parametrize("conditions, replicates", [(12, 3000), (30, 600)])
def test_null_rejection_rate_is_alpha(conditions, replicates):
    """Heavy-tailed, heteroscedastic condition means, symmetric about 0: rejects ~5%."""
    rng = np.random.default_rng(conditions)
    p = np.array(
        [
            sign_flip_test(
                rng.standard_t(3, conditions) * rng.uniform(0.3, 3.0, conditions),
                replicates=2000,
                seed=r,
            ).p
            for r in range(replicates)
        ]
    )
    rate = np.mean(p < 0.05)
    band = 3 * np.sqrt(0.05 * 0.95 / replicates)
    assert abs(rate - 0.05) < band, rate


def test_analysis_uses_condition_means_and_says_when_it_cannot_reject():
    """Four conditions with a varying effect: the Wilcoxon test fell back to the blocks and
    'disagreed' with the model; the sign-flip test on 4 means has no power at 5%."""
    protocol = grid_protocol(15, datasets=("d0",), ratios=(1.0, 100.0), lrs=(0.01, 0.1))
    table = simulate_results(protocol, effect=0.0, tau=1.5, seed=2)
    rob = analyze(table, protocol.design()).robustness.iloc[0]
    assert rob.n_conditions == 4 and rob.signflip_min_p == pytest.approx(2 / 16)
    assert np.isnan(rob.wilcoxon_p) and "sign-flip" in rob.wilcoxon_unit
    assert "no power" in rob.note and bool(rob.agree)
    # with 48 conditions the test can reject, and is compared with the model
    protocol = grid_protocol(4)
    rob = analyze(simulate_results(protocol, effect=-1.0, seed=2), protocol.design()).robustness
    rob = rob.iloc[0]
    assert rob.signflip_p < 0.05 and rob.model_p < 0.05 and bool(rob.agree)
    assert "no power" not in rob.note
