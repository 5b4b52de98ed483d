"""Split-quality metrics: exact values on hand-computed examples, plus properties."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.splitting.quality import (
    distribution_bounds,
    entry_deviation,
    examples_distribution,
    group_leakage,
    label_distribution,
    label_pair_distribution,
    optimal_counts,
    split_quality,
)

# 4 samples, 2 labels, 2 folds of 2 (computed by hand in the comments below)
Y = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
FOLDS = np.array([0, 0, 1, 1])


def test_ld_hand_computed() -> None:
    # label 0: D ratio 2/2=1; fold 0 all positive -> fraction |2/2-2/4|=0.5; fold 1 |0-1|=1
    # label 1: fold 0 1/1=1, fold 1 1/1=1 -> 0, 0.  LD = (0.5+1+0+0)/4
    assert label_distribution(Y, FOLDS) == pytest.approx(0.375)


def test_entry_deviation_falls_back_to_fractions() -> None:
    """The per-(fold, item) term the splitter aims at: ratios, or fractions where undefined."""
    # fold of 4 with 1 positive, set of 8 with 4: |1/3 - 4/4|
    assert entry_deviation(1, 4, 4, 8) == pytest.approx(2 / 3)
    # every sample of the fold positive: |2/2 - 4/8|; an empty fold counts as fraction 0
    assert entry_deviation(2, 2, 4, 8) == pytest.approx(0.5)
    assert entry_deviation(0, 0, 4, 8) == pytest.approx(0.5)
    # broadcasts like the metrics use it: counts (k x m), sizes (k x 1), totals (1 x m)
    dev = entry_deviation(np.array([[1, 2]]), np.array([[4]]), np.array([[4, 4]]), 8)
    assert dev.shape == (1, 2)
    assert label_distribution(Y, FOLDS) == pytest.approx(
        entry_deviation(np.array([[2, 1], [0, 1]]), np.array([[2], [2]]), Y.sum(axis=0), 4).mean()
    )


def test_lpd_hand_computed() -> None:
    # pair (0,1) occurs once: D ratio 1/3; fold 0 |1/1-1/3|, fold 1 |0-1/3| -> mean 1/2
    assert label_pair_distribution(Y, FOLDS) == pytest.approx(0.5)


def test_split_quality_hand_computed() -> None:
    q = split_quality(Y, FOLDS, groups=[0, 1, 1, 2])
    assert q["LD"] == pytest.approx(0.375)
    assert q["LPD"] == pytest.approx(0.5)
    assert q["ED"] == 0.0
    assert q["FZ"] == 1 and q["FLZ"] == 1  # label 0 has no positive in fold 1
    # expected positives per fold = 1 for both labels; label 0 is off by 1 in both folds
    assert q["relPosDev"] == pytest.approx(0.5)
    assert q["maxRelPosDev"] == pytest.approx(1.0)
    assert q["group_leakage"] == 1  # group 1 = samples 1 and 2, folds 0 and 1
    assert q["fold_sizes"] == [2, 2]
    json.dumps(q)  # JSON-serialisable


def test_ed_and_heldout_ignored() -> None:
    assert examples_distribution([0, 0, 0, 1]) == pytest.approx(1.0)  # sizes 3,1 vs 2
    # -1 = held-out test part: not counted anywhere
    q = split_quality(np.vstack([Y, [[1, 1]]]), np.append(FOLDS, -1))
    assert q["LD"] == pytest.approx(0.375) and q["fold_sizes"] == [2, 2]


def test_pixel_share_hand_computed() -> None:
    px = np.array([[10, 0], [5, 5], [0, 10], [0, 0]])
    q = split_quality(Y, FOLDS, pixel_share=px, label_names=["a", "b"])
    psd = q["pixel_share_deviation"]
    # fold 0 shares (0.75, 0.25), fold 1 (0, 1), overall (0.5, 0.5)
    assert psd["mean"] == pytest.approx(0.375)
    assert psd["max"] == pytest.approx(0.5)
    assert psd["per_fold"][0]["share"] == {"a": 0.75, "b": 0.25}
    json.dumps(q)


def test_group_leakage_none_and_counts() -> None:
    assert group_leakage(FOLDS, None) == 0
    assert group_leakage([0, 0, 1, 1], ["a", "a", "b", "b"]) == 0
    assert group_leakage([0, 1, 1, 0], ["a", "a", "b", "b"]) == 2


def test_perfect_split_is_zero_and_counts_are_labels() -> None:
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    q = split_quality(y, [0, 0, 1, 1])
    assert q["LD"] == 0 and q["ED"] == 0 and q["FLZ"] == 0 and q["maxRelPosDev"] == 0
    assert split_quality(y * 7, [0, 0, 1, 1])["LD"] == 0  # counts > 0 are positives


def test_optimal_counts_prefers_grouped_negatives_for_universal_label() -> None:
    # 3 negatives among 191: LD is lowest when the negatives share folds (3 folds all
    # positive use the near-zero fraction term) instead of one negative in each of 3
    sizes = np.array([38, 38, 38, 39, 38])
    counts, cost = optimal_counts(sizes, np.array([188.0]), 191)
    assert counts[:, 0].sum() == 188 and int((counts[:, 0] == sizes).sum()) >= 3
    folds = np.repeat(np.arange(5), sizes)  # one negative in each of folds 0, 1, 2
    y = np.ones((191, 1))
    y[[0, 38, 76]] = 0
    assert cost[0] < 5 * label_distribution(y, folds)
    counts, _ = optimal_counts(np.array([10, 10]), np.array([7.0]), 20)
    assert sorted(counts[:, 0].tolist()) == [3, 4]  # ordinary label: floor/ceil


@settings(max_examples=40, deadline=None)
@given(
    st.integers(4, 40).flatmap(
        lambda n: st.tuples(
            st.lists(st.lists(st.integers(0, 1), min_size=3, max_size=3), min_size=n, max_size=n),
            st.lists(st.integers(0, 2), min_size=n, max_size=n),
        )
    )
)
def test_metric_properties(data: tuple[list[list[int]], list[int]]) -> None:
    y, folds = np.array(data[0]), np.array(data[1])
    q = split_quality(y, folds, n_folds=3)
    assert q["LD"] >= 0 and q["LPD"] >= 0 and q["ED"] >= 0
    assert sum(q["fold_sizes"]) == len(y)
    assert 0 <= q["FZ"] <= 3 and q["FZ"] <= q["FLZ"] <= 3 * y.shape[1]
    b = distribution_bounds(y, q["fold_sizes"])
    assert b["LD"] <= q["LD"] + 1e-12 and b["LPD"] <= q["LPD"] + 1e-12
    assert b["maxRelPosDev"] <= q["maxRelPosDev"] + 1e-12
    # relabelling folds does not change anything
    q2 = split_quality(y, (folds + 1) % 3, n_folds=3)
    assert q2["LD"] == pytest.approx(q["LD"]) and q2["LPD"] == pytest.approx(q["LPD"])


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 30).flatmap(
        lambda n: st.tuples(
            st.lists(st.lists(st.integers(0, 3), min_size=4, max_size=4), min_size=n, max_size=n),
            st.lists(st.integers(-1, 2), min_size=n, max_size=n),
            st.floats(0.01, 5.0),
        )
    )
)
def test_every_dtype_of_y_counts_the_same_positives(
    data: tuple[list[list[int]], list[int], float],
) -> None:
    """Counts come from a boolean matrix of positives whatever ``y`` is: counts, 0/1 bytes,
    booleans or positive floats give the same metrics, bit for bit, as the 0/1 float matrix
    a NumPy user would pass (the reference: a plain float copy made here)."""
    counts, folds, scale = np.array(data[0]), np.array(data[1]), data[2]
    reference = split_quality((counts > 0).astype(np.float64), folds, n_folds=3)
    for y in (counts, counts.astype(np.uint8), counts > 0, counts * scale):
        assert split_quality(y, folds, n_folds=3) == reference
