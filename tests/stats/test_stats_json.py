"""Every table of an Analysis as one JSON document with named tables."""

import json
import math

import numpy as np

from bnstudy.stats import analyze
from bnstudy.stats.simulate import grid_protocol, simulate_results

SMALL = dict(datasets=("d0", "d1"), ratios=(1.0, 10.0), lrs=(0.01, 0.1))


def test_document_holds_every_table_and_is_strict_json():
    protocol = grid_protocol(4, extra_analysis="  tune: [lr]\n", **SMALL)
    table = simulate_results(protocol, effect=-1.0, failed=0.1, seed=2)
    a = analyze(table, protocol.design())
    doc = a.to_document()
    text = json.dumps(doc, allow_nan=False)  # NaN and infinities are null
    back = json.loads(text)
    assert back["format"] == "bnstudy.analysis" and back["version"] == 2
    names = {
        "estimates", "equivalence", "effect_sizes", "heterogeneity", "per_condition",
        "robustness", "failures", "imputations", "diagnostics", "model_summaries",
        "selected_levels", "hypotheses", "arm_levels", "regimes", "moderator_variance",
        "tuning_edges",
    }  # fmt: skip
    assert set(back["tables"]) == names
    for name, frame in a.tables().items():
        rows = back["tables"][name]
        assert len(rows) == len(frame), name
        if rows:
            assert list(rows[0]) == [str(c) for c in frame.columns], name
    settings = back["settings"]
    assert settings["treatment"] == "head" and settings["primary_estimand"] == "tuned"
    assert settings["tuning"] == ["lr"] and settings["select_by"] == "val_balanced_acc"
    assert "prediction interval" in settings["prediction_interval"]
    # NaN -> null, numbers stay numbers
    est = back["tables"]["estimates"]
    assert any(r["p_adj"] is None for r in est)
    assert all(isinstance(r["n_pairs"], int) for r in est)
    assert all(r["estimate"] is None or math.isfinite(r["estimate"]) for r in est)
    rob = back["tables"]["robustness"][0]
    assert rob["wilcoxon_p"] is None and isinstance(rob["agree"], bool)
    assert a.to_json(indent=None) == json.dumps(doc, allow_nan=False)


def test_records_stay_flat_for_old_readers():
    protocol = grid_protocol(3, **SMALL)
    a = analyze(simulate_results(protocol, seed=1), protocol.design())
    records = a.to_records()
    assert records["estimates"][0]["scope"] == "overall" and records["control"] == "plain"
    assert json.loads(json.dumps(records, allow_nan=False))["units"] == {"balanced_acc": "pp"}
    assert isinstance(records["estimates"][0]["estimate"], float)
    assert not any(
        isinstance(v, float) and np.isnan(v) for r in records["estimates"] for v in r.values()
    )
