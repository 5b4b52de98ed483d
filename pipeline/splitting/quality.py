"""Split-quality metrics for multilabel k-fold splits (pure, vectorised, JSON-ready).

Every function takes the label matrix ``y`` (n_samples x n_labels; values > 0 are
positives, so pixel or instance counts work as well as 0/1) and ``folds``, the fold
index of each sample. Samples with a negative fold (e.g. ``-1`` = held-out test part)
are ignored, so the metrics describe the cross-validation folds only.

Metrics follow the literature so numbers are comparable with published ones:

* LD  -- label distribution, Sechidis, Tsoumakas & Vlahavas (2011).
* LPD -- label-pair distribution, Szymanski & Kajdanowicz (2017).
* ED  -- examples distribution (fold-size balance), Sechidis et al. (2011).
* FZ / FLZ -- folds / (fold, label) pairs without a positive for a label that has some.

Division by zero in LD/LPD: the positive/negative ratio ``p / (n - p)`` is undefined
when every sample of a fold (or of the whole set) is positive. For such a (fold, label)
entry we fall back to the fraction formulation ``|p_fold / n_fold - P / N|`` (fractions
are always defined and equally 0 when both parts agree); an empty fold counts as
fraction 0. This keeps the metric finite and still 0 for a perfect split.

The numbers are published (reports/split_quality.json), so they are the same bits on every
CPU: counts are exact integers, other sums run in an order fixed by the shape (numpy's loops,
never BLAS, whose kernel and threads choose the order), and means use ``math.fsum``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "as_indicator",
    "fold_label_counts",
    "label_distribution",
    "label_pair_distribution",
    "examples_distribution",
    "distribution_bounds",
    "entry_deviation",
    "optimal_counts",
    "group_leakage",
    "pixel_share_deviation",
    "split_quality",
]


def as_indicator(y: Any) -> np.ndarray:
    """Return ``y`` as a 0/1 float matrix (n x L); 1-D class labels are one-hot encoded."""
    return _positives(y).astype(np.float64)


def _positives(y: Any) -> np.ndarray:
    """``y`` as a boolean matrix (n x L) of its positives: what every metric counts. Counts
    are summed from it as exact integers, so no float copy of ``y`` is made (three copies of
    230 MB per split at 121k images)."""
    arr = np.asarray(y)
    if arr.ndim == 1:
        _, inv = np.unique(arr, return_inverse=True)
        out = np.zeros((arr.shape[0], int(inv.max()) + 1 if arr.size else 0), dtype=bool)
        out[np.arange(arr.shape[0]), inv] = True
        return out
    if arr.ndim != 2:
        raise ValueError(f"y must be 1-D class labels or a 2-D label matrix, got {arr.ndim}-D")
    if arr.dtype.kind in "biu":  # no NaN to look for
        return arr > 0
    arr = arr.astype(np.float64, copy=False)
    if np.isnan(arr).any():
        raise ValueError("y contains NaN; labels must be finite non-negative numbers")
    return arr > 0


def _prepare(y: Any, folds: Any, n_folds: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep the samples with a fold >= 0; return (Y as booleans, folds, k)."""
    Y = _positives(y)
    f = np.asarray(folds).astype(np.int64).ravel()
    if f.shape[0] != Y.shape[0]:
        raise ValueError(f"folds has {f.shape[0]} entries but y has {Y.shape[0]} samples")
    keep = f >= 0
    k = int(f[keep].max()) + 1 if keep.any() else 0
    if n_folds is not None:
        if n_folds < k:
            raise ValueError(f"n_folds={n_folds} but folds uses fold index {k - 1}")
        k = int(n_folds)
    return Y[keep], f[keep], k


def _fold_sums(values: np.ndarray, folds: np.ndarray, k: int) -> np.ndarray:
    """Per fold, the column sums of its rows (k x columns), in an order fixed by the shape.

    Not a one-hot matrix product: BLAS would choose the order of the sum (and so its last
    bits) by CPU kernel and thread count, and these numbers are published.
    """
    out = np.zeros((k, values.shape[1]), dtype=values.dtype)
    for j in range(k):
        out[j] = values[folds == j].sum(axis=0)
    return out


def _label_counts(Y: np.ndarray, folds: np.ndarray, k: int) -> np.ndarray:
    """Positives per (fold, label) as exact integers (k x L)."""
    out = np.zeros((k, Y.shape[1]), dtype=np.int64)
    for j in range(k):
        out[j] = Y[folds == j].sum(axis=0, dtype=np.int64)
    return out


