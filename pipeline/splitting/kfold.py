"""scikit-learn's face of the splitter: :class:`MultilabelStratifiedGroupKFold`.

The folds are chosen by :func:`pipeline.splitting.stratify.fold_assignment`; this class gives
them scikit-learn's cross-validator API (``split``, ``get_n_splits``, metadata routing of
``groups``) for trainers and notebooks. It lives apart because importing scikit-learn costs
about a second, which the split stage does not need to pay.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.model_selection import BaseCrossValidator

try:  # lets sklearn's metadata routing pass `groups` through; private, so optional
    from sklearn.model_selection._split import GroupsConsumerMixin
except ImportError:  # pragma: no cover - other scikit-learn versions

    class GroupsConsumerMixin:  # type: ignore[no-redef]
        """Stand-in when scikit-learn does not provide the mixin."""


from sklearn.utils.validation import _num_samples

from pipeline.splitting.stratify import (
    _DEFAULTS,
    RandomStateLike,
    StratifySettings,
    check_options,
    fold_assignment,
)

__all__ = ["MultilabelStratifiedGroupKFold"]


class MultilabelStratifiedGroupKFold(GroupsConsumerMixin, BaseCrossValidator):
    """Multilabel stratified K-fold with non-overlapping groups.

    Each group appears in exactly one test fold. Folds preserve the frequency of every
    label and of every co-occurring label pair as closely as the groups allow, and fold
    sizes are as equal as the groups allow (without groups they differ by at most one).

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds. Must be at least 2.
    shuffle : bool, default=True
        Randomise the order in which equally rare groups are placed and fold pairs are
        refined. With ``False`` the input order is used; ties between folds are still
        broken by ``random_state``, so ``random_state`` always has an effect.
    random_state : int, numpy Generator, RandomState or None, default=None
        Seed of the local generator. Pass an int for reproducible folds.
    settings : StratifySettings, default=StratifySettings()
        What the local search balances and how long it looks: label-pair weight, rare-label
        weight, fold-size weight, candidates per step, sweeps, and ``pixel_weight`` (used
        only when ``fold_assignment`` is given ``pixels``). The same object configures
        :func:`holdout_split`, so a pipeline builds it once.

    Attributes
    ----------
    warnings_ : list of str
        Warnings of the last ``fold_assignment``/``split`` call (labels that cannot be in
        every fold), for reports.

    Examples
    --------
    >>> import numpy as np
    >>> from pipeline.splitting.kfold import MultilabelStratifiedGroupKFold
    >>> Y = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1], [1, 1], [0, 0], [0, 0]])
    >>> groups = np.array([0, 0, 1, 2, 3, 4, 5, 6])
    >>> cv = MultilabelStratifiedGroupKFold(n_splits=2, random_state=0)
    >>> cv.get_n_splits()
    2
    >>> folds = cv.fold_assignment(Y, groups)
    >>> sorted(np.bincount(folds).tolist())
    [4, 4]
    >>> bool(folds[0] == folds[1])  # samples of group 0 stay together
    True
    >>> for train, test in cv.split(np.zeros((8, 1)), Y, groups):
    ...     assert not set(groups[train]) & set(groups[test])
    """

    def __init__(
        self,
        n_splits: int = 5,
        *,
        shuffle: bool = True,
        random_state: RandomStateLike = None,
        settings: StratifySettings = _DEFAULTS,
    ) -> None:
        self.n_splits = check_options(n_splits, shuffle, settings)
        self.shuffle = shuffle
        self.random_state = random_state
        self.settings = settings
        self.warnings_: list[str] = []

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of folds (``n_splits``); the arguments exist for API compatibility."""
        return self.n_splits

    def fold_assignment(
        self,
        y: Any,
        groups: Any = None,
        fixed: Any = None,
        pixels: Any = None,
        labelled: Any = None,
    ) -> np.ndarray:
        """Test-fold index (0..n_splits-1) of every sample, as
        :func:`pipeline.splitting.stratify.fold_assignment` chooses it (``fixed``, ``pixels``
        and ``labelled`` as there); its warnings are issued and recorded in ``warnings_``."""
        folds, self.warnings_ = fold_assignment(
            y,
            groups,
            self.n_splits,
            shuffle=self.shuffle,
            random_state=self.random_state,
            settings=self.settings,
            fixed=fixed,
            pixels=pixels,
            labelled=labelled,
        )
        for msg in self.warnings_:
            warnings.warn(msg, UserWarning, stacklevel=2)
        return folds

    def split(self, X: Any, y: Any, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_idx, test_idx)`` integer arrays, one pair per fold.

        ``y`` is an (n_samples x n_labels) indicator/count matrix or 1-D class labels;
        ``X`` is only used for its length.
        """
        n = _num_samples(X)
        y_n = y.shape[0] if hasattr(y, "shape") else len(y)
        if n != y_n:
            raise ValueError(f"X has {n} samples but y has {y_n}; they must match")
        folds = self.fold_assignment(y, groups)
        indices = np.arange(n)
        for f in range(self.n_splits):
            test = folds == f
            yield indices[~test], indices[test]

    def _iter_test_masks(self, X: Any = None, y: Any = None, groups: Any = None) -> Iterator:
        folds = self.fold_assignment(y, groups)
        for f in range(self.n_splits):
            yield folds == f
