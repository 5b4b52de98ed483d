"""The report's gallery: the images themselves, with their masks laid over them.

A segmentation dataset is checked by looking at it: a mask a few pixels off, a class painted on
the wrong thing, padding that eats an object, a tiny object nobody can see; no chart shows
these. This module chooses which images to show and draws them; the report stage reads the few
files the plan names and writes what this module returns (nothing is read or written here):

- per class: images with that class's mask over the photo, and the class's smallest objects as
  zoomed crops (objects of a few pixels vanish at thumbnail size);
- per fold (and the held-out test part): a sample of images with every class;
- per augmented variant: original and variant side by side, each bare and with its mask;
- the images validate dropped or repaired, with the reason.

Choices are seeded (``report.gallery_seed``) per class, fold and variant, so adding a class
does not reshuffle the others, and drawn by a hash of each image's file name, not by its row,
so adding images changes a pick only where a new image outranks it: most contact sheets of a
grown dataset are the same pictures with the same captions, and the report stage reuses their
PNGs (:func:`sheet_spec` is what decides a sheet's pixels besides the files it draws). Counts
that change with every growth (images in a fold, pairs of a variant) are in ``index.html``,
never on a sheet. The size follows the params, never the dataset: at most
``report.max_classes`` class sheets of ``2 x gallery_per_class`` pictures, one sheet per fold,
per variant and for the issues; only the images shown are read. A json without image files
gives masks alone. Contact sheets are PNGs encoded by OpenCV (same pixels, same bytes); their
captions are ASCII (OpenCV's font), while ``index.html`` carries the real names, HTML-escaped,
with links URL-encoded, so a ``file_name`` like ``a<script>.jpg#x`` is text, never markup.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

import cv2
import numpy as np

from pipeline.files.contracts import (
    GALLERY_DIR,
    IGNORE,
    TEST_FOLD,
    VALIDATION_KINDS,
    Classes,
    FoldTable,
    ImageStats,
    Instances,
    ManifestRow,
    augmented_path,
    image_path,
    mask_path,
)
from pipeline.files.params import ReportParams

__all__ = [
    "CAPTION_BG",
    "CAPTION_PX",
    "CSS",
    "Entry",
    "FILL_ALPHA",
    "FILL_ALPHA_ALL",
    "FOLD_COLUMNS",
    "FONT",
    "FONT_SCALE",
    "GALLERY_DIR",
    "GAP",
    "GalleryInputs",
    "GalleryPlan",
    "IGNORE_BGR",
    "INDEX_NAME",
    "ISSUE_ACTIONS",
    "IssueSample",
    "MASK_BG",
    "MIN_SEEN",
    "MIN_WINDOW",
    "OTHER_CLASSES",
    "PNG_SETTINGS",
    "Picture",
    "ROWS_PER_ISSUE_IMAGE",
    "SHEET_BG",
    "Section",
    "Sheet",
    "Source",
    "TEXT",
    "TILE_BG",
    "TILE_RATIO",
    "TITLE_PX",
    "Tile",
    "ZOOM_CONTEXT",
    "ascii_text",
    "class_order",
    "class_section",
    "class_sheet",
    "display_bgr",
    "draw_sheet",
    "draw_tile",
    "fit_text",
    "fold_section",
    "fold_sheet",
    "grid",
    "issue_section",
    "lay_over",
    "link",
    "name_hashes",
    "name_rank",
    "pinned_text",
    "plan_gallery",
    "render_html",
    "render_view",
    "sample_issues",
    "sheet_spec",
    "smallest_objects",
    "spread_pick",
    "stable_pick",
    "variant_section",
    "variant_sheet",
    "vivid",
    "zoom_window",
]

INDEX_NAME = "index.html"
ISSUE_ACTIONS = ("dropped", "repaired", "renumbered")  # what validate did to the item
ROWS_PER_ISSUE_IMAGE = 3  # problems listed per image shown (all are in the CSV)
FOLD_COLUMNS = 6


# ---------------------------------------------------------------- what is shown


@dataclass(frozen=True)
class Source:
    """The pixels of a picture: a mask and, when there is one, its photo (paths from the root;
    the photo path is absolute when the image folder is)."""

    image_id: int
    name: str  # what the page calls it: the file_name, or the variant's image path
    mask: str
    photo: str | None


@dataclass(frozen=True)
class Tile:
    """One picture on a contact sheet and its two caption lines (ASCII is drawn)."""

    source: Source | None  # None: nothing to read, an empty box
    mode: str = "overlay"  # overlay | photo (bare) | zoom (on the object of target_px)
    classes: tuple[int, ...] = ()  # class indices laid over the photo; () = every class
    lines: tuple[str, str] = ("", "")
    target_px: int = 0  # zoom: visible pixels of the object to centre on


@dataclass(frozen=True)
class Entry:
    """What the pictures numbered ``number`` show, in full, under the sheet."""

    number: int
    name: str
    text: str
    photo: str | None = None  # linked from the name when the photo was found
    mask: str | None = None
    links: tuple[tuple[str, str], ...] = ()  # more (label, path from the root)


@dataclass(frozen=True)
class Sheet:
    path: str  # under GALLERY_DIR
    anchor: str
    title: str
    note: str
    rows: tuple[tuple[Tile, ...], ...]
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    intro: str
    sheets: tuple[Sheet, ...] = ()
    notes: tuple[str, ...] = ()
    listed: tuple[Entry, ...] = ()  # items with nothing to draw, listed after the sheets


@dataclass(frozen=True)
class IssueSample:
    """A bounded pick of validate's dropped / repaired images, and the totals behind it."""

    picked: list[tuple[int, list[dict[str, str]]]]  # (image id, its rows shown), in show order
    counts: dict[str, int]  # problems per kind (dropped / repaired / renumbered kinds only)
    images: int  # distinct images with such a problem


