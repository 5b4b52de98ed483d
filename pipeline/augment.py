"""Stage ``augment``: augmented image+mask variants, made once, cached by DVC, reused exactly.

``python -m pipeline augment <variant>`` builds ``data/augmented/<variant>/`` from the variant
``augment.variants.<variant>`` in params.yaml: ``{seed, copies (1), format (png), transforms}``.
dvc.yaml runs it as a ``foreach`` stage, one stage per variant with only that variant's params,
so editing one variant re-runs only that variant. Every image of the canonical annotations is
augmented (held-out test images too: ``export`` decides who may train on what).

Output contract (``<root>`` = ``data/augmented/<variant>``):

- ``<root>/images/<file_name without suffix>__c<copy>.png`` (or ``.jpg`` with ``format: jpg``)
- ``<root>/masks/<file_name without suffix>__c<copy>.png``: indexed PNG, class palette embedded
- ``<root>/manifest.csv``: ``source_image_id,image,mask,variant,seed,copy``, one row per
  written pair, sorted by (source_image_id, copy); ``image``/``mask`` are relative to ``<root>``.
  ``seed`` is the **variant** seed: the item's generator is
  ``transforms.rng_for(seed, variant, source_image_id, copy)``, so a row is enough to redo it.
- ``<root>/skipped.csv``: ``file,image_id,reason``; always written, header only if none skipped.

dtype / channel rule (on top of the one in :mod:`pipeline.transforms`): images are read with
``IMREAD_UNCHANGED`` so 16-bit and alpha survive; EXIF orientation is applied only where the raw
pixels do not have the mask's size but the oriented ones do (:mod:`pipeline.images`). ``uint8``
and ``uint16`` go to the transforms as they are (CLAHE converts explicitly there); ``bool``
becomes ``uint8`` 0/255, other integer types are clipped to [0, 65535] as ``uint16``, floats
become ``float32`` clipped to [0, 1] (NaN -> 0). Gray+alpha becomes BGRA. PNG output keeps the
dtype and channels (``float32`` is stored as ``uint16``, ``round(x * 65535)``); JPEG output is
8-bit gray or BGR, so 16-bit and float are scaled to 8 bits and alpha is dropped (documented
loss, chosen by ``format: jpg``).
``jpeg_quality`` (default 95) applies to ``format: jpg`` only.

Failure rule: a variant is built in ``data/augmented/.<variant>.tmp-*`` and renamed into place
only when complete, so a crash or an error never leaves a half-written variant. With
``augment.on_error: fail`` (default) an image that is missing, unreadable, of an unsupported
layout, of a size other than its mask, or that a transform rejects stops the stage with an error
naming the file; with ``skip`` it is left out and listed in ``skipped.csv``. A missing mask always
stops the stage: it means the masks stage is out of date, not that the data are bad.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from pipeline import images
from pipeline.errors import DatasetError
from pipeline.fsio import (
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    check_relative,
    inside,
    mask_relpath,
)
from pipeline.masks import CLASSES_PATH, MASKS_DIR
from pipeline.parallel import pmap
from pipeline.params import load_params, stage_workers
from pipeline.pngio import encode_indexed_png, read_mask
from pipeline.transforms import apply_chain, rng_for, validate_chain
from pipeline.validate import CANONICAL_PATH, load_coco_json

AUGMENTED_DIR = "data/augmented"
MANIFEST_NAME = "manifest.csv"
SKIPPED_NAME = "skipped.csv"
MANIFEST_HEADER = ("source_image_id", "image", "mask", "variant", "seed", "copy")
SKIPPED_HEADER = ("file", "image_id", "reason")

ON_ERROR = ("fail", "skip")
FORMATS = ("png", "jpg")
VARIANT_KEYS = ("seed", "copies", "format", "jpeg_quality", "transforms")
MAX_COPIES = 1000
# A folder name and a DVC stage key (``augment@<name>``): no separators and no dots (temp folders
# are ``.<name>.tmp-*``, so one variant's name never matches another's temp folders).
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


@dataclass(frozen=True)
class Variant:
    name: str
    seed: int
    copies: int
    transforms: list[dict[str, Any]]
    format: str = "png"
    jpeg_quality: int = 95


# ---------------------------------------------------------------- params


def _field(name: str, key: str | None = None) -> str:
    return f"augment.variants.{name}" + (f".{key}" if key else "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_variant(params: dict[str, Any], name: str) -> Variant:
    """The variant's settings, checked whole (chain included) before any image is read."""
    variants = (params.get("augment") or {}).get("variants") or {}
    if not isinstance(variants, dict):
        raise DatasetError(
            "must map variant name -> settings", file="params.yaml", field="augment.variants"
        )
    if name not in variants:
        known = ", ".join(sorted(map(str, variants))) or "none"
        raise DatasetError(
            f"unknown variant {name!r} (defined: {known})", file="params.yaml", field=_field(name)
        )
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise DatasetError(
            f"variant name {name!r} is not a safe folder name (letters, digits, "
            "'_' and '-', not starting with '_' or '-')",
            file="params.yaml",
            field=_field(name),
        )
    cfg = variants[name]
    if not isinstance(cfg, dict):
        raise DatasetError(
            "must be a mapping with seed, copies and transforms",
            file="params.yaml",
            field=_field(name),
        )
    unknown = sorted(set(map(str, cfg)) - set(VARIANT_KEYS))
    if unknown:
        raise DatasetError(
            f"unknown keys {unknown} (expected: {', '.join(VARIANT_KEYS)})",
            file="params.yaml",
            field=_field(name),
        )
    seed = cfg.get("seed")
    if not _is_int(seed) or seed < 0:
        raise DatasetError(
            f"must be a non-negative integer, got {seed!r}",
            file="params.yaml",
            field=_field(name, "seed"),
        )
    copies = cfg.get("copies", 1)
    if not _is_int(copies) or not 1 <= copies <= MAX_COPIES:
        raise DatasetError(
            f"must be an integer in [1, {MAX_COPIES}], got {copies!r}",
            file="params.yaml",
            field=_field(name, "copies"),
        )
    fmt = cfg.get("format", "png")
    if fmt not in FORMATS:
        raise DatasetError(
            f"{fmt!r} is not one of {FORMATS}", file="params.yaml", field=_field(name, "format")
        )
    quality = cfg.get("jpeg_quality", 95)
    if not _is_int(quality) or not 1 <= quality <= 100:
        raise DatasetError(
            f"must be an integer in [1, 100], got {quality!r}",
            file="params.yaml",
            field=_field(name, "jpeg_quality"),
        )
    chain = cfg.get("transforms")
    if chain is None:
        raise DatasetError(
            "missing (a list of {name: ..., ...} steps; [] copies the images)",
            file="params.yaml",
            field=_field(name, "transforms"),
        )
    try:
        validate_chain(chain)
    except DatasetError as exc:
        raise DatasetError(str(exc), file="params.yaml", field=_field(name, "transforms")) from None
    return Variant(name, int(seed), int(copies), [dict(step) for step in chain], fmt, int(quality))


