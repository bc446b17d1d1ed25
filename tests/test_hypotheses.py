"""Pre-registered hypotheses: schema errors, the canonical hash, registration in the results."""

from __future__ import annotations

import datetime as dt
import json
import math
import textwrap
from pathlib import Path

import pytest

from bnstudy import study
from bnstudy.catalogue import METRICS
from bnstudy.execution import runner
from bnstudy.spec import claims
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import parse_protocol
from tiny_protocol import tiny_text

KNOWN = {"architecture": ["mlp"], "head": ["plain", "bn", "ln"], "dataset": ["synthetic"]}

BASE = tiny_text(name="hyp", batch_size="[8, 32]")

H1 = """\
hypotheses:
  - id: claim1
    claim: bn makes little difference on balanced data
    metric: balanced_acc
    variant: bn
    control: plain
    where: {imbalance_ratio: 1}
    expect: equivalent
"""

H3 = """\
  - id: claim3
    claim: bn fails more often with small batches
    metric: failure
    variant: bn
    control: plain
    where: {batch_size: [8]}
    expect: higher
"""


def parse(text: str, known=KNOWN):
    return parse_protocol(textwrap.dedent(text), source="p.yaml", known=known)


def test_hypotheses_parse_with_defaults_resolved():
    p = parse(BASE + H1 + H3)
    h1, h3 = p.hypotheses
    assert h1.margin == METRICS["balanced_acc"].default_margin == 0.5
    assert h1.where == {"imbalance_ratio": [1]}
    assert h3.metric == "failure" and h3.where == {"batch_size": [8]}
    d1 = claims.designs(p)[0]
    assert d1.estimand == "fixed" and d1.where == {"imbalance_ratio": (1,)}
    tuned = parse(
        BASE.replace("epochs: 2", "epochs: 2\n  lr: [0.01, 0.1]") + "analysis:\n  tune: [lr]\n" + H1
    )
    assert claims.designs(tuned)[0].estimand == "tuned"


@pytest.mark.parametrize(
    ("edit", "where", "says"),
    [
        (
            ("metric: balanced_acc", "metric: balanced_accuracy"),
            "hypotheses[0].metric",
            "unknown metric 'balanced_accuracy'",
        ),
        (("variant: bn", "variant: ln"), "hypotheses[0].variant", "'ln' is not among the heads"),
        (
            ("control: plain\n    where", "control: bnn\n    where"),
            "hypotheses[0].control",
            "'bnn' is not among the heads",
        ),
        (
            ("{imbalance_ratio: 1}", "{imbalance: 1}"),
            "hypotheses[0].where.imbalance",
            "unknown name 'imbalance'",
        ),
        (
            ("{imbalance_ratio: 1}", "{imbalance_ratio: 50}"),
            "hypotheses[0].where.imbalance_ratio",
            "50 is not a level of imbalance_ratio",
        ),
        (("expect: equivalent", "expect: same"), "hypotheses[0].expect", "input should be"),
        (
            ("    expect: equivalent", "    expect: equivalent\n    colour: red"),
            "hypotheses[0].colour",
            "unknown key 'colour'; allowed: id, claim, metric",
        ),
        (("id: claim1", "id: 'bad id'"), "hypotheses[0].id", "string should match"),
    ],
)
def test_schema_errors_are_one_line_and_name_the_field(edit, where, says):
    with pytest.raises(ProtocolError) as info:
        parse(BASE + H1.replace(*edit))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"p.yaml: {where}: "), message
    assert says in message, message


