"""Each arm's metric level per condition (stats/levels.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bnstudy.stats.levels import LEVEL_COLUMNS, MEASURED, arm_levels, summarize_levels, trial_values


def table() -> pd.DataFrame:
    """Two arms x two ratios x three seeds; one bn trial diverged (no metrics)."""
    rows = []
    values = {
        ("plain", 1): [0.80, 0.82, 0.84],
        ("bn", 1): [0.83, 0.85, 0.87],
        ("plain", 100): [0.28, 0.30, 0.32],
        ("bn", 100): [0.40, 0.43, np.nan],
    }
    for (head, ratio), accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append(
                dict(
                    head=head,
                    imbalance_ratio=float(ratio),
                    architecture="mlp",
                    seed=seed,
                    status="ok" if np.isfinite(acc) else "diverged",
                    balanced_acc=acc,
                    train_eval_gap=0.1 if head == "bn" else np.nan,
                    class_counts=[100] * 10,
                )
            )
    return pd.DataFrame(rows)


COMMON = dict(treatment="head", conditions=("architecture", "imbalance_ratio"))


def test_levels_per_condition_are_means_with_t_intervals_in_percent():
    out = arm_levels(table(), ["balanced_acc"], population="ok only", **COMMON)
    assert list(out.columns) == [*LEVEL_COLUMNS[:3], "imbalance_ratio", *LEVEL_COLUMNS[3:]]
    row = out[(out["arm"] == "plain") & (out["imbalance_ratio"] == 100)].iloc[0]
    x = np.array([28.0, 30.0, 32.0])
    half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    assert row["mean"] == pytest.approx(30.0)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((30.0 - half, 30.0 + half))
    assert row["unit"] == "%" and row["n"] == 3 and row["n_imputed"] == 0
    # "architecture" takes one value: not a grouping column by default
    assert "architecture" not in out.columns
    # the control first within each group, groups in level order
    assert list(out["arm"])[:2] == ["plain", "bn"]


def test_intention_to_treat_scores_a_diverged_trial_at_chance():
    itt = arm_levels(table(), ["balanced_acc"], **COMMON)
    ok = arm_levels(table(), ["balanced_acc"], population="ok only", **COMMON)
    pick = (itt["arm"] == "bn") & (itt["imbalance_ratio"] == 100)
    row = itt[pick].iloc[0]
    assert row["n"] == 3 and row["n_imputed"] == 1
    assert row["mean"] == pytest.approx((40.0 + 43.0 + 10.0) / 3)  # chance of 10 classes
    assert row["values"] == "intention to treat"
    assert ok[pick.to_numpy()].iloc[0]["n"] == 2
    assert ok["values"].iloc[0].startswith("ok only")


def test_recorded_columns_are_measured_values_and_missing_metrics_skipped():
    out = arm_levels(table(), ["train_eval_gap", "no_such_metric"], by=(), **COMMON)
    assert list(out["arm"]) == ["bn"]  # plain's values are all NaN
    assert out["values"].iloc[0] == MEASURED and out["unit"].iloc[0] == ""
    assert out["n"].iloc[0] == 5  # the diverged trial has no measured value
    assert out["mean"].iloc[0] == pytest.approx(0.1)


def test_single_trial_groups_have_no_interval_and_arm_order_is_respected():
    t = table().iloc[[0, 3]]
    out = arm_levels(t, ["balanced_acc"], by=(), arms=["bn", "plain"], **COMMON)
    assert list(out["arm"]) == ["bn", "plain"]
    assert out["ci_low"].isna().all() and out["ci_high"].isna().all()


def test_one_pass_of_trial_values_serves_every_grouping():
    values = trial_values(table(), ["balanced_acc"], **COMMON)
    by_ratio = summarize_levels(values, ["imbalance_ratio"])
    direct = arm_levels(table(), ["balanced_acc"], by=["imbalance_ratio"], **COMMON)
    pd.testing.assert_frame_equal(by_ratio, direct)
    overall = summarize_levels(values, ())
    assert set(overall["arm"]) == {"plain", "bn"} and overall["n"].sum() == 12


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="population"):
        arm_levels(table(), ["balanced_acc"], population="everyone", **COMMON)
    with pytest.raises(ValueError, match="lacks column 'arm_col'"):
        arm_levels(table(), ["balanced_acc"], treatment="arm_col")
    with pytest.raises(ValueError, match="cannot group levels by"):
        arm_levels(table(), ["balanced_acc"], by=["lr"], **COMMON)
    empty = arm_levels(table().iloc[:0], ["balanced_acc"], **COMMON)
    assert empty.empty
