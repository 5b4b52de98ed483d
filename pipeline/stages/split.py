"""Stage ``split``: a fold for every image, and how fair the folds are.

The stage only: it reads the class vectors, makes the groups, asks ``pipeline.splitting.stratify``
(the algorithm that chooses folds) for a fold per image and scores the result next to the library
baselines of ``pipeline.splitting.baselines``. Trainers read the folds back with ``pipeline.folds``.

Groups (batch folders, captures, crops of one photo) come from ``split.group_regex`` (first
capture group of ``file_name``) or ``split.group_field`` (an image field in the json); a group
never spans two folds. An image the rule gives no group is its own group, with a warning on
stderr naming the key and the count. An optional held-out test part is carved first with
the same stratified, group-aware machinery, then ``n_splits`` folds are made on the rest.

Outputs: ``data/splits/folds.csv`` (``image_id,file_name,group,fold``; fold ``test`` for the
holdout), ``reports/split_quality.json`` (DVC metrics, ours next to the baselines on the same
data), ``reports/split_pixel_share.csv`` (per fold and class, pixel share vs the whole set) and
``reports/split_warnings.json`` (rare classes and other listed problems).

Cost: the splitter is linear in images x labels per refinement sweep (a fixed number of
sweeps); the baselines and metrics likewise. The json is read only for ``group_field``.
"""

from __future__ import annotations

import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.execution.cli import command, stage_main
from pipeline.execution.itemcache import ItemCache, item_key, open_cache, pack, unpack
from pipeline.execution.itemcache import code_version as itemcache_version
from pipeline.files.cocojson import load_lazy
from pipeline.files.contracts import (
    CANONICAL_PATH,
    FOLD_COLUMNS,
    FOLDS_PATH,
    IMAGE_STATS_PATH,
    PIXEL_SHARE_COLUMNS,
    RANDOM_FOLDS_PATH,
    SPLIT_PIXEL_SHARE_PATH,
    SPLIT_QUALITY_PATH,
    SPLIT_WARNINGS_PATH,
    VECTORS_PATH,
    FoldTable,
    ImageStats,
    Vectors,
    csv_rows,
    fold_label,
    parse_folds,
    plain_folds,
    read_bytes,
    read_image_stats,
    read_vectors,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_csv, atomic_write_json
from pipeline.files.params import Params, SplitParams, fail
from pipeline.splitting import baselines as baselines_module
from pipeline.splitting.baselines import library_folds, random_group_folds
from pipeline.splitting.quality import split_quality
from pipeline.splitting.stable import (
    FREE,
    TEST,
    changes,
    check_compatible,
    group_labels,
    pinned_labels,
)
from pipeline.splitting.stratify import StratifySettings, fold_assignment, holdout_split

__all__ = [
    "Baselines",
    "Pixels",
    "SplitOutputs",
    "build_split",
    "groups_from_field",
    "groups_from_regex",
    "image_groups",
    "main",
    "make_folds",
    "search_settings",
    "stored_baselines",
    "read_pinned",
    "run",
    "suggest_grouping",
]

# ---------------------------------------------------------------- groups


def groups_from_regex(file_names: Sequence[str], pattern: str) -> tuple[list[str], list[str]]:
    """Group key per image; images the pattern does not match are their own group (listed)."""
    regex = re.compile(pattern)
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


def groups_from_field(
    images: Sequence[Mapping[str, Any]], field: str
) -> tuple[list[str], list[str]]:
    """Group key per image from an image field; images without it are their own group."""
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
    images: Sequence[Mapping[str, Any]], config: SplitParams
) -> tuple[list[str], list[str]]:
    """(group per image, warnings) from ``split.group_regex`` or ``split.group_field``.

    An image the rule gives no group is its own group: a warning naming the key and the count
    (the stage also prints it, :func:`run`), whether a few images or all of them miss.
    """
    if config.group_regex:
        names = [img["file_name"] for img in images]
        keys, odd = groups_from_regex(names, config.group_regex)
        key, what = "split.group_regex", f"do not match group_regex {config.group_regex!r}"
    elif config.group_field:
        keys, odd = groups_from_field(images, config.group_field)
        key, what = "split.group_field", f"have no {config.group_field!r} field"
    else:
        return [str(img["id"]) for img in images], []
    notes = []
    if odd:
        every = " (every image: is the key right?)" if len(odd) == len(images) else ""
        notes.append(
            f"{key}: {len(odd)} of {len(images)} images {what}{every}; each is its own group "
            f"(first: {odd[0]!r})"
        )
    return keys, notes


