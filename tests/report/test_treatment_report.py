"""A treatment other than the head, end to end: ``bnstudy validate``, ``run`` (training,
the store, the analysis and the report), ``status``, ``analyze`` and ``report``. The rows
record the optimizer each arm trained with, the arms pair, and every sentence, header and
figure names the optimizer and its control: "adamw − sgd", never a head or "plain"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bnstudy import study
from bnstudy.cli import main
from optimizer_protocol import OPTIMIZER, optimizer_text

PROTOCOL = (
    optimizer_text(name="opt", seeds=2, head="bn")
    + OPTIMIZER
    + """\
analysis:
  metrics: [balanced_acc]
  bootstrap: {replicates: 100}
hypotheses:
  - {id: faster, claim: adamw learns faster in one epoch, metric: balanced_acc,
     variant: adamw, control: sgd, expect: higher}
"""
)


@pytest.mark.slow
def test_an_optimizer_study_runs_and_reports_adamw_against_sgd(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("opt.yaml").write_text(PROTOCOL)
    assert main(["validate", "opt.yaml"]) == 0
    assert "treatment optimizer: control 'sgd'; variants adamw" in capsys.readouterr().out
    assert main(["run", "opt.yaml", "--jobs", "1", "-q"]) == 0  # writes reports/opt.html

    recorded = study.load_results("data/results/opt.parquet")
    table = recorded.results.table
    assert len(table) == 8 and set(table["status"]) == {"ok"}
    # each row records what ran: the arm is its optimizer, the head the one condition
    assert (table["arm"] == table["optimizer"]).all() and set(table["head"]) == {"bn"}
    assert table.groupby("block_id")["optimizer"].nunique().tolist() == [2] * 4
    assert (table["treatment"] == "optimizer").all()

    status = study.status(study.load("opt.yaml"))
    assert status.index.name == "optimizer" and list(status.index) == ["sgd", "adamw", "total"]

    assert main(["analyze", "data/results/opt.parquet"]) == 0
    out = capsys.readouterr().out
    assert "adamw" in out and not re.search(r"\bplain\b", out)
    analysis = study.analyze("data/results/opt.parquet")
    overall = analysis.primary()
    overall = overall[overall["kind"] == "overall"]
    assert set(overall["variant"]) == {"adamw"} and set(overall["control"]) == {"sgd"}
    judged = analysis.hypotheses.set_index("id").loc["faster"]
    assert (judged["variant"], judged["control"], judged["n_pairs"]) == ("adamw", "sgd", 4)

    assert main(["report", "data/results/opt.parquet", "--format", "md"]) == 0
    for page in (Path("reports/opt.html"), Path("reports/opt.md")):
        text = page.read_text()
        assert "adamw − sgd on balanced_acc" in text
        assert "Each optimizer variant (adamw) is compared with the control sgd" in text
        assert not re.search(r"\bplain\b", text) and "variant (vs sgd)" in text
        assert "a head that" not in text and "what the head did" not in text
    html = Path("reports/opt.html").read_text()
    assert "<th>optimizer</th>" in html  # the trials' and failures' tables name the factor
    assert "effect vs sgd" in html  # the figures' axes name the control


def test_head_arms_with_options_are_named_head_variants():
    """A head option some heads do not take makes the arms (``bn[bn_momentum=0.01]``): the
    report still compares head variants, never "arm" ones."""
    from types import SimpleNamespace

    import pandas as pd

    from bnstudy.report.roles import roles_of
    from bnstudy.report.text import treatment_sentence
    from bnstudy.spec.loading import parse_protocol

    text = optimizer_text(seeds=2).replace("optimizer: [sgd, adamw]", "bn_momentum: [0.1, 0.01]")
    design = parse_protocol(text + "control: plain\n", known=study.known_names()).design()
    assert (design.treatment, design.treatment_name) == ("arm", "head")
    settings = dict(confidence=0.95, correction="holm", failed_score="chance")
    roles = roles_of(design, pd.DataFrame(), SimpleNamespace(metrics={}, **settings))
    assert treatment_sentence(roles) == (
        "Each head variant (bn, bn[bn_momentum=0.01]) is compared with the control plain, "
        "within pairing blocks that share every other setting."
    )
