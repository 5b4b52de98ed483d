"""The baselines the report compares with: library k-folds and a seeded random group split."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.splitting.baselines import library_folds, random_group_folds

RNG = np.random.default_rng(5)
Y = (RNG.random((120, 6)) < np.array([0.5, 0.3, 0.2, 0.1, 0.05, 0.6])).astype(np.uint8)


def test_library_folds_cover_each_image_of_the_rest_once() -> None:
    """Both baselines: a fold in 0..k-1 for every image in ``rest``, -1 for the others."""
    rest = np.ones(len(Y), bool)
    rest[::7] = False  # a held-out test part
    out = library_folds(Y, 4, 42, rest)
    assert set(out) == {"multilabel_stratified_kfold", "kfold"}
    for name, (fold, seconds) in out.items():
        assert fold.shape == (len(Y),) and fold.dtype == np.int64
        assert (fold[~rest] == -1).all(), name
        assert set(fold[rest].tolist()) == {0, 1, 2, 3}, name
        sizes = np.bincount(fold[rest], minlength=4)
        assert sizes.max() - sizes.min() <= 1, name
        assert seconds >= 0


def test_library_folds_follow_the_seed() -> None:
    """The same seed gives the same folds, another seed other folds."""
    rest = np.ones(len(Y), bool)
    first, again = library_folds(Y, 5, 1, rest), library_folds(Y, 5, 1, rest)
    other = library_folds(Y, 5, 2, rest)
    for name in first:
        assert np.array_equal(first[name][0], again[name][0])
        assert not np.array_equal(first[name][0], other[name][0])


def test_stratified_baseline_balances_labels_better_than_kfold() -> None:
    """What the baseline is there for: per-label counts per fold nearly equal."""
    y = (np.random.default_rng(0).random((400, 5)) < [0.4, 0.2, 0.1, 0.05, 0.03]).astype(np.uint8)
    out = library_folds(y, 5, 3, np.ones(len(y), bool))

    def spread(fold: np.ndarray) -> int:
        per_fold = np.stack([y[fold == k].sum(0) for k in range(5)])
        return int((per_fold.max(0) - per_fold.min(0)).sum())

    assert spread(out["multilabel_stratified_kfold"][0]) < spread(out["kfold"][0])
    assert spread(out["multilabel_stratified_kfold"][0]) <= 2 * y.shape[1]


groups_strategy = st.lists(st.sampled_from([f"g{i}" for i in range(12)]), min_size=1, max_size=80)


@settings(max_examples=100, deadline=None)
@given(groups=groups_strategy, n_splits=st.integers(2, 6), seed=st.integers(0, 2**32 - 1))
def test_random_group_folds_keep_groups_whole_and_balance_images(
    groups: list[str], n_splits: int, seed: int
) -> None:
    """Each group in one fold; folds differ by at most the largest group (greedy, largest first)."""
    fold = random_group_folds(groups, n_splits, seed)
    assert fold.shape == (len(groups),) and ((fold >= 0) & (fold < n_splits)).all()
    for g in set(groups):
        assert len(set(fold[[x == g for x in groups]].tolist())) == 1
    sizes = np.bincount(fold, minlength=n_splits)
    largest = max(groups.count(g) for g in set(groups))
    assert sizes.max() - sizes.min() <= largest


@settings(max_examples=50, deadline=None)
@given(groups=groups_strategy, seed=st.integers(0, 1000), data=st.data())
def test_group_to_fold_does_not_depend_on_image_order(
    groups: list[str], seed: int, data: st.DataObject
) -> None:
    """Shuffling the images moves no group: the split is a function of the groups and seed."""
    order = data.draw(st.permutations(range(len(groups))))
    first = dict(zip(groups, random_group_folds(groups, 3, seed).tolist(), strict=True))
    shuffled = [groups[i] for i in order]
    second = dict(zip(shuffled, random_group_folds(shuffled, 3, seed).tolist(), strict=True))
    assert first == second


def test_randomness_comes_only_from_the_seed() -> None:
    """The global numpy generator has no say; the seed has."""
    groups = [f"g{i % 30}" for i in range(200)]
    np.random.seed(1)  # noqa: NPY002 - the legacy global generator is what must not matter
    a = random_group_folds(groups, 5, 7)
    np.random.seed(2)  # noqa: NPY002
    np.random.random(10)  # noqa: NPY002
    assert np.array_equal(a, random_group_folds(groups, 5, 7))
    seeds = {tuple(random_group_folds(groups, 5, s).tolist()) for s in range(6)}
    assert len(seeds) > 1


@pytest.mark.parametrize("n_splits", [2, 5])
def test_fewer_groups_than_folds_or_one_group(n_splits: int) -> None:
    """Fewer groups than folds is no error: groups stay whole, folds may be empty."""
    assert random_group_folds(["a"] * 4, n_splits, 0).tolist() == [0] * 4
    fold = random_group_folds(["a", "b", "a"], n_splits, 0)
    assert fold[0] == fold[2] != fold[1]


def test_largest_seed_the_schema_accepts_runs() -> None:
    """split.seed is bounded at 2**32 - 1 (params.MAX_SEED): the baselines take it."""
    from pipeline.files.params import MAX_SEED

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(30, 3))
    rest = np.ones(30, dtype=bool)
    for fold, _ in library_folds(y, 3, MAX_SEED, rest).values():
        assert sorted(set(fold.tolist())) == [0, 1, 2]
    assert random_group_folds([str(i % 6) for i in range(30)], 3, MAX_SEED).shape == (30,)
    with pytest.raises(ValueError):
        library_folds(y, 3, MAX_SEED + 1, rest)