def check_on_error(params: dict[str, Any]) -> str:
    value = (params.get("augment") or {}).get("on_error", "fail")
    if value not in ON_ERROR:
        raise DatasetError(
            f"{value!r} is not one of {ON_ERROR}", file="params.yaml", field="augment.on_error"
        )
    return value


# ---------------------------------------------------------------- pure image work


def output_relpaths(file_name: str, copy: int, fmt: str = "png") -> tuple[str, str]:
    """(image, mask) paths of one copy, relative to the variant folder."""
    stem = PurePosixPath(file_name).with_suffix("")
    name = f"{stem}__c{copy}"
    return f"images/{name}.{fmt}", f"masks/{name}.png"


def normalise_image(image: np.ndarray) -> np.ndarray:
    """Bring a decoded image to a dtype and layout the transforms take (rule in module doc)."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 2:  # gray + alpha
        gray, alpha = image[:, :, 0], image[:, :, 1]
        image = np.dstack([gray, gray, gray, alpha])
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(
            f"unsupported image layout {image.shape} (expected gray, gray+alpha, BGR or BGRA)"
        )
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(image.dtype, np.integer):
        return np.clip(image, 0, 65535).astype(np.uint16)
    if np.issubdtype(image.dtype, np.floating):
        values = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(values, 0.0, 1.0)
    raise ValueError(f"unsupported image dtype {image.dtype}")


def storable_image(image: np.ndarray, fmt: str) -> np.ndarray:
    """What the encoder can hold: PNG keeps 8/16-bit and alpha; JPEG is 8-bit gray or BGR."""
    if fmt == "png":
        if image.dtype == np.float32:
            return np.rint(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
        return image
    if image.dtype == np.uint16:
        image = np.rint(image.astype(np.float32) / np.float32(257.0)).astype(np.uint8)
    elif image.dtype == np.float32:
        image = np.rint(np.clip(image, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        image = np.ascontiguousarray(image[:, :, :3])
    return image


def encode_image(image: np.ndarray, fmt: str, jpeg_quality: int = 95) -> bytes:
    """Encoded bytes of an augmented image; the same array always gives the same bytes."""
    image = storable_image(image, fmt)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", image)
    else:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:  # pragma: no cover - OpenCV encodes every layout storable_image returns
        raise ValueError(f"could not encode a {image.dtype} {image.shape} image as {fmt}")
    return buf.tobytes()


def augment_pair(
    image: np.ndarray, mask: np.ndarray, variant: Variant, image_id: int, copy: int
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy; its randomness depends only on (seed, variant, image id, copy)."""
    rng = rng_for(variant.seed, variant.name, image_id, copy)
    return apply_chain(image, mask, variant.transforms, rng)


