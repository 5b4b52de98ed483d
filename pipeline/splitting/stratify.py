"""The algorithm that chooses folds: multilabel, stratified, group-aware k-fold.

Where a fold is chosen: here, :func:`fold_assignment`. ``pipeline.stages.split`` is the stage
that builds groups and calls it on the class vectors; ``pipeline.splitting.kfold`` gives it
scikit-learn's cross-validator API; ``pipeline.folds`` is how trainers read the folds back.

Why not an existing splitter: ``iterstrat``'s ``MultilabelStratifiedKFold`` ignores groups
(two crops of one photo can land in train and test), sklearn's ``StratifiedGroupKFold``
is single-label. This module does both, and then improves on plain iterative
stratification with a local search so folds match the whole set's label *and*
label-pair frequencies more closely.

Algorithm (all work is at the level of groups; ``groups=None`` = one group per sample):

1. Greedy iterative stratification (Sechidis et al. 2011), batched: labels are taken
   rarest first; the groups whose rarest label is that label go to the folds with the
   largest remaining demand for it (ties: largest remaining capacity, then the RNG).
   Size-1 groups of one batch are placed in one vectorised step, which is exactly what
   the one-at-a-time rule would do for interchangeable items. Folds never exceed their
   integer target size when a group fits elsewhere, so without groups fold sizes differ
   by at most one.
2. Local search: groups are moved or swapped between two folds when that lowers
   ``J = sum_fold ||D_fold||^2``, where ``D_fold`` stacks the weighted deviations of the
   fold's per-label counts, per-label-pair counts and size from their targets. Each
   group is a sparse feature row ``x_g``; the gain of moving g from fold a to b is
   ``2 x_g.(D_b - D_a) + 2|x_g|^2`` for every group at once (one sparse mat-vec), and a
   swap subtracts ``4 x_g.x_h``. Candidate sets per fold pair are refined exactly with
   their small Gram matrix, so many swaps are applied per mat-vec.
3. Pixels (optional, ``pixel_weight`` > 0 and per-sample class pixel counts given): D_fold
   also holds, per class c, ``q_c (P_fc - s_c L_f)``: the fold's pixels of c minus what the
   whole set's share ``s_c`` of the fold's labelled pixels ``L_f`` asks for, i.e. its
   relative pixel-share deviation, weighted (``_pixel_block``) so that it is comparable
   with one positive of a label. The row ``q (p_g - l_g s)`` is a sparse row plus a
   rank-one part, kept apart so the search stays as sparse as without pixels.

The result depends only on (y, groups, n_splits, shuffle, random_state), the pixels and the
:class:`StratifySettings`: group ids come from ``np.unique`` (sorted values, not set/dict
order), all randomness comes from one local ``numpy.random.Generator`` and no wall-clock
limit is used. Nor does it depend on the CPU: equal keys are ordered by index (lexsort,
stable argsort, ``_smallest``), never by numpy's SIMD kernels; every decision is made on
IEEE ``+ - * / sqrt`` (correctly rounded everywhere), scipy.sparse products (plain loops) and
``math.fsum``, never on ``np.power``/``exp``/``log`` (SIMD, ulp-different between AVX2 and
AVX-512) or a dense float ``@`` (BLAS: order set by kernel and threads).
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline.splitting.quality import entry_deviation, optimal_counts

__all__ = [
    "StratifySettings",
    "check_options",
    "fold_assignment",
    "holdout_split",
]

RandomStateLike = int | np.random.Generator | np.random.RandomState | None


@dataclass(frozen=True)
class StratifySettings:
    """What the local search balances and how long it may look (the defaults are tuned).

    One object for the cross-validator and the holdout, so both search the same way.
    """

    pair_weight: float = 8.0  # label-pair balance vs label balance in the first phase
    rare_weight: float = 0.05  # extra weight on the relative error of rare labels
    size_weight: float = 1.0  # fold-size balance; only matters with groups
    n_candidates: int = 48  # groups per fold considered per refinement step
    max_sweeps: int = 12  # passes over all fold pairs per phase; 0 = plain greedy
    pixel_weight: float = 1.0  # pixel-share balance vs label balance; needs pixels, 0 = off

    def __post_init__(self) -> None:
        for name in ("pair_weight", "rare_weight", "size_weight", "pixel_weight"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if int(self.n_candidates) < 1 or int(self.max_sweeps) < 0:
            raise ValueError("n_candidates must be >= 1 and max_sweeps >= 0")
        # counts are used as slice bounds and loop counts: whole numbers from here on
        object.__setattr__(self, "n_candidates", int(self.n_candidates))
        object.__setattr__(self, "max_sweeps", int(self.max_sweeps))


_DEFAULTS = StratifySettings()


# --------------------------------------------------------------------------- input checks


def _check_y(y: Any) -> np.ndarray:
    """Validate ``y`` and return a boolean indicator matrix (n x L).

    1-D input is read as class labels and one-hot encoded; 2-D input as indicator or
    count matrix where any value > 0 is a positive.
    """
    if sp.issparse(y):
        y = y.toarray()
    arr = np.asarray(y)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError("empty dataset: y has no samples, there is nothing to split")
    if arr.ndim == 1:
        try:
            _, inv = np.unique(arr, return_inverse=True)
        except TypeError:  # mixed, unorderable labels: compare them as text
            _, inv = np.unique(arr.astype(str), return_inverse=True)
        out = np.zeros((arr.shape[0], int(inv.max()) + 1), dtype=bool)
        out[np.arange(arr.shape[0]), inv.ravel()] = True
        return out
    if arr.ndim != 2:
        raise ValueError(
            f"y must be 1-D class labels or a 2-D (n_samples x n_labels) matrix, "
            f"got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise ValueError("y has no label columns: nothing to stratify on")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iu":  # no NaN to look for, no float copy to make
        num = arr
    else:
        try:
            num = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"y must be numeric 0/1 indicators or non-negative counts: {exc}"
            ) from exc
    if num.dtype.kind == "f" and np.isnan(num).any():
        rows = np.unique(np.nonzero(np.isnan(num))[0])[:5].tolist()
        raise ValueError(f"y contains NaN (e.g. rows {rows}); labels must be 0/1 or counts >= 0")
    if (num < 0).any():
        rows = np.unique(np.nonzero(num < 0)[0])[:5].tolist()
        raise ValueError(
            f"y contains negative values (e.g. rows {rows}); labels must be 0/1 or counts >= 0"
        )
    return num > 0


def _group_index(groups: Any, n_samples: int) -> tuple[np.ndarray, int]:
    """Map group labels to 0..G-1 by sorted value (np.unique), independent of set order."""
    if groups is None:
        return np.arange(n_samples), n_samples
    g = np.asarray(groups)
    if g.ndim == 2 and g.shape[1] == 1:
        g = g.ravel()
    if g.ndim != 1 or g.shape[0] != n_samples:
        raise ValueError(
            f"groups has shape {g.shape} but y has {n_samples} samples; "
            "give one group label per sample"
        )
    try:
        _, inv = np.unique(g, return_inverse=True)
    except TypeError:  # e.g. None mixed with str
        _, inv = np.unique(g.astype(str), return_inverse=True)
    inv = inv.ravel().astype(np.int64)
    return inv, int(inv.max()) + 1


def _make_rng(random_state: RandomStateLike) -> np.random.Generator:
    """A local Generator; never the global numpy RNG."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(None if random_state is None else int(random_state))
    raise ValueError(
        f"random_state must be None, an int, a numpy Generator or RandomState; "
        f"got {type(random_state).__name__}"
    )


