"""Stage ``export``: the folds in the shapes trainers read as they are.

Everything lands under ``data/exports/`` (one DVC output, so one ``dvc import`` fetches it):

- ``folds.csv``: a byte copy of ``data/splits/folds.csv`` (``image_id,file_name,group,fold``);
- ``fold_<k>/train.json``, ``fold_<k>/val.json`` (and ``test.json`` with a holdout): COCO files
  with the original top-level fields, ids and extra fields, holding only that part's images
  (in the canonical json's order) and their annotations;
- ``fold_<k>/train.csv``, ``fold_<k>/val.csv`` (and ``test.csv``): ``image_id,file_name,image,
  mask``; ``image`` and ``mask`` are relative to the repository root (``image`` is absolute
  when ``dataset.images`` is);
- ``fold_<k>/train_augmented.csv``: ``source_image_id,variant,seed,copy,image,mask``, the
  augmented variants of fold k's *training* images only. Variants of validation and test
  images are never listed, so augmentation cannot leak across the split;
- ``mmseg/splits/fold_<k>_{train,val,train_augmented}.txt`` and ``mmseg/splits/test.txt``:
  mmsegmentation ``ann_file`` lists, one name per line relative to ``img_dir`` without suffix;
- ``exports.json``: fold sizes, variants, image and mask roots, the mmseg image suffix.

The mmseg ``img_dir``/``ann_dir`` symlink layout is *not* an output: DVC stores the targets of
symlinks in an output and checks them out as regular files, so links would become copies. It is
made on demand by ``python -m pipeline.folds mmseg-layout --out DIR`` from these lists.
"""

from __future__ import annotations

import collections
import csv
import io
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.augment import AUGMENTED_DIR, MANIFEST_NAME
from pipeline.errors import DatasetError
from pipeline.fsio import (
    atomic_write_bytes,
    check_relative,
    csv_text,
    dumps_json,
    mask_relpath,
    read_csv,
)
from pipeline.masks import MASKS_DIR
from pipeline.params import load_params
from pipeline.split import FOLD_COLUMNS, FOLDS_PATH, TEST_FOLD, FoldTable, parse_folds
from pipeline.validate import CANONICAL_PATH, load_coco_json

EXPORTS_DIR = "data/exports"
PAIR_COLUMNS = ("image_id", "file_name", "image", "mask")
MANIFEST_COLUMNS = ("source_image_id", "image", "mask")
AUGMENTED_COLUMNS = ("source_image_id", "variant", "seed", "copy", "image", "mask")
# Augmented images sit under this prefix in the mmseg layout; no dataset folder may use it.
MMSEG_AUGMENTED = "_augmented"


def subset_coco(coco: Mapping[str, Any], image_ids: Iterable[int]) -> dict[str, Any]:
    """The COCO dict restricted to ``image_ids``: other top-level fields and every object's
    fields kept as they are, images and annotations in their original order."""
    keep = set(image_ids)
    out = dict(coco)
    out["images"] = [im for im in coco["images"] if int(im["id"]) in keep]
    out["annotations"] = [a for a in coco.get("annotations", []) if int(a["image_id"]) in keep]
    return out


def image_path(images_root: str, file_name: str) -> str:
    """Where trainers find the image, as a POSIX path (relative to the repo root unless the
    configured image folder is absolute)."""
    root = str(images_root).replace("\\", "/").rstrip("/") or "."
    return str(PurePosixPath(root) / file_name)


def mask_path(file_name: str) -> str:
    return str(PurePosixPath(MASKS_DIR) / mask_relpath(file_name))


def mmseg_stem(file_name: str) -> str:
    """Name of an image in an mmseg split list: the path below ``img_dir`` minus the suffix."""
    return str(PurePosixPath(file_name).with_suffix(""))


def augmented_stem(variant: str, image: str) -> str:
    return f"{MMSEG_AUGMENTED}/{variant}/{mmseg_stem(image)}"


def augmented_path(variant: str, relative: str) -> str:
    return str(PurePosixPath(AUGMENTED_DIR) / variant / relative)


def img_suffix(file_names: Iterable[str]) -> str:
    """The most common image suffix (ties: alphabetical), mmseg's single ``img_suffix``."""
    counts = collections.Counter(PurePosixPath(n).suffix for n in file_names)
    if not counts:
        return ".jpg"
    return min(counts, key=lambda s: (-counts[s], s))


