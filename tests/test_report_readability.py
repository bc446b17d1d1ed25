"""The report read as its readers read it (issue 11): points at their own ticks, curve axes a
diverged trial cannot flatten, no one-dot per-class figures, row labels that fit, verdicts in
view, and a headline that says why a CI excluding 0 is not a finding."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt

from bnstudy.protocol import parse_protocol
from bnstudy.report import content, figures, render, text, views
from bnstudy.report.figures_arms import CurvePanel, LevelPanel, draw_curves, draw_level_grid
from bnstudy.report.synthetic import with_detail_columns
from bnstudy.stats import analyze
from bnstudy.stats.simulate import simulate_results
from test_report import PROTOCOL, simulated, simulated_with_detail

LR = [0.03, 0.1, 0.3]


def _assert_at_own_tick(x: np.ndarray, log: bool) -> None:
    """Each of ``x`` (drawn at LR in order) is nearer its own level than any other, and
    within a quarter of the smallest gap between levels, measured on the axis' scale."""
    scale = np.log10 if log else (lambda v: np.asarray(v, float))
    levels, drawn = scale(np.array(LR)), scale(np.asarray(x, float))
    gap = np.diff(levels).min()
    for level, at in zip(levels, drawn, strict=True):
        assert np.argmin(np.abs(levels - at)) == list(levels).index(level), (level, at)
        assert abs(at - level) <= 0.25 * gap, (level, at)


@pytest.mark.parametrize("log_x", [False, True])
def test_effect_points_sit_at_their_own_level(log_x):
    """A fixed sideways shift in data units drew bn's lr = 0.1 point over the 0.03 tick."""
    rows = pd.DataFrame(
        {
            "variant": ["bn"] * 3 + ["bn_noaffine"] * 3,
            "level": [str(v) for v in LR] * 2,
            "estimate": [-4.0, 6.1, 33.5, -4.8, 3.3, 33.8],
            "ci_low": -10.0,
            "ci_high": 40.0,
        }
    )
    fig = figures.draw_effect_by_level(rows, "lr", "pp", log_x)
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == LR
    assert ax.get_xscale() == ("log" if log_x else "linear")
    lines = [c.lines[0] for c in ax.containers]
    assert len(lines) == 2
    for line in lines:
        _assert_at_own_tick(line.get_xdata(), log_x)
    plt.close(fig)


@pytest.mark.parametrize("log_x", [False, True])
def test_arm_levels_sit_at_their_own_level(log_x):
    arms = ["plain", "bn", "bn_noaffine"]
    rows = pd.DataFrame(
        {"arm": np.repeat(arms, 3), "lr": LR * 3, "mean": 70.0, "ci_low": 65.0, "ci_high": 75.0}
    )
    fig = draw_level_grid([("acc (%)", [LevelPanel("lr", rows, log_x)], False)], arms, {})
    ax = fig.axes[0]
    lines = [c.lines[0] for c in ax.containers]
    assert len(lines) == 3
    for line in lines:
        _assert_at_own_tick(line.get_xdata(), log_x)
    plt.close(fig)


