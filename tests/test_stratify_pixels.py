"""pipeline.splitting.stratify's pixel-share term (``pixel_weight`` with ``pixels``): it lowers the
folds' pixel-share deviation, its rank-one features are exact, it is deterministic and keeps the
split's invariants (groups whole, sizes, pinned groups)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.splitting.kfold import MultilabelStratifiedGroupKFold
from pipeline.splitting.quality import label_distribution, split_quality
from pipeline.splitting.stratify import StratifySettings, _Features


def rel_deviation(pixels: np.ndarray, labelled: np.ndarray, folds: np.ndarray, k: int) -> float:
    """Mean over folds and classes of |fold share / whole-set share - 1| (the report's)."""
    onehot = np.eye(k)[folds].T
    share = (onehot @ pixels) / (onehot @ labelled)[:, None]
    share_all = pixels.sum(0) / labelled.sum()
    return float(np.abs(share / share_all - 1).mean())


def constructed(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y, groups, pixels, labelled): 300 images in pairs; every image holds the same two
    classes, so labels say nothing about pixels, whose areas are heavy-tailed."""
    rng = np.random.default_rng(seed)
    n = 300
    y = np.ones((n, 2), dtype=int)
    y[:, 1] = rng.random(n) < 0.5
    pixels = np.zeros((n, 2))
    pixels[:, 0] = rng.pareto(1.2, n) * 2000 + 100
    pixels[:, 1] = y[:, 1] * (rng.pareto(1.5, n) * 1000 + 50)
    labelled = pixels.sum(axis=1) + 50_000.0
    return y, np.arange(n) // 2, pixels, labelled


def folds_of(y, groups, pixels, labelled, weight, seed=3, fixed=None):  # noqa: ANN001, ANN201
    cv = MultilabelStratifiedGroupKFold(
        5, random_state=seed, settings=StratifySettings(pixel_weight=weight)
    )
    return cv.fold_assignment(y, groups, fixed, pixels, labelled)


def test_pixel_term_lowers_pixel_share_deviation() -> None:
    y, groups, pixels, labelled = constructed()
    plain = folds_of(y, groups, pixels, labelled, 0.0)
    weighted = folds_of(y, groups, pixels, labelled, 1.0)
    before = rel_deviation(pixels, labelled, plain, 5)
    after = rel_deviation(pixels, labelled, weighted, 5)
    assert after < 0.7 * before
    # labels stay balanced: the only label that varies costs little
    assert label_distribution(y, weighted, 5) <= label_distribution(y, plain, 5) * 1.5 + 0.01
    assert split_quality(y, weighted, groups=groups, n_folds=5)["group_leakage"] == 0
    assert np.bincount(weighted, minlength=5).tolist() == [60] * 5


def test_without_pixels_or_at_weight_zero_the_folds_do_not_change() -> None:
    """The term is opt-in per call: labels-only callers keep their (published) folds."""
    y, groups, pixels, labelled = constructed(1)
    labels_only = MultilabelStratifiedGroupKFold(5, random_state=3).fold_assignment(y, groups)
    assert (folds_of(y, groups, None, None, 1.0) == labels_only).all()
    assert (folds_of(y, groups, pixels, labelled, 0.0) == labels_only).all()


def test_pixel_term_is_deterministic() -> None:
    y, groups, pixels, labelled = constructed(2)
    first = folds_of(y, groups, pixels, labelled, 1.0)
    assert (first == folds_of(y, groups, pixels.copy(), labelled.copy(), 1.0)).all()
    assert (first != folds_of(y, groups, pixels, labelled, 1.0, seed=4)).any()


def test_labelled_defaults_to_the_row_sums() -> None:
    y, groups, pixels, _ = constructed(3)
    assert (
        folds_of(y, groups, pixels, None, 1.0) == folds_of(y, groups, pixels, pixels.sum(1), 1.0)
    ).all()


def test_pinned_groups_keep_their_fold_with_pixels() -> None:
    y, groups, pixels, labelled = constructed(4)
    before = folds_of(y, groups, pixels, labelled, 1.0)
    fixed = np.where(np.arange(300) < 200, before, -1)
    after = folds_of(y, groups, pixels, labelled, 1.0, seed=9, fixed=fixed)
    assert (after[:200] == before[:200]).all()
    assert split_quality(y, after, groups=groups, n_folds=5)["group_leakage"] == 0


@pytest.mark.parametrize(
    ("pixels", "labelled", "match"),
    [
        (np.ones((5, 2)), None, "n_samples=6"),
        (-np.ones((6, 2)), None, "non-negative"),
        (np.full((6, 2), np.nan), None, "finite"),
        (np.ones((6, 2)), np.ones(5), "one value per sample"),
        (None, np.ones(6), "labelled needs pixels"),
    ],
)
def test_pixel_input_errors(pixels, labelled, match) -> None:  # noqa: ANN001
    y = np.eye(2, dtype=int)[np.arange(6) % 2]
    with pytest.raises(ValueError, match=match):
        MultilabelStratifiedGroupKFold(2).fold_assignment(y, None, None, pixels, labelled)


def test_pixel_weight_is_checked() -> None:
    with pytest.raises(ValueError, match="pixel_weight must be >= 0"):
        StratifySettings(pixel_weight=-1.0)
    cv = MultilabelStratifiedGroupKFold(settings=StratifySettings(pixel_weight=2.0))
    assert cv.settings.pixel_weight == 2.0


def test_rank_one_features_match_the_dense_matrix() -> None:
    """Every product the search takes from ``X + r v^T`` equals the dense one."""
    rng = np.random.default_rng(0)
    X = sp.random(40, 7, density=0.3, random_state=1, format="csr")
    r, v = rng.normal(size=40), rng.normal(size=7)
    E = rng.normal(size=(3, 7))
    feats = _Features(X, E, r, v)
    dense = X.toarray() + np.outer(r, v)
    M = rng.normal(size=(2, 7))
    fold = rng.integers(0, 3, 40)
    onehot = sp.csr_matrix((np.ones(40), (fold, np.arange(40))), shape=(3, 40))
    cand = np.array([3, 17, 5, 30])
    sign = np.array([1.0, -1.0, 0.0, 1.0])
    np.testing.assert_allclose(feats.dot(M), M @ dense.T)
    np.testing.assert_allclose(feats.fold_sums(onehot), onehot @ dense)
    np.testing.assert_allclose(feats.norms2(), (dense**2).sum(1))
    _, gram = feats.gram(cand)
    np.testing.assert_allclose(gram, dense[cand] @ dense[cand].T)
    np.testing.assert_allclose(feats.signed_sum(X[cand], cand, sign), dense[cand].T @ sign)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(6, 60),
    q=st.integers(1, 4),
    c=st.integers(1, 4),
    k=st.integers(2, 5),
    group_size=st.integers(1, 3),
    weight=st.sampled_from([0.5, 1.0, 10.0]),
    seed=st.integers(0, 2**16),
)
def test_invariants_with_pixels(
    n: int, q: int, c: int, k: int, group_size: int, weight: float, seed: int
) -> None:
    """With pixels, as without: every sample in one fold, no empty fold, groups whole, fold
    sizes as even as the groups allow, same folds from the same inputs."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, q)) < rng.uniform(0.05, 0.9, size=q)).astype(int)
    pixels = (rng.random((n, c)) < 0.5) * rng.integers(0, 5000, (n, c))
    labelled = pixels.sum(1) + rng.integers(0, 3000, n)
    groups = rng.permutation(n) // group_size if group_size > 1 else None
    n_groups = n if groups is None else len(np.unique(groups))
    if k > n_groups:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cv = MultilabelStratifiedGroupKFold(
            k, random_state=seed, settings=StratifySettings(pixel_weight=weight)
        )
        folds = cv.fold_assignment(y, groups, None, pixels, labelled)
        again = cv.fold_assignment(y, groups, None, pixels, labelled)
    assert folds.shape == (n,) and set(folds.tolist()) <= set(range(k))
    assert (folds == again).all()
    sizes = np.bincount(folds, minlength=k)
    assert (sizes > 0).all()
    assert split_quality(y, folds, groups=groups, n_folds=k)["group_leakage"] == 0
    if groups is None:
        assert sizes.max() - sizes.min() <= 1
    else:
        assert sizes.max() - sizes.min() <= 2 * group_size