def _integer_targets(n: int, props: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer fold sizes summing to n (largest remainder, random ties)."""
    raw = props * n
    base = np.floor(raw).astype(np.int64)
    rest = n - int(base.sum())
    if rest > 0:
        order = np.lexsort((rng.random(len(props)), -(raw - base)))
        base[order[:rest]] += 1
    return base


# ----------------------------------------------------------------------- group features


def _group_matrices(
    Y: np.ndarray, ginv: np.ndarray, n_groups: int
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]:
    """Per-group label counts C (G x L), label-pair counts CP (G x P) and sizes.

    Pairs are (i<j) labels positive in the same sample; only pairs that occur are kept.
    Also returns the sample-level pair totals (P,).
    """
    n, n_labels = Y.shape
    rows, cols = np.nonzero(Y)  # row-major, so cols ascend within a row
    C = sp.csr_matrix((np.ones(rows.shape[0]), (ginv[rows], cols)), shape=(n_groups, n_labels))
    C.sum_duplicates()
    sizes = np.bincount(ginv, minlength=n_groups).astype(np.float64)

    # every nnz entry paired with each later nnz entry of its row
    per_row = np.bincount(rows, minlength=n)
    start = np.concatenate(([0], np.cumsum(per_row)))[rows]
    later = start + per_row[rows] - np.arange(rows.shape[0]) - 1
    total = int(later.sum())
    if total == 0:
        return C, sp.csr_matrix((n_groups, 0)), sizes, np.zeros(0)
    left = np.repeat(np.arange(rows.shape[0]), later)
    offs = np.arange(total) - np.repeat(np.cumsum(later) - later, later)
    right = left + 1 + offs
    code = cols[left].astype(np.int64) * n_labels + cols[right]
    pid, pair_tot = _dense_ranks(code, n_labels * n_labels)
    CP = sp.csr_matrix(
        (np.ones(total), (ginv[rows[left]], pid.ravel())), shape=(n_groups, pair_tot.shape[0])
    )
    CP.sum_duplicates()
    return C, CP, sizes, pair_tot.astype(np.float64)


def _dense_ranks(code: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each code among the distinct codes, ascending; count of each distinct code):
    ``np.unique(code, return_inverse=True, return_counts=True)`` without its sort, by
    counting, when the codes' range is small enough to count in."""
    if n_codes > 8 * code.shape[0] + 1_000_000:
        _, rank, counts = np.unique(code, return_inverse=True, return_counts=True)
        return rank.ravel(), counts
    counts = np.bincount(code, minlength=n_codes)
    seen = counts > 0
    return (np.cumsum(seen) - 1)[code], counts[seen]


# ------------------------------------------------------------------------ greedy phase


@dataclass
class _Greedy:
    """What the greedy phase still wants, updated as groups are placed."""

    counts: sp.csr_matrix  # positives per (group, label)
    demand: np.ndarray  # positives still wanted per (fold, label)
    cap: np.ndarray  # samples still wanted per fold
    fold: np.ndarray  # fold per group, -1 until placed

    def wanted(self, label: int) -> np.ndarray:
        """Demand for ``label`` per fold; none for the batch of label-free groups (-1)."""
        return self.demand[:, label] if label >= 0 else np.zeros(self.cap.shape[0])


def _greedy(
    C: sp.csr_matrix,
    sizes: np.ndarray,
    targets: np.ndarray,
    rng: np.random.Generator,
    shuffle: bool,
    fixed: np.ndarray | None = None,
) -> np.ndarray:
    """Batched iterative stratification at group level; returns a fold per group.

    ``fixed`` (fold per group, -1 = free) places those groups first: their samples use up
    capacity and demand, and only the free groups are placed.
    """
    totals = np.asarray(C.sum(axis=0)).ravel()
    state = _Greedy(
        counts=C.tocsr(),
        demand=np.outer(targets / float(sizes.sum()), totals),
        cap=targets.astype(np.float64).copy(),
        fold=np.full(C.shape[0], -1, dtype=np.int64),
    )
    if fixed is not None:
        _place_fixed(state, sizes, fixed)
    label_order = _label_order(totals, rng, shuffle)
    for label, batch in _batches(C, sizes, label_order, rng, shuffle):
        if fixed is not None:
            batch = batch[fixed[batch] < 0]
        unit = sizes[batch] == 1
        for g in batch[~unit].tolist():  # sequential Sechidis rule for multi-sample groups
            _place_group(state, g, sizes[g], label, rng)
        if unit.any():
            _place_units(state, batch[unit], label, rng, shuffle)
    return state.fold


def _place_fixed(state: _Greedy, sizes: np.ndarray, fixed: np.ndarray) -> None:
    """Put the fixed groups where they are pinned, taking their capacity and demand."""
    placed = np.flatnonzero(fixed >= 0)
    k = state.cap.shape[0]
    state.fold[placed] = fixed[placed]
    state.cap -= np.bincount(fixed[placed], weights=sizes[placed], minlength=k)
    onehot = sp.csr_matrix(
        (np.ones(placed.size), (fixed[placed], np.arange(placed.size))), shape=(k, placed.size)
    )
    state.demand -= (onehot @ state.counts[placed]).toarray()


def _label_order(totals: np.ndarray, rng: np.random.Generator, shuffle: bool) -> np.ndarray:
    """Labels that occur, rarest first: rare labels are placed while every fold has room."""
    n_labels = totals.shape[0]
    tie = rng.random(n_labels) if shuffle else np.arange(n_labels, dtype=np.float64)
    order = np.lexsort((tie, totals))
    return order[totals[order] > 0]


def _batches(
    C: sp.csr_matrix,
    sizes: np.ndarray,
    label_order: np.ndarray,
    rng: np.random.Generator,
    shuffle: bool,
) -> list[tuple[int, np.ndarray]]:
    """(label, groups whose rarest label it is) in ``label_order``; label-free groups last (-1).

    Within a batch multi-sample groups come first, largest first (they are the hardest to
    fit), then in random order.
    """
    n_groups, n_labels = C.shape
    n_batches = label_order.shape[0]
    rank = np.full(n_labels, n_labels, dtype=np.int64)
    rank[label_order] = np.arange(n_batches)
    rarest = _rarest_rank(C, rank, n_batches)
    group_tie = rng.permutation(n_groups) if shuffle else np.arange(n_groups)
    order = np.lexsort((group_tie, -sizes, sizes != 1, rarest))
    bounds = np.searchsorted(rarest[order], np.arange(n_batches + 2))
    labels = [*label_order.tolist(), -1]
    return [
        (labels[r], order[bounds[r] : bounds[r + 1]])
        for r in range(n_batches + 1)
        if bounds[r + 1] > bounds[r]
    ]


def _rarest_rank(C: sp.csr_matrix, rank: np.ndarray, no_label: int) -> np.ndarray:
    """Rank of each group's rarest label (``no_label`` without one); reduceat over CSR rows."""
    Cr = C.copy()
    Cr.data = rank[Cr.indices].astype(np.float64)
    has = np.diff(Cr.indptr) > 0
    rarest = np.full(C.shape[0], no_label, dtype=np.int64)
    if Cr.nnz:
        rarest[has] = np.minimum.reduceat(Cr.data, Cr.indptr[:-1][has]).astype(np.int64)
    return rarest


def _place_group(state: _Greedy, g: int, size: float, label: int, rng: np.random.Generator) -> None:
    """Sechidis' rule for one group: the fold that wants its label most, among those it fits."""
    cap = state.cap
    ok = cap >= size
    if not ok.any():
        ok = cap == cap.max()
    wanted = state.wanted(label)
    tie = rng.random(cap.shape[0])
    cand = np.flatnonzero(ok)
    best = cand[np.lexsort((tie[cand], cap[cand], wanted[cand]))[-1]]
    state.fold[g] = best
    cap[best] -= size
    row = slice(state.counts.indptr[g], state.counts.indptr[g + 1])
    state.demand[best, state.counts.indices[row]] -= state.counts.data[row]


def _place_units(
    state: _Greedy, members: np.ndarray, label: int, rng: np.random.Generator, shuffle: bool
) -> None:
    """Size-1 groups of one batch in one step, as placing them one at a time would.

    Slot (f, j) is the j-th unit given to fold f; the one-at-a-time rule takes the m best
    slots ordered by (demand left, capacity left, random fold order).
    """
    k, m = state.cap.shape[0], members.shape[0]
    depth = np.arange(m, dtype=np.float64)
    sd = (state.wanted(label)[:, None] - depth[None, :]).ravel()
    sc = (state.cap[:, None] - depth[None, :]).ravel()
    st = np.repeat(rng.random(k), m)
    idx = np.flatnonzero(sc > 0)
    if idx.shape[0] < m:  # capacity exhausted (only with oversized groups)
        idx = np.arange(sd.shape[0])
    pick = idx[np.lexsort((-st[idx], -sc[idx], -sd[idx]))[:m]]
    quota = np.bincount(pick // m, minlength=k)
    placed = members[rng.permutation(m)] if shuffle else members
    state.fold[placed] = np.repeat(np.arange(k), quota)
    state.cap -= quota
    onehot = sp.csr_matrix((np.ones(m), (state.fold[placed], np.arange(m))), shape=(k, m))
    state.demand -= (onehot @ state.counts[placed]).toarray()


# ------------------------------------------------------------------------ local search


@dataclass
class _Search:
    """The descent's state: fold per group, D[f] = T_f - E_f and St[f, g] = x_g . D_f.

    Holds only the groups that may move (the features ``X`` are their rows); D is the
    whole split's, pinned groups included.
    """

    X: _Features  # weighted feature row per movable group
    fold: np.ndarray
    D: np.ndarray
    St: np.ndarray
    norms2: np.ndarray  # |x_g|^2
    light: np.ndarray  # the lightest groups: neutral swap partners
    n_light: int  # light partners offered per fold
    n_candidates: int
    tol: float


def _start_search(
    X: _Features,
    fold: np.ndarray,
    n_candidates: int,
    movable: np.ndarray | None = None,
) -> _Search:
    """Deviations and gains of the starting folds, computed once; steps then update them.

    With ``movable`` the search keeps the movable groups' rows only: a grown split with a
    few new images then costs what they cost, not what the whole set does. Their order,
    ties and values are those of the whole search restricted to them, so the folds are the
    same either way.
    """
    n_groups, k = X.X.shape[0], X.E.shape[0]
    onehot = sp.csr_matrix((np.ones(n_groups), (fold, np.arange(n_groups))), shape=(k, n_groups))
    D = X.fold_sums(onehot) - X.E
    norms2 = X.norms2()
    tol = 1e-9 * float(norms2.max()) if n_groups else 0.0
    if movable is not None:
        sub = np.flatnonzero(movable)
        X, fold, norms2 = X.rows(sub), fold[sub], norms2[sub]
    n_light = max(2, n_candidates // 8)
    light = np.argsort(norms2, kind="stable")
    return _Search(
        X=X,
        fold=fold.copy(),
        D=D,
        St=X.dot(D),
        norms2=norms2,
        # the lightest groups (often label-free); a short prefix of them is enough and
        # keeps the per-step cost independent of n_groups
        light=light[: 16 * n_light * k],
        n_light=n_light,
        n_candidates=n_candidates,
        tol=tol,
    )


def _local_search(
    X: _Features,
    fold: np.ndarray,
    rng: np.random.Generator,
    shuffle: bool,
    settings: StratifySettings,
    rel_stop: float,
    movable: np.ndarray | None = None,
) -> np.ndarray:
    """Pairwise move/swap descent on J = sum_f ||T_f - E_f||^2 (T_f = sum of fold rows).

    Sweeps over all fold pairs until a sweep gains less than ``rel_stop`` of what is left
    of J, at most ``settings.max_sweeps`` times. Only ``movable`` groups move (all if None).
    """
    search = _start_search(X, fold, settings.n_candidates, movable)
    rounds = _round_robin(X.E.shape[0])
    for _ in range(settings.max_sweeps):
        gained = 0.0
        for r in rng.permutation(len(rounds)) if shuffle else range(len(rounds)):
            gained = _refine_round(search, rounds[r], gained)
        J = _sum_squares(search.D)
        if gained <= search.tol or gained < rel_stop * J:
            break
    if movable is None:
        return search.fold
    out = fold.copy()
    out[movable] = search.fold
    return out


def _sum_squares(D: np.ndarray) -> float:
    """``sum(D**2)``, correctly rounded: einsum's summation order follows its SIMD kernel,
    and this value decides when the search stops."""
    return math.fsum(np.square(D).ravel().tolist())


def _exact_dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` correctly rounded: a dense float ``@`` goes to BLAS, whose kernel and
    thread count change the order of the sum (and so its last bits)."""
    return math.fsum(np.multiply(a, b).ravel().tolist())


def _round_robin(k: int) -> list[list[tuple[int, int]]]:
    """All fold pairs grouped into rounds of disjoint pairs (circle method)."""
    slots = list(range(k)) + ([-1] if k % 2 else [])
    m = len(slots)
    out = []
    for _ in range(m - 1):
        pairs = [(slots[i], slots[m - 1 - i]) for i in range(m // 2)]
        out.append([(min(p), max(p)) for p in pairs if -1 not in p])
        slots = [slots[0], slots[-1], *slots[1:-1]]
    return out


def _refine_round(s: _Search, pairs: list[tuple[int, int]], gained: float) -> float:
    """Refine each (disjoint) fold pair of one round; returns ``gained`` plus their gains.

    The running total is passed through so it adds up in the same order as one sum would.
    """
    fold16 = s.fold.astype(np.int16)
    by_fold = np.argsort(fold16, kind="stable")  # radix sort
    bounds = np.searchsorted(fold16[by_fold], np.arange(s.D.shape[0] + 1))
    light_fold = fold16[s.light]  # light is a short prefix: cheap
    changed = []
    for a, b in pairs:
        in_a = by_fold[bounds[a] : bounds[a + 1]]
        in_b = by_fold[bounds[b] : bounds[b + 1]]
        if in_a.shape[0] == 0 and in_b.shape[0] == 0:
            continue
        ca = _candidates(s, in_a, s.St[b] - s.St[a], s.light[light_fold == a])
        cb = _candidates(s, in_b, s.St[a] - s.St[b], s.light[light_fold == b])
        delta, gain = _refine_pair(s, ca, cb, a, b)
        if gain <= 0.0:
            continue
        gained += gain
        s.D[a] -= delta
        s.D[b] += delta
        changed += [a, b]
    if changed:  # disjoint pairs: one product refreshes every touched row of St
        s.St[changed] = s.X.dot(s.D[changed])
    return gained


def _candidates(
    s: _Search, members: np.ndarray, diff: np.ndarray, light_here: np.ndarray
) -> np.ndarray:
    """The members with the best move gain, plus a few near-empty ones as swap partners."""
    gain = diff[members] + s.norms2[members]  # half the change of J if moved
    best = members[_smallest(gain, s.n_candidates)]
    return np.unique(np.concatenate([best, light_here[: s.n_light]]))


def _smallest(values: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` smallest values, equal values by position.

    ``argpartition`` leaves which of equal values it keeps to numpy's SIMD kernel (it
    differs between AVX2 and AVX-512), and equal gains are common: only the n-th smallest
    *value* is taken (``np.partition``: a value, no positions), which every CPU agrees on.
    """
    if values.shape[0] <= n:
        return np.arange(values.shape[0])
    cut = np.partition(values, n - 1)[n - 1]
    below = np.flatnonzero(values < cut)
    return np.concatenate([below, np.flatnonzero(values == cut)[: n - below.shape[0]]])


def _refine_pair(
    s: _Search, ca: np.ndarray, cb: np.ndarray, a: int, b: int
) -> tuple[np.ndarray, float]:
    """Exact greedy descent over moves and swaps between candidates of folds a and b.

    Updates ``s.fold``; returns (sum of rows moved a->b minus rows moved b->a, decrease
    of J).
    """
    na = ca.shape[0]
    cand = np.concatenate([ca, cb])
    Xc, gram = s.X.gram(cand)
    m_a = 2.0 * (s.St[b, ca] - s.St[a, ca]) + 2.0 * s.norms2[ca]  # change of J if moved to b
    m_b = 2.0 * (s.St[a, cb] - s.St[b, cb]) + 2.0 * s.norms2[cb]
    to_b, to_a, total = _descend(gram, m_a, m_b, s.tol)
    if not to_b and not to_a:
        return np.zeros(s.D.shape[1]), 0.0
    sign = np.zeros(cand.shape[0])
    sign[to_b] = 1.0
    sign[na + np.asarray(to_a, dtype=np.int64)] = -1.0
    s.fold[ca[to_b]] = b
    s.fold[cb[to_a]] = a
    return s.X.signed_sum(Xc, cand, sign), total


_NONE = -1  # no candidate moves from that side in a step


def _descend(
    gram: np.ndarray, m_a: np.ndarray, m_b: np.ndarray, tol: float
) -> tuple[list[int], list[int], float]:
    """Take the best step while it lowers J: (candidates a->b, candidates b->a, decrease).

    ``m_a``/``m_b`` hold the change of J if a candidate moved alone; the Gram matrix keeps
    them exact after each step, so many steps cost one mat-vec. A moved candidate is frozen.
    """
    cross = 4.0 * gram[: m_a.shape[0], m_a.shape[0] :]  # what a swap saves over two moves
    to_b: list[int] = []
    to_a: list[int] = []
    total = 0.0
    while True:
        best, i, j = _best_step(m_a, m_b, cross)
        if not best < -tol:
            return to_b, to_a, total
        total -= best
        _take_step(gram, m_a, m_b, i, j)
        if i != _NONE:
            to_b.append(i)
        if j != _NONE:
            to_a.append(j)


def _best_step(m_a: np.ndarray, m_b: np.ndarray, cross: np.ndarray) -> tuple[float, int, int]:
    """(change of J, candidate i leaving a, candidate j leaving b) of the best step.

    A swap moves both; a move leaves the other side ``_NONE``. On a tie the swap is kept.
    """
    best, i, j = 0.0, _NONE, _NONE
    if m_a.shape[0] and m_b.shape[0]:
        swaps = m_a[:, None] + m_b[None, :] - cross
        i, j = divmod(int(np.argmin(swaps)), m_b.shape[0])
        best = swaps[i, j]
    if m_a.shape[0]:
        ia = int(np.argmin(m_a))
        if m_a[ia] < best:
            best, i, j = m_a[ia], ia, _NONE
    if m_b.shape[0]:
        jb = int(np.argmin(m_b))
        if m_b[jb] < best:
            best, i, j = m_b[jb], _NONE, jb
    return best, i, j


def _take_step(gram: np.ndarray, m_a: np.ndarray, m_b: np.ndarray, i: int, j: int) -> None:
    """Update the move changes once i has left a and/or j has left b, and freeze those."""
    na = m_a.shape[0]
    nothing = np.zeros(gram.shape[0])
    gi = gram[:, i] if i != _NONE else nothing
    gj = gram[:, na + j] if j != _NONE else nothing
    m_a += 4.0 * (gi[:na] - gj[:na])
    m_b += 4.0 * (gj[na:] - gi[na:])
    if i != _NONE:
        m_a[i] = np.inf
    if j != _NONE:
        m_b[j] = np.inf


# ------------------------------------------------------------------------------ driver


def _item_targets(
    totals: np.ndarray, targets: np.ndarray, n: int, current: np.ndarray
) -> np.ndarray:
    """Target positives per (fold, item): the proportional expectation, except where LD
    prefers another allocation (near-universal labels, where LD favours keeping the few
    negatives together); those get the LD-optimal counts, ranked to match ``current``
    among folds of equal size so the search has the least to move."""
    expected = np.outer(targets / n, totals)
    opt, opt_cost = optimal_counts(targets, totals, n)
    # LD of the plain floor/ceil allocation (largest remainder)
    base = np.floor(expected)
    short = np.rint(totals - base.sum(axis=0)).astype(np.int64)
    rank = np.argsort(np.argsort(-(expected - base), axis=0, kind="stable"), axis=0, kind="stable")
    flo_ceil = base + (rank < short[None, :])
    fc_cost = entry_deviation(flo_ceil, targets[:, None], totals[None, :], n).sum(axis=0)
    special = np.flatnonzero(opt_cost < fc_cost * (1 - 1e-9) - 1e-15)
    out = expected
    for size in np.unique(targets):
        fs = np.flatnonzero(targets == size)
        if special.shape[0] == 0 or fs.shape[0] == 0:
            continue
        want = np.sort(opt[np.ix_(fs, special)], axis=0)
        have_rank = np.argsort(
            np.argsort(current[np.ix_(fs, special)], axis=0, kind="stable"), axis=0, kind="stable"
        )
        out[np.ix_(fs, special)] = np.take_along_axis(want, have_rank, axis=0)
    return out


@dataclass(frozen=True)
class _Blocks:
    """Weighted group features (X*) and their per-fold targets (E*): labels, pairs, size."""

    XL: sp.csr_matrix
    EL: np.ndarray
    XS: sp.csr_matrix
    ES: np.ndarray
    XP: sp.csr_matrix | None  # None when no two labels share a sample
    EP: np.ndarray | None
    pixels: _PixelBlock | None = None  # None without pixels or at pixel_weight 0

    def stacked(self, pair_weight: float) -> _Features:
        """Features and targets of one search phase; pairs count ``pair_weight`` (left out
        at 0); the pixel block, when there is one, comes last."""
        parts, targets = [self.XL, self.XS], [self.EL, self.ES]
        if self.XP is not None and self.EP is not None and pair_weight > 0:
            r = np.sqrt(pair_weight)
            parts.insert(1, self.XP * r)
            targets.insert(1, self.EP * r)
        if self.pixels is None:
            X = sp.hstack(parts, format="csr")
            return _Features(X, np.hstack(targets), np.zeros(X.shape[0]), np.zeros(X.shape[1]))
        px = self.pixels
        width = sum(part.shape[1] for part in parts)
        X = sp.hstack([*parts, px.X], format="csr")
        E = np.hstack([*targets, np.zeros((targets[0].shape[0], px.X.shape[1]))])
        return _Features(X, E, px.r, np.concatenate([np.zeros(width), px.v]))


@dataclass(frozen=True)
class _PixelBlock:
    """Pixel features: row of group g = ``X[g] + r[g] * v`` (target 0 in every fold)."""

    X: sp.csr_matrix  # q_c * pixels of class c in the group
    r: np.ndarray  # minus the group's labelled pixels
    v: np.ndarray  # q_c * s_c, the whole set's share of class c


@dataclass(frozen=True)
class _Features:
    """The search's feature rows ``X[g] + r[g] * v`` (sparse plus rank one) and targets E.

    Without pixels ``r`` is zero. Every product the search needs is a sparse product plus
    a correction of O(groups), so the rank-one part never makes a dense matrix.
    """

    X: sp.csr_matrix
    E: np.ndarray
    r: np.ndarray
    v: np.ndarray

    @property
    def low_rank(self) -> bool:
        return bool(self.r.any())

    def rows(self, index: np.ndarray) -> _Features:
        """These features for the groups ``index`` only (same targets)."""
        return _Features(self.X[index], self.E, self.r[index], self.v)

    def dot(self, M: np.ndarray) -> np.ndarray:
        """(features @ M.T).T: (m x groups) for M of m rows."""
        out = np.asarray(self.X @ M.T).T
        if self.low_rank:
            out = out + np.outer([_exact_dot(row, self.v) for row in M], self.r)
        return np.ascontiguousarray(out)

    def fold_sums(self, onehot: sp.csr_matrix) -> np.ndarray:
        """Per fold, the sum of its rows (dense, folds x columns)."""
        out = (onehot @ self.X).toarray()
        if self.low_rank:
            out += np.outer(onehot @ self.r, self.v)
        return out

    def norms2(self) -> np.ndarray:
        """|row|^2 per group."""
        out = np.asarray(self.X.multiply(self.X).sum(axis=1)).ravel()
        if self.low_rank:
            xv = np.asarray(self.X @ self.v).ravel()
            vv = _exact_dot(self.v, self.v)
            out = np.maximum(out + 2.0 * self.r * xv + self.r * self.r * vv, 0.0)
        return out

    def gram(self, cand: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """(sparse rows of ``cand``, their Gram matrix)."""
        Xc = self.X[cand]
        gram = (Xc @ Xc.T).toarray()
        if self.low_rank:
            rc = self.r[cand]
            xv = np.asarray(Xc @ self.v).ravel()
            cross = np.outer(xv, rc)
            gram += cross + cross.T + _exact_dot(self.v, self.v) * np.outer(rc, rc)
        return Xc, gram

    def signed_sum(self, Xc: sp.csr_matrix, cand: np.ndarray, sign: np.ndarray) -> np.ndarray:
        """Sum of the ``cand`` rows weighted by ``sign``."""
        out = np.asarray(Xc.T @ sign).ravel()
        if self.low_rank:
            out = out + _exact_dot(self.r[cand], sign) * self.v
        return out


def _inverse_square(x: np.ndarray) -> np.ndarray:
    """``x ** -2`` with only IEEE ``*`` and ``/``, which round the same on every CPU.

    ``np.power`` goes through SIMD-dispatched code (SVML on AVX-512) whose result can differ
    by an ulp from the AVX2 one, and the weights feed every comparison of the search.
    """
    return 1.0 / (x * x)


def _label_weights(totals: np.ndarray, n: int, top: float, rare_weight: float) -> np.ndarray:
    """Weight of one positive per label, so J approximates the split's LD.

    The squared first-order LD contribution of one positive, |dLD/dp|^2 with
    d = p/(n_f-p): (1-pi)^-4, plus a relative term so rare labels stay exact
    (maxRelPosDev). Near-universal labels: the ratio is very steep there; ``top`` caps
    the slope at one negative per fold so the weight stays finite.
    """
    pi = np.clip(totals / n, 0.0, top)
    frac = np.clip(totals / n, 1.0 / n, None)
    q = 1 - pi
    w = _inverse_square(q * q) + rare_weight * _inverse_square(frac) / n
    w[totals == 0] = 0.0
    return w


def _blocks(
    C: sp.csr_matrix,
    CP: sp.csr_matrix,
    sizes: np.ndarray,
    pair_tot: np.ndarray,
    targets: np.ndarray,
    fold_g: np.ndarray,
    settings: StratifySettings,
    pixels: _GroupPixels | None = None,
) -> _Blocks:
    """The search's features and targets, weighted; targets are ranked to the greedy folds."""
    n, k, n_groups = int(sizes.sum()), targets.shape[0], C.shape[0]
    onehot = sp.csr_matrix((np.ones(n_groups), (fold_g, np.arange(n_groups))), shape=(k, n_groups))
    totals = np.asarray(C.sum(axis=0)).ravel()
    top = 1.0 - 1.0 / max(float(targets.min()), 2.0)
    w = _label_weights(totals, n, top, settings.rare_weight)
    scale_l = np.sqrt(w)
    # fold sizes weigh at least as much as the pixel term, which has no size cost of its own:
    # without labels to balance, pixels alone would pile every image into one fold
    px_mass = 0.0 if pixels is None else settings.pixel_weight * float(np.sum(pixels.positives > 0))
    mu = np.sqrt(settings.size_weight * max(math.fsum(w), px_mass, 1e-12))
    XP = EP = None
    if CP.shape[1]:
        scale_p = _inverse_square(1 - np.clip(pair_tot / n, 0.0, top))
        XP = CP @ sp.diags(scale_p)
        EP = _item_targets(pair_tot, targets, n, (onehot @ CP).toarray()) * scale_p
    return _Blocks(
        XL=C @ sp.diags(scale_l),
        EL=_item_targets(totals, targets, n, (onehot @ C).toarray()) * scale_l,
        XS=sp.csr_matrix(sizes[:, None] * mu),
        ES=targets[:, None].astype(np.float64) * mu,
        XP=XP,
        EP=EP,
        pixels=None if pixels is None else _pixel_block(pixels, k, settings),
    )


@dataclass(frozen=True)
class _GroupPixels:
    """Pixels per (group, class), labelled pixels per group, positive samples per class."""

    P: sp.csr_matrix
    labelled: np.ndarray
    positives: np.ndarray


def _group_pixels(
    pixels: np.ndarray, labelled: np.ndarray, ginv: np.ndarray, n_groups: int
) -> _GroupPixels:
    n = ginv.shape[0]
    onehot = sp.csr_matrix((np.ones(n), (ginv, np.arange(n))), shape=(n_groups, n))
    P = (onehot @ sp.csr_matrix(pixels)).tocsr()
    P.sum_duplicates()
    return _GroupPixels(
        P, np.bincount(ginv, weights=labelled, minlength=n_groups), (pixels > 0).sum(axis=0)
    )


def _pixel_block(px: _GroupPixels, k: int, settings: StratifySettings) -> _PixelBlock:
    """Row of group g, class c: ``q_c (p_gc - s_c l_g)``, so a fold's entry is its relative
    pixel-share deviation ``rho_fc`` times ``sqrt(pixel_weight * e_c * m)``.

    ``e_c`` is the class's positive samples per fold, ``m`` its mean over the classes:
    ``rho * sqrt(e_c)`` is the deviation in units of its noise (a class in few images has a
    noisier share), ``sqrt(m)`` brings it to label units: at a class of typical frequency,
    one average image's pixels of it too many in a fold cost as much as one positive too
    many of a label. Rarer classes weigh more per pixel than in label units, as the report's
    fold-balance measure (every class counts the same) asks.
    """
    totals = np.asarray(px.P.sum(axis=0)).ravel()
    share = totals / max(math.fsum(px.labelled), 1.0)
    present = totals > 0
    per_fold = px.positives / k
    m = math.fsum(per_fold[present]) / int(present.sum()) if present.any() else 1.0
    q = np.zeros_like(totals)
    q[present] = np.sqrt(settings.pixel_weight * per_fold[present] * m) * k / totals[present]
    return _PixelBlock(X=(px.P @ sp.diags(q)).tocsr(), r=-px.labelled, v=q * share)


def _assign(
    Y: np.ndarray,
    ginv: np.ndarray,
    n_groups: int,
    props: np.ndarray,
    rng: np.random.Generator,
    shuffle: bool,
    settings: StratifySettings,
    fixed: np.ndarray | None = None,
    pixels: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Fold index per sample for target proportions ``props`` (greedy + local search).

    ``fixed`` (fold per group, -1 = free) keeps those groups where they are; ``pixels``
    (pixels per sample and class, labelled pixels per sample) adds the pixel-share term.
    """
    C, CP, sizes, pair_tot = _group_matrices(Y, ginv, n_groups)
    targets = _integer_targets(Y.shape[0], props, rng)
    fold_g = _greedy(C, sizes, targets, rng, shuffle, fixed)
    movable = None if fixed is None else fixed < 0
    if settings.max_sweeps <= 0:
        return fold_g[ginv]
    gp = None
    if pixels is not None and settings.pixel_weight > 0:
        gp = _group_pixels(*pixels, ginv, n_groups)
    blocks = _blocks(C, CP, sizes, pair_tot, targets, fold_g, settings, gp)
    # phase 1 trades label for pair balance (escapes the plateau where every label is
    # already exact); phase 2 makes labels dominate again and repairs them while
    # keeping what it can of the pair gains
    phases = ((settings.pair_weight, 1e-2), (settings.pair_weight * 1e-4, 1e-4))
    for pair_weight, rel_stop in phases:
        fold_g = _local_search(
            blocks.stacked(pair_weight), fold_g, rng, shuffle, settings, rel_stop, movable
        )
    return fold_g[ginv]


def check_options(n_splits: Any, shuffle: Any, settings: Any) -> int:
    """``n_splits`` as an int, or ValueError/TypeError naming the unusable option."""
    if not isinstance(n_splits, numbers.Integral) or isinstance(n_splits, bool):
        raise ValueError(
            f"n_splits must be an integer, got {n_splits!r} of type {type(n_splits).__name__}"
        )
    if n_splits < 2:
        raise ValueError(
            f"n_splits={n_splits}: k-fold cross-validation needs at least 2 folds "
            "(one to test on, one to train on)"
        )
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be True or False; got {shuffle!r}")
    if not isinstance(settings, StratifySettings):
        raise TypeError(f"settings must be a StratifySettings, got {type(settings).__name__}")
    return int(n_splits)


def fold_assignment(
    y: Any,
    groups: Any = None,
    n_splits: int = 5,
    *,
    shuffle: bool = True,
    random_state: RandomStateLike = None,
    settings: StratifySettings = _DEFAULTS,
    fixed: Any = None,
    pixels: Any = None,
    labelled: Any = None,
) -> tuple[np.ndarray, list[str]]:
    """(test-fold index 0..n_splits-1 of every sample, warnings): where a fold is chosen.

    ``fixed`` (a fold per sample, -1 = free) keeps those samples, and their whole group, in
    their fold; the free ones are placed so that the folds stay balanced (for splits that
    must stay put as a dataset grows). ``pixels`` (n_samples x n_classes pixel counts) and
    ``labelled`` (pixels per sample that count for shares; default the row sums of
    ``pixels``) let ``settings.pixel_weight`` balance each class's pixel share per fold.
    Raises ValueError for unusable input; the warnings name labels whose positives sit in
    fewer groups than there are folds (the caller reports them). Plain numpy and scipy: the
    split stage never imports scikit-learn for its own folds (a second per run).
    """
    k = check_options(n_splits, shuffle, settings)
    Y = _check_y(y)
    n = Y.shape[0]
    if k > n:
        raise ValueError(
            f"n_splits={k} is greater than the number of samples ({n}): "
            "every fold needs at least one sample"
        )
    ginv, n_groups = _group_index(groups, n)
    if k > n_groups:
        raise ValueError(
            f"n_splits={k} is greater than the number of groups ({n_groups}): "
            "a group cannot be split, so some folds would be empty"
        )
    notes = _label_warnings(Y, ginv, n_groups, k, "fold")
    props = np.full(k, 1.0 / k)
    rng = _make_rng(random_state)
    fixed_g = None if fixed is None else _fixed_groups(fixed, ginv, n_groups, k)
    pix = _check_pixels(pixels, labelled, n)
    return _assign(Y, ginv, n_groups, props, rng, shuffle, settings, fixed_g, pix), notes


def __getattr__(name: str) -> Any:
    """An import from where the cross-validator used to live says where it is now (an
    ImportError: ``from ... import`` would replace an AttributeError's text with its own)."""
    if name == "MultilabelStratifiedGroupKFold":
        raise ImportError(
            "MultilabelStratifiedGroupKFold moved to pipeline.splitting.kfold (it imports "
            "scikit-learn, which choosing folds does not need): "
            "from pipeline.splitting.kfold import MultilabelStratifiedGroupKFold"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_pixels(pixels: Any, labelled: Any, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(pixels as float n x C, labelled pixels per sample), or None without pixels."""
    if pixels is None:
        if labelled is not None:
            raise ValueError("labelled needs pixels")
        return None
    P = np.asarray(pixels.toarray() if sp.issparse(pixels) else pixels, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != n:
        raise ValueError(f"pixels must be an (n_samples={n} x n_classes) array, got {P.shape}")
    L = P.sum(axis=1) if labelled is None else np.asarray(labelled, dtype=np.float64).ravel()
    if L.shape[0] != n:
        raise ValueError(f"labelled must hold one value per sample ({n}), got {L.shape[0]}")
    if not (np.isfinite(P).all() and np.isfinite(L).all()) or (P < 0).any() or (L < 0).any():
        raise ValueError("pixels and labelled must be finite and non-negative")
    return P, L


def _fixed_groups(fixed: Any, ginv: np.ndarray, n_groups: int, k: int) -> np.ndarray:
    """Fold per group from a fold per sample (-1 free): a group with one fixed sample is
    fixed whole; two folds in one group is an error."""
    f = np.asarray(fixed, dtype=np.int64).ravel()
    if f.shape[0] != ginv.shape[0] or (f >= k).any():
        raise ValueError(
            f"fixed must give a fold in -1..{k - 1} for each of {ginv.shape[0]} samples"
        )
    out = np.full(n_groups, -1, dtype=np.int64)
    low = np.full(n_groups, k, dtype=np.int64)
    pinned = f >= 0
    np.maximum.at(out, ginv[pinned], f[pinned])
    np.minimum.at(low, ginv[pinned], f[pinned])
    clash = (out >= 0) & (low != out)
    if clash.any():
        raise ValueError(f"{int(clash.sum())} groups are fixed to two different folds")
    return out


def _label_warnings(Y: np.ndarray, ginv: np.ndarray, n_groups: int, k: int, part: str) -> list[str]:
    """Messages for labels that cannot have a positive in each of the k parts."""
    per_group = np.zeros((n_groups, Y.shape[1]), dtype=bool)
    rows, cols = np.nonzero(Y)
    per_group[ginv[rows], cols] = True
    n_pos_groups = per_group.sum(axis=0)
    n_pos = Y.sum(axis=0)
    out = []
    for lab in np.flatnonzero(n_pos_groups < k).tolist():
        if n_pos[lab] == 0:
            out.append(f"label {lab} has no positive samples: no {part} can contain it")
        else:
            unit = "sample(s)" if n_groups == Y.shape[0] else "group(s)"
            out.append(
                f"label {lab} has positives in only {int(n_pos_groups[lab])} {unit} "
                f"(< {k} {part}s): {k - int(n_pos_groups[lab])} {part}(s) will have no "
                "positive for it"
            )
    return out


def holdout_split(
    y: Any,
    groups: Any = None,
    test_fraction: float = 0.2,
    random_state: RandomStateLike = None,
    *,
    shuffle: bool = True,
    settings: StratifySettings = _DEFAULTS,
    pixels: Any = None,
    labelled: Any = None,
) -> np.ndarray:
    """Boolean mask of a stratified, group-aware held-out test part (True = test).

    Carved before cross-validation so the test part is as representative as the folds:
    the same machinery (and ``settings``, ``pixels`` as in ``fold_assignment``) with two
    parts of target proportions (1 - f, f).
    """
    if not isinstance(test_fraction, numbers.Real) or not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be a number with 0 <= f < 1, got {test_fraction!r}")
    Y = _check_y(y)
    n = Y.shape[0]
    if test_fraction == 0:
        if groups is not None:
            _group_index(groups, n)  # still validate the length
        return np.zeros(n, dtype=bool)
    ginv, n_groups = _group_index(groups, n)
    if n_groups < 2:
        raise ValueError(
            f"a held-out part needs at least 2 groups (one test, one train), got {n_groups}"
        )
    for msg in _label_warnings(Y, ginv, n_groups, 2, "part"):
        warnings.warn(msg, UserWarning, stacklevel=2)
    f = float(test_fraction)
    f = max(f, 1.0 / n) if round(f * n) == 0 else f  # at least one test sample
    props = np.array([1.0 - f, f])
    pix = _check_pixels(pixels, labelled, n)
    rng = _make_rng(random_state)
    part = _assign(Y, ginv, n_groups, props, rng, shuffle, settings, None, pix)
    return part == 1
