"""pipeline.splitting.stratify and kfold: fold_assignment, MultilabelStratifiedGroupKFold and
holdout_split, their settings, API, validation, invariants and pinned results."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.splitting.kfold import MultilabelStratifiedGroupKFold
from pipeline.splitting.quality import distribution_bounds, split_quality
from pipeline.splitting.stratify import StratifySettings, holdout_split


def powerlaw(n: int, q: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = 0.5 * (np.arange(q) + 1.0) ** -1.2
    y = rng.random((n, q)) < p
    y[:, 1:] |= y[:, :-1] & (rng.random((n, q - 1)) < 0.2)
    return y.astype(int)


def test_one_d_class_labels() -> None:
    y = np.array(["cat", "dog", "bird"] * 10)
    folds = MultilabelStratifiedGroupKFold(5, random_state=0).fold_assignment(y)
    for f in range(5):
        assert sorted(y[folds == f].tolist()) == ["bird", "bird", "cat", "cat", "dog", "dog"]


def test_counts_are_positives() -> None:
    y = powerlaw(100, 4, 2)
    cv = MultilabelStratifiedGroupKFold(4, random_state=3)
    assert (cv.fold_assignment(y * 17) == cv.fold_assignment(y)).all()


def test_deterministic_and_seed_dependent() -> None:
    y = powerlaw(200, 5, 3)
    groups = np.arange(200) // 3
    a = MultilabelStratifiedGroupKFold(5, random_state=7).fold_assignment(y, groups)
    b = MultilabelStratifiedGroupKFold(5, random_state=7).fold_assignment(y, groups)
    c = MultilabelStratifiedGroupKFold(5, random_state=8).fold_assignment(y, groups)
    assert (a == b).all() and (a != c).any()
    # group ids by value, not by object identity/order of appearance
    names = np.array([f"g{g:03d}" for g in groups], dtype=object)
    d = MultilabelStratifiedGroupKFold(5, random_state=7).fold_assignment(y, names)
    assert (a == d).all()
    # shuffle=False is deterministic too and random_state still matters
    e1 = MultilabelStratifiedGroupKFold(5, shuffle=False, random_state=1).fold_assignment(y)
    e2 = MultilabelStratifiedGroupKFold(5, shuffle=False, random_state=1).fold_assignment(y)
    assert (e1 == e2).all()


def test_no_global_rng_use() -> None:
    y = powerlaw(100, 4, 4)
    # the legacy global RNG is exactly what must stay untouched
    np.random.seed(0)  # noqa: NPY002
    before = np.random.random()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002
    MultilabelStratifiedGroupKFold(5, random_state=0).fold_assignment(y)
    assert np.random.random() == before  # noqa: NPY002


def test_quality_no_worse_than_plain_and_at_ld_bound() -> None:
    y = powerlaw(600, 6, 5)
    folds = MultilabelStratifiedGroupKFold(5, random_state=0).fold_assignment(y)
    q = split_quality(y, folds)
    plain = MultilabelStratifiedGroupKFold(
        5, random_state=0, settings=StratifySettings(max_sweeps=0)
    ).fold_assignment(y)
    assert q["LPD"] <= split_quality(y, plain)["LPD"]
    assert q["LD"] == pytest.approx(distribution_bounds(y, q["fold_sizes"])["LD"])
    assert q["FLZ"] == 0 and max(q["fold_sizes"]) - min(q["fold_sizes"]) <= 1


@pytest.mark.parametrize(
    ("kwargs", "y", "groups", "match"),
    [
        ({"n_splits": 1}, None, None, "at least 2"),
        ({"n_splits": 2.5}, None, None, "integer"),
        ({"n_splits": 5}, np.ones((4, 2)), None, "greater than the number of samples"),
        ({"n_splits": 3}, np.ones((6, 2)), [0, 0, 0, 1, 1, 1], "number of groups"),
        ({"n_splits": 2}, np.zeros((0, 2)), None, "empty"),
        ({"n_splits": 2}, np.ones((4, 2)), [0, 1, 2], "groups has shape"),
        ({"n_splits": 2}, np.array([[1.0, np.nan]] * 4), None, "NaN"),
        ({"n_splits": 2}, np.array([[1, -1]] * 4), None, "negative"),
    ],
)
def test_validation_errors(kwargs, y, groups, match) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=match):
        MultilabelStratifiedGroupKFold(**kwargs).fold_assignment(y, groups)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pair_weight": -1.0}, "pair_weight must be >= 0"),
        ({"rare_weight": float("nan")}, "rare_weight must be >= 0"),
        ({"size_weight": -0.5}, "size_weight must be >= 0"),
        ({"n_candidates": 0}, "n_candidates must be >= 1"),
        ({"max_sweeps": -1}, "max_sweeps >= 0"),
    ],
)
def test_settings_errors(kwargs, match) -> None:  # noqa: ANN001
    """The settings check themselves, once, wherever they are used."""
    with pytest.raises(ValueError, match=match):
        StratifySettings(**kwargs)


def test_one_settings_object_reaches_the_cross_validator() -> None:
    """One route: the cross-validator takes the settings object the holdout takes (and
    shows it in its repr, as scikit-learn's splitters show their parameters)."""
    settings = StratifySettings(pair_weight=2.0, max_sweeps=3.0)
    cv = MultilabelStratifiedGroupKFold(3, settings=settings)
    assert cv.settings is settings and isinstance(cv.settings.max_sweeps, int)
    assert "settings=StratifySettings(pair_weight=2.0" in repr(cv)
    assert MultilabelStratifiedGroupKFold().settings == StratifySettings()
    with pytest.raises(TypeError, match="settings must be a StratifySettings"):
        MultilabelStratifiedGroupKFold(3, settings={"pair_weight": 2.0})


def test_settings_reach_the_holdout() -> None:
    """max_sweeps=0 is plain iterative stratification, for the holdout as for the folds."""
    y = powerlaw(400, 6, 8)
    groups = np.arange(400) // 2
    plain = holdout_split(y, groups, 0.25, 3, settings=StratifySettings(max_sweeps=0))
    searched = holdout_split(y, groups, 0.25, 3)
    assert (searched == holdout_split(y, groups, 0.25, 3, settings=StratifySettings())).all()
    assert (plain != searched).any()
    assert split_quality(y, searched)["LPD"] <= split_quality(y, plain)["LPD"]


def digest(folds: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(folds, dtype="<i8").tobytes()).hexdigest()[:16]


def test_results_are_pinned() -> None:
    """Folds are a published artefact: a refactor must not move a single sample.

    The digests were made when the splitter stopped depending on the CPU (ties broken by
    index, no np.power/BLAS in a decision); they must be the same on every machine. If one
    changes on purpose (a better algorithm), every user's folds.csv changes with it: say so
    in the changelog and update them.
    """
    cv = MultilabelStratifiedGroupKFold
    assert digest(cv(5, random_state=1).fold_assignment(powerlaw(300, 6, 0))) == "39e885c0baa31c24"
    grouped = cv(5, random_state=7).fold_assignment(powerlaw(200, 5, 3), np.arange(200) // 3)
    assert digest(grouped) == "0611fbf51612aa1d"
    plain = cv(4, shuffle=False, random_state=2, settings=StratifySettings(pair_weight=0.0))
    assert digest(plain.fold_assignment(powerlaw(150, 8, 9))) == "4722678fa72933a2"
    held = holdout_split(powerlaw(500, 5, 6), np.arange(500) // 2, 0.2, random_state=0)
    assert digest(held) == "5d72cb593172547a"


def test_a_grown_split_is_pinned() -> None:
    """A stable split (100 new samples placed around 500 pinned ones) is pinned too: the
    search over the movable groups alone gives what the search over all of them gave (the
    digests were made before it was restricted), with and without the pixel term."""
    y, groups = powerlaw(600, 7, 4), np.arange(600) // 2
    first = MultilabelStratifiedGroupKFold(5, random_state=3).fold_assignment(y[:500], groups[:500])
    fixed = np.concatenate([first, np.full(100, -1)])
    grown = MultilabelStratifiedGroupKFold(5, random_state=3).fold_assignment(y, groups, fixed)
    pixels = (powerlaw(600, 7, 5) * np.arange(1, 601)[:, None] % 997).astype(np.int64)
    weighted = MultilabelStratifiedGroupKFold(
        5, random_state=3, settings=StratifySettings(pixel_weight=1.0)
    ).fold_assignment(y, groups, fixed=fixed, pixels=pixels)
    assert (grown[:500] == first).all() and (weighted[:500] == first).all()
    assert digest(grown) == "0db37569b950a9e5"
    assert digest(weighted) == "f4194ea3e8cf4353"


def test_rare_label_warns_and_is_recorded() -> None:
    y = np.zeros((20, 3), dtype=int)
    y[:10, 0] = 1
    y[:2, 1] = 1  # 2 positives < 5 folds
    cv = MultilabelStratifiedGroupKFold(5, random_state=0)
    with pytest.warns(UserWarning) as caught:
        folds = cv.fold_assignment(y)
    assert any("label 1 has positives in only 2" in str(w.message) for w in caught)
    assert any("label 2 has no positive" in str(w.message) for w in caught)
    assert any("label 1" in w for w in cv.warnings_)
    assert any("label 2 has no positive" in w for w in cv.warnings_)
    assert len(set(folds[:2].tolist())) == 2  # the two positives are spread


def test_holdout_split() -> None:
    y = powerlaw(500, 5, 6)
    groups = np.arange(500) // 2
    mask = holdout_split(y, groups, test_fraction=0.2, random_state=0)
    assert mask.dtype == bool and abs(int(mask.sum()) - 100) <= 2
    assert all(len(set(mask[groups == g].tolist())) == 1 for g in range(250))
    frac = y[mask].mean(axis=0) / y.mean(axis=0)
    assert np.all(np.abs(frac - 1) < 0.25)
    assert (mask == holdout_split(y, groups, test_fraction=0.2, random_state=0)).all()
    assert not holdout_split(y, test_fraction=0.0).any()
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="test_fraction"):
            holdout_split(y, test_fraction=bad)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(6, 60),
    q=st.integers(1, 5),
    k=st.integers(2, 5),
    group_size=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_invariants(n: int, q: int, k: int, group_size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, q)) < rng.uniform(0.05, 0.9, size=q)).astype(int)
    groups = rng.permutation(n) // group_size if group_size > 1 else None
    n_groups = n if groups is None else len(np.unique(groups))
    if k > n_groups:
        return
    cv = MultilabelStratifiedGroupKFold(k, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        folds = cv.fold_assignment(y, groups)
        again = MultilabelStratifiedGroupKFold(k, random_state=seed).fold_assignment(y, groups)
    assert folds.shape == (n,) and set(folds.tolist()) <= set(range(k))
    assert (folds == again).all()
    sizes = np.bincount(folds, minlength=k)
    assert (sizes > 0).all()
    q_ = split_quality(y, folds, groups=groups, n_folds=k)
    assert q_["group_leakage"] == 0
    if groups is None:
        assert sizes.max() - sizes.min() <= 1 and q_["ED"] <= 1
    else:
        assert sizes.max() - sizes.min() <= 2 * group_size


@given(
    codes=st.lists(st.integers(0, 60), min_size=1, max_size=80),
    n_codes=st.sampled_from([61, 10**9]),
)
def test_dense_ranks_are_np_unique_without_the_sort(codes: list[int], n_codes: int) -> None:
    """Counting and sorting give the same ranks and counts (both the counted and the sorted
    path: a huge code range falls back to np.unique)."""
    from pipeline.splitting.stratify import _dense_ranks

    code = np.array(codes, dtype=np.int64)
    _, rank, counts = np.unique(code, return_inverse=True, return_counts=True)
    got_rank, got_counts = _dense_ranks(code, n_codes)
    assert got_rank.tolist() == rank.ravel().tolist()
    assert got_counts.tolist() == counts.tolist()