def _curve(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


def test_a_diverged_trial_does_not_set_the_curve_axis():
    calm = _curve([2.3, 1.0, 0.5, 0.3])
    diverged = CurvePanel(
        "lr=0.3",
        median={"plain": calm, "bn": calm + 0.4},
        q25={"plain": calm - 0.2, "bn": calm + 0.2},
        q75={"plain": calm + 0.3, "bn": _curve([100.0, 842.0, 600.0, 200.0])},
        n={"plain": 6, "bn": 6},
    )
    quiet = CurvePanel(
        "lr=0.1", {"plain": calm}, {"plain": calm - 0.1}, {"plain": calm + 0.2}, {"plain": 6}
    )
    fig = draw_curves([diverged, quiet], ["plain", "bn"], {})
    first, second = fig.axes[:2]
    bottom, top = first.get_ylim()
    assert bottom == 0 and 2.7 <= top < 10  # every median line readable
    assert second.get_ylim() == (bottom, top)  # one shared axis
    assert "clipped" in first.get_ylabel()
    notes = [t.get_text() for t in first.texts]
    assert notes == ["clipped: band reaches 842"]
    assert not second.texts  # the panel that stays inside says nothing
    plt.close(fig)

    fig = draw_curves([quiet], ["plain"], {})  # nothing far out: nothing cut, nothing said
    assert fig.axes[0].get_ylim()[1] >= 2.5 and "clipped" not in fig.axes[0].get_ylabel()
    plt.close(fig)


def test_curve_caption_says_the_axis_is_cut():
    protocol, table, analysis = simulated_with_detail()
    rows = table.index[(table["head"] == "bn") & (table["imbalance_ratio"] == 100)]
    # Two of six seeds diverge in every condition of bn at ratio 100: the quartile goes far.
    hit = rows[table.loc[rows, "seed"].isin([0, 1]).to_numpy()]
    table = table.copy()
    table["curve_train_loss"] = table["curve_train_loss"].astype(object)
    for i in hit:
        table.at[i, "curve_train_loss"] = [500.0] * 30
    c = content.build(analysis, table, protocol)
    item = next(f for f in c.figures if f.id == "mechanisms-curve_train_loss")
    reach = re.search(r"The y axis stops at ([\d.]+) .* bands reach ([\d.]+) ", item.caption)
    assert reach and float(reach.group(1)) < 10 < 100 < float(reach.group(2)), item.caption
    fig = item.draw()
    assert fig.axes[0].get_ylim()[1] < 10
    plt.close(fig)


def test_per_class_figures_on_balanced_data_are_a_note_not_a_dot():
    text_ = PROTOCOL.replace("imbalance_ratio: [1, 2, 10, 100]", "imbalance_ratio: [1]")
    protocol = parse_protocol(text_, "sim.yaml")
    table = with_detail_columns(simulate_results(protocol, effect=-1.0, seed=3))
    assert {len(set(c)) for c in table["class_counts"] if len(c)} == {1}  # balanced
    c = content.build(analyze(table, protocol), table, protocol)
    assert not [f.id for f in c.figures if f.id.startswith("mechanisms-per-class")]
    notes = [n for n in c.missing["mechanisms"] if "balanced data" in n]
    assert notes == [
        "No figure of recall or FC weight norm per class against the class's count: every "
        "class of every measured trial had 100 training images (balanced data), so there is "
        "no count to draw it against."
    ]


def _grid_rows(values: list[float], factor_levels=("cnn", "mlp")) -> pd.DataFrame:
    n = len(factor_levels)
    return pd.DataFrame(
        {
            "arm": "bn",
            "architecture": list(factor_levels),
            "mean": values[:n],
            "ci_low": [v * 0.8 for v in values[:n]],
            "ci_high": [v * 1.2 for v in values[:n]],
        }
    )


def test_level_grid_row_labels_line_up_inside_the_figure_and_log_rows_stay_legible():
    """The folding error spans decades: ten 1-2-5 labels ("0.0005") pushed its row label to
    the figure's edge while the other rows' labels sat further in."""
    rows = [
        ("train_eval_gap (pp)", [LevelPanel("architecture", _grid_rows([-2.6, -0.4]))], False),
        ("fold_max_abs_diff", [LevelPanel("architecture", _grid_rows([2e-5, 0.02]))], True),
        ("narrow (log)", [LevelPanel("architecture", _grid_rows([9e-6, 1.6e-5]))], True),
    ]
    fig = draw_level_grid(rows, ["bn"], {"bn": "#3b6fd8"})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = figures.tight_box(fig, pad_inches=0.0).transformed(fig.dpi_scale_trans)
    lefts = []
    for ax in fig.axes:
        label = ax.yaxis.label.get_window_extent(renderer)
        lefts.append(label.x0)
        assert box.x0 <= label.x0 and label.x1 <= box.x1
        low, high = ax.get_ylim()
        shown = [
            t
            for t in ax.yaxis.get_ticklabels()
            if t.get_visible() and t.get_text() and low <= t.get_position()[1] <= high
        ]
        assert 2 <= len(shown) <= 6, [t.get_text() for t in shown]  # labelled, not crowded
        boxes = [t.get_window_extent(renderer) for t in shown]
        assert all(label.x1 < b.x0 for b in boxes), "the row label overlaps its tick labels"
        for a, b in zip(boxes, boxes[1:], strict=False):
            assert not a.overlaps(b)
    assert max(lefts) - min(lefts) < 1.0, lefts  # one column of labels
    plt.close(fig)


# -- verdicts in view ------------------------------------------------------------------------


def test_verdict_comes_right_after_the_labels():
    protocol, table, analysis = simulated()
    est = views.estimates_view(analysis.primary())
    assert list(est.columns[:5]) == ["metric", "variant", "scope", "level", "verdict"]
    sens = views.estimates_view(analysis.sensitivity())
    assert sens.columns[4] == "verdict"
    c = content.build(analysis, table, protocol)
    assert list(c.equivalence_table.columns[:5]) == [
        "metric",
        "variant",
        "scope",
        "level",
        "verdict",
    ]
    itt = list(c.itt_table.columns)
    assert itt[:4] == ["metric", "variant", "ITT verdict", "ITT estimate [CI]"]
    assert itt.index("ok only verdict") + 1 == itt.index("ok only estimate [CI]")


def test_estimand_is_a_label_in_the_heterogeneity_table():
    het = pd.DataFrame(
        {
            "metric": "acc",
            "variant": "bn",
            "estimator": ["DL", "DL"],
            "k": [16, 16],
            "i2": [0.5, 0.6],
            "pooled": [0.3, 1.4],
            "pooled_ci_low": [-0.7, 0.4],
            "pooled_ci_high": [1.3, 2.4],
            "estimand": ["fixed", "tuned"],
            "ci_method": "Hartung-Knapp",
        }
    )
    assert list(views.heterogeneity_view(het).columns[:3]) == ["metric", "variant", "estimand"]


# -- the headline ----------------------------------------------------------------------------


def _with_overall(analysis, **changes):
    """``analysis`` with the primary overall bn x balanced_acc row changed."""
    est = analysis.estimates.copy()
    at = (
        (est["population"] == "intention-to-treat")
        & (est["scope"] == "overall")
        & (est["variant"] == "bn")
        & (est["metric"] == "balanced_acc")
    )
    for column, value in changes.items():
        est.loc[at, column] = value
    return dataclasses.replace(analysis, estimates=est)


def test_headline_says_the_adjustment_is_why_a_ci_excluding_zero_is_not_claimed():
    protocol, table, analysis = simulated()
    analysis = _with_overall(
        analysis, estimate=2.55, ci_low=0.42, ci_high=4.68, p=0.021, p_adj=0.12,
        verdict="inconclusive",
    )  # fmt: skip
    n = int(analysis.primary()["p_adj"].notna().sum())
    h = text.headline(analysis, "balanced_acc", "bn")
    assert h["multiplicity"] == (
        f"The 95% CI excludes 0, but it is unadjusted: after holm adjustment across the {n} "
        "overall effects (each variant on each primary metric) tested together, p = 0.12, "
        "not below α = 0.05, so the average is not declared different from 0."
    )
    assert h["multiplicity"] in render(analysis, table, protocol).replace("&#39;", "'")
    # A CI that includes 0, or a verdict that is a finding, needs no such sentence.
    assert not text.headline(_with_overall(analysis, ci_low=-0.5), "balanced_acc", "bn")[
        "multiplicity"
    ]
    assert not text.headline(_with_overall(analysis, verdict="better"), "balanced_acc", "bn")[
        "multiplicity"
    ]


def _tuned(analysis, ok_only_tuned: bool):
    """``analysis`` with a tuned estimand beside the fixed one (the primary), the ok-only
    tuned rows kept or dropped."""
    est = analysis.estimates
    tuned = est.assign(
        estimand="tuned", estimate=est["estimate"] + 0.5, n_pairs=est["n_pairs"] // 3
    )
    if not ok_only_tuned:
        tuned = tuned[tuned["population"] == "intention-to-treat"]
    both = pd.concat([est.assign(estimand="fixed"), tuned], ignore_index=True)
    return dataclasses.replace(analysis, estimates=both, primary_estimand="tuned")


def test_sensitivity_sentence_uses_the_primary_estimand():
    """The claims12 report quoted the fixed-lr ok-only estimate (384 pairs) beside the tuned
    primary (128 pairs)."""
    protocol = parse_protocol(PROTOCOL, "sim.yaml")
    table = simulate_results(protocol, effect=-1.0, seed=3)
    collapsed = (table["head"] == "bn") & (table["seed"] < 2) & (table["imbalance_ratio"] == 100)
    table.loc[collapsed, ["status", "balanced_acc"]] = ["collapsed", 0.1]
    analysis = _tuned(analyze(table, protocol), ok_only_tuned=True)
    sens = analysis.sensitivity()
    pick = (sens["variant"] == "bn") & (sens["metric"] == "balanced_acc")
    tuned = sens[pick & (sens["scope"] == "overall") & (sens["estimand"] == "tuned")].iloc[0]
    fixed = sens[pick & (sens["scope"] == "overall") & (sens["estimand"] == "fixed")].iloc[0]
    sentence = text.headline(analysis, "balanced_acc", "bn")["sensitivity"]
    assert f"{tuned.n_pairs} pairs" in sentence and text.signed(tuned.estimate) in sentence
    assert f"{fixed.n_pairs} pairs" not in sentence
    assert "the tuned comparison, as above" in sentence

    without = _tuned(analyze(table, protocol), ok_only_tuned=False)
    sentence = text.headline(without, "balanced_acc", "bn")["sensitivity"]
    assert "the fixed comparison: the analysis has no ok-only estimate of the tuned one" in sentence
