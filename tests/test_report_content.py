"""What the report shows (issue 9, items 10-12 and 15): arms' levels, the figures a researcher
expects, and a page that can be read (contents, grouped diagnostics, clean tables, empty
states, time stamps, print CSS)."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest
from matplotlib import pyplot as plt

from bnstudy.protocol import parse_protocol
from bnstudy.report import content, render, views
from bnstudy.report.html import _ENV
from bnstudy.report.synthetic import with_detail_columns
from bnstudy.stats import analyze
from bnstudy.stats.levels import arm_levels
from bnstudy.stats.simulate import simulate_results
from test_report import PROTOCOL, PageStructure, simulated, simulated_with_detail


@pytest.fixture(scope="module")
def detailed():
    protocol, table, analysis = simulated_with_detail()
    html = render(
        analysis,
        table,
        protocol,
        {"protocol_sha256": protocol.sha256, "written_at": "2020-01-02T03:04:05+00:00"},
        generated_at="2030-06-07T08:09:10+00:00",
    )
    return protocol, table, analysis, html


# -- item 10: the levels behind the differences ---------------------------------------


def test_each_arms_level_per_condition_is_tabled_and_drawn(detailed):
    protocol, table, analysis, html = detailed
    section = html.split('<h2 id="levels">')[1].split('<h2 id="estimates">')[0]
    levels = arm_levels(
        table,
        ["balanced_acc"],
        treatment="head",
        conditions=("architecture", "imbalance_ratio"),
    )
    for arm in ("plain", "bn", "ln"):
        r = levels[(levels["arm"] == arm) & (levels["imbalance_ratio"] == 100.0)].iloc[-1]
        assert views.level_text(r["mean"], r["ci_low"], r["ci_high"]) in section
    assert "intention to treat values" in section  # which values, labelled
    assert "balanced_acc, mean over all trials of each arm: plain" in section
    page = PageStructure(html)
    assert page.figures.get("levels-levels-balanced_acc") is True


def test_levels_say_measured_values_where_no_intention_to_treat_value_exists():
    protocol, table, analysis = simulated_with_detail()
    c = content.build(analysis, table, protocol)
    mech = c.mechanism_table
    assert {"plain", "bn", "ln", "unit", "what"} <= set(mech.columns)
    fold = mech[mech["metric"] == "fold_max_abs_diff"].iloc[0]
    assert fold["plain"] == "–"  # no BN to fold in the control
    caption = next(f.caption for f in c.figures if f.id == "mechanisms-units")
    assert "head_dead_frac: dead units at the FC input" in caption
    assert "(measured values)" in caption


# -- item 11: figures a researcher expects --------------------------------------------

EXPECTED_FIGURES = [
    "evidence-effect-balanced_acc",
    "levels-levels-balanced_acc",
    "equivalence-equivalence",
    "heterogeneity-forest-balanced_acc",
    "mechanisms-curve_train_loss",
    "mechanisms-per-class-class_recall",
    "mechanisms-per-class-class_fc_weight_norm",
    "mechanisms-units",
    "mechanisms-batch-statistics",
]


def test_every_expected_figure_is_inline(detailed):
    *_, html = detailed
    page = PageStructure(html)
    for fid in EXPECTED_FIGURES:
        assert page.figures.get(fid) is True, fid
    assert all(page.figures.values())


def test_forest_plots_share_one_axis_and_name_each_variant_on_the_plot(detailed):
    protocol, table, analysis, _ = detailed
    c = content.build(analysis, table, protocol)
    item = next(f for f in c.figures if f.id == "heterogeneity-forest-balanced_acc")
    fig = item.draw()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title(loc="left") for ax in axes] == ["bn", "ln"]
    assert axes[0].get_shared_x_axes().joined(axes[0], axes[1])
    assert axes[0].get_xlim() == axes[1].get_xlim()
    assert axes[0].get_legend() is None
    plt.close(fig)


def test_training_curves_are_median_and_iqr_per_arm_per_condition(detailed):
    protocol, table, analysis, _ = detailed
    c = content.build(analysis, table, protocol)
    fig = next(f for f in c.figures if f.id == "mechanisms-curve_train_loss").draw()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 8  # 2 architectures x 4 ratios
    assert len(axes[0].lines) == 3 and len(axes[0].collections) == 3  # median + band per arm
    plt.close(fig)


def test_per_class_recall_is_drawn_against_class_count_per_arm(detailed):
    from bnstudy.report.detail import per_class_rows

    _, table, _, _ = detailed
    rows = per_class_rows(table, "class_recall", "head", scale=100.0)
    assert set(rows["arm"]) == {"plain", "bn", "ln"}
    assert rows["count"].min() >= 1 and rows["count"].max() == 100
    # recall rises with the class count in the simulated detail
    plain = rows[rows["arm"] == "plain"].sort_values("count")
    assert plain["mean"].iloc[-1] > plain["mean"].iloc[0]


def test_mechanisms_are_drawn_against_a_factor_that_varies():
    text = PROTOCOL.replace("  imbalance_ratio: [1, 2, 10, 100]\n", "  batch_size: [16, 64]\n")
    protocol = parse_protocol(text, "sim.yaml")
    table = with_detail_columns(simulate_results(protocol, seed=1))
    analysis = analyze(table, protocol)
    c = content.build(analysis, table, protocol)
    fig = next(f for f in c.figures if f.id == "mechanisms-batch-statistics").draw()
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert labels.count("batch size") == 1  # the bottom row's, columns share x
    assert "train_eval_gap (pp)" in [ax.get_ylabel() for ax in fig.axes]
    plt.close(fig)


def test_mechanisms_are_drawn_against_a_varying_factor_the_analysis_does_not_moderate_by():
    text = PROTOCOL.replace("  imbalance_ratio: [1, 2, 10, 100]\n", "  batch_size: [16, 256]\n")
    text = text.replace("analysis:\n", "analysis:\n  moderators: [architecture]\n")
    protocol = parse_protocol(text, "sim.yaml")
    table = with_detail_columns(simulate_results(protocol, seed=1))
    c = content.build(analyze(table, protocol), table, protocol)
    fig = next(f for f in c.figures if f.id == "mechanisms-batch-statistics").draw()
    bottom = [ax for ax in fig.axes if ax.get_xlabel() == "batch size"]
    assert len(bottom) == 1 and bottom[0].get_xscale() == "log"  # 16 to 256: a log axis
    plt.close(fig)


def test_every_mechanism_metric_has_a_row():
    protocol, table, analysis = simulated_with_detail()
    c = content.build(analysis, table, protocol)
    drawn = {f.id: f.draw() for f in c.figures if f.id.startswith("mechanisms-")}
    units = [ax.get_ylabel() for ax in drawn["mechanisms-units"].axes if ax.get_ylabel()]
    assert [u.split(" (")[0] for u in units] == [
        "head_dead_frac",
        "head_inactive_frac",
        "feature_dead_frac",
        "feature_inactive_frac",
    ]
    other = drawn["mechanisms-batch-statistics"].axes
    assert [a.get_ylabel().split(" (")[0] for a in other if a.get_ylabel()] == [
        "train_eval_gap",
        "balanced_acc_precise",
        "fold_max_abs_diff",
    ]
    assert other[-1].get_yscale() == "log"  # the folding error spans decades
    for fig in drawn.values():
        plt.close(fig)


def test_equivalence_shows_tost_p_margin_and_the_prediction_interval(detailed):
    protocol, table, analysis, html = detailed
    section = html.split('<h2 id="equivalence">')[1].split('<h2 id="heterogeneity">')[0]
    for header in ("margin", "90% CI (TOST)", "p_tost", "verdict"):
        assert f">{header}</th>" in section
    if "pi_low" in analysis.equivalence.columns:
        assert ">PI</th>" in section and ">PI inside ±margin</th>" in section
        assert "prediction interval for the effect in a new condition" in section


def test_equivalence_without_a_prediction_interval_says_so(detailed):
    protocol, table, analysis, _ = detailed

    def without_pi(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(pi_low=float("nan"), pi_high=float("nan")).drop(
            columns=["pi_within_margin"], errors="ignore"
        )

    bare = dataclasses.replace(
        analysis,
        estimates=without_pi(analysis.estimates),
        equivalence=without_pi(analysis.equivalence),
    )
    c = content.build(bare, table, protocol)
    assert "PI" not in c.equivalence_table.columns
    assert "p_tost" in c.equivalence_table.columns
    item = next(f for f in c.figures if f.id == "equivalence-equivalence")
    assert "no prediction interval" in item.caption


def test_missing_detail_columns_are_named_not_silently_skipped():
    protocol, table, analysis = simulated()  # no curves, per-class lists or mechanisms
    html = render(analysis, table, protocol)
    assert "No training curves" in html
    assert "No figure of recall per class against the class&#39;s count" in html
    assert "Not recorded (or undefined for every trial): head_dead_frac" in html
    assert 'id="mechanisms-' not in html


# -- item 12: legibility ----------------------------------------------------------------


def test_no_legend_covers_data(detailed):
    protocol, table, analysis, _ = detailed
    for item in content.build(analysis, table, protocol).figures:
        fig = item.draw()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            assert ax.get_legend() is None, f"{item.id}: a legend inside the axes"
        for legend in fig.legends:
            box = legend.get_window_extent(renderer)
            for ax in fig.axes:
                if ax.get_visible():
                    assert not box.overlaps(ax.get_window_extent(renderer)), item.id
        plt.close(fig)


def test_table_of_contents_links_every_section(detailed):
    *_, html = detailed
    page = PageStructure(html)
    anchors = [a for a in page.links if a.startswith("#")]
    assert [a[1:] for a in anchors] == [anchor for anchor, _ in content.SECTIONS]
    assert all(a[1:] in page.ids for a in anchors)
    assert len(page.ids) == len(set(page.ids)), "duplicate element ids"
    assert page.h2 == [title for _, title in content.SECTIONS]


def test_tables_have_one_header_row_and_no_index_leftovers(detailed):
    *_, html = detailed
    page = PageStructure(html)
    assert page.table_header_rows and set(page.table_header_rows) == {1}
    assert page.empty_header_cells == 0
    assert ">variant (vs plain)</th>" in html


def test_repeated_diagnostics_are_grouped_with_counts_and_where():
    rows = [
        dict(
            metric=m,
            variant=v,
            model=model,
            level="info",
            message=f"{model.split(' [')[0]}: boundary (0)",
        )
        for m in ("balanced_acc", "nll")
        for v in ("bn", "ln")
        for model in ("overall", "architecture", "overall [ok only]")
    ]
    rows.append(
        dict(metric="nll", variant="bn", model="robustness", level="warning", message="disagree")
    )
    rows += [
        dict(
            metric="nll",
            variant=v,
            model="pairing",
            level="info",
            message=f"{n} of 30 blocks lack a usable plain or {v} value",
        )
        for n, v in ((3, "bn"), (5, "ln"))
    ]
    groups = views.group_diagnostics(pd.DataFrame(rows))
    assert [g["count"] for g in groups] == [1, 12, 2]  # the warning first
    boundary = groups[1]
    assert boundary["wheres"] == ["overall", "architecture", "overall [ok only]"]
    assert boundary["metrics"] == ["balanced_acc", "nll"] and boundary["variants"] == ["bn", "ln"]
    assert "in: overall, architecture" in boundary["context"]


def test_page_groups_the_analysis_diagnostics(detailed):
    _, _, analysis, html = detailed
    section = html.split('<h2 id="diagnostics">')[1].split('<h2 id="provenance">')[0]
    items = section.count("<li")
    assert items == len(views.group_diagnostics(analysis.diagnostics))
    assert items < len(analysis.diagnostics)
    assert f"{len(analysis.diagnostics)} message(s)" in section


def test_empty_states_say_what_is_missing():
    protocol = parse_protocol(PROTOCOL, "sim.yaml")
    table = simulate_results(protocol, seed=0)
    table = table[table["head"] == "plain"].reset_index(drop=True)  # no pairs at all
    analysis = analyze(table, protocol)
    assert analysis.estimates.empty
    html = render(analysis, table, protocol)
    assert "Methods: ." not in html and "Methods: none, since nothing was estimated." in html
    assert "No estimates: " in html
    assert "No equivalence tests" in html
    assert "No effect sizes: they need at least 2 complete pairs." in html
    assert 'class="empty"' in html
    protocol, table, analysis = simulated()
    assert "Methods: ." not in render(analysis, table, protocol)  # nor when all is there


def test_report_time_is_its_own_and_the_run_time_is_labelled(detailed):
    *_, html = detailed
    header = html.split('<p class="sub">')[1].split("</p>")[0]
    assert "report written 2030-06-07T08:09:10+00:00" in header
    assert "run started 2020-01-02T03:04:05+00:00" in header
    assert "<td>report generated</td><td>2030-06-07T08:09:10+00:00</td>" in html
    assert "<td>run metadata written (start of the run)</td>" in html


def test_report_time_defaults_to_now():
    protocol, table, analysis = simulated()
    html = render(analysis, table, protocol, {"written_at": "2020-01-01T00:00:00+00:00"})
    stamp = re.search(r"report written (\S+)", html).group(1)
    assert stamp.startswith(content.now_utc()[:13])  # this hour, not the run's


def test_print_css(detailed):
    *_, html = detailed
    css = html.split("@media print")[1].split("</style>")[0]
    assert "break-inside: avoid" in css and "overflow: visible" in css


def test_verdict_colours_only_verdicts():
    cls = _ENV.filters["verdict_class"]
    assert cls("equivalent (PI within margin)") == "equivalent"
    assert cls("worse") == "worse"
    assert cls("unadjusted: higher") == "unadjusted"


# -- item 15: layout ----------------------------------------------------------------------


def test_render_views_and_figures_live_in_their_own_files():
    package = Path(content.__file__).parent
    init = ast.parse((package / "__init__.py").read_text())
    assert not [n for n in init.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    for name in ("html", "views", "figures", "figures_arms", "content", "markdown", "export"):
        assert (package / f"{name}.py").exists(), name
    from bnstudy import report
    from bnstudy.report import html

    assert report.render is html.render


def test_level_grid_columns_keep_every_level_tick():
    """Columns share x: a row without a value at one level must not drop its tick (a rank
    correlation is undefined at ratio 1, where every class has the same count)."""
    from bnstudy.report.figures_arms import LevelPanel, draw_level_grid

    def rows(levels):
        return pd.DataFrame(
            {
                "arm": "plain",
                "imbalance_ratio": levels,
                "mean": 1.0,
                "ci_low": 0.5,
                "ci_high": 1.5,
            }
        )

    fig = draw_level_grid(
        [
            ("a", [LevelPanel("imbalance_ratio", rows([1.0, 10.0, 100.0]), True)], False),
            ("b", [LevelPanel("imbalance_ratio", rows([10.0, 100.0]), True)], True),
        ],
        ["plain"],
        {"plain": "#444444"},
    )
    for ax in fig.axes:
        assert list(ax.get_xticks()) == [1.0, 10.0, 100.0]
    assert fig.axes[1].get_yscale() == "log"
    plt.close(fig)
