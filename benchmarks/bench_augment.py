"""Benchmark: augmented image+mask pairs per second, one worker vs all workers.

    python benchmarks/bench_augment.py [--repeat N] [--variant NAME]

Datasets: the facade validation images (1024x1024 JPEGs, ../shared/data/facade/valid; skipped
with a reason when absent) and the embedded sample (data/sample). Each is first run through the
real validate and masks stages in a temp folder, then the augment stage builds one variant (by
default ``geometric`` from params.yaml: rotate/scale, elastic, brightness/contrast, fog, blur,
two copies) with 1 worker and with every core. Timed: the whole ``augment.run`` (read, augment,
encode PNGs, write, manifest, rename), best of ``--repeat``. The outputs of both worker counts
are compared byte for byte, so the speed-up is never bought with different results.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.files.contracts import (  # noqa: E402
    AUGMENTED_DIR,
    CANONICAL_PATH,
    CLASSES_PATH,
    MASKS_DIR,
    read_json,
)
from pipeline.files.params import Params, load_params, resolve_workers  # noqa: E402
from pipeline.stages import augment, masks, validate  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DATASETS = {
    "facade_valid": (SHARED / "facade/valid/_annotations.coco.json", SHARED / "facade/valid"),
    "sample": (ROOT / "data/sample/annotations.json", ROOT / "data/sample/images"),
}


def prepare(work: Path, params: Params) -> None:
    """Canonical annotations, masks and classes.json under ``work``, by the real stages."""
    validate.run(params, work)
    masks.run(params, work)


def build(work: Path, params: Params, variant: str, workers: int, out: Path) -> float:
    """One timed run of the augment stage into ``out`` (a root holding the same inputs)."""
    for rel in (CANONICAL_PATH, CLASSES_PATH, MASKS_DIR):
        target = out / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(work / rel)
    params = dataclasses.replace(params, workers=workers)
    start = time.perf_counter()
    augment.run(params, out, variant)
    return time.perf_counter() - start


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs per setting")
    parser.add_argument("--variant", default="geometric", help="variant of params.yaml")
    args = parser.parse_args(argv)
    base = dataclasses.replace(load_params(ROOT / "params.yaml"), workers=1)  # prep not timed
    variant = augment.check_variant(base, args.variant)
    cores = resolve_workers(0)
    chain = ", ".join(step["name"] for step in variant.transforms)
    print(f"variant {variant.name!r}: {chain}; {variant.copies} copies/image; {cores} cores")
    header = f"{'dataset':<14}{'images':>7}{'size':>11}{'workers':>8}{'seconds':>9}"
    print(header + f"{'pairs/s':>9}{'speedup':>9}")
    failed = False
    for name, (ann_path, images) in DATASETS.items():
        if not ann_path.exists() or not images.is_dir():
            print(f"{name:<14}skipped: {ann_path} not present")
            continue
        dataset = dataclasses.replace(
            base.dataset,
            annotations=str(ann_path),
            images=str(images),
            max_dropped_fraction=1.0,  # facade valid: 24 photos sit in a subfolder
        )
        params = dataclasses.replace(base, dataset=dataset)
        with tempfile.TemporaryDirectory(prefix=f"bench_augment_{name}_") as tmp:
            work = Path(tmp)
            prepare(work, params)
            coco = read_json(work / CANONICAL_PATH)
            n_images = len(coco["images"])
            first = coco["images"][0] if coco["images"] else {"width": 0, "height": 0}
            size = f"{first['width']}x{first['height']}"
            pairs = n_images * variant.copies
            timings: dict[int, float] = {}
            digests = {}
            for workers in sorted({1, cores}):
                out = work / f"out_{workers}"
                timings[workers] = min(
                    build(work, params, variant.name, workers, out) for _ in range(args.repeat)
                )
                digests[workers] = digest(out / AUGMENTED_DIR / variant.name)
                speedup = timings[1] / timings[workers]
                print(
                    f"{name:<14}{n_images:>7}{size:>11}{workers:>8}{timings[workers]:>9.2f}"
                    f"{pairs / timings[workers]:>9.1f}{speedup:>8.2f}x"
                )
            if len(set(digests.values())) != 1:
                print(f"{name}: outputs differ between worker counts!")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
