"""Stage ``export``: the folds in the shapes trainers read as they are.

Everything lands under ``data/exports/`` (one DVC output, so one ``dvc import`` fetches it):

- ``folds.csv``: a byte copy of ``data/splits/folds.csv`` (``image_id,file_name,group,fold``);
- ``fold_<k>/val.json`` (and ``test.json`` with a holdout; ``fold_<k>/train.json`` with
  ``export.coco_json``): COCO files with the original top-level fields, ids and extra fields,
  holding only that part's images (in the canonical json's order) and their annotations. With
  ``export.coco_classes: mapped`` (the default) their categories are the class table's: one
  category per class (``id`` = class index, 1..N, ``name``, ``supercategory`` when the merged
  categories share one, ``original_category_ids``), each annotation's ``category_id`` is its
  class index (merged categories share one), and annotations of dropped or ignored categories
  are removed (an instance model has no ignore class; the masks keep ignore as 255).
  ``original`` keeps the json's categories and every annotation as they are;
- ``fold_<k>/train.csv``, ``fold_<k>/val.csv`` (and ``test.csv``): ``image_id,file_name,image,
  mask``; ``image`` and ``mask`` are relative to the repository root (``image`` is absolute
  when ``dataset.images`` is);
- ``fold_<k>/train_augmented.csv``: ``source_image_id,variant,seed,copy,image,mask``, the
  augmented variants of fold k's *training* images only. Variants of validation and test
  images are never listed, so augmentation cannot leak across the split;
- ``mmseg/splits/fold_<k>_{train,val,train_augmented}.txt`` and ``mmseg/splits/test.txt``:
  mmsegmentation ``ann_file`` lists, one name per line relative to ``img_dir`` without suffix;
- ``classes.json``: a byte copy of ``data/classes.json`` (names, indices, colours, ignore
  index, category ids), so the class table travels with the split it belongs to;
- ``class_distribution.csv``: each fold's class distribution, train and val part (and the
  test part): pixels, images and the labelled pixels of those images per class, background
  included, from the masks stage's per-image stats (which are counted from the masks); what
  ``pipeline.folds.class_weights`` computes weights from;
- ``exports.json``: fold sizes, variants, image and mask roots, the mmseg image suffix, and
  ``sources``: the DVC content hash of the masks, class table, variants (and image folder,
  when ``dvc.lock`` has it) the exports were made from (:mod:`pipeline.files.sources`). The revision
  is only known after the commit, so content is recorded; a trainer repo compares it with the
  hashes in its ``dvc import`` files to refuse a mix of revisions.

The mmseg ``img_dir``/``ann_dir`` symlink layout is *not* an output: DVC stores the targets of
symlinks in an output and checks them out as regular files, so links would become copies. It is
made on demand by ``python -m pipeline.folds mmseg-layout --out DIR`` from these lists.

Cost: linear in the canonical json's size: it is held once as bytes and each image and
annotation is copied as its raw text into the part that holds it (one pass, no parsed copy).
"""

from __future__ import annotations

import collections
import contextlib
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import numpy as np

