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

dtype / channel rule (on top of the one in :mod:`pipeline.augmenting.transforms`): images are read
with
``IMREAD_UNCHANGED`` so 16-bit and alpha survive; EXIF orientation is applied only where the raw
pixels do not have the mask's size but the oriented ones do (:mod:`pipeline.files.images`).
``uint8``
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

Cost: linear in images x copies; workers get one image each and return encoded files.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.augmenting import transforms
from pipeline.augmenting.transforms import apply_chain, rng_for, validate_chain
from pipeline.execution.cli import command, stage_main
from pipeline.execution.executor import make_executor
from pipeline.execution.itemcache import (
    ItemCache,
    Memo,
    cached_map,
    content_hash,
    item_key,
    open_cache,
    pack,
    unpack,
)
from pipeline.execution.itemcache import code_version as itemcache_version
from pipeline.files import contracts, images, orientation, pngio
from pipeline.files.contracts import (
    AUGMENTED_DIR,
    CANONICAL_PATH,
    CLASSES_PATH,
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    MASKS_DIR,
    SKIPPED_COLUMNS,
    SKIPPED_NAME,
    VARIANTS_INDEX_PATH,
    mask_relpath,
    read_classes,
    read_json_object,
    read_mask,
    variant_output_names,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_bytes, atomic_write_csv, atomic_write_json, inside
from pipeline.files.images import decode_image, normalise_image
from pipeline.files.params import PARAMS_FILE, Params, VariantParams
from pipeline.files.pngio import encode_indexed_png

__all__ = [
    "AugmentContext",
    "ItemResult",
    "Task",
    "Variant",
    "augment_pair",
    "augment_task",
    "build_tasks",
    "check_variant",
    "code_version",
    "encode_image",
    "item_key_of",
    "main",
    "make_variant",
    "manifest_rows",
    "run",
    "storable_image",
    "write_index",
]

Variant = VariantParams  # the typed settings of one variant (params.yaml's schema)


def check_variant(params: Params, name: str) -> Variant:
    """The variant's settings, its transform chain checked against the transforms: once per
    run, before any image is read."""
    if name not in params.augment.variants:
        known = ", ".join(sorted(map(str, params.augment.variants))) or "none"
        raise DatasetError(
            f"unknown variant {name!r} (defined: {known})",
            file=PARAMS_FILE,
            field=f"augment.variants.{name}",
        )
    found = params.augment.variants[name]
    try:
        validate_chain(found.transforms)
    except DatasetError as exc:
        raise DatasetError(
            str(exc), file=PARAMS_FILE, field=f"augment.variants.{name}.transforms"
        ) from None
    return found


# ---------------------------------------------------------------- pure image work


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


def make_variant(
    image: np.ndarray,
    mask: np.ndarray,
    variant: Variant,
    palette: np.ndarray,
    item: tuple[int, str],
) -> list[tuple[str, bytes]]:
    """Where a variant is made: every copy of one image, encoded, as (relative path, bytes)."""
    image_id, file_name = item
    outputs = []
    for copy in range(variant.copies):
        out_image, out_mask = augment_pair(image, mask, variant, image_id, copy)
        image_rel, mask_rel = variant_output_names(file_name, copy, variant.format)
        outputs.append((image_rel, encode_image(out_image, variant.format, variant.jpeg_quality)))
        outputs.append((mask_rel, encode_indexed_png(out_mask, palette)))
    return outputs


def manifest_rows(variant: Variant, done: list[tuple[int, str]]) -> list[list[Any]]:
    """Manifest rows of the written items ((image id, file_name)), sorted by (id, copy)."""
    rows = []
    for image_id, file_name in sorted(done, key=lambda item: item[0]):
        for copy in range(variant.copies):
            image_rel, mask_rel = variant_output_names(file_name, copy, variant.format)
            rows.append([image_id, image_rel, mask_rel, variant.name, variant.seed, copy])
    return rows


# ---------------------------------------------------------------- per image, on a worker


@dataclass(frozen=True)
class Task:
    image_id: int
    file_name: str
    image_path: str
    mask_path: str

    def with_paths(self, convert: Callable[[str], str]) -> Task:
        """The task as a worker that mounts the files elsewhere sees it (the executor's)."""
        return replace(self, image_path=convert(self.image_path), mask_path=convert(self.mask_path))

    def describe(self) -> str:
        return f"{self.image_path}: image id {self.image_id}"


@dataclass(frozen=True)
class AugmentContext:
    variant: Variant
    palette: np.ndarray
    on_error: str


@dataclass(frozen=True)
class ItemResult:
    outputs: list[tuple[str, bytes]]  # empty when skipped
    skipped: str | None = None  # the reason, with on_error: skip


def augment_task(ctx: AugmentContext, task: Task) -> ItemResult:
    """Read one image and its mask, make every copy; a bad image fails or is skipped."""
    where = {"file": task.image_path, "item": f"image id {task.image_id}"}
    mask = read_mask(task.mask_path)
    try:
        image = _load_image(task.image_path, mask.shape)
        item = (task.image_id, task.file_name)
        return ItemResult(make_variant(image, mask, ctx.variant, ctx.palette, item))
    except (OSError, ValueError, cv2.error) as exc:
        reason = _reason(exc)
        if ctx.on_error == "skip":
            return ItemResult([], reason)
        raise DatasetError(
            f"{reason} (set augment.on_error: skip to leave such images out)", **where
        ) from None


def _load_image(path: str, shape: tuple[int, int]) -> np.ndarray:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError("missing: image file not found") from None
    decoded = decode_image(data, shape)
    if decoded.status == "mismatch" and decoded.size is not None:
        found = decoded.size
        raise ValueError(f"image is {found[1]}x{found[0]} but its mask is {shape[1]}x{shape[0]}")
    if decoded.image is None:
        raise ValueError("unreadable: not a decodable image")
    return normalise_image(decoded.image)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read: {exc.strerror}"
    text = str(exc).strip().splitlines()
    first = text[-1] if text else type(exc).__name__
    return first if isinstance(exc, ValueError) else f"{type(exc).__name__}: {first}"


def build_tasks(coco: dict[str, Any], images_root: Path, masks_dir: Path) -> list[Task]:
    """One task per image of the canonical annotations, by image id.

    Names are clean and their outputs distinct by construction: validate rejects ``..``,
    absolute names, names that share a mask and folders named like another image's outputs.
    Reads are joined without resolving links, so images or masks that are symlinks, as DVC's
    symlink cache makes them, still work; writes go through ``inside()`` under the temp folder.
    """
    tasks = [
        Task(
            int(image["id"]),
            image["file_name"],
            os.path.join(images_root, image["file_name"]),
            os.path.join(masks_dir, mask_relpath(image["file_name"])),
        )
        for image in coco.get("images", [])
    ]
    return sorted(tasks, key=lambda t: t.image_id)


# ---------------------------------------------------------------- stage


def run(params: Params, root: Path = Path("."), variant_name: str = "") -> str:
    """Build ``data/augmented/<variant>`` in a temp folder and rename it into place.

    Items whose key is in the item cache are read from it, the rest computed; a file whose
    bytes the previous build already had is hard-linked from it (the folder is persistent in
    DVC), so DVC need not hash it again.
    """
    variant = check_variant(params, variant_name)
    if not params.dataset.images:
        raise DatasetError("must name the image folder", file="params.yaml", field="dataset.images")
    coco = read_json_object(root / CANONICAL_PATH)
    palette = read_classes(root / CLASSES_PATH).palette
    tasks = build_tasks(coco, root / params.dataset.images, root / MASKS_DIR)
    out_root = root / AUGMENTED_DIR
    out_root.mkdir(parents=True, exist_ok=True)
    final = inside(out_root, variant.name)
    _remove_stale(out_root, variant.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{variant.name}.tmp-", dir=out_root))
    cache = open_cache(params.cache.dir, params.cache.max_size_gb, root)
    try:
        ctx = AugmentContext(variant, palette, params.augment.on_error)
        results = _results(tasks, ctx, cache, params)
        done, skipped = _write_items(tasks, results, tmp, final)
        atomic_write_csv(tmp / MANIFEST_NAME, MANIFEST_COLUMNS, manifest_rows(variant, done))
        atomic_write_csv(tmp / SKIPPED_NAME, SKIPPED_COLUMNS, skipped)
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    cache.settle()
    note = f", {len(skipped)} images skipped (see {SKIPPED_NAME})" if skipped else ""
    note += f", {cache.hits} images reused" if cache.hits else ""
    return f"{len(done) * variant.copies} image+mask pairs in {AUGMENTED_DIR}/{variant.name}{note}"


def _results(
    tasks: list[Task], ctx: AugmentContext, cache: ItemCache, params: Params
) -> Iterator[ItemResult]:
    """Every task's result in order: from the item cache where its key is known."""
    memo = Memo(cache, "file-hashes")
    keys = [item_key_of(task, ctx, memo) for task in tasks]
    memo.save()
    executor = make_executor(params)

    def compute(indices: list[int]) -> Iterator[ItemResult]:
        chosen = [tasks[i] for i in indices]
        return executor.map(augment_task, chosen, ctx, f"augment {ctx.variant.name}")

    codec = (lambda r: pack([r.outputs, r.skipped]), lambda b: ItemResult(*unpack(b)))
    cacheable = [k or "" for k in keys]
    if all(keys):
        return cached_map(cache, cacheable, compute, codec)
    return compute(list(range(len(tasks))))  # a source file is missing: nothing to key on


@functools.cache
def code_version() -> str:
    """The source of the modules that decide variant bytes, and the libraries' versions."""
    return itemcache_version(
        [sys.modules[__name__], transforms, images, orientation, pngio, contracts]
    )


def item_key_of(task: Task, ctx: AugmentContext, memo: Memo) -> str | None:
    """What decides one image's variant files: the code, the variant's settings (its name
    seeds the randomness), the palette, the image's id and name, and both files' bytes."""
    try:
        image_hash = content_hash(task.image_path, memo)
        mask_hash = content_hash(task.mask_path, memo)
    except OSError:
        return None
    v = ctx.variant
    settings = json.dumps([v.name, v.seed, v.copies, v.format, v.jpeg_quality, v.transforms])
    return item_key(
        code_version(),
        settings,
        ctx.on_error,
        ctx.palette.tobytes(),
        str(task.image_id),
        task.file_name,
        image_hash,
        mask_hash,
    )


def _write_items(
    tasks: list[Task], results: Iterator[ItemResult], tmp: Path, previous: Path
) -> tuple[list[tuple[int, str]], list[list[Any]]]:
    """Write every result's files into ``tmp``; (done items, skipped rows)."""
    done: list[tuple[int, str]] = []
    skipped: list[list[Any]] = []
    for task, result in zip(tasks, results, strict=True):
        if result.skipped is not None:
            skipped.append([task.image_path, task.image_id, result.skipped])
            continue
        for rel, data in result.outputs:
            _place(inside(tmp, rel), data, previous / rel)
        done.append((task.image_id, task.file_name))
    return done, skipped


def _place(path: Path, data: bytes, previous: Path) -> None:
    """Link the previous build's identical file, or write the bytes."""
    try:
        if previous.stat().st_size == len(data) and previous.read_bytes() == data:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(previous, path)
            return
    except OSError:
        pass
    atomic_write_bytes(path, data)


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


def write_index(params: Params, root: Path = Path(".")) -> str:
    """``data/augmented/variants.json``: the configured variants, checked.

    Its own small stage, so ``data/augmented`` exists (and export can depend on it) even when
    no variant is configured.
    """
    names = sorted(params.augment.variants)
    for name in names:
        check_variant(params, name)
    atomic_write_json(root / VARIANTS_INDEX_PATH, {"variants": names})
    return f"{len(names)} variants configured: {', '.join(names) or 'none'}"


def _arguments(parser: Any) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("variant", nargs="?", help="a key of augment.variants in params.yaml")
    group.add_argument(
        "--index", action="store_true", help=f"only write {VARIANTS_INDEX_PATH} (the variant list)"
    )


def main(argv: list[str] | None = None) -> None:
    stage_main(
        "augment",
        __doc__,
        argv,
        lambda params, root, args: (
            write_index(params, root) if args.index else run(params, root, args.variant)
        ),
        _arguments,
    )


if __name__ == "__main__":  # dvc.yaml's command, which names this module
    from pipeline.stages import augment

    command(augment.main)
