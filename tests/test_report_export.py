"""Exports (issue 9, item 13): Markdown with a figures folder, every figure as SVG/PNG/PDF, a
LaTeX table of the estimates, and an HTML page whose size does not grow with the trials."""

from __future__ import annotations

import re

import pytest

from bnstudy.report import content, estimates_latex, render, render_markdown, write_figures
from bnstudy.report.synthetic import with_detail_columns
from bnstudy.stats import analyze
from bnstudy.stats.simulate import grid_protocol, simulate_results
from test_report import simulated_with_detail


@pytest.fixture(scope="module")
def study():
    return simulated_with_detail()


def test_markdown_with_a_folder_of_figures(study, tmp_path):
    protocol, table, analysis = study
    folder = tmp_path / "sim_figures"
    text = render_markdown(analysis, table, protocol, figures_dir=folder)
    ids = [f.id for f in content.build(analysis, table, protocol).figures]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == [f"sim_figures/{i}.svg" for i in ids]
    for link in links:
        svg = (tmp_path / link).read_text()
        assert svg.startswith("<?xml") and 'xmlns="http://www.w3.org/2000/svg"' in svg
    for heading in ("# sim", "## What the evidence shows", "## How each arm did", "## Equivalence"):
        assert f"\n{heading}\n" in f"\n{text}"
    assert "| variant (vs plain) | balanced_acc |" in text
    # user text cannot become HTML when the Markdown is rendered; in the code block (the
    # protocol, verbatim) a renderer shows it as text
    prose, code = text.split("```yaml\n")
    assert "<img" not in prose and "&lt;img src=x onerror=alert(1)&gt;" in prose
    assert "<i>" not in prose
    assert code.startswith("name: sim\n") and "'<img src=x onerror=alert(1)>'" in code


def test_markdown_figures_href_and_empty_tables(study, tmp_path):
    protocol, table, analysis = study
    text = render_markdown(
        analysis, table, protocol, figures_dir=tmp_path / "f", figures_href="assets/f/"
    )
    assert "](assets/f/levels-levels-balanced_acc.svg)" in text
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.endswith("|")
    # each diagnostic names where it came from, set off from its text by a space
    diagnostics = text.split("## Diagnostics\n")[1].split("\n## ")[0]
    notes = [line for line in diagnostics.splitlines() if line.startswith("- ")]
    assert notes and all(re.search(r"[^ ] \(in: [^)]*\)$", n) for n in notes if "(in:" in n)
    assert any("(in:" in n for n in notes)


def test_every_figure_as_svg_png_and_pdf(study, tmp_path):
    protocol, table, analysis = study
    paths = write_figures(analysis, table, protocol, tmp_path / "figs", dpi=80)
    ids = [f.id for f in content.build(analysis, table, protocol).figures]
    names = {p.name for p in paths}
    for fid in ids:
        assert {f"{fid}.svg", f"{fid}.png", f"{fid}.pdf"} <= names
        assert (tmp_path / "figs" / f"{fid}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert (tmp_path / "figs" / f"{fid}.pdf").read_bytes().startswith(b"%PDF")
    captions = (tmp_path / "figs" / "captions.md").read_text()
    assert all(f"`{fid}`" in captions for fid in ids)
    # the same data gives the same files (no time stamps inside)
    again = write_figures(
        analysis, table, protocol, tmp_path / "again", formats=("svg", "pdf"), dpi=80
    )
    for p in again:
        if p.suffix in (".svg", ".pdf"):
            assert p.read_bytes() == (tmp_path / "figs" / p.name).read_bytes(), p.name


def test_unknown_figure_format_is_refused(study, tmp_path):
    protocol, table, analysis = study
    with pytest.raises(ValueError, match="unknown figure format 'gif'"):
        write_figures(analysis, table, protocol, tmp_path, formats=("gif",))


def test_latex_table_of_the_estimates(study):
    _, _, analysis = study
    tex = estimates_latex(analysis)
    assert tex.startswith("\\begin{table}") and "\\toprule" in tex and "\\bottomrule" in tex
    body = tex.split("\\midrule\n")[1].split("\\bottomrule")[0].strip().splitlines()
    assert len(body) == len(analysis.primary())
    assert "balanced\\_acc" in tex and "balanced_acc" not in tex.replace("balanced\\_acc", "")
    assert "\\textless{}img src=x onerror=alert(1)\\textgreater{}" in tex
    header = tex.split("\\toprule\n")[1].split(" \\\\")[0]
    assert header.startswith("metric & variant & scope & level & estimate & CI")
    both = estimates_latex(analysis, population="all", label="tab:all")
    assert "population" in both and "\\label{tab:all}" in both
    with pytest.raises(ValueError, match="unknown population"):
        estimates_latex(analysis, population="ok")


def test_html_size_does_not_grow_with_the_number_of_trials():
    """The page holds aggregates: 3 and 10 seeds per cell give pages of about one size,
    well under the 5 MB budget (benchmarks/bench_report.py measures 10,000 trials)."""
    sizes = []
    for seeds in (3, 10):
        protocol = grid_protocol(
            seeds, heads=("plain", "bn"), extra_analysis="  bootstrap: {replicates: 100}\n"
        )
        table = with_detail_columns(simulate_results(protocol, effect=1.0, seed=seeds))
        html = render(analyze(table, protocol), table, protocol)
        sizes.append(len(html.encode()))
    assert max(sizes) < 5e6
    assert sizes[1] < 1.2 * sizes[0]
