"""plan_seeds: per-metric targets in each metric's own units, checked at the boundary."""

import numpy as np
import pytest

from bnstudy.stats import plan_seeds
from bnstudy.stats.paired import paired_differences
from bnstudy.stats.planning import variance_components
from bnstudy.stats.simulate import grid_protocol, simulate_results

SMALL = dict(datasets=("d0", "d1"), ratios=(1.0, 10.0, 100.0), lrs=(0.05,))


@pytest.fixture(scope="module")
def pilot():
    protocol = grid_protocol(6, metrics=("balanced_acc", "nll"), **SMALL)
    return protocol, simulate_results(protocol, effect=-1.0, tau=0.5, seed=1)


def test_half_widths_are_per_metric(pilot):
    """One number for every metric made "1" mean 1 nat of NLL: feasible with 2 seeds."""
    protocol, table = pilot
    plan = plan_seeds(table, protocol, halfwidth={"balanced_acc": 1.0}).set_index("metric")
    assert plan.loc["balanced_acc", "target_value"] == 1.0
    assert plan.loc["balanced_acc", "target"] == "halfwidth"
    # nll not named: its own equivalence margin (0.02 nats), not the 1 pp meant for accuracy
    assert plan.loc["nll", "target_value"] == 0.02
    assert plan.loc["nll", "target"] == "halfwidth (equivalence margin)"
    both = plan_seeds(table, protocol, halfwidth={"balanced_acc": 1.0, "nll": 0.5})
    assert both.set_index("metric").loc["nll", "target_value"] == 0.5


def test_effects_are_per_metric(pilot):
    protocol, table = pilot
    plan = plan_seeds(table, protocol, effect={"nll": -0.3}).set_index("metric")
    assert plan.loc["nll", "target"].startswith("power 0.8") and plan.loc["nll", "feasible"]
    assert plan.loc["nll", "target_value"] == -0.3
    assert plan.loc["balanced_acc", "target"] == "halfwidth (equivalence margin)"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(halfwidth={"balanced_acc": -1.0}), "halfwidth for metric 'balanced_acc' must be"),
        (dict(halfwidth={"balanced_acc": 0.0}), "finite number > 0, got 0.0"),
        (dict(halfwidth={"nll": float("nan")}), "halfwidth for metric 'nll' must be"),
        (dict(halfwidth={"nll": float("inf")}), "halfwidth for metric 'nll' must be"),
        (dict(halfwidth={"balanced_acc": "wide"}), "got 'wide'"),
        (dict(halfwidth={"balanced_ac": 1.0}), "'balanced_ac': unknown; primary metrics:"),
        (dict(halfwidth={"ece": 1.0}), "'ece': not a primary metric of this protocol"),
        (dict(halfwidth=1.0), "halfwidth must map metric names to values"),
        (dict(effect={"nll": 0.0}), "effect for metric 'nll' must be a finite non-zero"),
        (dict(effect={"nll": 0.1}, halfwidth={"nll": 0.1}), "for metric 'nll', not both"),
        (dict(effect={"nll": 0.1}, power=80), r"power must be in \[0.5, 1\), got 80"),
    ],
)
def test_bad_targets_are_refused_in_one_line(pilot, kwargs, message):
    protocol, table = pilot
    with pytest.raises(ValueError, match=message) as info:
        plan_seeds(table, protocol, **kwargs)
    assert "\n" not in str(info.value)


def test_plan_uses_the_intention_to_treat_pairs(pilot):
    """A head that collapses in the pilot adds the spread of its collapses to the plan."""
    protocol, table = pilot
    table = table.copy()
    collapse = (table["head"] == "bn") & (table["seed"] < 2) & (table["dataset"] == "d0")
    table.loc[collapse, ["status", "balanced_acc"]] = ["collapsed", 0.1]
    plan = plan_seeds(table, protocol).set_index("metric").loc["balanced_acc"]
    pairs = paired_differences(table, protocol, "balanced_acc", "bn")
    assert pairs.n_pairs == 36  # collapsed blocks kept
    sigma2, _ = variance_components(pairs.frame["d"].to_numpy(), pairs.frame["condition"])
    assert plan.sigma_within == pytest.approx(np.sqrt(sigma2))
    ok = paired_differences(table, protocol, "balanced_acc", "bn", population="ok only")
    sigma2_ok, _ = variance_components(ok.frame["d"].to_numpy(), ok.frame["condition"])
    assert plan.sigma_within > 3 * np.sqrt(sigma2_ok)
