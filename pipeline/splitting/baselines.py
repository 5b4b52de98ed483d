"""The splits ours is compared with, made in one place: what a team would otherwise use.

- ``multilabel_stratified_kfold``: iterative-stratification's MultilabelStratifiedKFold (no
  groups), the usual choice for multilabel data;
- ``kfold``: scikit-learn's shuffled KFold;
- :func:`random_group_folds`: a seeded random group-aware split (GroupKFold on shuffled
  groups), what merely keeping groups together gives, for the report's fold-balance figure.

All take their randomness from the seed they are given (and a salt naming their use), never
from a global generator.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence

import numpy as np

__all__ = ["library_folds", "random_group_folds"]

# Salt of the random baseline's seed: randomness comes from (seed, use), never a global rng.
_RANDOM_GROUP_SALT = zlib.crc32(b"report")


def library_folds(
    y: np.ndarray, n_splits: int, seed: int, rest: np.ndarray
) -> dict[str, tuple[np.ndarray, float]]:
    """Fold per image (-1 outside ``rest``) and seconds taken, per library baseline.

    The libraries are imported here, not at module import: a split whose baselines are
    reused from the item store needs neither.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
    from sklearn.model_selection import KFold

    out: dict[str, tuple[np.ndarray, float]] = {}
    idx = np.flatnonzero(rest)
    for name, cv in (
        (
            "multilabel_stratified_kfold",
            MultilabelStratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed),
        ),
        ("kfold", KFold(n_splits=n_splits, shuffle=True, random_state=seed)),
    ):
        fold = np.full(y.shape[0], -1, dtype=np.int64)
        start = time.perf_counter()
        for k, (_, test) in enumerate(cv.split(np.zeros((idx.size, 1)), y[idx])):
            fold[idx[test]] = k
        out[name] = (fold, time.perf_counter() - start)
    return out


def random_group_folds(groups: Sequence[str], n_splits: int, seed: int) -> np.ndarray:
    """A seeded random group-aware split.

    Groups are shuffled, then assigned largest first to the fold with the fewest images
    (ties between equal-size groups fall in the shuffled order): GroupKFold on shuffled groups.
    """
    names, inverse, sizes = np.unique(
        np.asarray(groups, dtype=str), return_inverse=True, return_counts=True
    )
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _RANDOM_GROUP_SALT]))
    order = rng.permutation(names.size)
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(n_splits, dtype=np.int64)
    fold_of_group = np.empty(names.size, dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    return fold_of_group[inverse.ravel()]