from pipeline.execution.cli import stage_main
from pipeline.files.cocojson import DUMPS, decode, load_lazy
from pipeline.files.contracts import (
    AUGMENTED_COLUMNS,
    AUGMENTED_DIR,
    CANONICAL_PATH,
    CLASSES_PATH,
    DISTRIBUTION_COLUMNS,
    EXPORTS_CLASSES_NAME,
    EXPORTS_DIR,
    EXPORTS_DISTRIBUTION_NAME,
    EXPORTS_META_NAME,
    FOLD_COLUMNS,
    FOLDS_PATH,
    IGNORE,
    MANIFEST_NAME,
    MASKS_DIR,
    MMSEG_AUGMENTED,
    PAIR_COLUMNS,
    TEST_FOLD,
    VARIANTS_INDEX_PATH,
    FoldTable,
    ImageStats,
    ManifestRow,
    augmented_path,
    augmented_stem,
    folds_from_bytes,
    image_path,
    mask_path,
    mmseg_stem,
    read_bytes,
    read_image_stats,
    read_json_object,
    read_manifest,
    read_variants_index,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import (
    atomic_write_bytes,
    atomic_writer,
    check_relative,
    csv_text,
    dumps_json,
)
from pipeline.files.params import Params
from pipeline.files.sources import source_hashes

__all__ = [
    "augmented_rows",
    "build_exports",
    "check_agreement",
    "check_ids",
    "class_distribution",
    "coco_files",
    "coco_parts",
    "csv_bytes",
    "fold_files",
    "img_suffix",
    "input_hashes",
    "json_bytes",
    "lines_bytes",
    "load_manifests",
    "main",
    "map_coco",
    "mapped_categories",
    "missing_masks",
    "run",
    "subset_coco",
    "write_coco_files",
    "write_tree",
]

# The mapped COCO json's annotations: their category id is rewritten in their raw text.
_CATEGORY_ID = re.compile(r'"category_id": (-?[0-9]+)(?=[,}])')


def subset_coco(coco: Mapping[str, Any], image_ids: Iterable[int]) -> dict[str, Any]:
    """The COCO dict restricted to ``image_ids``: other top-level fields and every object's
    fields kept as they are, images and annotations in their original order."""
    keep = set(image_ids)
    out = dict(coco)
    out["images"] = [im for im in coco["images"] if int(im["id"]) in keep]
    out["annotations"] = [a for a in coco.get("annotations", []) if int(a["image_id"]) in keep]
    return out


def img_suffix(file_names: Iterable[str]) -> str:
    """The most common image suffix (ties: alphabetical), mmseg's single ``img_suffix``."""
    counts = collections.Counter(PurePosixPath(n).suffix for n in file_names)
    if not counts:
        return ".jpg"
    return min(counts, key=lambda s: (-counts[s], s))


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    return csv_text(header, rows).encode("utf-8")


def lines_bytes(lines: Iterable[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def json_bytes(obj: Any, indent: int | None = 2) -> bytes:
    return dumps_json(obj, indent=indent).encode("utf-8")


class _Parts:
    """Rows of one part (train, val, test) in the canonical json's image order."""

    def __init__(self, folds: FoldTable, json_ids: list[int], images_root: str) -> None:
        self.folds, self.json_ids, self.images_root = folds, json_ids, images_root
        self.names = {r.image_id: r.file_name for r in folds.rows}

    def ordered(self, ids: Iterable[int]) -> list[int]:
        keep = set(ids)
        return [i for i in self.json_ids if i in keep]

    def pairs(self, ids: list[int]) -> bytes:
        rows = []
        for i in self.ordered(ids):
            name = self.names[i]
            rows.append([i, name, image_path(self.images_root, name), mask_path(name)])
        return csv_bytes(PAIR_COLUMNS, rows)

    def stems(self, ids: list[int]) -> list[str]:
        return [mmseg_stem(self.names[i]) for i in self.ordered(ids)]


def check_ids(json_ids: list[int], folds: FoldTable) -> list[int]:
    """The canonical json's image ids, after checking they are exactly the folds' ids."""
    fold_ids = {r.image_id for r in folds.rows}
    if set(json_ids) != fold_ids:
        extra = sorted(fold_ids - set(json_ids))[:5]
        absent = sorted(set(json_ids) - fold_ids)[:5]
        raise DatasetError(
            f"folds table and annotations disagree (ids only in folds: {extra}, only in the "
            f"json: {absent}); re-run `dvc repro`",
            file=FOLDS_PATH,
        )
    if any(PurePosixPath(r.file_name).parts[0] == MMSEG_AUGMENTED for r in folds.rows):
        raise DatasetError(
            f"a top-level image folder named {MMSEG_AUGMENTED!r} clashes with the mmseg layout",
            file=FOLDS_PATH,
            field="file_name",
        )
    return json_ids


def check_agreement(coco: Mapping[str, Any], folds: FoldTable) -> list[int]:
    return check_ids([int(im["id"]) for im in coco["images"]], folds)


def augmented_rows(rows: Sequence[ManifestRow]) -> bytes:
    return csv_bytes(
        AUGMENTED_COLUMNS,
        [
            [
                r.source_image_id,
                r.variant,
                r.seed,
                r.copy,
                augmented_path(r.variant, r.image),
                augmented_path(r.variant, r.mask),
            ]
            for r in rows
        ],
    )


def coco_parts(folds: FoldTable, coco_json: bool) -> dict[str, set[int]]:
    """The COCO files of the exports and the image ids each holds.

    ``fold_<k>/val.json`` always (together they hold every image once) and ``test.json`` with a
    holdout; ``fold_<k>/train.json`` (the complement of the fold's val) only with
    ``export.coco_json: true``: instance-segmentation trainers read it, the others use
    ``train.csv``, and k copies of 80% of the dataset would make the exports 5x its size.
    """
    parts = {f"fold_{k}/val.json": set(folds.ids(str(k))) for k in range(folds.n_folds)}
    if coco_json:
        parts |= {f"fold_{k}/train.json": set(folds.train_ids(k)) for k in range(folds.n_folds)}
    if folds.ids(TEST_FOLD):
        parts["test.json"] = set(folds.ids(TEST_FOLD))
    return dict(sorted(parts.items()))


def coco_files(
    coco: Mapping[str, Any],
    folds: FoldTable,
    coco_json: bool = False,
    classes_doc: Mapping[str, Any] | None = None,
) -> dict[str, bytes]:
    """The COCO files in memory (what :func:`write_coco_files` streams), for small sets;
    ``classes_doc`` (``classes.json``) maps the categories, None keeps the original ones."""
    check_agreement(coco, folds)
    if classes_doc is not None:
        coco = map_coco(coco, classes_doc)
    return {
        path: json_bytes(subset_coco(coco, ids), indent=None)
        for path, ids in coco_parts(folds, coco_json).items()
    }


def _class_of_category(classes_doc: Mapping[str, Any]) -> dict[int, int]:
    """COCO category id -> class index; IGNORE for ignored and dropped ids (removed)."""
    index = {int(c): int(k["index"]) for k in classes_doc["classes"] for c in k["category_ids"]}
    for key in ("ignored_category_ids", "dropped_category_ids"):
        index |= {int(c): IGNORE for c in classes_doc.get(key, ())}
    return index


def mapped_categories(
    categories: Sequence[Mapping[str, Any]], classes_doc: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One COCO category per class of the table (background left out): ``id`` = class index,
    its name, the ``supercategory`` its categories share (left out when they differ) and the
    ``original_category_ids`` merged into it."""
    supers = {int(c["id"]): c.get("supercategory") for c in categories}
    out = []
    for k in sorted(classes_doc["classes"], key=lambda c: int(c["index"])):
        if int(k["index"]) == 0:
            continue
        ids = sorted(int(c) for c in k["category_ids"])
        entry: dict[str, Any] = {"id": int(k["index"]), "name": k["name"]}
        shared = {supers.get(c) for c in ids}
        if len(shared) == 1 and None not in shared:
            entry["supercategory"] = shared.pop()
        entry["original_category_ids"] = ids
        out.append(entry)
    return out


def _mapped_annotation(text: str, index: Mapping[int, int]) -> str | None:
    """An annotation's canonical text with its class index as ``category_id``; None when its
    category is ignored or dropped. The id is replaced in the text when it appears once (the
    usual case: no copy); an annotation with another ``"category_id"`` key nested inside is
    decoded and written again, with the same bytes as json.dumps."""
    found = _CATEGORY_ID.findall(text)
    cid = int(found[0]) if len(found) == 1 else int(decode(text.encode("utf-8"))["category_id"])
    if cid not in index:
        raise DatasetError(f"category {cid} is not in the class table; run `dvc repro`")
    if index[cid] == IGNORE:
        return None
    if len(found) == 1:
        return _CATEGORY_ID.sub(f'"category_id": {index[cid]}', text, count=1)
    annotation = decode(text.encode("utf-8"))
    annotation["category_id"] = index[cid]
    return DUMPS(annotation)


def map_coco(coco: Mapping[str, Any], classes_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The COCO dict with the class table's categories (see the module doc), in memory."""
    index = _class_of_category(classes_doc)
    out = dict(coco)
    out["categories"] = mapped_categories(coco.get("categories", []), classes_doc)
    kept = []
    for ann in coco.get("annotations", []):
        target = index.get(int(ann["category_id"]))
        if target is None:
            raise DatasetError(f"category {ann['category_id']} is not in the class table")
        if target != IGNORE:
            kept.append({**ann, "category_id": target})
    out["annotations"] = kept
    return out


def write_coco_files(
    data: bytes,
    parts: dict[str, set[int]],
    out_dir: Path,
    classes_doc: Mapping[str, Any] | None = None,
) -> None:
    """Each part's COCO subset of the canonical json (``data``), streamed in one pass.

    Every image and annotation is copied as its raw text into the parts that hold its image:
    the canonical json is already in json.dumps' format, so each file is byte-identical to
    ``json.dumps(subset_coco(...))`` (of :func:`map_coco`'s dict when ``classes_doc`` is
    given: the categories replaced, each annotation's category id rewritten in its text).
    """
    coco = load_lazy(data)
    if coco is None:
        raise DatasetError("not the strict json validate writes; run `dvc repro validate`")
    class_of = _class_of_category(classes_doc) if classes_doc is not None else None
    paths = list(parts)
    where: dict[int, list[int]] = {}
    for index, path in enumerate(paths):
        for image_id in parts[path]:
            where.setdefault(image_id, []).append(index)
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(atomic_writer(out_dir / p)) for p in paths]
        for index, (key, raw) in enumerate(coco.top.items()):
            for out in outs:
                out.write(("{" if index == 0 else ", ") + DUMPS(key) + ": ")
            if key in ("images", "annotations"):
                owners = [int(r.id if key == "images" else r.image_id) for r in coco.refs(key)]
                remap = class_of if key == "annotations" else None
                _write_subsets(outs, coco.items(key), owners, where, remap)
            elif key == "categories" and classes_doc is not None:
                text = DUMPS(mapped_categories(coco.value(key), classes_doc))
                for out in outs:
                    out.write(text)
            else:
                for out in outs:
                    out.write(bytes(raw).decode("utf-8"))
        for out in outs:
            out.write("}\n" if coco.top else "{}\n")


def _write_subsets(
    outs: list[TextIO],
    items: list[Any],
    owners: list[int],
    where: dict[int, list[int]],
    remap: Mapping[int, int] | None = None,
) -> None:
    """``[item, ...]`` in every part, each item once into the parts holding its image;
    ``remap`` (category id -> class index) rewrites annotations (:func:`_mapped_annotation`)."""
    first = [True] * len(outs)
    for out in outs:
        out.write("[")
    for raw, owner in zip(items, owners, strict=True):
        targets = where.get(owner)
        if not targets:
            continue
        text = bytes(raw).decode("utf-8")
        if remap is not None:
            text = _mapped_annotation(text, remap)
            if text is None:
                continue
        for index in targets:
            outs[index].write(text if first[index] else ", " + text)
            first[index] = False
    for out in outs:
        out.write("]")


def fold_files(
    k: int, parts: _Parts, manifests: Mapping[str, list[ManifestRow]]
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every non-COCO file of fold ``k`` and its summary line for exports.json."""
    train, val = parts.folds.train_ids(k), parts.folds.ids(str(k))
    train_set = set(train)
    augmented = [
        r for v in sorted(manifests) for r in manifests[v] if r.source_image_id in train_set
    ]
    aug_stems = [augmented_stem(r.variant, r.image) for r in augmented]
    files = {
        f"fold_{k}/train.csv": parts.pairs(train),
        f"fold_{k}/val.csv": parts.pairs(val),
        f"fold_{k}/train_augmented.csv": augmented_rows(augmented),
        f"mmseg/splits/fold_{k}_train.txt": lines_bytes(parts.stems(train)),
        f"mmseg/splits/fold_{k}_val.txt": lines_bytes(parts.stems(val)),
        f"mmseg/splits/fold_{k}_train_augmented.txt": lines_bytes(parts.stems(train) + aug_stems),
    }
    summary = {"fold": k, "train": len(train), "val": len(val), "train_augmented": len(augmented)}
    return files, summary


def class_distribution(stats: ImageStats, folds: FoldTable, names: Sequence[str]) -> bytes:
    """``class_distribution.csv``: per fold, its train and val part (and the test part), per
    class (background 0 included, ignore not a class): pixels, images holding the class, and
    the labelled pixels of those images. ``stats`` are the masks stage's per-image counts."""
    position = {image_id: i for i, image_id in enumerate(stats.image_ids)}
    missing = [i for i in (r.image_id for r in folds.rows) if i not in position]
    if missing:
        raise DatasetError(
            f"images {missing[:5]} of the folds have no stats; run `dvc repro`", file=FOLDS_PATH
        )
    pixels = np.concatenate([stats.background[:, None], stats.measure("pixels")], axis=1)
    labelled = stats.labelled
    parts = [(str(k), p) for k in range(folds.n_folds) for p in ("train", "val")]
    if folds.ids(TEST_FOLD):
        parts.append((TEST_FOLD, TEST_FOLD))
    rows = []
    for fold, part in parts:
        ids = folds.train_ids(int(fold)) if part == "train" else folds.ids(fold)
        chosen = np.array([position[i] for i in ids], dtype=np.int64)
        counts = pixels[chosen]
        present = counts > 0
        images_pixels = (present * labelled[chosen][:, None]).sum(axis=0)
        for c, name in enumerate(names):
            rows.append(
                [fold, part, c, name, int(counts[:, c].sum()), int(present[:, c].sum()),
                 int(images_pixels[c])]
            )  # fmt: skip
    return csv_bytes(DISTRIBUTION_COLUMNS, rows)


def build_exports(
    image_ids: list[int],
    folds: FoldTable,
    images_root: str,
    manifests: Mapping[str, list[ManifestRow]] | None = None,
    folds_csv: bytes | None = None,
    coco_json: bool = False,
    classes_json: bytes | None = None,
    sources: Mapping[str, str] | None = None,
    *,
    coco_classes: str = "original",
    distribution: bytes | None = None,
) -> dict[str, bytes]:
    """Every export file but the COCO jsons, as ``{path relative to data/exports: bytes}``.

    ``image_ids``: the canonical json's images, in its order (checked against the folds);
    ``manifests`` maps variant name to its checked manifest rows; ``classes_json`` is copied
    as ``classes.json``; ``sources`` (path -> content hash) goes into exports.json, with
    ``coco_classes`` (how the COCO files name categories); ``distribution`` is written as
    ``class_distribution.csv``. Pure: the stage writes the result; tests inspect it directly.
    The COCO files are :func:`coco_files`.
    """
    manifests = manifests or {}
    parts = _Parts(folds, check_ids(image_ids, folds), images_root)
    files: dict[str, bytes] = {}
    summary = []
    for k in range(folds.n_folds):
        fold, line = fold_files(k, parts, manifests)
        files.update(fold)
        summary.append(line)
    test = folds.ids(TEST_FOLD)
    if test:
        files["test.csv"] = parts.pairs(test)
        files["mmseg/splits/test.txt"] = lines_bytes(parts.stems(test))
    files["folds.csv"] = folds_csv if folds_csv is not None else csv_bytes(FOLD_COLUMNS, folds.rows)
    if classes_json is not None:
        files[EXPORTS_CLASSES_NAME] = classes_json
    if distribution is not None:
        files[EXPORTS_DISTRIBUTION_NAME] = distribution
    names = [parts.names[i] for i in parts.json_ids]
    files[EXPORTS_META_NAME] = json_bytes(
        {
            "paths": "relative to the repository root (absolute when dataset.images is)",
            "images": str(images_root),
            "masks": MASKS_DIR,
            "augmented": AUGMENTED_DIR,
            "n_folds": folds.n_folds,
            "n_images": len(parts.json_ids),
            "test": len(test),
            "variants": sorted(manifests),
            "folds": summary,
            "coco": sorted(coco_parts(folds, coco_json)),
            "coco_classes": coco_classes,
            "mmseg": {
                "img_suffix": img_suffix(names),
                "seg_map_suffix": ".png",
                "augmented_prefix": MMSEG_AUGMENTED,
            },
            "sources": dict(sorted((sources or {}).items())),
        }
    )
    return dict(sorted(files.items()))


def load_manifests(
    variants: Iterable[str], known: set[int], augmented_dir: Path
) -> dict[str, list[ManifestRow]]:
    """Each variant's manifest, checked against the folds' image ids."""
    out: dict[str, list[ManifestRow]] = {}
    for variant in variants:
        path = augmented_dir / variant / MANIFEST_NAME
        if not path.exists():
            raise DatasetError(
                "manifest of an augment variant not found; run `dvc repro`", file=str(path)
            )
        rows = read_manifest(path, variant)
        for line, row in enumerate(rows, start=2):
            if row.source_image_id not in known:
                raise DatasetError(
                    f"image {row.source_image_id} is not in the folds table (stale augmented "
                    "output? re-run `dvc repro`)",
                    file=str(path),
                    item=f"line {line}",
                    field="source_image_id",
                )
        out[variant] = rows
    return out


def write_tree(out_dir: Path, files: Mapping[str, bytes], keep: set[str] | None = None) -> None:
    """Write ``files`` atomically under ``out_dir`` and remove what a previous run left there
    that this run does not produce (fewer folds, a dropped holdout); ``keep`` names files
    written separately."""
    for rel, data in files.items():
        atomic_write_bytes(out_dir / check_relative(rel, file=str(out_dir), item=rel), data)
    wanted = {Path(rel) for rel in [*files, *(keep or ())]}
    wanted_dirs = {p for rel in wanted for p in rel.parents}
    for path in sorted(out_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(out_dir)
        if rel in wanted or rel in wanted_dirs:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def missing_masks(folds: FoldTable, root: Path) -> list[str]:
    return [m for m in (mask_path(r.file_name) for r in folds.rows) if not (root / m).exists()]


def input_hashes(root: Path, variants: Sequence[str], images_root: str) -> dict[str, str]:
    """DVC hashes of the masks, class table and variants; the photos' only from dvc.lock."""
    paths = [MASKS_DIR, CLASSES_PATH, *(f"{AUGMENTED_DIR}/{v}" for v in variants)]
    images = PurePosixPath(images_root.replace("\\", "/"))
    inside = images_root and not images.is_absolute() and ".." not in images.parts
    return source_hashes(root, paths, optional=[images.as_posix()] if inside else [])


def run(params: Params, root: Path = Path(".")) -> str:
    """Read the folds (copied verbatim), the json and the manifests; write every export."""
    folds_csv = read_bytes(root / FOLDS_PATH)
    folds = folds_from_bytes(folds_csv, FOLDS_PATH)
    missing = missing_masks(folds, root)
    if missing:
        raise DatasetError(
            f"{len(missing)} masks missing (first: {missing[0]}); run `dvc repro masks`",
            file=MASKS_DIR,
        )
    data = read_bytes(root / CANONICAL_PATH)
    lazy = load_lazy(data)
    if lazy is None:
        raise DatasetError("not the strict json validate writes; run `dvc repro validate`")
    image_ids = [int(ref.id) for ref in lazy.refs("images")]
    known = {r.image_id for r in folds.rows}
    variants = read_variants_index(root / VARIANTS_INDEX_PATH)
    manifests = load_manifests(variants, known, root / AUGMENTED_DIR)
    coco_json, images_root = params.export.coco_json, params.dataset.images or ""
    mapped = params.export.coco_classes == "mapped"
    classes_json = read_bytes(root / CLASSES_PATH)
    classes_doc = read_json_object(root / CLASSES_PATH)
    names = [c["name"] for c in sorted(classes_doc["classes"], key=lambda c: int(c["index"]))]
    distribution = class_distribution(read_image_stats(root, names), folds, names)
    sources = input_hashes(root, sorted(manifests), images_root)
    files = build_exports(
        image_ids, folds, images_root, manifests, folds_csv, coco_json, classes_json, sources,
        coco_classes=params.export.coco_classes, distribution=distribution,
    )  # fmt: skip
    parts = coco_parts(folds, coco_json)
    write_tree(root / EXPORTS_DIR, files, keep=set(parts))
    write_coco_files(data, parts, root / EXPORTS_DIR, classes_doc if mapped else None)
    return f"{len(files) + len(parts)} files under {EXPORTS_DIR}/ ({folds.n_folds} folds)"


def main(argv: list[str] | None = None) -> None:
    stage_main("export", __doc__, argv, lambda params, root, args: run(params, root))