@dataclass(frozen=True)
class GalleryInputs:
    stats: ImageStats
    instances: Instances
    classes: Classes
    folds: FoldTable
    variants: dict[str, list[ManifestRow] | None]  # None: the variant is not built
    issues: IssueSample
    images_root: str | None  # dataset.images
    pinned: Mapping[str, Any] | None = None  # split_quality.json's "pinned" (a pinned split)


@dataclass(frozen=True)
class GalleryPlan:
    n_images: int
    sections: tuple[Section, ...]

    def sheets(self) -> list[Sheet]:
        return [s for section in self.sections for s in section.sheets]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def name_hashes(names: Sequence[str]) -> np.ndarray:
    """A 64-bit hash of each name (BLAKE2b of its UTF-8 bytes): what a pick is drawn from, so
    it depends on the image itself, never on its row or on how many other images there are."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(n.encode("utf-8"), digest_size=8).digest(), "little")
            for n in names
        ],
        dtype=np.uint64,
    )


def name_rank(hashes: np.ndarray, seed: int, use: str, key: int | str) -> np.ndarray:
    """A seeded rank per name hash from (seed, use, key) only: each class, fold and variant
    ranks the images in its own order (splitmix64 of the hash mixed with the salt)."""
    salt = hashlib.blake2b(f"{int(seed)}\0{use}\0{key}".encode(), digest_size=8).digest()
    z = np.asarray(hashes, np.uint64) ^ np.uint64(int.from_bytes(salt, "little"))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stable_pick(rows: np.ndarray, rank: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` of ``rows``: those of smallest ``rank`` (aligned with ``rows``), in their
    original order. An image added to the set displaces a pick only if it outranks it, so a
    grown dataset keeps most pictures (and most contact sheets) as they were."""
    if rows.size <= n:
        return rows
    return np.sort(rows[np.lexsort((rows, rank))[:n]])