def _pair_totals(Y: np.ndarray | sp.csr_matrix) -> np.ndarray:
    """Samples per label pair (L x L) of a 0/1 matrix, exactly.

    A sparse integer product (scipy.sparse: plain loops over the positives, no BLAS): label
    vectors are mostly zeros, so this costs per image the square of its positives, where a
    dense product costs L squared (a dense product would be exact too, but 10x slower).
    """
    indicator = Y if sp.issparse(Y) else _sparse(Y)
    return np.asarray((indicator.T @ indicator).toarray(), dtype=np.int64)


def _sparse(Y: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(Y) != 0, dtype=np.int64)


def _mean(values: np.ndarray) -> float:
    """Mean with a correctly rounded sum (``math.fsum``): the same bits whatever the order."""
    return math.fsum(np.ravel(values).tolist()) / values.size if values.size else 0.0


def fold_label_counts(y: Any, folds: Any, n_folds: int | None = None) -> np.ndarray:
    """Positives per (fold, label) as an int array (k x L)."""
    Y, f, k = _prepare(y, folds, n_folds)
    return _label_counts(Y, f, k)


def entry_deviation(
    counts: np.ndarray, sizes: np.ndarray, totals: np.ndarray, n: int
) -> np.ndarray:
    """Per-entry LD/LPD deviation; arrays broadcast (counts per fold, fold sizes, totals).

    Public because the splitter aims at the same numbers the metrics report.
    """
    counts = np.asarray(counts, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    totals = np.asarray(totals, dtype=np.float64)
    neg_fold = sizes - counts
    neg_all = n - totals
    ratio_ok = (neg_fold > 0) & (neg_all > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(counts / neg_fold - totals / neg_all)
        frac = np.abs(np.where(sizes > 0, counts / sizes, 0.0) - totals / max(n, 1))
    return np.where(ratio_ok, ratio, frac)


def _distribution(counts: np.ndarray, sizes: np.ndarray, totals: np.ndarray, n: int) -> float:
    """Mean over items and folds of the ratio deviation (LD/LPD core).

    ``counts`` is (k x m) positives per fold, ``sizes`` (k,) fold sizes, ``totals`` (m,)
    positives overall, ``n`` samples overall.
    """
    k, m = counts.shape
    if k == 0 or m == 0:
        return 0.0
    return _mean(entry_deviation(counts, sizes[:, None], totals[None, :], n))


def optimal_counts(
    sizes: np.ndarray, totals: np.ndarray, n: int, window: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Per item (label or pair), the per-fold positive counts with the smallest LD sum.

    Each item is optimised on its own (items share samples in reality, so the result is
    a lower bound for a real split). Counts range over +-window around the expected
    count (further away only adds first-order cost). Exact DP over folds on the running
    sum of offsets, vectorised over items. Returns (counts k x m, cost per item m).
    Usually this is the floor/ceil of the expected counts; for near-universal labels the
    LD formula prefers to put the few negatives together, and the splitter uses these
    counts as its targets then.
    """
    k, m = sizes.shape[0], totals.shape[0]
    sizes = np.asarray(sizes, dtype=np.float64)
    totals = np.asarray(totals, dtype=np.float64)
    base = np.floor(totals[None, :] * sizes[:, None] / max(n, 1))  # (k x m)
    if k == 0 or m == 0:
        return base.astype(np.int64), np.zeros(m)
    rest = (totals - base.sum(axis=0)).astype(np.int64)  # offsets must sum to this
    offs = np.arange(-window, window + 1)
    span = k * window
    width = 2 * span + 1
    V = np.full((m, width), np.inf)
    V[:, span] = 0.0
    choice = np.zeros((k, m, width), dtype=np.int8)
    for f in range(k):
        c = base[f][:, None] + offs[None, :]  # (m x 2w+1)
        cost = entry_deviation(c, sizes[f], totals[:, None], n)
        cost[(c < 0) | (c > sizes[f]) | (c > totals[:, None])] = np.inf
        new = np.full_like(V, np.inf)
        for j, o in enumerate(offs):  # shift by offset o
            lo, hi = max(0, o), min(width, width + o)
            cand = V[:, lo - o : hi - o] + cost[:, j : j + 1]
            better = cand < new[:, lo:hi]
            new[:, lo:hi][better] = cand[better]
            choice[f, :, lo:hi][better] = j
        V = new
    col = np.clip(rest + span, 0, 2 * span)
    best = V[np.arange(m), col]
    best[(rest < -span) | (rest > span)] = np.inf
    counts = np.empty((k, m), dtype=np.int64)
    state = col.copy()
    for f in range(k - 1, -1, -1):  # backtrack
        j = choice[f, np.arange(m), state].astype(np.int64)
        counts[f] = base[f].astype(np.int64) + offs[j]
        state = state - offs[j]
    return counts, best


def _distribution_bound(sizes: np.ndarray, totals: np.ndarray, n: int, window: int) -> float:
    """Smallest LD/LPD any split with these fold sizes can have (see ``optimal_counts``)."""
    k, m = sizes.shape[0], totals.shape[0]
    if k == 0 or m == 0:
        return 0.0
    return math.fsum(optimal_counts(sizes, totals, n, window)[1].tolist()) / (k * m)


def distribution_bounds(y: Any, fold_sizes: Sequence[int], window: int = 4) -> dict[str, float]:
    """Lower bounds of LD and LPD for the given fold sizes (see ``_distribution_bound``).

    Lets a benchmark tell "no better than X" apart from "nothing can be better".
    """
    Y = as_indicator(y)
    sizes = np.asarray(fold_sizes, dtype=np.int64)
    if int(sizes.sum()) != Y.shape[0]:
        raise ValueError(f"fold sizes sum to {int(sizes.sum())}, y has {Y.shape[0]} samples")
    n = Y.shape[0]
    iu = np.triu_indices(Y.shape[1], k=1)
    ptot = _pair_totals(Y)[iu]
    ptot = ptot[ptot > 0]
    return {
        "LD": _distribution_bound(sizes, Y.sum(axis=0), n, window),
        "LPD": _distribution_bound(sizes, ptot, n, window),
        "maxRelPosDev": _max_rel_bound(sizes, Y.sum(axis=0), n, window),
    }


def _max_rel_bound(sizes: np.ndarray, totals: np.ndarray, n: int, window: int) -> float:
    """Smallest maxRelPosDev any split with these fold sizes can have.

    Per label, the smallest t such that integer counts with |c_f - e_f| <= t e_f and
    sum P exist; t is searched among the values |c - e_f| / e_f of nearby integers c.
    """
    sizes = sizes.astype(np.float64)
    valid = sizes > 0
    best = 0.0
    for total in totals[totals > 0]:
        e = total * sizes[valid] / n
        c = np.floor(e)[:, None] + np.arange(-window, window + 2)[None, :]
        ts = np.unique(np.abs(c - e[:, None]) / e[:, None])
        lo = np.ceil(e[None, :] * (1 - ts[:, None]) - 1e-9).clip(0, None)
        hi = np.floor(e[None, :] * (1 + ts[:, None]) + 1e-9).clip(None, sizes[valid][None, :])
        ok = (lo.sum(axis=1) <= total) & (hi.sum(axis=1) >= total)
        best = max(best, float(ts[ok].min()) if ok.any() else float(ts.max()))
    return best


def label_distribution(y: Any, folds: Any, n_folds: int | None = None) -> float:
    """LD (Sechidis 2011): mean over labels and folds of the positive/negative-ratio gap."""
    Y, f, k = _prepare(y, folds, n_folds)
    counts = _label_counts(Y, f, k)
    sizes = np.bincount(f, minlength=k)
    return _distribution(counts, sizes, counts.sum(axis=0), Y.shape[0])


def _pair_counts(Y: np.ndarray, f: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold counts (k x m) and totals (m,) of label pairs i<j that occur in the data."""
    n_labels = Y.shape[1]
    iu = np.triu_indices(n_labels, k=1)
    indicator = _sparse(Y)
    grams = [_pair_totals(indicator[f == j])[iu] for j in range(k)]  # k small, each exact
    total = np.sum(grams, axis=0) if grams else np.zeros(iu[0].size, dtype=np.int64)
    occurs = total > 0
    per_fold = np.array([g[occurs] for g in grams], dtype=np.int64).reshape(k, -1)
    return per_fold, total[occurs]


def label_pair_distribution(y: Any, folds: Any, n_folds: int | None = None) -> float:
    """LPD (Szymanski & Kajdanowicz 2017): LD over the label pairs that co-occur in y."""
    Y, f, k = _prepare(y, folds, n_folds)
    counts, totals = _pair_counts(Y, f, k)
    return _distribution(counts, np.bincount(f, minlength=k), totals, Y.shape[0])


def examples_distribution(folds: Any, n_folds: int | None = None) -> float:
    """ED: mean over folds of | |S_j| - |D|/k | (fold-size imbalance, in samples)."""
    f = np.asarray(folds).astype(np.int64).ravel()
    f = f[f >= 0]
    k = int(n_folds) if n_folds is not None else (int(f.max()) + 1 if f.size else 0)
    if k == 0:
        return 0.0
    sizes = np.bincount(f, minlength=k)
    return _mean(np.abs(sizes - f.shape[0] / k))


def group_leakage(folds: Any, groups: Any | None) -> int:
    """Number of groups whose (non-held-out) samples fall into more than one fold."""
    if groups is None:
        return 0
    f = np.asarray(folds).astype(np.int64).ravel()
    g = np.asarray(groups).ravel()
    if g.shape[0] != f.shape[0]:
        raise ValueError(f"groups has {g.shape[0]} entries but folds has {f.shape[0]}")
    keep = f >= 0
    _, ginv = np.unique(g[keep], return_inverse=True)
    pairs = np.unique(np.stack([ginv.ravel(), f[keep]], axis=1), axis=0)
    per_group = np.bincount(pairs[:, 0]) if pairs.size else np.zeros(0, dtype=np.int64)
    return int((per_group > 1).sum())


def pixel_share_deviation(
    pixel_share: Any,
    folds: Any,
    n_folds: int | None = None,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per fold, each label's share of the fold's labelled pixels vs the whole set.

    Segmentation losses see pixels, not images: two folds with the same images-per-class
    can still differ a lot in how much of the image area each class covers. Share of
    label l in fold j = pixels of l in j / all labelled pixels in j (0 for an empty fold).
    """
    P = np.asarray(pixel_share, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError("pixel_share must be an (n_samples x n_labels) array of pixel counts")
    if np.isnan(P).any() or (P < 0).any():
        raise ValueError("pixel_share must be finite and non-negative")
    f = np.asarray(folds).astype(np.int64).ravel()
    if f.shape[0] != P.shape[0]:
        raise ValueError(f"pixel_share has {P.shape[0]} rows but folds has {f.shape[0]}")
    keep = f >= 0
    P, f = P[keep], f[keep]
    k = int(n_folds) if n_folds is not None else (int(f.max()) + 1 if f.size else 0)
    names = (
        [str(x) for x in label_names]
        if label_names is not None
        else [str(i) for i in range(P.shape[1])]
    )
    if len(names) != P.shape[1]:
        raise ValueError(f"label_names has {len(names)} names but pixel_share has {P.shape[1]}")
    per_fold = _fold_sums(P, f, k)
    tot_fold = np.array([math.fsum(row) for row in per_fold.tolist()]).reshape(k, 1)
    share_fold = np.divide(per_fold, tot_fold, out=np.zeros_like(per_fold), where=tot_fold > 0)
    per_class = P.sum(axis=0)  # numpy's own loops: an order fixed by the shape
    tot = math.fsum(per_class.tolist())
    share_all = per_class / tot if tot > 0 else np.zeros(P.shape[1])
    dev = np.abs(share_fold - share_all[None, :])
    table = [
        {
            "fold": j,
            "share": {n: float(v) for n, v in zip(names, share_fold[j], strict=True)},
            "deviation": {n: float(v) for n, v in zip(names, dev[j], strict=True)},
        }
        for j in range(k)
    ]
    return {
        "mean": _mean(dev),
        "max": float(dev.max()) if dev.size else 0.0,
        "overall_share": {n: float(v) for n, v in zip(names, share_all, strict=True)},
        "per_fold": table,
    }


def split_quality(
    y: Any,
    folds: Any,
    groups: Any | None = None,
    pixel_share: Any | None = None,
    label_names: Sequence[str] | None = None,
    n_folds: int | None = None,
) -> dict[str, Any]:
    """All split metrics in one JSON-serialisable dict (python ints/floats/lists only).

    ``n_folds`` defaults to max(folds)+1; pass it so an empty fold is counted.
    relPosDev entries use expected = positives overall * |S_j| / |D| and skip labels
    without positives and empty folds (the relative error is undefined there).
    """
    Y, f, k = _prepare(y, folds, n_folds)
    n, n_labels = Y.shape
    counts = _label_counts(Y, f, k)
    sizes = np.bincount(f, minlength=k)
    totals = counts.sum(axis=0)
    pair_counts, pair_totals = _pair_counts(Y, f, k)

    has_pos = totals > 0
    zero = (counts == 0) & has_pos[None, :]
    expected = totals[None, :] * sizes[:, None] / max(n, 1)
    valid = has_pos[None, :] & (sizes[:, None] > 0)
    rel = np.abs(counts - expected)[valid] / expected[valid]

    out: dict[str, Any] = {
        "n_samples": int(n),
        "n_labels": int(n_labels),
        "n_folds": int(k),
        "LD": _distribution(counts, sizes, totals, n),
        "LPD": _distribution(pair_counts, sizes, pair_totals, n),
        "ED": _mean(np.abs(sizes - n / k)) if k else 0.0,
        "FZ": int(zero.any(axis=1).sum()),
        "FLZ": int(zero.sum()),
        "relPosDev": _mean(rel),
        "maxRelPosDev": float(rel.max()) if rel.size else 0.0,
        "group_leakage": group_leakage(np.asarray(folds).ravel(), groups),
        "fold_sizes": [int(s) for s in sizes],
    }
    if pixel_share is not None:
        psd = pixel_share_deviation(pixel_share, folds, n_folds=k, label_names=label_names)
        out["pixel_share_deviation"] = {
            "mean": psd["mean"],
            "max": psd["max"],
            "overall_share": psd["overall_share"],
            "per_fold": psd["per_fold"],
        }
    return out
