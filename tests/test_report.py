"""The HTML report rendered from a simulated results table (no training needed)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bnstudy.protocol import parse_protocol
from bnstudy.report import figures, render
from bnstudy.stats import analyze
from bnstudy.stats.simulate import simulate_results

PROTOCOL = """\
name: sim
description: a <i>simulated</i> study
seeds: 6
factors:
  architecture: [mlp, '<img src=x onerror=alert(1)>']
  head: [plain, bn, ln]
  dataset: synthetic
  imbalance_ratio: [1, 2, 10, 100]
control: plain
analysis:
  metrics: [balanced_acc]
  bootstrap: {replicates: 200}
"""


def simulated():
    protocol = parse_protocol(PROTOCOL, "sim.yaml")  # names unchecked: no registries
    table = simulate_results(protocol, effect=-1.0, seed=3)
    return protocol, table, analyze(table, protocol)


def test_report_escapes_factor_levels_and_names_every_variant():
    protocol, table, analysis = simulated()
    html = render(analysis, table, protocol, {"protocol_sha256": protocol.sha256})
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<i>simulated</i>" not in html
    assert not re.search(r"https?://", html)
    for variant in ("bn − plain on balanced_acc", "ln − plain on balanced_acc"):
        assert variant in html
    assert html.count("<svg") >= 3  # effect by architecture, by ratio, forest plots


def test_effect_by_level_orders_numeric_levels(monkeypatch):
    """Levels arrive as text ("10.0" sorts before "2.0"); the line must follow the numbers."""
    protocol, _, analysis = simulated()
    drawn = []
    monkeypatch.setattr(figures, "to_svg", lambda fig: drawn.append(fig) or "<svg></svg>")
    est = analysis.primary()
    rows = est[est["scope"] == "imbalance_ratio"].sort_values("level")  # text order
    assert list(rows["level"].unique()) != sorted(rows["level"].unique(), key=float)
    figures.effect_by_level(rows, "imbalance_ratio", "pp", log_x=True)
    line = drawn[0].axes[0].lines[0]
    assert np.all(np.diff(line.get_xdata()) > 0)


def test_analysis_and_report_paths_do_not_import_torch():
    """DESIGN: analysis runs on a laptop with no GPU stack loaded."""
    import subprocess
    import sys

    code = (
        "import sys, bnstudy.report, bnstudy.study, bnstudy.cli; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_names_with_dollar_signs_are_drawn_as_text():
    """Matplotlib reads "$...$" as mathtext: a level like 'a$\\foo{$' crashed the report."""
    rows = pd.DataFrame(
        {"variant": ["b$n$"], "level": ["x"], "estimate": [1.0], "ci_low": [0.0], "ci_high": [2.0]}
    )
    assert "b$n$" in figures.effect_by_level(rows, "architecture", "pp", log_x=False)
    assert "a$\\foo{$" in figures.forest(rows, ["a$\\foo{$"], "pp", (1.0, 0.0, 2.0))


def test_report_shows_intention_to_treat_and_the_ok_only_check():
    protocol = parse_protocol(PROTOCOL, "sim.yaml")
    table = simulate_results(protocol, effect=-1.0, seed=3)
    bn = table["head"] == "bn"
    collapsed = bn & (table["seed"] < 3) & (table["imbalance_ratio"] == 100)
    table.loc[collapsed, ["status", "balanced_acc"]] = ["collapsed", 0.1]
    gone = bn & (table["seed"] == 5) & (table["imbalance_ratio"] == 10)
    table.loc[gone, ["status", "balanced_acc"]] = ["diverged", np.nan]
    odd = bn & (table["seed"] == 4) & (table["imbalance_ratio"] == 1)
    table.loc[odd, "status"] = "<b>oom</b>"  # any status without metrics; escaped
    analysis = analyze(table, protocol)
    html = render(analysis, table, protocol)
    n_collapsed, n_gone = int(collapsed.sum()), int(gone.sum() + odd.sum())
    assert "intention to treat" in html and "Sensitivity analysis: ok trials only" in html
    assert f"{n_collapsed} collapsed trial(s) (bn {n_collapsed})" in html
    assert f"{n_gone} trial(s) ended without metrics" in html
    assert (
        "<code>failed_score: chance</code>" in html
        and f"balanced_acc: {n_gone} trial(s) scored 10 pp" in html
    )
    assert "<b>oom</b>" not in html and "&lt;b&gt;oom&lt;/b&gt; " in html
    primary = analysis.headline()
    sens = analysis.sensitivity().query("scope == 'overall' and variant == 'bn'").iloc[0]
    assert primary["n_pairs"] == sens.n_pairs + n_collapsed + n_gone
    assert (
        "Sensitivity check (ok trials only" in html
        and f"{sens.estimate:+.2f}".replace("-", "−") in html
    )
    assert f"{primary['n_imputed']} of whose values are declared scores" in html
    assert "(sensitivity, unadjusted)" in html
    # the verdict grid holds primary rows only: one row per variant
    grid = html.split("Overall effect of each variant")[1].split("<h3>Every trial counts")[0]
    assert "unadjusted" not in grid and grid.count(f"{primary['estimate']:+.2f} pp") == 1


# -- shared by tests/test_report_*.py ---------------------------------------------------


def simulated_with_detail(failed: float = 0.05, seed: int = 3):
    """The simulated study with failures and the list/mechanism columns a real run records."""
    from bnstudy.report.synthetic import with_detail_columns

    protocol = parse_protocol(PROTOCOL, "sim.yaml")
    table = with_detail_columns(simulate_results(protocol, effect=-1.0, seed=seed, failed=failed))
    return protocol, table, analyze(table, protocol)


class PageStructure:
    """What an HTML page holds, parsed with the standard library: element ids, in-page links,
    figures (and whether each holds an inline SVG), tables (their header rows), h2 titles,
    and every attribute of every element."""

    def __init__(self, html: str):
        from html.parser import HTMLParser

        self.ids: list[str] = []
        self.links: list[str] = []
        self.figures: dict[str, bool] = {}
        self.table_header_rows: list[int] = []
        self.empty_header_cells = 0
        self.h2: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []  # (tag, name, value)
        page = self

        class Parser(HTMLParser):
            figure: str | None = None
            in_thead = False
            in_th = False
            th_text = ""
            in_h2 = False

            def handle_starttag(self, tag, attrs):
                a = dict(attrs)
                page.attributes += [(tag, k, v or "") for k, v in attrs]
                if "id" in a:
                    page.ids.append(a["id"])
                if tag == "a" and "href" in a:
                    page.links.append(a["href"])
                if tag == "figure":
                    self.figure = a.get("id", "")
                    page.figures[self.figure] = False
                if tag == "svg" and self.figure is not None:
                    page.figures[self.figure] = True
                if tag == "table":
                    page.table_header_rows.append(0)
                if tag == "thead":
                    self.in_thead = True
                if tag == "tr" and self.in_thead:
                    page.table_header_rows[-1] += 1
                if tag == "th":
                    self.in_th, self.th_text = True, ""
                if tag == "h2":
                    self.in_h2 = True
                    page.h2.append("")

            def handle_endtag(self, tag):
                if tag == "figure":
                    self.figure = None
                if tag == "thead":
                    self.in_thead = False
                if tag == "th":
                    self.in_th = False
                    page.empty_header_cells += not self.th_text.strip()
                if tag == "h2":
                    self.in_h2 = False

            def handle_data(self, data):
                if self.in_th:
                    self.th_text += data
                if self.in_h2:
                    page.h2[-1] += data

        Parser().feed(html)
