"""Stage ``split``: a fold for every image, and how fair the folds are.

Groups (batch folders, captures, crops of one photo) come from ``split.group_regex`` (first
capture group of ``file_name``, or the whole match) or ``split.group_field`` (an image field in
the json); a group never spans two folds. An optional held-out test part is carved first with
the same stratified, group-aware machinery, then ``n_splits`` folds are made on the rest.

Outputs: ``data/splits/folds.csv`` (``image_id,file_name,group,fold``; fold ``test`` for the
holdout), ``reports/split_quality.json`` (DVC metrics, ours next to the baselines on the same
data), ``reports/split_pixel_share.csv`` (per fold and class, pixel share vs the whole set) and
``reports/split_warnings.json`` (rare classes and other listed problems).
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import KFold

from pipeline.errors import DatasetError
from pipeline.fsio import atomic_write_csv, atomic_write_json, check_relative, read_csv
from pipeline.masks import IMAGE_STATS_PATH
from pipeline.params import load_params
from pipeline.quality import split_quality
from pipeline.splitter import MultilabelStratifiedGroupKFold, holdout_split
from pipeline.validate import CANONICAL_PATH, load_coco_json
from pipeline.vectors import ID_COLUMNS, VECTORS_PATH, stats_classes

FOLDS_PATH = "data/splits/folds.csv"
QUALITY_PATH = "reports/split_quality.json"
PIXEL_SHARE_PATH = "reports/split_pixel_share.csv"
WARNINGS_PATH = "reports/split_warnings.json"
TEST_FOLD = "test"
FOLD_COLUMNS = ("image_id", "file_name", "group", "fold")


# ---------------------------------------------------------------- folds.csv, read back


@dataclass(frozen=True)
class FoldTable:
    """folds.csv parsed: image ids per fold label, in file order."""

    rows: tuple[tuple[int, str, str, str], ...]  # (image_id, file_name, group, fold)
    n_folds: int

    def ids(self, label: str) -> list[int]:
        return [r[0] for r in self.rows if r[3] == label]

    def train_ids(self, k: int) -> list[int]:
        """Fold k's training images: every other fold, never the held-out test part."""
        return [r[0] for r in self.rows if r[3] not in (str(k), TEST_FOLD)]


def parse_folds(rows: Sequence[Mapping[str, str]], file: str = FOLDS_PATH) -> FoldTable:
    """Check the folds table and return it typed; fold labels must be 0..k-1 (and ``test``)."""
    if not rows:
        raise DatasetError("no image in the folds table", file=file)
    missing = [c for c in FOLD_COLUMNS if c not in rows[0]]
    if missing:
        raise DatasetError(f"missing columns {missing}", file=file)
    parsed: list[tuple[int, str, str, str]] = []
    seen: set[int] = set()
    for line, row in enumerate(rows, start=2):
        try:
            image_id = int(row["image_id"])
        except ValueError:
            raise DatasetError(
                f"not an integer: {row['image_id']!r}",
                file=file,
                item=f"line {line}",
                field="image_id",
            ) from None
        if image_id in seen:
            raise DatasetError(
                "image listed twice", file=file, item=f"image {image_id}", field="image_id"
            )
        seen.add(image_id)
        label = row["fold"].strip()
        if label != TEST_FOLD and not (label.isdigit() and str(int(label)) == label):
            raise DatasetError(
                f"fold must be an integer or {TEST_FOLD!r}, got {label!r}",
                file=file,
                item=f"image {image_id}",
                field="fold",
            )
        name = check_relative(row["file_name"], file=file, item=f"image {image_id}")
        parsed.append((image_id, name, row["group"], label))
    labels = {r[3] for r in parsed} - {TEST_FOLD}
    n_folds = len(labels)
    if labels != {str(k) for k in range(n_folds)}:
        raise DatasetError(
            f"fold labels must be 0..k-1, got {sorted(labels, key=int)}", file=file, field="fold"
        )
    if n_folds < 2:
        raise DatasetError(f"need at least 2 folds, got {n_folds}", file=file, field="fold")
    return FoldTable(tuple(parsed), n_folds)


# ---------------------------------------------------------------- groups