def check_manifest(
    rows: Sequence[Mapping[str, str]], variant: str, known: set[int], file: str
) -> list[dict[str, Any]]:
    """Manifest rows of one variant, validated: known source ids, paths inside the variant."""
    if rows:
        missing = [c for c in MANIFEST_COLUMNS if c not in rows[0]]
        if missing:
            raise DatasetError(f"missing columns {missing}", file=file)
    out: list[dict[str, Any]] = []
    for line, row in enumerate(rows, start=2):
        item = f"line {line}"
        try:
            source = int(row["source_image_id"])
        except ValueError:
            raise DatasetError(
                f"not an integer: {row['source_image_id']!r}",
                file=file,
                item=item,
                field="source_image_id",
            ) from None
        if source not in known:
            raise DatasetError(
                f"image {source} is not in the folds table (stale augmented "
                f"output? re-run `dvc repro`)",
                file=file,
                item=item,
                field="source_image_id",
            )
        out.append(
            {
                "source_image_id": source,
                "variant": row.get("variant") or variant,
                "seed": row.get("seed", ""),
                "copy": row.get("copy", ""),
                "image": check_relative(row["image"], file=file, item=item, field="image"),
                "mask": check_relative(row["mask"], file=file, item=item, field="mask"),
            }
        )
    return out


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    return csv_text(header, rows).encode("utf-8")


