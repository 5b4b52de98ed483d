"""pipeline.splitting.kfold: scikit-learn's face of the splitter gives the folds that
``stratify.fold_assignment`` chooses, through the cross-validator API."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.multioutput import MultiOutputClassifier

from pipeline.splitting.kfold import MultilabelStratifiedGroupKFold
from pipeline.splitting.stratify import fold_assignment
from tests.test_stratify import powerlaw


def test_split_partitions_and_folds_match() -> None:
    y = powerlaw(300, 6, 0)
    cv = MultilabelStratifiedGroupKFold(5, random_state=1)
    folds = cv.fold_assignment(y)
    seen = np.zeros(300, dtype=int)
    for f, (train, test) in enumerate(cv.split(np.zeros((300, 2)), y)):
        assert train.dtype.kind == "i" and test.dtype.kind == "i"
        assert np.intersect1d(train, test).size == 0 and train.size + test.size == 300
        assert (folds[test] == f).all()
        seen[test] += 1
    assert (seen == 1).all()
    assert cv.get_n_splits() == 5


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(8, 60),
    q=st.integers(1, 5),
    k=st.integers(2, 4),
    seed=st.integers(0, 2**16),
    grouped=st.booleans(),
)
def test_the_function_and_the_cross_validator_agree(
    n: int, q: int, k: int, seed: int, grouped: bool
) -> None:
    """The split stage calls ``fold_assignment`` (no scikit-learn); trainers use the class.
    Same folds, and the function's warnings are what the class warns and records."""
    y = powerlaw(n, q, seed)
    groups = np.arange(n) // 3 if grouped else None
    folds, notes = fold_assignment(y, groups, k, random_state=seed)
    cv = MultilabelStratifiedGroupKFold(k, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expected = cv.fold_assignment(y, groups)
    assert np.array_equal(folds, expected)
    assert notes == cv.warnings_ == [str(w.message) for w in caught]


def test_an_import_from_the_old_place_says_where_the_cross_validator_is() -> None:
    """It moved to ``kfold`` (scikit-learn is imported there, not by the split stage)."""
    from pipeline.splitting import stratify

    with pytest.raises(ImportError, match="moved to pipeline.splitting.kfold"):
        from pipeline.splitting.stratify import MultilabelStratifiedGroupKFold  # noqa: F401
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        stratify.nothing  # noqa: B018


def test_sklearn_integration() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    Y = powerlaw(120, 3, 1)
    Y[:5] = 1  # every label has both classes in every training set
    Y[5:10] = 0
    groups = np.repeat(np.arange(60), 2)
    cv = MultilabelStratifiedGroupKFold(3, random_state=0)
    scores = cross_val_score(LogisticRegression(), X, Y[:, 0], cv=cv.split(X, Y, groups))
    assert scores.shape == (3,)
    est = MultiOutputClassifier(LogisticRegression())
    assert cross_val_score(est, X, Y, cv=cv, groups=groups).shape == (3,)


def test_split_length_mismatch() -> None:
    with pytest.raises(ValueError, match="must match"):
        list(MultilabelStratifiedGroupKFold(2).split(np.zeros((5, 1)), np.ones((4, 1))))
