"""``bnstudy.training.metrics.evaluation_metrics`` of K copies at once (a seed pack) equals it
on each copy alone (a trial, K = 1): no formula mixes the copies.

The equivalence tests of ``test_packing.py`` check the metrics of trained packs against
``run_trial``; these check the batched formulas alone on outputs made to hit the edge cases
that training rarely does: a class absent from the test set (NaN recall), a copy without
dead-unit units, exact ties between logits, a collapsed copy, dead and inactive units, and
each optional output (units, validation, PreciseBN, train/eval gap) absent.
"""

import math

import pytest
import torch

from bnstudy.data import Dataset
from bnstudy.training.metrics import evaluation_metrics, per_copy
from bnstudy.training.trial_result import nan_metrics

K, N, C, D = 3, 60, 5, 7
OPTIONAL = ("units", "val", "precise", "gap")


def dataset() -> Dataset:
    """Five classes, class 4 absent from the test set; classes 2-4 are the minority."""
    generator = torch.Generator().manual_seed(1)
    return Dataset(
        x_train=torch.empty(0),
        y_train=torch.empty(0, dtype=torch.int64),
        x_test=torch.empty(N, 1),
        y_test=torch.randint(0, C - 1, (N,), generator=generator),
        num_classes=C,
        input_shape=(1,),
        class_counts=[50, 40, 10, 8, 5],
        x_val=torch.empty(N // 2, 1),
        y_val=torch.randint(0, C, (N // 2,), generator=generator),
    )


def outputs(dtype: torch.dtype, without: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Outputs of K copies as ``packing._eval_outputs_pack`` lays them out."""
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(N, K, C, generator=generator).to(dtype)
    logits[:, 2] = logits[:, 2].round()  # coarse values: exact ties between classes
    logits[: N - 2, 1, 0] = 10.0  # copy 1 predicts class 0 almost always: collapsed
    features = torch.randn(N, K, D, generator=generator).to(dtype).clamp(min=0)
    features[:, :, :2] = -features[:, :, :2]  # units never positive: dead
    o = {
        "features": features,
        "logits": logits,
        "fold": torch.tensor([1e-7, math.nan, 0.0], dtype=torch.float64),
    }
    if "units" not in without:
        o["units"] = torch.randn(N, K, D, generator=generator).to(dtype).clamp(min=0)
        o["has_units"] = torch.tensor([True, False, True])
    if "val" not in without:
        o["val_logits"] = torch.randn(N // 2, K, C, generator=generator).to(dtype)
    if "precise" not in without:
        o["precise_test"] = torch.randint(0, C, (N, K), generator=generator)
        if "val" not in without:
            o["precise_val"] = torch.randint(0, C, (N // 2, K), generator=generator)
    if "gap" not in without:
        m = N - N % 8
        o["gap_order"] = torch.stack(
            [torch.randperm(N, generator=generator)[:m] for _ in range(K)], 1
        )
        o["gap_pred"] = torch.randint(0, C, (m, K), generator=generator)
    # The final FC's input and weight rows (the tau-normalised classifier), copies on dim 1.
    o["fc_input"] = torch.randn(N, K, D, generator=generator).to(dtype)
    o["fc_weight"] = torch.randn(C, K, D, generator=generator).to(dtype)
    return o


def copy_outputs(o: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Copy k's outputs as ``train._evaluate`` gives them for a model of its own (K = 1)."""
    mine = {name: t[:, k : k + 1] for name, t in o.items() if name not in ("fold", "has_units")}
    if "has_units" in o and not o["has_units"][k]:
        del mine["units"]
    mine["fold"] = o["fold"][k : k + 1]
    return mine


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("without", [(), OPTIONAL, *((name,) for name in OPTIONAL)])
def test_metrics_of_copies_at_once_equal_each_copy_alone(dtype, without):
    data, o = dataset(), outputs(dtype, without)
    metrics, recalls, collapsed = evaluation_metrics(o, data)
    assert all(t.shape == (K,) and t.dtype == torch.float64 for t in metrics.values())
    assert recalls.shape == (K, C) and collapsed.shape == (K,)
    for k, (mine, mine_recalls, mine_collapsed) in enumerate(per_copy(metrics, recalls, collapsed)):
        [(alone, alone_recalls, alone_collapsed)] = per_copy(
            *evaluation_metrics(copy_outputs(o, k), data)
        )
        # as recorded: a metric left out is NaN
        mine, alone = nan_metrics() | mine, nan_metrics() | alone
        for name, value in alone.items():
            assert same(mine[name], value), (name, k, mine[name], value)
        assert all(map(same, mine_recalls, alone_recalls)), k
        assert mine_collapsed == alone_collapsed, k
    assert collapsed.tolist() == [False, True, False]
    assert math.isnan(recalls[0, C - 1])  # the class absent from the test set
    if "units" not in without:  # copy 1 has no units: NaN there, measured in the others
        assert [math.isnan(v) for v in metrics["head_dead_frac"].tolist()] == [False, True, False]