def groups_from_regex(file_names: list[str], pattern: str) -> tuple[list[str], list[str]]:
    """Group key per image; images the pattern does not match are their own group (listed)."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise DatasetError(
            f"invalid regular expression {pattern!r}: {exc}",
            file="params.yaml",
            field="split.group_regex",
        ) from None
    keys: list[str] = []
    unmatched: list[str] = []
    for name in file_names:
        found = regex.search(name)
        if found is None:
            unmatched.append(name)
            keys.append(name)
        else:
            keys.append(found.group(1) if regex.groups else found.group(0))
    return keys, unmatched


def groups_from_field(images: list[dict[str, Any]], field: str) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    missing: list[str] = []
    for img in images:
        if field in img and img[field] is not None:
            keys.append(str(img[field]))
        else:
            missing.append(img["file_name"])
            keys.append(img["file_name"])
    return keys, missing


def image_groups(
    images: list[dict[str, Any]], config: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """(group per image, warnings) from ``split.group_regex`` or ``split.group_field``."""
    regex, field = config.get("group_regex"), config.get("group_field")
    if regex and field:
        raise DatasetError(
            "set group_regex or group_field, not both", file="params.yaml", field="split"
        )
    names = [img["file_name"] for img in images]
    if regex:
        keys, odd = groups_from_regex(names, regex)
        what = f"do not match group_regex {regex!r}"
    elif field:
        keys, odd = groups_from_field(images, field)
        what = f"have no {field!r} field"
    else:
        return [str(img["id"]) for img in images], []
    notes = []
    if odd:
        notes.append(f"{len(odd)} images {what}; each is its own group (first: {odd[0]!r})")
    return keys, notes


# Finer groupings to offer when the configured one gives too few groups, finest last.
_GROUPINGS = (
    ("'^([^/]+/[^/]+)/'", r"^([^/]+/[^/]+)/", "the first two folders"),
    ("'^(.*)/'", r"^(.*)/", "the whole folder path"),
)


def suggest_grouping(file_names: list[str], n_splits: int) -> str:
    """How to fix too few groups, in words a user can paste into params.yaml."""
    for text, pattern, meaning in _GROUPINGS:
        keys, unmatched = groups_from_regex(file_names, pattern)
        if not unmatched and len(set(keys)) >= n_splits:
            return (
                f"set split.group_regex: {text} ({meaning} of file_name, "
                f"{len(set(keys))} groups), or lower split.n_splits"
            )
    return (
        "set split.group_regex: null (one group per image; only if images are "
        "independent) or another pattern whose first capture group names the group, "
        "or lower split.n_splits"
    )


def check_split_params(config: dict[str, Any]) -> tuple[int, int, float]:
    k, seed, test = (
        config.get("n_splits", 5),
        config.get("seed", 42),
        config.get("test_fraction", 0.0),
    )
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise DatasetError(
            f"must be an integer >= 2, got {k!r}", file="params.yaml", field="split.n_splits"
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DatasetError(
            f"must be a non-negative integer, got {seed!r}", file="params.yaml", field="split.seed"
        )
    if not isinstance(test, int | float) or not 0 <= test < 1:
        raise DatasetError(
            f"must be in [0, 1), got {test!r}", file="params.yaml", field="split.test_fraction"
        )
    return k, seed, float(test)


def _recording_warnings(func: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    """Call ``func``; return its result and the UserWarnings it raised (for the report)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = func(*args, **kwargs)
    texts = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return result, list(dict.fromkeys(texts))


def make_folds(
    y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int, test_fraction: float
) -> tuple[np.ndarray, list[str]]:
    """Fold index per image (-1 = held-out test) and the splitter's warnings."""
    fold = np.full(y.shape[0], -1, dtype=np.int64)
    notes: list[str] = []
    rest = np.ones(y.shape[0], dtype=bool)
    if test_fraction > 0:
        try:
            test, held = _recording_warnings(
                holdout_split, y, groups, test_fraction=test_fraction, random_state=seed
            )
        except ValueError as exc:
            raise DatasetError(str(exc), file="params.yaml", field="split.test_fraction") from None
        notes.extend(f"test holdout: {text}" for text in held)
        rest = ~np.asarray(test, dtype=bool)
        if not rest.any():
            raise DatasetError(
                "test_fraction leaves no image for the folds",
                file="params.yaml",
                field="split.test_fraction",
            )
    cv = MultilabelStratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    try:
        fold[rest], found = _recording_warnings(cv.fold_assignment, y[rest], groups[rest])
    except ValueError as exc:
        raise DatasetError(str(exc), file=VECTORS_PATH, field="split.n_splits") from None
    return fold, notes + found


