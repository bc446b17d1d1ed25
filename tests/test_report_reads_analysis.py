"""The report reads what the Analysis has (its design, moderators, each arm's levels and the
estimates' moderator and kind columns) and computes none of it again; the study's verbs build
the design once on the way to a report, and ``status`` counts arms."""

import ast
import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from bnstudy import study, terminal
from bnstudy.report import content
from bnstudy.spec.loading import parse_protocol
from bnstudy.spec.protocol import Protocol
from bnstudy.stats.simulate import simulate_results
from bnstudy.store import ResultStore
from test_report import PROTOCOL, simulated

REPORT = Path(content.__file__).parent


def test_the_report_takes_the_design_from_the_analysis(monkeypatch):
    protocol, table, analysis = simulated()

    def no_design(self):
        raise AssertionError("the report built the design again")

    monkeypatch.setattr(Protocol, "design", no_design)
    c = content.build(analysis, table, protocol)
    assert c.roles.moderators == analysis.design.moderators
    assert c.roles.treatment == analysis.design.treatment


def test_the_levels_section_shows_the_analysis_levels():
    protocol, table, analysis = simulated()
    levels = analysis.arm_levels
    marked = levels.assign(mean=levels["mean"].where(levels["arm"] != "bn", 1234.5))
    c = content.build(dataclasses.replace(analysis, arm_levels=marked), table, protocol)
    assert any("bn 1234.5%" in s for s in c.levels_sentences), c.levels_sentences
    assert all(t.table["bn"].str.startswith("1234.5").all() for t in c.levels_tables)


def test_moderator_figures_and_sentences_read_the_moderator_column():
    """A row is picked by its ``moderator`` and ``kind``, never by taking ``scope`` apart: a
    slope renamed in ``scope`` alone is still the moderator's slope."""
    protocol, table, analysis = simulated()
    est = analysis.estimates.assign(scope=analysis.estimates["scope"].str.upper())
    c = content.build(dataclasses.replace(analysis, estimates=est), table, protocol)
    plain = content.build(analysis, table, protocol)
    assert c.moderator_sentences == plain.moderator_sentences != []
    assert [f.id for f in c.figures] == [f.id for f in plain.figures]
    assert "moderator" not in c.estimates_table.columns  # shown by scope and level
    assert "kind" not in c.estimates_table.columns


def test_no_report_module_is_long_nor_any_function():
    for path in REPORT.glob("*.py"):
        source = path.read_text()
        assert source.count("\n") <= 500, path.name
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno - node.lineno + 1 <= 80, (path.name, node.name)


def test_the_terminal_reads_scope_from_moderator_and_kind():
    protocol, table, analysis = simulated()
    est = analysis.estimates.assign(scope="?")
    text = terminal.estimates(dataclasses.replace(analysis, estimates=est))
    assert "imbalance_ratio slope" in text and "imbalance_ratio: 10.0 - 1.0" in text
    assert "imbalance_ratio=100.0" in text and "  overall" in text


def _store(tmp_path: Path, text: str, rows: pd.DataFrame) -> Path:
    path = tmp_path / "results.parquet"
    store = ResultStore(path)
    for row in rows.to_dict("records"):
        store.append(row)
    store.consolidate({"protocol": text, "protocol_name": "sim"})
    return path


def test_a_report_builds_the_design_once(tmp_path, monkeypatch):
    protocol = parse_protocol(PROTOCOL, "sim.yaml")
    path = _store(tmp_path, PROTOCOL, simulate_results(protocol, effect=-1.0, seed=3))
    built = []
    design = Protocol.design

    def counted(self):
        built.append(1)
        return design(self)

    monkeypatch.setattr(Protocol, "design", counted)
    study.report(path, tmp_path / "report.html")
    assert len(built) == 1


MOMENTA = """\
name: sim
seeds: 2
factors:
  architecture: mlp
  dataset: synthetic
  head: [plain, bn]
  bn_momentum: [0.1, 0.01]
control: plain
"""


def test_status_counts_each_arm(tmp_path):
    protocol = parse_protocol(MOMENTA, "sim.yaml")
    counts = study.status(protocol, tmp_path / "none.parquet")
    assert list(counts.index) == ["plain", "bn", "bn[bn_momentum=0.01]", "total"]
    # the arms are heads (some with an option): named as such, as in the report's sentences
    assert counts.index.name == "head" and (counts["missing"] == [2, 2, 2, 6]).all()
    assert terminal.status(counts).split("\n")[0].split() == ["head", "missing", "total"]


def test_status_of_a_protocol_without_arm_options_counts_heads(tmp_path):
    protocol = parse_protocol(PROTOCOL, "sim.yaml")
    counts = study.status(protocol, tmp_path / "none.parquet")
    assert list(counts.index) == ["plain", "bn", "ln", "total"] and counts.index.name == "head"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
