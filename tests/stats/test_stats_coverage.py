"""Fast coverage check of the paired model (the full run is benchmarks/simulate_coverage.py)."""

import numpy as np
import pytest

from bnstudy.stats.effect_fit import paired_effect_fit
from bnstudy.stats.paired import paired_differences
from bnstudy.stats.simulate import grid_protocol, simulate_results

REPLICATES = 50


@pytest.mark.parametrize("tau, failed", [(0.0, 0.0), (0.5, 0.1)])
def test_overall_ci_coverage(tau, failed):
    protocol = grid_protocol(10)  # 48 conditions
    hits = 0
    for rep in range(REPLICATES):
        table = simulate_results(protocol, effect=-1.0, tau=tau, failed=failed, seed=rep)
        # Failures here are at random, not caused by the head: the estimand is the effect
        # among ok trials (intention to treat would also count the failures' scores).
        pairs = paired_differences(table, protocol, "balanced_acc", "bn", population="ok only")
        d = pairs.frame["d"].to_numpy()
        fit = paired_effect_fit(d, np.ones((len(d), 1)), pairs.frame["condition"], ["all"])
        low, high = fit.t_interval(0.95)
        hits += low[0] <= -1.0 <= high[0]
    assert hits / REPLICATES >= 0.85
