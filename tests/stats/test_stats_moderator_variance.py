"""Which factor explains the spread: the share of the between-condition variance tau^2 each
moderator explains, and Cochran's Q between its levels."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bnstudy.stats import analyze
from bnstudy.stats.analysis_result import MODERATOR_VARIANCE_COLUMNS
from bnstudy.stats.estimates import between_levels_q, moderator_variance_rows
from bnstudy.stats.findings import Comparison, Findings
from bnstudy.stats.meta import tau2_reml
from bnstudy.stats.simulate import grid_protocol, simulate_results


@pytest.fixture(scope="module")
def ratio_carries_it():
    """The effect changes with the imbalance ratio only (2 pp per unit of ln ratio), not with
    the dataset: the ratio explains all of tau^2, the dataset none of it."""
    protocol = grid_protocol(
        8,
        datasets=("d0", "d1", "d2"),
        ratios=(1.0, 10.0, 100.0),
        lrs=(0.01,),
        extra_analysis="  bootstrap: {replicates: 100}\n",
    )
    table = simulate_results(protocol, effect=0.0, slope=2.0, tau=0.0, sigma=1.0, seed=11)
    return analyze(table, protocol.design())


def test_the_moderator_that_carries_the_heterogeneity_explains_it(ratio_carries_it):
    mv = ratio_carries_it.moderator_variance
    assert list(mv.columns) == MODERATOR_VARIANCE_COLUMNS
    rows = mv.set_index("moderator")
    assert set(rows.index) == {"dataset", "imbalance_ratio"}  # lr takes one value: no model
    assert (mv["population"] == "intention-to-treat").all() and (mv["estimand"] == "fixed").all()
    assert rows.loc["imbalance_ratio", "share_explained"] > 0.9
    assert rows.loc["dataset", "share_explained"] < 0.1
    assert (mv["share_explained"] >= 0).all()
    # tau2 without the moderator is the overall paired model's
    overall = ratio_carries_it.model_summaries.query(
        "model == 'overall' and population == 'intention-to-treat'"
    )
    assert rows["tau2_without"].iloc[0] == pytest.approx(overall["tau2"].iloc[0])
    assert rows.loc["imbalance_ratio", "df"] == 2 and rows.loc["dataset", "df"] == 2
    # the spread left within the datasets is not taken for a difference between them
    assert rows.loc["imbalance_ratio", "p"] < 1e-6 and rows.loc["dataset", "p"] > 0.5
    doc = ratio_carries_it.to_document()
    assert len(doc["tables"]["moderator_variance"]) == len(mv)


def test_between_levels_q_is_the_fixed_effect_subgroup_q():
    pc = pd.DataFrame(
        {
            "factor": ["a", "a", "b", "b", "c"],
            "estimate": [0.0, 3.0, 2.0, -0.5, 0.5],
            "se": [0.5, 0.4, 0.5, 0.3, 0.6],
        }
    )
    q, df, p = between_levels_q(pc, "factor", tau2=0.0)  # fixed effect: weights 1 / se^2
    w = 1 / pc["se"] ** 2
    y = pc["estimate"]
    total = np.sum(w * (y - np.sum(w * y) / np.sum(w)) ** 2)
    within = sum(
        np.sum(w[g] * (y[g] - np.sum(w[g] * y[g]) / np.sum(w[g])) ** 2)
        for g in (pc["factor"] == level for level in "abc")
    )
    assert q == pytest.approx(total - within) and df == 2
    assert p == pytest.approx(stats.chi2.sf(total - within, 2))
    # by default the spread left within the levels (REML) joins the weights: a smaller Q
    tau2 = tau2_reml(y.to_numpy(), (pc["se"] ** 2).to_numpy(), pd.get_dummies(pc["factor"]))
    assert tau2 > 0
    assert between_levels_q(pc, "factor")[0] == pytest.approx(
        between_levels_q(pc, "factor", tau2=tau2)[0]
    )
    assert between_levels_q(pc, "factor")[0] < q
    one = between_levels_q(pc.assign(factor="a"), "factor")
    assert np.isnan(one[0]) and one[1] == 0 and np.isnan(one[2])


def test_no_spread_leaves_the_share_undefined():
    frame = pd.DataFrame({"d": [1.0, 1.2, 0.9, 1.1], "dataset": ["d0", "d0", "d1", "d1"]})
    pairs = SimpleNamespace(frame=frame, condition_columns=["dataset"])
    cmp = Comparison("balanced_acc", "bn", "plain", "intention-to-treat", "fixed", 0.95, 0.5)
    fits = Findings(summaries=({"model": "dataset", "tau2": 0.0},))
    found = moderator_variance_rows(cmp, pairs, SimpleNamespace(tau2=0.0), fits, {"dataset": ""})
    (row,) = found.moderator_variance
    assert row["tau2_without"] == 0 and np.isnan(row["share_explained"])
    assert row["df"] == 1 and np.isfinite(row["q_between"])
    # a moderator without a level model (one level, a failed fit) gets no row
    none = moderator_variance_rows(
        cmp, pairs, SimpleNamespace(tau2=0.0), Findings(), {"dataset": ""}
    )
    assert none.moderator_variance == ()
