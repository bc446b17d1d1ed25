"""``register_metric``: a plugin's metric in the catalogue, analysed like a built-in one, and
read back from a results file's record where the plugin is not installed."""

from __future__ import annotations

import json

import pytest

from bnstudy import catalogue
from bnstudy.spec import plugins
from bnstudy.spec.errors import ProtocolError
from bnstudy.spec.loading import parse_protocol


@pytest.fixture(autouse=True)
def own_catalogue():
    """Registrations made here stay here: the catalogue's tables (which the rest of bnstudy
    holds by reference) are put back as they were, in place."""
    metrics, declared = dict(catalogue.METRICS), dict(catalogue._DECLARED)
    yield
    for table, before in ((catalogue.METRICS, metrics), (catalogue._DECLARED, declared)):
        table.clear()
        table.update(before)


PROTOCOL = """\
name: p
seeds: 2
factors: {architecture: mlp, head: [plain, bn], dataset: synthetic}
control: plain
analysis: {metrics: [score]}
hypotheses:
  - {id: h, claim: c, metric: score, variant: bn, control: plain, expect: equivalent}
"""


def test_a_registered_metric_is_a_primary_metric_with_its_declaration():
    with pytest.raises(ProtocolError, match="unknown name 'score'"):
        parse_protocol(PROTOCOL)
    info = catalogue.register_metric("score", "lower", "pt", margin=0.2, chance=3.0, scale=10)
    assert catalogue.METRICS["score"] is info
    assert (info.direction, info.unit, info.scale, info.default_margin) == ("lower", "pt", 10, 0.2)
    assert info.chance(10) == info.chance(2) == 3.0
    protocol = parse_protocol(PROTOCOL)
    assert protocol.design().metrics["score"].direction == "lower"
    assert protocol.hypotheses[0].margin == 0.2  # the hypothesis takes the customary margin
    assert catalogue.declared_metrics() == {
        "score": {"direction": "lower", "unit": "pt", "margin": 0.2, "chance": 3.0, "scale": 10}
    }


def test_the_same_declaration_twice_is_one_and_another_is_refused():
    catalogue.register_metric("score", "higher")
    catalogue.register_metric("score", "higher")  # a plugin imported again
    with pytest.raises(ValueError, match="already registered"):
        catalogue.register_metric("score", "lower")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("balanced_acc", "higher"), {}, "one of bnstudy's own"),
        (("mean_max_prob", "higher"), {}, "one of bnstudy's own"),
        (("my score", "higher"), {}, "expected letters, digits and '_'"),
        (("score", "up"), {}, "direction must be 'higher' or 'lower'"),
        (("score", "higher"), {"margin": -1}, "margin must be a positive number"),
        (("score", "higher"), {"chance": "half"}, "chance must be a number"),
        (("score", "higher"), {"scale": 0}, "scale must be a positive number"),
    ],
)
def test_a_bad_declaration_is_refused(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        catalogue.register_metric(*args, **kwargs)
    assert "score" not in catalogue.METRICS


def test_a_results_file_s_record_declares_what_this_process_does_not_know():
    catalogue.register_metric("score", "higher", "pt", 0.1, 0.0)
    recorded = plugins.declared(["mlp"])
    assert recorded == {
        "architecture_options": None,  # mlp's options are bnstudy's own: not recorded
        "metrics": {
            "score": {"direction": "higher", "unit": "pt", "margin": 0.1, "chance": 0.0, "scale": 1}
        },
    }
    catalogue.METRICS.pop("score")
    catalogue._DECLARED.clear()
    plugins.recall({key: json.dumps(value) for key, value in recorded.items() if value})
    assert catalogue.METRICS["score"].direction == "higher"
    parse_protocol(PROTOCOL.replace("expect: equivalent", "expect: higher"))
    with pytest.raises(ValueError):
        plugins.recall({"metrics": '{"other": {"direction": "up", "unit": ""}}'})
    with pytest.raises(ValueError):
        plugins.recall({"metrics": "[1, 2]"})