# Finer groupings to offer when the configured one gives too few groups, finest last.
_GROUPINGS = (
    ("'^([^/]+/[^/]+)/'", r"^([^/]+/[^/]+)/", "the first two folders"),
    ("'^(.*)/'", r"^(.*)/", "the whole folder path"),
)


def suggest_grouping(file_names: Sequence[str], n_splits: int) -> str:
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


def _check_enough_groups(
    keys: Sequence[str], images: Sequence[Mapping[str, Any]], n_splits: int
) -> None:
    """Fewer groups than folds cannot work: say so with a grouping that would."""
    n_groups = len(set(keys))
    if n_groups < n_splits:
        raise fail(
            "split.n_splits",
            f"{n_groups} groups cannot fill n_splits={n_splits} folds; "
            + suggest_grouping([im["file_name"] for im in images], n_splits),
        )


# ---------------------------------------------------------------- folds


def _recording_warnings(
    func: Callable[..., Any], *args: Any, **kwargs: Any
) -> tuple[Any, list[str]]:
    """Call ``func``; return its result and the UserWarnings it raised (for the report)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = func(*args, **kwargs)
    texts = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return result, list(dict.fromkeys(texts))


@dataclass(frozen=True)
class Pixels:
    """Per image (rows as ``y``): pixels per class and labelled pixels, for
    ``split.pixel_weight``."""

    per_class: np.ndarray
    labelled: np.ndarray

    def __getitem__(self, rows: np.ndarray) -> Pixels:
        return Pixels(self.per_class[rows], self.labelled[rows])


def _pixel_kwargs(pixels: Pixels | None) -> dict[str, Any]:
    """The pixels for the splitter's pixel term (the splitter decides whether it is on:
    ``pixel_weight`` > 0 in its settings)."""
    if pixels is None:
        return {}
    return {"pixels": pixels.per_class, "labelled": pixels.labelled}


def _holdout(
    y: np.ndarray, groups: np.ndarray, config: SplitParams, pixels: Pixels | None = None
) -> tuple[np.ndarray, list[str]]:
    """Which images are left for the folds (all without a test part), the holdout's warnings."""
    if config.test_fraction <= 0:
        return np.ones(y.shape[0], dtype=bool), []
    try:
        test, held = _recording_warnings(
            holdout_split,
            y,
            groups,
            test_fraction=config.test_fraction,
            random_state=config.seed,
            settings=search_settings(config),
            **_pixel_kwargs(pixels),
        )
    except ValueError as exc:
        raise fail("split.test_fraction", str(exc)) from None
    rest = ~np.asarray(test, dtype=bool)
    if not rest.any():
        raise fail("split.test_fraction", "test_fraction leaves no image for the folds")
    return rest, [f"test holdout: {text}" for text in held]


def search_settings(config: SplitParams) -> StratifySettings:
    """The one settings object of a run, for the holdout and the folds alike: the splitter's
    tuned defaults with ``split.pixel_weight``."""
    return replace(StratifySettings(), pixel_weight=config.pixel_weight)