def lines_bytes(lines: Iterable[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def build_exports(
    coco: Mapping[str, Any],
    folds: FoldTable,
    images_root: str,
    manifests: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    folds_csv: bytes | None = None,
) -> dict[str, bytes]:
    """Every export file, as ``{path relative to data/exports: bytes}``.

    ``manifests`` maps variant name to its checked manifest rows (see ``check_manifest``).
    Pure: the stage writes the result; tests inspect it directly.
    """
    manifests = manifests or {}
    json_ids = [int(im["id"]) for im in coco["images"]]
    fold_ids = {r[0] for r in folds.rows}
    if set(json_ids) != fold_ids:
        extra = sorted(fold_ids - set(json_ids))[:5]
        absent = sorted(set(json_ids) - fold_ids)[:5]
        raise DatasetError(
            f"folds table and annotations disagree (ids only in folds: {extra}, "
            f"only in the json: {absent}); re-run `dvc repro`",
            file=FOLDS_PATH,
        )
    by_id = {r[0]: r for r in folds.rows}
    names = [by_id[i][1] for i in json_ids]
    if any(PurePosixPath(n).parts[0] == MMSEG_AUGMENTED for n in names):
        raise DatasetError(
            f"a top-level image folder named {MMSEG_AUGMENTED!r} clashes with the mmseg layout",
            file=FOLDS_PATH,
            field="file_name",
        )

    def pair_rows(ids: list[int]) -> bytes:
        keep = set(ids)
        return csv_bytes(
            PAIR_COLUMNS,
            [
                [i, by_id[i][1], image_path(images_root, by_id[i][1]), mask_path(by_id[i][1])]
                for i in json_ids
                if i in keep
            ],
        )

    def stem_list(ids: list[int]) -> list[str]:
        keep = set(ids)
        return [mmseg_stem(by_id[i][1]) for i in json_ids if i in keep]

    variants = sorted(manifests)
    files: dict[str, bytes] = {}
    summary: list[dict[str, Any]] = []
    for k in range(folds.n_folds):
        train, val = folds.train_ids(k), folds.ids(str(k))
        train_set = set(train)
        augmented = [r for v in variants for r in manifests[v] if r["source_image_id"] in train_set]
        files[f"fold_{k}/train.json"] = dumps_json(subset_coco(coco, train), indent=None).encode()
        files[f"fold_{k}/val.json"] = dumps_json(subset_coco(coco, val), indent=None).encode()
        files[f"fold_{k}/train.csv"] = pair_rows(train)
        files[f"fold_{k}/val.csv"] = pair_rows(val)
        files[f"fold_{k}/train_augmented.csv"] = csv_bytes(
            AUGMENTED_COLUMNS,
            [
                [
                    r["source_image_id"],
                    r["variant"],
                    r["seed"],
                    r["copy"],
                    augmented_path(r["variant"], r["image"]),
                    augmented_path(r["variant"], r["mask"]),
                ]
                for r in augmented
            ],
        )
        files[f"mmseg/splits/fold_{k}_train.txt"] = lines_bytes(stem_list(train))
        files[f"mmseg/splits/fold_{k}_val.txt"] = lines_bytes(stem_list(val))
        aug_stems = [augmented_stem(r["variant"], r["image"]) for r in augmented]
        files[f"mmseg/splits/fold_{k}_train_augmented.txt"] = lines_bytes(
            stem_list(train) + aug_stems
        )
        summary.append(
            {"fold": k, "train": len(train), "val": len(val), "train_augmented": len(augmented)}
        )
    test = folds.ids(TEST_FOLD)
    if test:
        files["test.json"] = dumps_json(subset_coco(coco, test), indent=None).encode()
        files["test.csv"] = pair_rows(test)
        files["mmseg/splits/test.txt"] = lines_bytes(stem_list(test))
    if folds_csv is None:
        folds_csv = csv_bytes(FOLD_COLUMNS, folds.rows)
    files["folds.csv"] = folds_csv
    files["exports.json"] = dumps_json(
        {
            "paths": "relative to the repository root (absolute when dataset.images is)",
            "images": str(images_root),
            "masks": MASKS_DIR,
            "augmented": AUGMENTED_DIR,
            "n_folds": folds.n_folds,
            "n_images": len(json_ids),
            "test": len(test),
            "variants": variants,
            "folds": summary,
            "mmseg": {
                "img_suffix": img_suffix(names),
                "seg_map_suffix": ".png",
                "augmented_prefix": MMSEG_AUGMENTED,
            },
        }
    ).encode()
    return dict(sorted(files.items()))


def load_manifests(
    variants: Iterable[str], known: set[int], augmented_dir: str = AUGMENTED_DIR
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for variant in variants:
        check_relative(variant, file="params.yaml", item=variant, field="augment.variants")
        path = Path(augmented_dir) / variant / MANIFEST_NAME
        if not path.exists():
            raise DatasetError(
                "manifest of an augment variant not found; run `dvc repro`", file=str(path)
            )
        out[variant] = check_manifest(read_csv(path), variant, known, str(path))
    return out


def write_tree(out_dir: str | os.PathLike, files: Mapping[str, bytes]) -> None:
    """Write ``files`` atomically under ``out_dir`` and remove what a previous run left there
    that this run does not produce (fewer folds, a dropped holdout)."""
    root = Path(out_dir)
    for rel, data in files.items():
        atomic_write_bytes(root / check_relative(rel, file=str(root), item=rel), data)
    wanted = {Path(rel) for rel in files}
    wanted_dirs = {p for rel in wanted for p in rel.parents}
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(root)
        if rel in wanted or rel in wanted_dirs:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def run(
    params: dict[str, Any],
    folds_path: str = FOLDS_PATH,
    annotations: str = CANONICAL_PATH,
    out_dir: str = EXPORTS_DIR,
    augmented_dir: str = AUGMENTED_DIR,
) -> dict[str, bytes]:
    try:
        folds_csv = Path(folds_path).read_bytes()
    except FileNotFoundError:
        raise DatasetError(
            "folds table not found; run `dvc repro split`", file=folds_path
        ) from None
    # Parsed from the bytes already read: folds.csv is copied into the exports verbatim.
    rows = list(csv.DictReader(io.StringIO(folds_csv.decode("utf-8"), newline="")))
    folds = parse_folds(rows, folds_path)
    missing = [rel for rel in (mask_path(r[1]) for r in folds.rows) if not Path(rel).exists()]
    if missing:
        raise DatasetError(
            f"{len(missing)} masks missing (first: {missing[0]}); run `dvc repro masks`",
            file=MASKS_DIR,
        )
    coco = load_coco_json(annotations)
    variants = sorted((params.get("augment") or {}).get("variants") or {})
    manifests = load_manifests(variants, {r[0] for r in folds.rows}, augmented_dir)
    files = build_exports(coco, folds, params["dataset"]["images"], manifests, folds_csv)
    write_tree(out_dir, files)
    return files


def main(argv: list[str] | None = None) -> None:
    files = run(load_params())
    print(
        f"export: {len(files)} files under {EXPORTS_DIR}/ "
        f"({sum(1 for f in files if f.endswith('train.json'))} folds)"
    )