def baseline_folds(
    y: np.ndarray, n_splits: int, seed: int, rest: np.ndarray
) -> dict[str, tuple[np.ndarray, float]]:
    """Folds from the usual tools on the same images, for the quality comparison."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

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


def run(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Write the folds and their quality; return the quality and the wall time per splitter."""
    config = params.get("split") or {}
    n_splits, seed, test_fraction = check_split_params(config)
    rows = read_csv(VECTORS_PATH)
    if not rows:
        raise DatasetError("no image to split", file=VECTORS_PATH)
    columns = [c for c in rows[0] if c not in ID_COLUMNS]
    y = np.array([[int(r[c]) for c in columns] for r in rows], dtype=np.uint8).reshape(
        len(rows), len(columns)
    )
    images: list[dict[str, Any]] = [
        {"id": int(r["image_id"]), "file_name": r["file_name"]} for r in rows
    ]
    if config.get("group_field"):  # only then are other image fields needed
        by_id = {int(im["id"]): im for im in load_coco_json(CANONICAL_PATH)["images"]}
        images = [by_id[im["id"]] for im in images]
    keys, notes = image_groups(images, config)
    _, groups = np.unique(np.array(keys, dtype=object).astype(str), return_inverse=True)
    if len(set(keys)) < n_splits:
        raise DatasetError(
            f"{len(set(keys))} groups cannot fill n_splits={n_splits} folds; "
            + suggest_grouping([im["file_name"] for im in images], n_splits),
            file="params.yaml",
            field="split.n_splits",
        )

    # Columns no image has carry nothing to balance: left out of the splitter (one note for
    # all of them); with none left, folds balance sizes and groups only.
    present = y.any(axis=0)
    names = [c for c, p in zip(columns, present, strict=True) if p]
    if not present.all():
        missing = [c for c, p in zip(columns, present, strict=True) if not p]
        notes.append(f"{len(missing)} vector columns have no positive image: {', '.join(missing)}")
    y_split = y[:, present] if names else np.ones((len(rows), 1), dtype=np.uint8)
    start = time.perf_counter()
    fold, split_notes = make_folds(y_split, groups, n_splits, seed, test_fraction)
    seconds = time.perf_counter() - start
    if names:
        notes.extend(
            re.sub(r"\blabel (\d+)\b", lambda m: f"column {names[int(m.group(1))]!r}", note)
            for note in split_notes
        )

    stats = {int(r["image_id"]): r for r in read_csv(IMAGE_STATS_PATH)}
    classes = stats_classes(list(next(iter(stats.values()))))
    pixels = np.array(
        [[int(stats[int(r["image_id"])][f"{c}__pixels"]) for c in classes] for r in rows],
        dtype=np.int64,
    ).reshape(len(rows), len(classes))
    rest = fold >= 0
    quality = {
        "n_images": len(rows),
        "n_groups": int(groups.max() + 1),
        "n_test_images": int((~rest).sum()),
        "n_splits": n_splits,
        "warnings": len(notes),
    }
    ours = split_quality(
        y[rest],
        fold[rest],
        groups[rest],
        pixel_share=pixels[rest],
        label_names=classes,
        n_folds=n_splits,
    )
    quality["ours"] = _scalars(ours)
    # Wall times are returned for the log, not stored: outputs must be byte-identical.
    timings = {"ours": seconds}
    for name, (base_fold, secs) in baseline_folds(y, n_splits, seed, rest).items():
        q = split_quality(
            y[rest],
            base_fold[rest],
            groups[rest],
            pixel_share=pixels[rest],
            label_names=classes,
            n_folds=n_splits,
        )
        quality[name] = _scalars(q)
        timings[name] = secs

    labels = [TEST_FOLD if f < 0 else str(f) for f in fold]
    atomic_write_csv(
        FOLDS_PATH,
        FOLD_COLUMNS,
        [
            [r["image_id"], r["file_name"], key, lab]
            for r, key, lab in zip(rows, keys, labels, strict=True)
        ],
    )
    atomic_write_json(QUALITY_PATH, quality)
    atomic_write_json(WARNINGS_PATH, {"warnings": notes})
    share = ours["pixel_share_deviation"]
    atomic_write_csv(
        PIXEL_SHARE_PATH,
        ["fold", "class", "pixel_share", "overall_share"],
        [
            [row["fold"], name, round(value, 6), round(share["overall_share"][name], 6)]
            for row in share["per_fold"]
            for name, value in row["share"].items()
        ],
    )
    return quality, timings


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers DVC can show as metrics (tables and lists go to their own files).

    Per-class tables (``overall_share``) stay in ``split_pixel_share.csv``: as metrics they
    would add one column per class and method to ``dvc metrics show``.
    """
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if key == "overall_share":
            continue
        if isinstance(value, bool):
            out[key] = int(value)
        elif isinstance(value, int | float):
            out[key] = round(float(value), 6) if isinstance(value, float) else value
        elif isinstance(value, dict):
            inner = _scalars(value)
            if inner:
                out[key] = inner
    return out


def main(argv: list[str] | None = None) -> None:
    q, seconds = run(load_params())
    ours, base = q["ours"], q["multilabel_stratified_kfold"]
    print(
        f"split: {q['n_images']} images, {q['n_groups']} groups, {q['n_splits']} folds; "
        f"LD {ours.get('LD')} (MLSKF {base.get('LD')}), group leakage "
        f"{ours.get('group_leakage')}; {q['warnings']} warnings in {WARNINGS_PATH}"
    )
    print("split: seconds " + ", ".join(f"{k} {v:.3f}" for k, v in seconds.items()))