def decode_image(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Decoded, normalised image; oriented by EXIF only where that gives the mask's shape."""
    decoded = images.decode_image(data, shape)
    if decoded.status == "mismatch" and decoded.size is not None:
        raise ValueError(
            f"image is {decoded.size[1]}x{decoded.size[0]} but its mask is {shape[1]}x{shape[0]}"
        )
    if decoded.image is None:
        raise ValueError("unreadable: not a decodable image")
    return normalise_image(decoded.image)


def manifest_rows(variant: Variant, done: list[tuple[int, str]]) -> list[list[Any]]:
    """Manifest rows of the written items ((image id, file_name)), sorted by (id, copy)."""
    rows = []
    for image_id, file_name in sorted(done, key=lambda item: item[0]):
        for copy in range(variant.copies):
            image_rel, mask_rel = output_relpaths(file_name, copy, variant.format)
            rows.append([image_id, image_rel, mask_rel, variant.name, variant.seed, copy])
    return rows


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A variant's manifest rows with ``source_image_id``, ``seed`` and ``copy`` as ints.

    The join key for trainers and ``export``: a row belongs to exactly one source image, so
    keeping the rows whose ``source_image_id`` is in a fold's train ids cannot leak a
    validation image.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != MANIFEST_HEADER:
            raise DatasetError(f"header must be {','.join(MANIFEST_HEADER)}", file=str(path))
        return [
            {**row, **{key: int(row[key]) for key in ("source_image_id", "seed", "copy")}}
            for row in reader
        ]


def load_palette(classes_path: str | os.PathLike) -> np.ndarray:
    """The palette the masks stage embedded, as it wrote it into ``classes.json``."""
    try:
        table = json.loads(Path(classes_path).read_text(encoding="utf-8"))
        palette = np.array(table["palette"], dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError("not found: run the masks stage first", file=str(classes_path)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"not a class table written by the masks stage ({exc!r})", file=str(classes_path)
        ) from None
    if palette.shape != (256, 3):
        raise DatasetError(
            f"palette must be 256 [r, g, b] rows, got shape {palette.shape}",
            file=str(classes_path),
        )
    return palette


# ---------------------------------------------------------------- stage


@dataclass(frozen=True)
class Task:
    image_id: int
    file_name: str
    image_path: str
    mask_path: str


_WORKER: dict[str, Any] = {}


def _init_worker(variant: Variant, palette: np.ndarray, out_dir: str, on_error: str) -> None:
    _WORKER.update(variant=variant, palette=palette, out_dir=out_dir, on_error=on_error)


def _augment_task(task: Task) -> str | None:
    """Write every copy of one image; None when done, the reason when skipped."""
    w = _WORKER
    variant: Variant = w["variant"]
    try:
        mask = read_mask(task.mask_path)
    except FileNotFoundError:
        raise DatasetError(
            f"mask {task.mask_path} not found: run the masks stage first",
            file=task.image_path,
            item=f"image id {task.image_id}",
        ) from None
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"mask unreadable: {exc}", file=task.image_path, item=f"image id {task.image_id}"
        ) from None
    try:
        outputs = _augment_item(task, mask, variant)
    except (OSError, ValueError, cv2.error) as exc:
        reason = _reason(exc)
        if w["on_error"] == "skip":
            return reason
        raise DatasetError(
            f"{reason} (set augment.on_error: skip to leave such images out)",
            file=task.image_path,
            item=f"image id {task.image_id}",
        ) from None
    out_dir = w["out_dir"]
    for rel, data in outputs:
        atomic_write_bytes(inside(out_dir, rel), data)
    return None


def _augment_item(task: Task, mask: np.ndarray, variant: Variant) -> list[tuple[str, bytes]]:
    """Encoded outputs of all copies, or an exception: nothing is written for a failed item."""
    try:
        data = Path(task.image_path).read_bytes()
    except FileNotFoundError:
        raise ValueError("missing: image file not found") from None
    image = decode_image(data, mask.shape)
    outputs = []
    for copy in range(variant.copies):
        out_image, out_mask = augment_pair(image, mask, variant, task.image_id, copy)
        image_rel, mask_rel = output_relpaths(task.file_name, copy, variant.format)
        outputs.append((image_rel, encode_image(out_image, variant.format, variant.jpeg_quality)))
        outputs.append((mask_rel, _encode_mask(out_mask)))
    return outputs


def _encode_mask(mask: np.ndarray) -> bytes:
    return encode_indexed_png(mask, _WORKER["palette"])


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read: {exc.strerror}"
    text = str(exc).strip().splitlines()
    first = text[-1] if text else type(exc).__name__
    return first if isinstance(exc, ValueError) else f"{type(exc).__name__}: {first}"


def build_tasks(
    coco: dict[str, Any], images_root: str, masks_dir: str, annotations: str
) -> list[Task]:
    """One task per image of the canonical annotations.

    Names are clean and their outputs distinct by construction: validate rejects ``..``,
    absolute names and two names that differ only by extension (they would share a mask and
    every output named after it). Reads are joined without resolving links, so images or masks
    that are symlinks, as DVC's symlink cache makes them, still work; writes go through
    ``inside()`` under the temp folder.
    """
    tasks: list[Task] = []
    for image in coco.get("images", []):
        image_id = int(image["id"])
        file_name = check_relative(
            image.get("file_name"), file=annotations, item=f"image id {image_id}"
        )
        tasks.append(
            Task(
                image_id,
                file_name,
                os.path.join(images_root, file_name),
                os.path.join(masks_dir, mask_relpath(file_name)),
            )
        )
    tasks.sort(key=lambda t: t.image_id)
    return tasks


@dataclass(frozen=True)
class VariantResult:
    out_dir: Path
    written: int  # image+mask pairs
    skipped: list[list[Any]]


def run(
    params: dict[str, Any],
    variant_name: str,
    *,
    annotations: str = CANONICAL_PATH,
    masks_dir: str = MASKS_DIR,
    classes_path: str = CLASSES_PATH,
    out_root: str = AUGMENTED_DIR,
) -> VariantResult:
    variant = check_variant(params, variant_name)
    on_error = check_on_error(params)
    images_root = (params.get("dataset") or {}).get("images")
    if not images_root:
        raise DatasetError("must name the image folder", file="params.yaml", field="dataset.images")
    coco = load_coco_json(annotations)
    palette = load_palette(classes_path)
    tasks = build_tasks(coco, str(images_root), masks_dir, annotations)

    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    final = inside(root, variant.name)
    _remove_stale(root, variant.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{variant.name}.tmp-", dir=root))
    try:
        reasons = pmap(
            _augment_task,
            tasks,
            workers=stage_workers(params, "augment"),
            desc=f"augment {variant.name}",
            initializer=_init_worker,
            initargs=(variant, palette, str(tmp), on_error),
        )
        done = [(t.image_id, t.file_name) for t, r in zip(tasks, reasons, strict=True) if r is None]
        skipped = [
            [t.image_path, t.image_id, r]
            for t, r in zip(tasks, reasons, strict=True)
            if r is not None
        ]
        atomic_write_csv(tmp / MANIFEST_NAME, MANIFEST_HEADER, manifest_rows(variant, done))
        atomic_write_csv(tmp / SKIPPED_NAME, SKIPPED_HEADER, skipped)
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return VariantResult(root / variant.name, len(done) * variant.copies, skipped)


def _remove_stale(root: Path, name: str) -> None:
    """Temp folders of an earlier run of this variant that was killed before cleaning up."""
    for stale in root.glob(f".{name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in root.glob(f".{name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _replace_dir(new: Path, final: Path) -> None:
    """Put the finished folder in place; the old one is moved aside first, then deleted."""
    os.chmod(new, 0o755)  # mkdtemp makes it 0700
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


INDEX_NAME = "variants.json"


def write_index(params: dict[str, Any], out_root: str = AUGMENTED_DIR) -> list[str]:
    """``data/augmented/variants.json``: the configured variants, checked.

    Its own small stage, so ``data/augmented`` exists (and export can depend on it) even when
    no variant is configured.
    """
    variants = (params.get("augment") or {}).get("variants") or {}
    if not isinstance(variants, dict):
        raise DatasetError(
            "must map variant names to settings", file="params.yaml", field="augment.variants"
        )
    names = sorted(variants)
    for name in names:
        check_variant(params, name)
    atomic_write_json(Path(out_root) / INDEX_NAME, {"variants": names})
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline augment",
        description="Build one augmented variant from params.yaml",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("variant", nargs="?", help="a key of augment.variants in params.yaml")
    group.add_argument(
        "--index",
        action="store_true",
        help=f"only write {AUGMENTED_DIR}/{INDEX_NAME} (the variant list)",
    )
    args = parser.parse_args(argv)
    params = load_params()
    if args.index:
        names = write_index(params)
        print(f"augment: {len(names)} variants configured: {', '.join(names) or 'none'}")
        return
    result = run(params, args.variant)
    note = f", {len(result.skipped)} images skipped (see skipped.csv)" if result.skipped else ""
    print(f"augment: {result.written} image+mask pairs in {result.out_dir}{note}")
