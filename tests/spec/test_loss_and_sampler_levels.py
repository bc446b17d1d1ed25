"""A protocol names the ``loss`` levels, the ``class_sorted`` sampler and the post-hoc metrics;
a misspelt level is a one-line error naming the field and the allowed values."""

from __future__ import annotations

import pytest

from bnstudy import study
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import parse_protocol
from tiny_protocol import tiny_text

METRICS = "analysis:\n  metrics:\n    balanced_acc_taunorm: {}\n    balanced_acc_posthoc_la: {}\n"


def text(levels: str) -> str:
    return tiny_text(extra=METRICS).replace("  epochs: 2\n", f"  epochs: 2\n{levels}")


def test_losses_samplers_and_post_hoc_metrics_expand_into_trials():
    protocol = parse_protocol(
        text("  loss: [ce, drw, cb_reweight, logit_adjusted]\n  sampler: class_sorted\n"),
        "tiny.yaml",
        known=study.known_names(),
    )
    trials = protocol.expand()
    assert {t.loss for t in trials} == {"ce", "drw", "cb_reweight", "logit_adjusted"}
    assert {t.sampler for t in trials} == {"class_sorted"}
    assert len(trials) == 4 * len(parse_protocol(text(""), "t.yaml").expand())
    assert list(protocol.analysis.metrics) == ["balanced_acc_taunorm", "balanced_acc_posthoc_la"]


def test_an_unknown_loss_names_the_field_and_the_levels():
    with pytest.raises(ProtocolError) as error:
        parse_protocol(text("  loss: [ce, focal]\n"), "tiny.yaml", known=study.known_names())
    message = str(error.value)
    assert "\n" not in message
    assert "factors.loss[1]" in message and "'focal'" in message
    assert "'cb_reweight', 'drw' or 'logit_adjusted'" in message
