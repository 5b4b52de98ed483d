"""What checking every pinned file costs a trainer, at COCO scale (118,287 masks).

Builds a trainer-shaped repo in a temp folder (``.dvc/``, ``data/masks`` with N tiny indexed
PNGs, ``data/exports`` whose ``exports.json`` records the masks' and class table's DVC hashes,
one fold's CSVs listing every image) and times, against the unchecked read:

- ``fold(0)`` unchecked: the CSVs read into pairs, no hash (what ``fold`` did before);
- ``fold(0)`` checked, cold: no memo, every mask hashed (the first read after ``dvc pull``);
- ``fold(0)`` checked, warm, new process: the memo read from ``.dvc/tmp``, a stat per file;
- ``fold(0)`` checked, warm, same process: the memo already in memory, a stat per file;
- for scale, one pass of ``read_mask`` over every mask (what an epoch's loader reads).

    python benchmarks/bench_verify.py [--images 118287] [--keep DIR]

The files were just written, so the cold hash reads from the page cache: on a cold disk it
is bounded by reading the masks once (as the first epoch is).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.files.sources import dir_md5, file_md5  # noqa: E402
from pipeline.folds import read, verify  # noqa: E402
from pipeline.folds.read import fold, read_mask  # noqa: E402


def tiny_masks(n: int) -> list[bytes]:
    """256 different 32x24 indexed PNGs (a few hundred bytes each), cycled over the images."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(256):
        pixels = np.zeros((24, 32), np.uint8)
        pixels[rng.integers(0, 24, 40), rng.integers(0, 32, 40)] = rng.integers(1, 12, 40)
        image = Image.fromarray(pixels, mode="P")
        image.putpalette([0, 0, 0] * 256)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out[:n]


def build(root: Path, n: int) -> None:
    """A trainer-shaped repo with ``n`` masks, one fold of every image (80% train)."""
    (root / ".dvc").mkdir(parents=True)
    masks, exports = root / "data" / "masks", root / "data" / "exports"
    pngs = tiny_masks(n)
    names = [f"batch_{i // 1000:03d}/{i:06d}" for i in range(n)]
    for folder in sorted({name.split("/")[0] for name in names}):
        (masks / folder).mkdir(parents=True)
    for i, name in enumerate(names):
        (masks / f"{name}.png").write_bytes(pngs[i % len(pngs)])
    (exports / "fold_0").mkdir(parents=True)
    classes = {
        "background": 0,
        "ignore": 255,
        "classes": [
            {"index": i, "name": f"c{i}", "color": [i, i, i], "category_ids": [i] if i else []}
            for i in range(12)
        ],
        "palette": [[i, i, i] for i in range(256)],
    }
    (exports / "classes.json").write_text(json.dumps(classes))
    head = "image_id,file_name,image,mask\n"
    rows = [
        f"{i},{name}.jpg,images/{name}.jpg,data/masks/{name}.png\n" for i, name in enumerate(names)
    ]
    cut = n * 4 // 5
    (exports / "fold_0" / "train.csv").write_text(head + "".join(rows[:cut]))
    (exports / "fold_0" / "val.csv").write_text(head + "".join(rows[cut:]))
    meta = {
        "images": "images",
        "masks": "data/masks",
        "augmented": "data/augmented",
        "n_folds": 1,
        "n_images": n,
        "variants": [],
        "sources": {
            "data/classes.json": file_md5(exports / "classes.json"),
            "data/masks": dir_md5(masks),
        },
    }
    (exports / "exports.json").write_text(json.dumps(meta))


def timed(call: Callable[[], object], repeat: int = 1, before: Callable[[], None] | None = None):
    best = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=118287)
    parser.add_argument("--keep", help="build the repo here and keep it")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-verify."))
    try:
        start = time.perf_counter()
        build(root, args.images)
        print(f"built {args.images} masks in {time.perf_counter() - start:.1f} s ({root})")
        memo = root / verify.MEMO_DIR

        def forget() -> None:
            verify._MEMORY.clear()
            shutil.rmtree(memo, ignore_errors=True)

        unchecked = timed(lambda: read._fold(0, root, (), None, None), repeat=3)
        cold = timed(lambda: fold(0, root), before=forget)
        warm_disk = timed(lambda: fold(0, root), repeat=3, before=verify._MEMORY.clear)
        warm_memory = timed(lambda: fold(0, root), repeat=3)
        pairs = read._fold(0, root, (), None, None)
        epoch = timed(lambda: [read_mask(p.mask) for p in pairs.train + pairs.val])
        rows = [
            ("fold(0), unchecked (CSVs only)", unchecked),
            ("fold(0), checked, cold: every mask hashed", cold),
            ("fold(0), checked, warm memo from .dvc/tmp (new process)", warm_disk),
            ("fold(0), checked, warm memo in memory (same process)", warm_memory),
            ("read_mask of every mask once (one epoch of masks)", epoch),
        ]
        print(f"\n{args.images} masks, {len(pairs.train)} train + {len(pairs.val)} val pairs")
        print(f"{'':58s} {'seconds':>8s} {'x unchecked':>12s} {'x one epoch':>12s}")
        for label, seconds in rows:
            print(f"{label:58s} {seconds:8.2f} {seconds / unchecked:12.1f} {seconds / epoch:12.2f}")
        size = sum(f.stat().st_size for f in memo.glob("*.json"))
        print(f"\nmemo on disk: {size / 1e6:.1f} MB in {memo.relative_to(root)}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