def make_folds(
    y: np.ndarray,
    groups: np.ndarray,
    config: SplitParams,
    pinned: np.ndarray | None = None,
    pixels: Pixels | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Fold index per image (-1 = held-out test) and the splitter's warnings.

    ``pinned``: per image its kept fold, ``stable.TEST`` or ``stable.FREE`` (see
    :mod:`pipeline.splitting.stable`); only the free images are placed. ``pixels``: what
    ``split.pixel_weight`` balances (without them, labels only).
    """
    fold = np.full(y.shape[0], -1, dtype=np.int64)
    if pinned is None:
        rest, notes = _holdout(y, groups, config, pixels)
    else:
        rest, notes = _stable_holdout(y, groups, config, pinned, pixels)
    fixed = None if pinned is None else np.where(pinned[rest] >= 0, pinned[rest], -1)
    pix = _pixel_kwargs(None if pixels is None else pixels[rest])
    try:
        fold[rest], found = fold_assignment(
            y[rest],
            groups[rest],
            config.n_splits,
            random_state=config.seed,
            settings=search_settings(config),
            fixed=fixed,
            **pix,
        )
    except ValueError as exc:
        raise DatasetError(str(exc), file=VECTORS_PATH, field="split.n_splits") from None
    return fold, notes + found


def _stable_holdout(
    y: np.ndarray,
    groups: np.ndarray,
    config: SplitParams,
    pinned: np.ndarray,
    pixels: Pixels | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Pinned test images stay held out; the free ones get the same share by the holdout."""
    test = pinned == TEST
    free = pinned == FREE
    if config.test_fraction <= 0 or not free.any():
        return ~test, []
    _, free_groups = np.unique(groups[free], return_inverse=True)
    if free_groups.max() < 1:  # one new group: it cannot be both test and train
        return ~test, [f"{int(free.sum())} new images form one group: all go to the folds"]
    free_pixels = None if pixels is None else pixels[free]
    rest_free, notes = _holdout(y[free], free_groups.ravel(), config, free_pixels)
    test[np.flatnonzero(free)[~rest_free]] = True
    return ~test, notes


def _stratified_columns(
    columns: Sequence[str], y: np.ndarray
) -> tuple[list[str], np.ndarray, list[str]]:
    """(names, matrix, notes) of the columns the splitter balances.

    Columns no image has carry nothing to balance: left out (one note for all of them); with
    none left, a constant column makes the folds balance sizes and groups only.
    """
    present = y.any(axis=0)
    names = [c for c, p in zip(columns, present, strict=True) if p]
    notes = []
    if not present.all():
        missing = [c for c, p in zip(columns, present, strict=True) if not p]
        notes.append(f"{len(missing)} vector columns have no positive image: {', '.join(missing)}")
    y_split = y[:, present] if names else np.ones((y.shape[0], 1), dtype=np.uint8)
    return names, y_split, notes


def _named_labels(notes: Sequence[str], names: Sequence[str]) -> list[str]:
    """The splitter's notes with its ``label <i>`` written as the vector column it is.

    Without a balanced column the splitter only saw the constant stand-in: nothing to say.
    """
    if not names:
        return []
    return [
        re.sub(r"\blabel (\d+)\b", lambda m: f"column {names[int(m.group(1))]!r}", note)
        for note in notes
    ]


# ---------------------------------------------------------------- quality


def _scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
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


@dataclass(frozen=True)
class _Scorer:
    """Scores any fold assignment of these images on the cross-validation part."""

    y: np.ndarray
    groups: np.ndarray
    pixels: np.ndarray  # pixels per (image, class)
    classes: list[str]
    n_splits: int

    def __call__(self, fold: np.ndarray) -> dict[str, Any]:
        rest = fold >= 0
        return split_quality(
            self.y[rest],
            fold[rest],
            self.groups[rest],
            pixel_share=self.pixels[rest],
            label_names=self.classes,
            n_folds=self.n_splits,
        )


def _stats_rows(stats: ImageStats, image_ids: Sequence[int]) -> np.ndarray:
    """Row of the stats table for each of ``image_ids``."""
    row = {image_id: i for i, image_id in enumerate(stats.image_ids)}
    missing = next((i for i in image_ids if i not in row), None)
    if missing is not None:
        raise DatasetError(
            f"image {missing} of {VECTORS_PATH} is not in the stats table; run `dvc repro`",
            file=IMAGE_STATS_PATH,
        )
    return np.array([row[i] for i in image_ids], dtype=np.int64)


def _pixel_share_rows(ours: Mapping[str, Any]) -> list[list[Any]]:
    """``split_pixel_share.csv``: per fold and class, its pixel share and the whole set's."""
    share = ours["pixel_share_deviation"]
    return [
        [row["fold"], name, round(value, 6), round(share["overall_share"][name], 6)]
        for row in share["per_fold"]
        for name, value in row["share"].items()
    ]


# ---------------------------------------------------------------- the stage


@dataclass(frozen=True)
class SplitOutputs:
    """What the stage writes, and the seconds each splitter took (for the log only: outputs
    must be byte-identical from run to run)."""

    folds: list[list[Any]]  # folds.csv rows
    random_folds: list[list[Any]]  # random_group_folds.csv rows: what keeping groups gives
    quality: dict[str, Any]
    warnings: list[str]
    pixel_share: list[list[Any]]
    seconds: dict[str, float | None]  # None: reused from the item store
    grouping: tuple[str, ...] = ()  # the warnings of the group rule: printed, not only listed

    def summary(self) -> str:
        q = self.quality
        held = f" ({q['n_test_images']} held out for test)" if q["n_test_images"] else ""
        times = ", ".join(
            f"{name} {'reused' if secs is None else f'{secs:.3f}'}"
            for name, secs in self.seconds.items()
        )
        return (
            f"{q['n_images']} images{held}, {q['n_groups']} groups, {q['n_splits']} folds; "
            f"LD {q['ours']['LD']} (MLSKF {q['multilabel_stratified_kfold']['LD']}), "
            f"group leakage {q['ours']['group_leakage']}; {q['warnings']} warnings in "
            f"{SPLIT_WARNINGS_PATH}; seconds {times}"
        )


def _image_records(
    vectors: Vectors, images: Sequence[Mapping[str, Any]] | None
) -> list[Mapping[str, Any]]:
    """Per vectors row, the image as groups see it: the json's image when one is given."""
    records = [
        {"id": i, "file_name": name}
        for i, name in zip(vectors.image_ids, vectors.file_names, strict=True)
    ]
    if images is None:
        return records
    by_id = {int(im["id"]): im for im in images}
    missing = next((r["id"] for r in records if r["id"] not in by_id), None)
    if missing is not None:
        raise DatasetError(
            f"image {missing} of {VECTORS_PATH} is not in the json; run `dvc repro`",
            file=CANONICAL_PATH,
        )
    return [by_id[r["id"]] for r in records]


def build_split(
    vectors: Vectors,
    stats: ImageStats,
    config: SplitParams,
    images: Sequence[Mapping[str, Any]] | None = None,
    pinned: FoldTable | None = None,
    baselines: Baselines = library_folds,
) -> SplitOutputs:
    """Folds, quality and warnings from the vectors; ``images`` (the json's) for group_field;
    ``pinned`` the split to keep (``split.stable``) or to count changes against;
    ``baselines`` makes the library baselines' folds (the stage reuses stored ones)."""
    records = _image_records(vectors, images)
    keys, notes = image_groups(records, config)
    grouping = tuple(notes)
    _, groups = np.unique(np.array(keys, dtype=object).astype(str), return_inverse=True)
    _check_enough_groups(keys, records, config.n_splits)
    kept = _kept_labels(pinned, vectors.file_names, keys, groups, config)
    order = _stats_rows(stats, vectors.image_ids)
    pixels = stats.measures["pixels"][order]
    per_image = Pixels(pixels, stats.labelled[order])
    fold, split_notes, seconds = _choose_folds(vectors, groups, config, kept, per_image)
    notes = [*notes, *split_notes]
    score = _Scorer(vectors.matrix, groups, pixels, stats.classes, config.n_splits)
    ours = score(fold)
    quality: dict[str, Any] = {
        "n_images": len(vectors.image_ids),
        "n_groups": int(groups.max() + 1),
        "n_test_images": int((fold < 0).sum()),
        "n_splits": config.n_splits,
        "warnings": len(notes),
        "ours": _scalars(ours),
    }
    times: dict[str, float | None] = {"ours": seconds}
    for name, (base_fold, secs) in baselines(
        vectors.matrix, config.n_splits, config.seed, fold >= 0
    ).items():
        quality[name] = _scalars(score(base_fold))
        times[name] = secs
    folds = _fold_rows(vectors, keys, fold)
    if pinned is not None:
        found = changes(pinned, vectors.file_names, [row[3] for row in folds])
        quality["pinned"] = {"stable": int(config.stable), **found.as_metrics()}
    random = _fold_rows(vectors, keys, _random_group_split(keys, fold >= 0, config))
    return SplitOutputs(folds, random, quality, notes, _pixel_share_rows(ours), times, grouping)


def _fold_rows(vectors: Vectors, keys: Sequence[str], fold: np.ndarray) -> list[list[Any]]:
    rows = zip(vectors.image_ids, vectors.file_names, keys, fold.tolist(), strict=True)
    return [[image_id, name, key, fold_label(f)] for image_id, name, key, f in rows]


def _random_group_split(keys: Sequence[str], rest: np.ndarray, config: SplitParams) -> np.ndarray:
    """The seeded random group-aware split of the images in the folds (the held-out test part
    stays out), for the report's fold-balance comparison."""
    fold = np.full(rest.shape, -1, dtype=np.int64)
    idx = np.flatnonzero(rest)
    fold[idx] = random_group_folds([keys[i] for i in idx], config.n_splits, config.seed)
    return fold


def _kept_labels(
    pinned: FoldTable | None,
    names: Sequence[str],
    keys: Sequence[str],
    groups: np.ndarray,
    config: SplitParams,
) -> np.ndarray | None:
    """With ``split.stable``, each image's pinned label (whole groups), else None."""
    if not config.stable:
        return None
    if pinned is None:
        raise fail(
            "split.stable_from",
            f"{config.stable_from} holds no pinned split; run `python -m pipeline.folds pin` "
            "(and commit it) first, or set split.stable: false",
        )
    check_compatible(pinned, config)
    return group_labels(pinned_labels(pinned, names, keys), groups)


def _choose_folds(
    vectors: Vectors,
    groups: np.ndarray,
    config: SplitParams,
    kept: np.ndarray | None,
    pixels: Pixels | None = None,
) -> tuple[np.ndarray, list[str], float]:
    """(fold per image, notes, seconds): the splitter on the columns worth balancing (and
    the pixels, with ``split.pixel_weight``)."""
    names, y_split, notes = _stratified_columns(vectors.columns, vectors.matrix)
    start = time.perf_counter()
    fold, split_notes = make_folds(y_split, groups, config, kept, pixels)
    seconds = time.perf_counter() - start
    return fold, [*notes, *_named_labels(split_notes, names)], seconds


def run(params: Params, root: Path = Path(".")) -> str:
    """Read the vectors (and stats, json) under ``root``, write folds and quality reports."""
    config = params.split
    vectors = read_vectors(root / VECTORS_PATH)
    stats = read_image_stats(root)
    images = _json_images(root) if config.group_field else None
    cache = open_cache(params.cache.dir, params.cache.max_size_gb, root)
    pinned = read_pinned(root / config.stable_from)
    out = build_split(vectors, stats, config, images, pinned, stored_baselines(cache))
    atomic_write_csv(root / FOLDS_PATH, FOLD_COLUMNS, out.folds)
    atomic_write_csv(root / RANDOM_FOLDS_PATH, FOLD_COLUMNS, out.random_folds)
    atomic_write_json(root / SPLIT_QUALITY_PATH, out.quality)
    atomic_write_json(root / SPLIT_WARNINGS_PATH, {"warnings": out.warnings})
    atomic_write_csv(root / SPLIT_PIXEL_SHARE_PATH, PIXEL_SHARE_COLUMNS, out.pixel_share)
    cache.settle()  # what this run stored counts towards the store's size limit
    for note in out.grouping:  # a group rule that misses is likely a typo: said, not only listed
        print(f"warning: {note}; listed in {SPLIT_WARNINGS_PATH}", file=sys.stderr)
    return out.summary()


Baselines = Callable[
    [np.ndarray, int, int, np.ndarray], Mapping[str, tuple[np.ndarray, float | None]]
]


def stored_baselines(cache: ItemCache) -> Baselines:
    """:func:`library_folds` through the item store: the baselines' folds depend only on the
    vectors, the folds' count, the seed and which images are in the folds, so an edit that
    left the vectors alone reuses them (iterative-stratification is not even imported)."""

    def baselines(
        y: np.ndarray, n_splits: int, seed: int, rest: np.ndarray
    ) -> dict[str, tuple[np.ndarray, float | None]]:
        key = item_key(
            itemcache_version([baselines_module]),
            f"{y.shape}{y.dtype}",
            np.ascontiguousarray(y).tobytes(),
            np.ascontiguousarray(rest, dtype=np.bool_).tobytes(),
            f"{n_splits},{seed}",
        )
        stored = cache.get(key)
        if stored is not None:
            folds = unpack(stored)
            return {name: (np.array(folds[name], dtype=np.int64), None) for name in folds}
        made = library_folds(y, n_splits, seed, rest)
        cache.put(key, pack({name: fold.tolist() for name, (fold, _) in made.items()}))
        return dict(made)

    return baselines


def _json_images(root: Path) -> list[dict[str, Any]]:
    """The canonical json's images (only group_field needs fields beyond id and file name);
    the annotations stay undecoded."""
    lazy = load_lazy(read_bytes(root / CANONICAL_PATH))
    if lazy is None:
        raise DatasetError("not the strict json validate writes; run `dvc repro validate`")
    return lazy.value("images")


def read_pinned(path: Path) -> FoldTable | None:
    """The pinned split, or None while the file holds only its header (nothing pinned yet)."""
    if not path.is_file():
        return None
    data = read_bytes(path)
    fast = plain_folds(data, str(path))
    if fast is not None:
        return fast
    rows = csv_rows(data, str(path), FOLD_COLUMNS)
    return parse_folds(rows, str(path)) if rows else None


def main(argv: list[str] | None = None) -> None:
    stage_main("split", __doc__, argv, lambda params, root, args: run(params, root))


if __name__ == "__main__":  # dvc.yaml's command, which names this module
    from pipeline.stages import split

    command(split.main)
