import pytest
import torch

from bnstudy.data import build_dataset, dataset_names
from bnstudy.data.imbalance import longtail_counts, subsample


@pytest.mark.parametrize(
    ("n_max", "num_classes", "ratio", "total"),
    [
        (5000, 10, 10, 20431),
        (5000, 10, 50, 13996),
        (5000, 10, 100, 12406),
        (500, 100, 10, 19573),
        (500, 100, 50, 12608),
        (500, 100, 100, 10847),
    ],
)
def test_longtail_matches_published_cifar_lt_sizes(n_max, num_classes, ratio, total):
    counts = longtail_counts(n_max, num_classes, ratio)
    assert sum(counts) == total
    assert counts[0] == n_max
    assert counts[-1] == n_max // ratio


def test_longtail_ratio_one_is_balanced():
    assert longtail_counts(7, 4, 1.0) == [7, 7, 7, 7]


def test_longtail_rejects_ratio_below_one():
    with pytest.raises(ValueError, match="ratio"):
        longtail_counts(10, 3, 0.5)


def test_subsample_takes_requested_counts_per_class():
    labels = torch.arange(3).repeat_interleave(10)
    index = subsample(labels, [10, 4, 1], torch.Generator().manual_seed(0))
    assert torch.bincount(labels[index], minlength=3).tolist() == [10, 4, 1]
    assert len(set(index.tolist())) == 15


def test_subsample_is_nested_in_count():
    """The first images of a class's permutation are kept, so a smaller count is a subset."""
    labels = torch.arange(2).repeat_interleave(50)
    small = subsample(labels, [5, 5], torch.Generator().manual_seed(3))
    large = subsample(labels, [20, 20], torch.Generator().manual_seed(3))
    assert set(small.tolist()) <= set(large.tolist())


def test_subsample_refuses_more_than_the_pool():
    labels = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="class 0 needs 4"):
        subsample(labels, [4], torch.Generator())


def test_build_dataset_imbalances_train_only_and_records_counts(make_trial):
    data = build_dataset(make_trial(imbalance_ratio=10.0, train_per_class=100))
    expected = longtail_counts(100, 10, 10.0)
    assert data.class_counts == expected
    assert torch.bincount(data.y_train, minlength=10).tolist() == expected
    assert torch.bincount(data.y_test, minlength=10).tolist() == [200] * 10
    assert data.minority_classes == [5, 6, 7, 8, 9]


def test_balanced_dataset_has_no_minority_classes(make_trial):
    data = build_dataset(make_trial(imbalance_ratio=1.0))
    assert data.class_counts == [100] * 10
    assert data.minority_classes == []


def test_subset_is_deterministic_and_shared_by_arms_of_a_block(make_trial):
    a = build_dataset(make_trial(head="plain", imbalance_ratio=10.0))
    b = build_dataset(make_trial(head="bn", imbalance_ratio=10.0))
    c = build_dataset(make_trial(seed=1, imbalance_ratio=10.0))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)


def test_unknown_dataset_lists_known_names(make_trial):
    trial = make_trial(dataset="synthtic")
    with pytest.raises(KeyError, match="did you mean 'synthetic'"):
        build_dataset(trial)
    assert "synthetic" in dataset_names()
