import dataclasses

import pytest
import torch

from bnstudy.data import DatasetError, build_dataset, dataset_names
from bnstudy.data.dataset import Dataset
from bnstudy.data.imbalance import PROFILES, longtail_counts, profile_counts, subsample


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
    with pytest.raises(KeyError, match="did you mean 'synthetic'") as info:
        build_dataset(trial)
    assert isinstance(info.value, DatasetError)
    assert "synthetic" in dataset_names()


def test_exp_profile_is_longtail():
    assert profile_counts("exp", 5000, 10, 100) == longtail_counts(5000, 10, 100)


@pytest.mark.parametrize(
    ("profile", "mu", "expected"),
    [
        ("step", 0.5, [100] * 5 + [10] * 5),
        ("step", 0.3, [100] * 7 + [10] * 3),
        ("step", 0.25, [100] * 7 + [10] * 3),  # 2.5 minority classes round half up to 3
        ("step", 0.9, [100] + [10] * 9),
        ("single_majority", 0.5, [100] + [10] * 9),
        ("two_majority", 0.5, [100] * 2 + [10] * 8),
    ],
)
def test_profile_counts(profile, mu, expected):
    assert profile_counts(profile, 100, 10, 10.0, step_fraction=mu) == expected


def test_minority_is_int_of_n_max_over_ratio():
    assert profile_counts("single_majority", 99, 3, 10.0) == [99, 9, 9]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_is_balanced_at_ratio_one(profile):
    assert profile_counts(profile, 50, 10, 1.0, step_fraction=0.7) == [50] * 10


def test_unknown_profile_and_bad_fraction():
    with pytest.raises(ValueError, match="unknown imbalance profile 'linear'"):
        profile_counts("linear", 10, 3, 2.0)
    with pytest.raises(ValueError, match="step_fraction"):
        profile_counts("step", 10, 3, 2.0, step_fraction=1.5)


def _dataset(counts):
    empty = torch.empty(0)
    return Dataset(empty, empty, empty, empty, len(counts), (1,), counts)


@pytest.mark.parametrize(
    ("profile", "mu", "minority"),
    [
        ("exp", 0.5, [5, 6, 7, 8, 9]),
        ("step", 0.5, [5, 6, 7, 8, 9]),
        ("step", 0.8, [2, 3, 4, 5, 6, 7, 8, 9]),
        ("step", 0.2, [8, 9]),
        ("single_majority", 0.5, list(range(1, 10))),
        ("two_majority", 0.5, list(range(2, 10))),
    ],
)
def test_minority_classes_are_the_trained_minority_under_every_profile(profile, mu, minority):
    counts = profile_counts(profile, 100, 10, 10.0, step_fraction=mu)
    assert _dataset(counts).minority_classes == minority
    assert _dataset(profile_counts(profile, 100, 10, 1.0)).minority_classes == []


def test_build_dataset_follows_the_trials_profile(make_trial):
    trial = make_trial(imbalance_ratio=10.0, train_per_class=100)
    if not hasattr(trial, "imbalance_profile"):
        pytest.skip("Trial has no imbalance_profile field yet")
    trial = dataclasses.replace(trial, imbalance_profile="two_majority")
    data = build_dataset(trial)
    assert data.class_counts == [100, 100] + [10] * 8
    assert torch.bincount(data.y_train, minlength=10).tolist() == data.class_counts
    assert torch.bincount(data.y_val).tolist() == [100] * 10  # val is never imbalanced