def spread_pick(rows: np.ndarray, key: np.ndarray, rank: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` rows spread over the range of ``key``: the rows sorted by key are cut into
    ``n`` runs and the row of smallest ``rank`` is taken from each, smallest key first. A
    class's images then go from "a speck of it" to "mostly it" instead of n draws of the
    typical case; a few added images move the run limits a little, rarely the picks."""
    if rows.size == 0 or n <= 0:
        return rows[:0]
    order = np.lexsort((rows, rank, key))
    runs = np.array_split(order, min(n, rows.size))
    return np.array([rows[run[np.lexsort((rows[run], rank[run]))[0]]] for run in runs])


def grid(tiles: Sequence[Tile], most: int = FOLD_COLUMNS) -> tuple[tuple[Tile, ...], ...]:
    """Tiles in rows of at most ``most``, rows as even as possible (8 -> 4 + 4, not 6 + 2)."""
    if not tiles:
        return ()
    n_rows = -(-len(tiles) // most)
    width = -(-len(tiles) // n_rows)
    return tuple(tuple(tiles[i : i + width]) for i in range(0, len(tiles), width))


# ---------------------------------------------------------------- planning: shared pieces


@dataclass
class _Index:
    """Where each image is: stats row, fold, and how to name and find its files."""

    stats: ImageStats
    images_root: str | None
    row_of: dict[int, int] = field(default_factory=dict)
    fold_of: dict[int, str] = field(default_factory=dict)
    group_of: dict[int, str] = field(default_factory=dict)
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # per row

    def rank(self, rows: np.ndarray, use: str, key: int | str, seed: int) -> np.ndarray:
        """The seeded rank of ``rows`` (see :func:`name_rank`), from their file names."""
        return name_rank(self.hashes[rows], seed, use, key)

    def source(self, row: int) -> Source:
        name = self.stats.file_names[row]
        photo = image_path(self.images_root, name) if self.images_root else None
        return Source(self.stats.image_ids[row], name, mask_path(name), photo)

    def share(self, row: int, col: int) -> float:
        """A class's share of the image's labelled pixels, in %."""
        labelled = max(int(self.stats.labelled[row]), 1)
        return 100.0 * int(self.stats.measure("pixels")[row, col]) / labelled

    def top_classes(self, row: int, n: int = 3) -> str:
        pixels = self.stats.measure("pixels")[row]
        cols = [c for c in np.argsort(-pixels, kind="stable")[:n] if pixels[c] > 0]
        parts = [f"{self.stats.classes[c]} {self.share(row, c):.3g}%" for c in cols]
        return ", ".join(parts) or "background only"


def _index(inputs: GalleryInputs) -> _Index:
    idx = _Index(inputs.stats, inputs.images_root)
    idx.row_of = {image_id: r for r, image_id in enumerate(inputs.stats.image_ids)}
    idx.fold_of = {r.image_id: r.fold for r in inputs.folds.rows}
    idx.group_of = {r.image_id: r.group for r in inputs.folds.rows}
    idx.hashes = name_hashes(inputs.stats.file_names)
    return idx


def _image_entry(idx: _Index, number: int, row: int, text: str) -> Entry:
    src = idx.source(row)
    return Entry(number, src.name, text, src.photo, src.mask)


# ---------------------------------------------------------------- planning: classes


def class_order(stats: ImageStats, max_classes: int) -> tuple[list[int], list[int], int]:
    """(columns shown, largest pixel share first; columns no image has; how many more)."""
    pixels = stats.measure("pixels").sum(axis=0)
    objects = stats.measure("instances").sum(axis=0)
    has = (pixels > 0) | (objects > 0)
    order = sorted(np.flatnonzero(has).tolist(), key=lambda j: (-int(pixels[j]), j))
    absent = np.flatnonzero(~has).tolist()
    return order[:max_classes], absent, max(0, len(order) - max_classes)


def smallest_objects(instances: Instances, class_index: int, n: int) -> list[tuple[int, int, int]]:
    """(image id, annotation id, visible px) of the class's ``n`` smallest visible objects, at
    most one per image (crowd regions are not objects)."""
    if instances.image_id is None or n <= 0:
        return []
    sel = np.flatnonzero(
        (instances.class_index == class_index)
        & (instances.iscrowd == 0)
        & (instances.visible_pixels > 0)
    )
    order = sel[np.argsort(instances.visible_pixels[sel], kind="stable")]
    ann = instances.annotation_id
    out: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    for i in order:
        image_id = int(instances.image_id[i])
        if image_id not in seen:
            seen.add(image_id)
            out.append(
                (image_id, int(ann[i]) if ann is not None else -1, int(instances.visible_pixels[i]))
            )
            if len(out) == n:
                break
    return out


def class_sheet(idx: _Index, inputs: GalleryInputs, col: int, config: ReportParams) -> Sheet:
    """One class: random images with its mask, then its smallest objects zoomed."""
    stats, n = idx.stats, config.gallery_per_class
    name, index = stats.classes[col], col + 1
    pixels = stats.measure("pixels")[:, col]
    present = np.flatnonzero(pixels > 0)
    share = pixels[present] / np.maximum(stats.labelled[present], 1)
    rank = idx.rank(present, "class", index, config.gallery_seed)
    picked = spread_pick(present, share, rank, n)
    tiles, entries = [], []
    for row in picked.tolist():
        k = len(entries) + 1
        fold = idx.fold_of.get(idx.stats.image_ids[row], "?")
        share = idx.share(row, col)
        lines = (f"#{k} fold {fold}, {share:.3g}% of the image", idx.stats.file_names[row])
        tiles.append(Tile(idx.source(row), "overlay", (index,), lines))
        text = f"fold {fold}; {name} covers {share:.3g}% of the labelled pixels"
        entries.append(_image_entry(idx, k, row, text))
    zooms = []
    for image_id, ann_id, px in smallest_objects(inputs.instances, index, n):
        row, k = idx.row_of[image_id], len(entries) + 1
        lines = (f"#{k} smallest: {px} px", idx.stats.file_names[row])
        zooms.append(Tile(idx.source(row), "zoom", (index,), lines, px))
        text = f"zoom on annotation {ann_id}: {px} px visible (fold {idx.fold_of.get(image_id)})"
        entries.append(_image_entry(idx, k, row, text))
    n_small = int(stats.measure("small")[:, col].sum())
    note = (
        f"{present.size} images contain it, {int(stats.measure('instances')[:, col].sum())} "
        f"objects ({n_small} small); top row: {len(tiles)} images drawn at random from the "
        f"smallest share of the class to the largest, bottom row: its {len(zooms)} smallest "
        "objects (one per image), zoomed"
    )
    return Sheet(
        f"classes/class_{index:03d}.png",
        f"class-{index}",
        f"{name} (class {index})",
        note,
        tuple(r for r in (tuple(tiles), tuple(zooms)) if r),
        tuple(entries),
    )


def class_section(idx: _Index, inputs: GalleryInputs, config: ReportParams) -> Section:
    shown, absent, more = class_order(idx.stats, config.max_classes)
    notes = []
    if absent:
        ids = inputs.classes.category_ids
        names = ", ".join(
            f"{idx.stats.classes[j]} (class {j + 1}, category ids "
            f"{ids[j + 1] if j + 1 < len(ids) else '?'})"
            for j in absent
        )
        notes.append(f"Not shown, no image has them: {names}.")
    if more:
        notes.append(f"{more} more classes not shown (report.max_classes).")
    sheets = (
        ()
        if config.gallery_per_class == 0
        else tuple(class_sheet(idx, inputs, j, config) for j in shown)
    )
    intro = (
        "Each class's mask laid over the photo (filled, outlined), largest pixel share first; "
        "the bottom row zooms on the class's smallest objects, which are invisible at this size."
    )
    return Section("classes", "Classes", intro, sheets, tuple(notes))


# ---------------------------------------------------------------- planning: folds


def fold_sheet(idx: _Index, folds: FoldTable, label: str, config: ReportParams) -> Sheet:
    """A random sample of one fold (or the test part), every class laid over."""
    members = np.array([idx.row_of[i] for i in folds.ids(label) if i in idx.row_of], np.int64)
    key = folds.n_folds if label == TEST_FOLD else int(label)
    rank = idx.rank(members, "fold", key, config.gallery_seed)
    picked = stable_pick(members, rank, config.gallery_per_fold)
    tiles, entries = [], []
    for k, row in enumerate(picked.tolist(), start=1):
        group = idx.group_of.get(idx.stats.image_ids[row], "?")
        lines = (f"#{k} {idx.top_classes(row, 1)}", idx.stats.file_names[row])
        tiles.append(Tile(idx.source(row), "overlay", (), lines))
        entries.append(_image_entry(idx, k, row, f"group {group}; {idx.top_classes(row)}"))
    title = "held-out test part" if label == TEST_FOLD else f"fold {label}"
    note = f"{_count(members.size, 'image')}; {len(tiles)} drawn at random, every class laid over"
    return Sheet(
        f"folds/fold_{label}.png", f"fold-{label}", title, note, grid(tiles), tuple(entries)
    )


def pinned_text(pinned: Mapping[str, Any] | None) -> str | None:
    """One sentence on how the folds differ from the pinned split (``split_quality.json``'s
    ``pinned``: images moved to another fold, added, removed), None without a pinned split."""
    if not pinned:
        return None
    how = (
        "folds kept (split.stable: true)"
        if pinned.get("stable")
        else "re-split (split.stable: false)"
    )
    counts = ", ".join(
        f"{_count(int(pinned.get(key, 0)), 'image')} {key}" for key in ("moved", "added", "removed")
    )
    return f"Against the pinned split: {counts}; {how}."


def fold_section(
    idx: _Index, folds: FoldTable, config: ReportParams, pinned: Mapping[str, Any] | None = None
) -> Section:
    labels = [str(f) for f in range(folds.n_folds)]
    if any(r.fold == TEST_FOLD for r in folds.rows):
        labels.append(TEST_FOLD)
    sheets = [fold_sheet(idx, folds, label, config) for label in labels]
    intro = "A sample of each fold, every class in its mask colour (grey: ignore)."
    note = pinned_text(pinned)
    return Section(
        "folds",
        "Folds",
        intro,
        tuple(sheets) if config.gallery_per_fold else (),
        (note,) if note else (),
    )


# ---------------------------------------------------------------- planning: variants


def variant_sheet(
    idx: _Index, number: int, name: str, rows: list[ManifestRow], config: ReportParams
) -> Sheet:
    """Pairs of one variant: original photo, original + mask, variant, variant + mask."""
    known = np.array([i for i, r in enumerate(rows) if r.source_image_id in idx.row_of], np.int64)
    hashes = name_hashes([rows[i].image for i in known.tolist()])
    rank = name_rank(hashes, config.gallery_seed, "variant", name)
    picked = stable_pick(known, rank, config.gallery_per_variant)
    tile_rows, entries = [], []
    for k, i in enumerate(picked.tolist(), start=1):
        r = rows[i]
        row = idx.row_of[r.source_image_id]
        original = idx.source(row)
        image, mask = augmented_path(name, r.image), augmented_path(name, r.mask)
        variant = Source(r.source_image_id, r.image, mask, image)
        short = idx.stats.file_names[row]
        tile_rows.append(
            (
                Tile(original, "photo", (), (f"#{k} original", short)),
                Tile(original, "overlay", (), (f"#{k} original + mask", short)),
                Tile(variant, "photo", (), (f"#{k} {name} copy {r.copy}", r.image)),
                Tile(variant, "overlay", (), (f"#{k} {name} + mask", r.image)),
            )
        )
        text = f"copy {r.copy} (seed {r.seed}) is {r.image}"
        links = (("variant", image), ("variant mask", mask))
        entries.append(Entry(k, original.name, text, original.photo, original.mask, links))
    note = (
        f"{len(rows)} pairs; {len(tile_rows)} drawn at random: original | with mask | "
        "variant | with mask"
    )
    return Sheet(
        f"variants/variant_{number:02d}.png",
        f"variant-{number}",
        f"variant {name}",
        note,
        tuple(tile_rows),
        tuple(entries),
    )


def variant_section(idx: _Index, inputs: GalleryInputs, config: ReportParams) -> Section:
    sheets, notes = [], []
    for number, (name, rows) in enumerate(inputs.variants.items(), start=1):
        if rows is None:
            notes.append(f"Variant {name} is not built yet (dvc repro augment@{name}).")
        elif config.gallery_per_variant:
            sheets.append(variant_sheet(idx, number, name, rows, config))
    if not inputs.variants:
        notes.append("No augmented variant is configured (augment.variants).")
    intro = "What each variant does to an image and its mask (grey: ignore, e.g. padding)."
    return Section("variants", "Augmented variants", intro, tuple(sheets), tuple(notes))


# ---------------------------------------------------------------- planning: validation issues


def sample_issues(
    rows: Iterable[Mapping[str, str]], max_images: int, per_image: int = ROWS_PER_ISSUE_IMAGE
) -> IssueSample:
    """Up to ``max_images`` images that validate dropped or repaired items of, taken from each
    kind in turn (so thousands of one kind do not hide a rarer one), in file order within a
    kind. One pass over ``rows``; memory bounded by the kinds x ``max_images``."""
    kept: dict[str, dict[str, list[dict[str, str]]]] = {}
    counts: dict[str, int] = {}
    images: set[str] = set()
    for row in rows:
        if row.get("action") not in ISSUE_ACTIONS or not row.get("image_id"):
            continue
        kind, image = row["kind"], row["image_id"]
        counts[kind] = counts.get(kind, 0) + 1
        images.add(image)
        by_image = kept.setdefault(kind, {})
        if image in by_image or len(by_image) < max_images:
            shown = by_image.setdefault(image, [])
            if len(shown) < per_image:
                shown.append(dict(row))
    known = [k for k in VALIDATION_KINDS if k in kept]
    order = known + [k for k in kept if k not in known]
    picked: dict[str, list[dict[str, str]]] = {}
    queues = {k: list(kept[k]) for k in order}
    while len(picked) < max_images and any(queues.values()):
        for kind in order:
            queue = queues[kind]
            while queue and queue[0] in picked:
                queue.pop(0)
            if queue and len(picked) < max_images:
                image = queue.pop(0)
                picked[image] = [r for k in order for r in kept[k].get(image, [])][:per_image]
    return IssueSample(
        [(int(i), rs) for i, rs in picked.items()], dict(sorted(counts.items())), len(images)
    )


def issue_section(idx: _Index, sample: IssueSample) -> Section:
    """Kept images with a repaired or dropped item drawn (after the repair); dropped images
    listed only, with the reason: there is no mask, and a grid of empty boxes says nothing."""
    tiles, entries, dropped = [], [], []
    for image_id, rows in sample.picked:
        kinds = ", ".join(dict.fromkeys(r["kind"] for r in rows))
        text = "; ".join(f"{r['kind']} ({r['action']}): {r['message']}" for r in rows)
        row = idx.row_of.get(image_id)
        if row is None:
            dropped.append(Entry(len(dropped) + 1, f"image id {image_id}", text))
            continue
        k = len(tiles) + 1
        tiles.append(
            Tile(idx.source(row), "overlay", (), (f"#{k} {kinds}", idx.stats.file_names[row]))
        )
        entries.append(_image_entry(idx, k, row, f"kept; {text}"))
    counts = ", ".join(f"{k} {n}" for k, n in sample.counts.items()) or "none"
    notes = [
        f"{_count(sample.images, 'image')} with a dropped or repaired item ({counts}); "
        f"{len(sample.picked)} shown (report.gallery_max_issues); every problem is listed in "
        "reports/validation_issues.csv."
    ]
    if dropped:
        notes.append(f"{_count(len(dropped), 'image')} dropped (no mask to draw), listed below.")
    note = "kept after a repair, drawn as the masks stage painted them"
    sheet = Sheet(
        "issues/issues.png", "issues-kept", "kept after a repair", note, grid(tiles), tuple(entries)
    )
    intro = "What the validate stage dropped or repaired, a few images of each kind in turn."
    return Section(
        "issues",
        "Validation: dropped or repaired",
        intro,
        (sheet,) if tiles else (),
        tuple(notes),
        tuple(dropped),
    )


def plan_gallery(inputs: GalleryInputs, config: ReportParams) -> GalleryPlan:
    """Which pictures every sheet shows, from the tables alone (no image is read)."""
    idx = _index(inputs)
    return GalleryPlan(
        len(inputs.stats.image_ids),
        (
            class_section(idx, inputs, config),
            fold_section(idx, inputs.folds, config, inputs.pinned),
            variant_section(idx, inputs, config),
            issue_section(idx, inputs.issues),
        ),
    )


# ---------------------------------------------------------------- drawing

TILE_RATIO = 0.75  # picture height / width
CAPTION_PX = 32  # two caption lines under each picture
GAP = 6
TITLE_PX = 28
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.36
SHEET_BG = (238, 238, 238)  # BGR
TILE_BG = (52, 52, 52)
CAPTION_BG = (255, 255, 255)
TEXT = (25, 25, 25)
MASK_BG = (22, 22, 22)  # background of a mask drawn without its photo
OTHER_CLASSES = (96, 96, 96)  # the other classes on a class sheet without photos
IGNORE_BGR = (210, 210, 210)
FILL_ALPHA = 0.45  # one class's mask over a photo
FILL_ALPHA_ALL = 0.35  # every class over a photo: the photo must still show through
MIN_SEEN = 0.7  # a tile pixel that any mask pixel falls in shows at least this much colour
ZOOM_CONTEXT = 4  # a zoomed crop is this many times the object's size
MIN_WINDOW = 16  # px of the original, smallest crop side
PNG_SETTINGS = [cv2.IMWRITE_PNG_COMPRESSION, 9]


@dataclass(frozen=True)
class Picture:
    """What the stage read for a tile: the mask, and the photo when it was found."""

    mask: np.ndarray | None = None
    photo: np.ndarray | None = None


def display_bgr(image: np.ndarray) -> np.ndarray:
    """Any decoded image (8/16-bit, float, gray, gray+alpha, BGRA) as 8-bit BGR for the eye."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        values = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        image = np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] in (1, 2):
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[:, :, :3])


def vivid(rgb: Sequence[int]) -> tuple[float, float, float]:
    """A palette colour (RGB) as BGR scaled to full brightness: the VOC palette's dark
    entries (128, 0, 0) vanish over a photo, their hue does not."""
    c = np.asarray(rgb, dtype=np.float32)[::-1]
    top = float(c.max())
    return tuple(float(v) for v in (c * (255.0 / top) if top > 0 else c + 255.0))  # type: ignore[return-value]


def _coverage(binary: np.ndarray, size: tuple[int, int], scale: float) -> np.ndarray:
    """Share of each output pixel the binary mask covers (0..1) at ``size`` (w, h)."""
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    small = cv2.resize(binary.view(np.uint8) * np.uint8(255), size, interpolation=interp)
    return small.astype(np.float32) / 255.0


def _blend(
    out: np.ndarray, cov: np.ndarray, colour: Sequence[float], alpha: float, outline: bool
) -> np.ndarray:
    """Lay a colour over ``out`` where ``cov`` > 0; tiny objects keep MIN_SEEN of it."""
    seen = cov > 0
    a = alpha * np.maximum(cov, MIN_SEEN * seen)
    out = out * (1.0 - a[..., None]) + np.asarray(colour, np.float32) * a[..., None]
    if outline:
        inner = cv2.erode(seen.view(np.uint8), np.ones((3, 3), np.uint8))
        out[seen & (inner == 0)] = colour
    return out


def lay_over(
    base: np.ndarray,
    mask: np.ndarray,
    classes: tuple[int, ...],
    palette: np.ndarray,
    scale: float,
    photo: bool,
) -> np.ndarray:
    """Masks of ``classes`` (every class and ignore when empty) over ``base`` (the photo at the
    tile's size, or a dark ground): filled and outlined over a photo, solid without one."""
    size = (base.shape[1], base.shape[0])
    if classes:
        wanted = list(classes)
    else:
        counts = np.bincount(mask.ravel(), minlength=256)
        wanted = [c for c in range(1, 256) if counts[c]]
    out = base.astype(np.float32)
    if not photo and classes:  # the other classes in grey, so the shape has its context
        others = np.ones(256, dtype=bool)
        others[[0, *classes]] = False
        out = _blend(out, _coverage(others[mask], size, scale), OTHER_CLASSES, 1.0, False)
    for c in wanted:
        colour = IGNORE_BGR if c == IGNORE else vivid(palette[c])
        cov = _coverage(mask == c, size, scale)
        alpha = (FILL_ALPHA if classes else FILL_ALPHA_ALL) if photo else 1.0
        out = _blend(out, cov, colour, alpha, photo)
    return np.rint(out).astype(np.uint8)


def render_view(
    photo: np.ndarray | None,
    mask: np.ndarray,
    classes: tuple[int, ...] | None,
    palette: np.ndarray,
    box: tuple[int, int],
) -> tuple[np.ndarray, float]:
    """(picture fitted into ``box`` (w, h), scale): the photo (or a dark ground) with the masks
    of ``classes`` laid over it; ``classes=None`` shows the photo bare. Shrinking averages
    pixels, enlarging repeats them (a zoom shows the real pixels)."""
    h, w = mask.shape
    scale = min(box[0] / w, box[1] / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    if photo is not None:
        base = cv2.resize(photo, size, interpolation=interp)
    else:
        base = np.full((size[1], size[0], 3), MASK_BG, np.uint8)
    if classes is None:
        return base, scale
    return lay_over(base, mask, classes, palette, scale, photo is not None), scale


def zoom_window(
    mask: np.ndarray, index: int, target_px: int, aspect: float
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None:
    """(crop, object), each (x, y, w, h): the connected piece of class ``index`` whose area is
    closest to ``target_px`` (the object's visible pixels), and a crop ZOOM_CONTEXT times its
    size around it. Pieces are only searched inside the class's bounding box (cheap at 12 MP)."""
    binary = (mask == index).view(np.uint8)
    bx, by, bw, bh = cv2.boundingRect(binary)
    if bw == 0:
        return None
    _, _, stats, _ = cv2.connectedComponentsWithStats(
        binary[by : by + bh, bx : bx + bw], connectivity=8
    )
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
    best = int(np.lexsort((np.arange(area.size), area, np.abs(area - target_px)))[0]) + 1
    x, y, w, h = (int(v) for v in stats[best, :4])
    x, y = x + bx, y + by
    height, width = mask.shape
    win_h = min(height, max(MIN_WINDOW, ZOOM_CONTEXT * max(w, h)))
    win_w = min(width, max(1, round(win_h * aspect)))
    x0 = min(max(0, x + w // 2 - win_w // 2), width - win_w)
    y0 = min(max(0, y + h // 2 - win_h // 2), height - win_h)
    return (x0, y0, win_w, win_h), (x, y, w, h)


def _mark(view: np.ndarray, box: tuple[int, int, int, int], scale: float) -> None:
    """A white frame around the zoomed object: the crop may hold other pieces of its class."""
    x, y, w, h = box
    x0, y0 = int(x * scale) - 3, int(y * scale) - 3
    x1, y1 = int((x + w) * scale) + 2, int((y + h) * scale) + 2
    cv2.rectangle(view, (x0, y0), (x1, y1), (255, 255, 255), 1, cv2.LINE_8)


def _view(
    tile: Tile, picture: Picture, palette: np.ndarray, box: tuple[int, int]
) -> tuple[np.ndarray | None, str]:
    """The tile's picture and its first caption line (a zoom says by how much)."""
    line = tile.lines[0]
    if picture.mask is None:
        return None, line
    mask = picture.mask
    photo = display_bgr(picture.photo) if picture.photo is not None else None
    if tile.mode == "photo":
        if photo is None:
            return None, f"{line} (no photo)"
        return render_view(photo, mask, None, palette, box)[0], line
    if tile.mode == "zoom":
        found = zoom_window(mask, tile.classes[0], tile.target_px, box[0] / box[1])
        if found is not None:
            (x, y, w, h), target = found
            mask = mask[y : y + h, x : x + w]
            photo = photo[y : y + h, x : x + w] if photo is not None else None
            view, scale = render_view(photo, mask, tile.classes, palette, box)
            tx, ty, tw, th = target
            _mark(view, (tx - x, ty - y, tw, th), scale)
            return view, (f"{line}, x{scale:.0f}" if scale >= 1.5 else line)
    return render_view(photo, mask, tile.classes, palette, box)[0], line


def ascii_text(text: str) -> str:
    """What OpenCV's font can draw: printable ASCII, anything else as '?'."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


def _text_width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def fit_text(text: str, width: int, scale: float = FONT_SCALE) -> str:
    """``text`` in ASCII, cut in the middle (``..``) until it fits ``width`` px: file names
    differ at both ends (batch folder, number)."""
    text = ascii_text(text)
    if _text_width(text, scale) <= width:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # most characters kept that still fit
        mid = (lo + hi + 1) // 2
        head = (mid + 1) // 2
        cut = text[:head] + ".." + text[len(text) - (mid - head) :]
        lo, hi = (mid, hi) if _text_width(cut, scale) <= width else (lo, mid - 1)
    head = (lo + 1) // 2
    return text[:head] + ".." + text[len(text) - (lo - head) :]


def _put(
    image: np.ndarray, text: str, x: int, y: int, width: int, scale: float = FONT_SCALE
) -> None:
    cv2.putText(image, fit_text(text, width, scale), (x, y), FONT, scale, TEXT, 1, cv2.LINE_AA)


def draw_tile(tile: Tile, picture: Picture, palette: np.ndarray, width: int) -> np.ndarray:
    """One picture fitted in a ``width`` x ``TILE_RATIO * width`` box, captions below."""
    box = (width, round(width * TILE_RATIO))
    canvas = np.full((box[1] + CAPTION_PX, box[0], 3), TILE_BG, np.uint8)
    view, line = _view(tile, picture, palette, box)
    if view is not None:
        h, w = view.shape[:2]
        y0, x0 = (box[1] - h) // 2, (box[0] - w) // 2
        canvas[y0 : y0 + h, x0 : x0 + w] = view
    else:
        what = "dropped by validate" if tile.mode == "placeholder" else "nothing to draw"
        cv2.putText(
            canvas, what, (8, box[1] // 2), FONT, FONT_SCALE, (230, 230, 230), 1, cv2.LINE_AA
        )
    canvas[box[1] :] = CAPTION_BG
    _put(canvas, line, 4, box[1] + 13, width - 8)
    _put(canvas, tile.lines[1], 4, box[1] + 27, width - 8)
    return canvas


def sheet_spec(sheet: Sheet) -> str:
    """Everything of a sheet that decides its pixels besides the contents of the files it
    draws (and the palette and tile width): the title and every tile, as canonical text."""
    rows = [
        [
            [
                None if t.source is None else [t.source.mask, t.source.photo],
                t.mode,
                list(t.classes),
                list(t.lines),
                t.target_px,
            ]
            for t in row
        ]
        for row in sheet.rows
    ]
    return json.dumps([sheet.path, sheet.title, rows], separators=(",", ":"))


def draw_sheet(title: str, rows: Sequence[Sequence[np.ndarray]]) -> tuple[bytes, tuple[int, int]]:
    """Tiles in rows under a title, as PNG bytes and (width, height)."""
    tile_h, tile_w = rows[0][0].shape[:2]
    columns = max(len(r) for r in rows)
    width = GAP + columns * (tile_w + GAP)
    height = TITLE_PX + len(rows) * (tile_h + GAP)
    sheet = np.full((height, width, 3), SHEET_BG, np.uint8)
    _put(sheet, title, GAP, 19, width - 2 * GAP, 0.5)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            y, x = TITLE_PX + r * (tile_h + GAP), GAP + c * (tile_w + GAP)
            sheet[y : y + tile_h, x : x + tile_w] = tile
    ok, data = cv2.imencode(".png", sheet, PNG_SETTINGS)
    if not ok:  # pragma: no cover - OpenCV encodes any 8-bit BGR array
        raise ValueError(f"cannot encode the contact sheet {title!r}")
    return data.tobytes(), (width, height)


# ---------------------------------------------------------------- the page

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1500px;
       padding: 0 1em; color: #222; }
nav a { margin-right: 1em; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
img.sheet { max-width: 100%; height: auto; display: block; margin: .4em 0; }
ol { font-size: 12px; color: #444; padding-left: 2.5em; word-break: break-all; }
.note { color: #a33; }
code { background: #f3f3f3; }
"""


def link(path: str) -> str:
    """A path (from the repository root, or absolute) as a URL from GALLERY_DIR, encoded so
    ``#``, ``%``, ``?`` and ``<`` in a file name stay part of the name."""
    if path.startswith("/"):
        return "file://" + quote(path)
    return "../" * len(PurePosixPath(GALLERY_DIR).parts) + quote(path)


def _a(href: str, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def _entry_html(entry: Entry, photos: Mapping[str, str]) -> str:
    status = photos.get(entry.photo, "") if entry.photo else ""
    if status == "missing" and "ok" not in photos.values():
        status = ""  # no photo at all (a json alone): the page says so once
    if entry.photo and status == "ok":
        name = _a(link(entry.photo), entry.name)
    else:
        name = f"<code>{html.escape(entry.name)}</code>"
        name += f" (photo {html.escape(status)})" if status else ""
    links = ([("mask", entry.mask)] if entry.mask else []) + list(entry.links)
    more = "".join(f" &middot; {_a(link(p), label)}" for label, p in links)
    return f'<li value="{entry.number}">{name}: {html.escape(entry.text)}{more}</li>'


def _sheet_html(sheet: Sheet, size: tuple[int, int], photos: Mapping[str, str]) -> list[str]:
    e = html.escape
    return [
        f'<article id="{e(sheet.anchor)}"><h3>{e(sheet.title)}</h3><p>{e(sheet.note)}</p>',
        f'<img class="sheet" src="{e(quote(sheet.path))}" width="{size[0]}" '
        f'height="{size[1]}" alt="{e(sheet.title)}">',
        "<ol>",
        *(_entry_html(entry, photos) for entry in sheet.entries),
        "</ol></article>",
    ]


def _summary(plan: GalleryPlan, photos: Mapping[str, str]) -> str:
    found = sum(status == "ok" for status in photos.values())
    if not photos:
        seen = "no image folder: masks alone"
    elif found == 0:
        seen = "no photo found (a json without image files?): masks alone, on black"
    else:
        seen = f"photos found for {found} of the {len(photos)} images drawn"
    return (
        f"{plan.n_images} images; {seen}. Colours are the mask palette (data/classes.json), "
        "brightened; light grey is ignore (255). Numbers on the sheets match the lists below."
    )


def render_html(
    plan: GalleryPlan, sizes: Mapping[str, tuple[int, int]], photos: Mapping[str, str]
) -> str:
    """The self-contained page: relative links only, no script, every name escaped.

    ``sizes``: sheet path -> (width, height); ``photos``: photo path -> ``ok`` or why not.
    """
    e = html.escape
    nav = " ".join(f'<a href="#{s.anchor}">{e(s.title)}</a>' for s in plan.sections)
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        "<title>Dataset gallery</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Dataset gallery</h1>",
        f"<p>{e(_summary(plan, photos))}</p>",
        f"<nav>{nav}</nav>",
    ]
    for section in plan.sections:
        parts.append(f'<section id="{e(section.anchor)}"><h2>{e(section.title)}</h2>')
        parts.append(f"<p>{e(section.intro)}</p>")
        parts += [f'<p class="note">{e(note)}</p>' for note in section.notes]
        for sheet in section.sheets:
            parts += _sheet_html(sheet, sizes[sheet.path], photos)
        if section.listed:
            parts += ["<ol>", *(_entry_html(entry, photos) for entry in section.listed), "</ol>"]
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