def test_duplicate_ids_and_bad_interactions_are_refused():
    with pytest.raises(ProtocolError, match=r"hypotheses\[1\]\.id: duplicate hypothesis id"):
        parse(BASE + H1 + H3.replace("claim3", "claim1"))
    interaction = H3 + "    interaction: {factor: imbalance_ratio, low: 1, high: 100}\n"
    with pytest.raises(ProtocolError, match=r"interaction\.high: 100 is not a level"):
        parse(BASE + H1 + interaction)
    with pytest.raises(ProtocolError, match=r"hypotheses\[0\]: .*needs a margin"):
        parse(BASE + H1.replace("balanced_acc", "failure"))
    unknown = H3 + "    interaction: {factor: ratio, low: 1, high: 10}\n"
    with pytest.raises(ProtocolError, match=r"interaction\.factor: unknown name 'ratio'"):
        parse(BASE + "hypotheses:\n" + unknown)
    narrow = H3.replace("{batch_size: [8]}", "{imbalance_ratio: 1}")
    narrow += "    interaction: {factor: imbalance_ratio, low: 1, high: 10}\n"
    with pytest.raises(ProtocolError, match=r"where\.imbalance_ratio: leaves out level"):
        parse(BASE + "hypotheses:\n" + narrow)
    with pytest.raises(ProtocolError, match=r"where\.imbalance_ratio: \[1\] is not a level"):
        parse(BASE + H1.replace("{imbalance_ratio: 1}", "{imbalance_ratio: [[1]]}"))
    with pytest.raises(ProtocolError, match=r"estimand: tuned needs tuning factors"):
        parse(BASE + H1 + "    estimand: tuned\n")


def test_hash_is_stable_under_key_order_and_changes_with_any_field():
    p = parse(BASE + H1)
    reordered = H1.replace(
        "    metric: balanced_acc\n    variant: bn\n", "    variant: bn\n    metric: balanced_acc\n"
    ).replace("{imbalance_ratio: 1}", "{imbalance_ratio: [1.0]}")
    explicit = H1 + "    margin: 0.5\n    estimand: fixed\n"
    base = claims.designs(p)[0].sha256
    assert claims.designs(parse(BASE + reordered))[0].sha256 == base
    assert claims.designs(parse(BASE + explicit))[0].sha256 == base  # defaults resolved
    for edit in [
        ("little difference", "no difference"),
        ("expect: equivalent", "expect: higher"),
        ("{imbalance_ratio: 1}", "{imbalance_ratio: [1, 10]}"),
        ("metric: balanced_acc", "metric: test_acc"),
        ("expect: equivalent", "expect: equivalent\n    margin: 1.0"),
    ]:
        assert claims.designs(parse(BASE + H1.replace(*edit)))[0].sha256 != base, edit


def instant(trial, device, data_options=None):
    """A made-up result in no time: registration is bookkeeping, not training."""
    from bnstudy.training.train import TrialResult

    now = dt.datetime.now(dt.UTC)
    metrics = {name: 0.5 for name in METRICS}
    return TrialResult("ok", None, metrics, {"train_loss": [math.nan]}, {}, now, now, device)


def tiny(text: str):
    return parse_protocol(textwrap.dedent(text), "hyp.yaml", known=study.known_names())


def test_registration_is_recorded_by_the_first_run_and_kept_by_later_ones(tmp_path: Path):
    path = tmp_path / "hyp.parquet"
    first = tiny(BASE + H1)
    runner.run_protocol(first, path, jobs=1, trial_fn=instant)
    meta = study.read_results(path).metadata
    record = json.loads(meta[claims.REGISTRATION_KEY])
    assert record["hypotheses"] == {"claim1": claims.designs(first)[0].sha256}
    assert record["registered_at"]

    amended = tiny(BASE.replace("seeds: 2", "seeds: 3") + H1 + H3)  # new trials run too
    assert runner.run_protocol(amended, path, jobs=1, trial_fn=instant).ran > 0
    after = study.read_results(path).metadata
    assert after[claims.REGISTRATION_KEY] == meta[claims.REGISTRATION_KEY]
    registered = claims.registered_hashes(after)
    h1, h3 = claims.designs(amended)
    assert h1.sha256 in registered and h3.sha256 not in registered  # claim3 is exploratory


