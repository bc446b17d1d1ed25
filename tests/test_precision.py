"""``precision: fp32 | bf16``: a recorded setting, part of a trial's id away from its default
(fp32, left out so every existing id stays), set for a whole run by ``bnstudy run
--precision``; bf16 trains under ``torch.autocast`` (on the CPU here, slowly)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bnstudy import cli, study
from bnstudy.execution import runner
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import parse_protocol
from tiny_protocol import tiny, tiny_text


def test_fp32_is_left_out_of_ids_and_bf16_names_other_trials():
    plain = tiny().expand()
    spelled = parse_protocol(
        tiny_text(extra="").replace("  batch_size: 32\n", "  batch_size: 32\n  precision: fp32\n")
    ).expand()
    assert [t.trial_id for t in spelled] == [t.trial_id for t in plain]
    assert all(t.precision == "fp32" and "precision" not in t.identity() for t in plain)
    bf16 = study.with_precision(tiny(), "bf16").expand()
    assert [t.precision for t in bf16] == ["bf16"] * len(plain)
    assert {t.trial_id for t in bf16}.isdisjoint(t.trial_id for t in plain)
    assert {t.block_id for t in bf16}.isdisjoint(t.block_id for t in plain)


def test_both_precisions_as_levels_of_the_factor():
    text = tiny_text().replace(
        "  batch_size: 32\n", "  batch_size: 32\n  precision: [fp32, bf16]\n"
    )
    protocol = parse_protocol(text)
    assert protocol.factors.precision == ["fp32", "bf16"]
    assert {t.precision for t in protocol.expand()} == {"fp32", "bf16"}
    assert len(protocol.expand()) == 2 * len(tiny().expand())


def test_other_precisions_are_refused_in_one_line():
    text = tiny_text().replace("  batch_size: 32\n", "  batch_size: 32\n  precision: fp16\n")
    with pytest.raises(ProtocolError) as raised:
        parse_protocol(text, source="p.yaml")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("p.yaml: factors.precision[0]: input should be 'fp32' or 'bf16'")


def test_the_flag_replaces_the_levels_and_the_recorded_text_says_so():
    text = tiny_text().replace(
        "  batch_size: 32\n", "  batch_size: 32\n  precision: [fp32, bf16]\n"
    )
    protocol = parse_protocol(text, known=study.known_names())
    changed = study.with_precision(protocol, "bf16")
    assert changed.factors.precision == ["bf16"]
    assert changed.name == protocol.name
    # the text a results file records expands to the same trials, and keeps the original
    again = parse_protocol(changed.source_text)
    assert [t.trial_id for t in again.expand()] == [t.trial_id for t in changed.expand()]
    assert "# bnstudy run --precision bf16" in changed.source_text
    assert "#   precision: [fp32, bf16]" in changed.source_text
    assert study.with_precision(tiny(), "fp32").source_text == tiny().source_text


def test_run_precision_flag_sets_every_trial(tmp_path: Path, monkeypatch):
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_text())
    seen = []

    def fake_run(protocol, **options):
        seen.append(protocol)
        raise SystemExit(0)

    monkeypatch.setattr(study, "run", fake_run)
    with pytest.raises(SystemExit):
        cli.main(["run", str(path), "--precision", "bf16", "-q", "--devices", "cpu"])
    assert {t.precision for t in seen[0].expand()} == {"bf16"}
    with pytest.raises(SystemExit) as refused:  # argparse: exit 2, one line naming the choices
        cli.main(["run", str(path), "--precision", "fp16"])
    assert refused.value.code == 2


def test_a_bf16_trial_trains_on_the_cpu_and_records_its_precision(tmp_path: Path):
    path = tmp_path / "tiny.parquet"
    protocol = study.with_precision(tiny(seeds=1, imbalance_ratio=10), "bf16")
    summary = runner.run_protocol(protocol, path, jobs=1)
    assert summary.statuses.get("ok", 0) == len(protocol.expand())
    results = study.read_results(path)
    table = results.table
    assert set(table["precision"]) == {"bf16"}
    assert set(table["trial_id"]) == {t.trial_id for t in protocol.expand()}
    for metric in ("balanced_acc", "nll", "train_loss"):
        assert table[metric].map(math.isfinite).all(), metric
    # read back, the recorded protocol declares these very trials (none set aside)
    recorded = study.protocol_of(results)
    assert {t.trial_id for t in recorded.expand()} == set(table["trial_id"])