def test_results_written_before_registration_never_gain_one(tmp_path: Path):
    path = tmp_path / "hyp.parquet"
    runner.run_protocol(tiny(BASE), path, jobs=1, trial_fn=instant)
    assert (
        json.loads(study.read_results(path).metadata[claims.REGISTRATION_KEY])["hypotheses"] == {}
    )
    legacy = {"protocol": "x"}
    assert claims.registration_to_record(legacy, True, tiny(BASE + H1)) == {}
    assert claims.registered_hashes(legacy) is None


STUDY = """\
name: hypstudy
seeds: 6
factors:
  architecture: mlp
  head: [plain, bn]
  dataset: [d0, d1]
  imbalance_ratio: [1, 100]
control: plain
analysis:
  metrics: [balanced_acc, failure]   # a derived metric, through analysis and report
  bootstrap: {replicates: 100}
hypotheses:
  - id: helps
    claim: "bn helps <script>alert(1)</script> & more"
    metric: balanced_acc
    variant: bn
    control: plain
    expect: higher
"""
LATER = """\
  - id: later
    claim: added after the results
    metric: balanced_acc
    variant: bn
    control: plain
    where: {imbalance_ratio: 100}
    expect: higher
"""


@pytest.fixture
def results_file(tmp_path: Path) -> Path:
    """A results file whose registration holds ``helps`` only; its protocol adds ``later``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bnstudy.stats.simulate import simulate_results

    registered = claims.registration(parse_protocol(STUDY))
    protocol = parse_protocol(STUDY + LATER)
    table = simulate_results(protocol, effect=2.0, sigma=0.3, seed=0)
    meta = {"protocol": protocol.source_text, claims.REGISTRATION_KEY: registered}
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({f"bnstudy.{k}": v for k, v in meta.items()})
    path = tmp_path / "hypstudy.parquet"
    pq.write_table(arrow, path)
    return path


def test_analysis_judges_registered_and_exploratory_hypotheses(results_file, capsys):
    from bnstudy.cli import main

    judged = study.analyze(results_file).hypotheses.set_index("id")
    assert judged.loc["helps", "registration"] == "pre-registered"
    assert judged.loc["helps", "verdict"] == "supported"
    assert judged.loc["later", "registration"] == "exploratory"
    assert judged.loc["later", "verdict"].endswith(" (exploratory, unadjusted)")
    assert math.isnan(judged.loc["later", "p_adj"])  # outside the confirmatory family

    assert main(["analyze", str(results_file)]) == 0
    out = capsys.readouterr().out
    assert "hypotheses:" in out and "(exploratory, unadjusted)" in out
    assert main(["analyze", str(results_file), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["tables"]["hypotheses"]
    assert [r["id"] for r in rows] == ["helps", "later"]


def test_report_opens_with_the_hypotheses_table_and_escapes_claims(results_file, tmp_path):
    html = study.report(results_file, tmp_path / "r.html").read_text()
    assert html.index('id="hypotheses"') < html.index('id="evidence"')
    assert "<script>" not in html
    assert "bn helps &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert '<a href="#evidence-effect-balanced_acc">helps</a>' in html
    assert "exploratory" in html and "pre-registered" in html
    md = study.report(results_file, tmp_path / "r.md", format="md").read_text()
    assert md.index("## Pre-registered hypotheses") < md.index("## What the evidence shows")
    table = md[md.index("## Pre-registered hypotheses") : md.index("## What the evidence shows")]
    assert "[helps](#what-the-evidence-shows)" in table and "<script>" not in table
    assert "bn helps &lt;script&gt;" in table


def test_the_studys_claims_parse():
    """The shapes the study registers: tuned equivalence, failure, interaction, dead units."""
    text = """\
    name: claims
    seeds: 2
    factors:
      architecture: mlp
      head: [plain, bn, logit_bn, hidden, hidden_bn_relu]
      dataset: synthetic
      imbalance_ratio: [1, 100]
      batch_size: [8, 16, 64]
      lr: [0.01, 0.1]
    control: plain
    analysis: {tune: [lr]}
    hypotheses:
      - {id: c1, claim: little difference, metric: balanced_acc, variant: bn, control: plain,
         where: {imbalance_ratio: 1}, expect: equivalent, margin: 0.5}
      - {id: c3, claim: fails to learn, metric: failure, variant: bn, control: plain,
         where: {batch_size: [8, 16]}, expect: higher}
      - {id: c4, claim: helps minority, metric: minority_recall, variant: logit_bn,
         control: plain, expect: higher,
         interaction: {factor: imbalance_ratio, low: 1, high: 100}}
      - {id: c5, claim: dead units, metric: head_dead_frac, variant: hidden_bn_relu,
         control: hidden, expect: higher}
    """
    known = {**KNOWN, "head": ["plain", "bn", "logit_bn", "hidden", "hidden_bn_relu"]}
    designs = {d.id: d for d in claims.designs(parse(text, known))}
    assert designs["c1"].estimand == "tuned" and designs["c1"].margin == 0.5
    assert designs["c3"].where == {"batch_size": (8, 16)} and designs["c3"].margin is None
    assert designs["c4"].interaction == ("imbalance_ratio", 1, 100)
    assert designs["c5"].control == "hidden"
    assert len({d.sha256 for d in designs.values()}) == 4


# -- quantifiers: in: average | any | all -------------------------------------------------

#: The hashes of H1 and H3 as registered before quantifiers existed (computed with the code
#: of that time): a hypothesis without ``in`` must keep them, or committed tables would see
#: their pre-registered claims turn exploratory.
H1_SHA256 = "3f53eee2794835f6bf05682067c45925bb614dd792d414193dfaa4e27a03eca4"
H3_SHA256 = "c61eac073dda2b3b640e3683d5e1f0fb391058470a0bde7499b9ff8cd2de57c8"


def test_a_hypothesis_without_a_quantifier_keeps_its_registered_hash():
    h1, h3 = claims.designs(parse(BASE + H1 + H3))
    assert (h1.sha256, h3.sha256) == (H1_SHA256, H3_SHA256)
    assert h1.quantifier == h3.quantifier == "average"
    assert "in" not in claims.resolved(parse(BASE + H1).hypotheses[0], tunes=False)
    explicit = claims.designs(parse(BASE + H1 + "    in: average\n"))[0]
    assert explicit.sha256 == H1_SHA256 and explicit.quantifier == "average"


def test_quantifiers_parse_and_change_the_hash():
    anywhere = claims.designs(parse(BASE + "hypotheses:\n" + H3 + "    in: any\n"))[0]
    assert anywhere.quantifier == "any" and anywhere.sha256 != H3_SHA256
    everywhere = claims.designs(parse(BASE + H1 + "    in: all\n"))[0]
    assert everywhere.quantifier == "all"
    assert len({H1_SHA256, everywhere.sha256, anywhere.sha256}) == 3
    resolved = claims.resolved(parse(BASE + H1 + "    in: all\n").hypotheses[0], tunes=False)
    assert resolved["in"] == "all" and "quantifier" not in resolved


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("    in: some\n", "hypotheses[0].in: input should be 'average', 'any' or 'all'"),
        ("    quantifier: any\n", "hypotheses[0].quantifier: unknown key 'quantifier'"),
    ],
)
def test_bad_quantifiers_are_refused(extra, says):
    with pytest.raises(ProtocolError) as info:
        parse(BASE + H1 + extra)
    assert str(info.value).startswith(f"p.yaml: {says}"), str(info.value)
    assert "estimand, in" in str(parse_error(BASE + H1 + "    colour: red\n"))


def parse_error(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(text)
    return info.value


def test_a_quantified_interaction_is_refused():
    text = BASE + "hypotheses:\n" + H3 + "    interaction: {factor: batch_size, low: 8, high: 32}\n"
    text = text.replace("{batch_size: [8]}", "{}")
    assert claims.designs(parse(text))[0].interaction == ("batch_size", 8, 32)
    message = str(parse_error(text + "    in: any\n"))
    assert message.startswith("p.yaml: hypotheses[0]: in: any is about the conditions"), message
