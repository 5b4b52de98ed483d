"""Benchmark: each transform against albumentations 2.0.8, fidelity to before, the whole variant.

    python benchmarks/bench_transforms.py [--images 20] [--repeat 3] [--only NAME,...]
        [--cv-threads N] [--skip-variant] [--skip-threads] [--repeat-threads 2] [--before REV]

albumentations (MIT, pinned by the ``bench`` extra: ``pip install -e ".[bench]"``) is only
needed here; without it the script says so and exits 0.

Data: the facade validation photos (1024x1024 JPEGs, ../shared/data/facade/valid) with the masks
the real validate and masks stages make from their annotations; when that folder is absent, a
deterministic generated set of 1024x1024 photos (``pipeline.tools.sample.generate``) instead.

1. Per transform: median ms per image over ``--images`` pairs x ``--repeat``, ours and the
   albumentations counterpart in turn on each pair (who goes first alternates), both at p=1,
   both on the same OpenCV build and thread setting, and both outputs made contiguous inside the
   timed region. uint8 BGR + mask at 1024x1024 and 512x512 (INTER_AREA / INTER_NEAREST
   downscale), and 16-bit (x257) at 1024 where albumentations takes uint16 and returns uint16.
   Printed as ratio ours/theirs, and as the median of the ratios of back-to-back runs (steadier
   on a loaded machine, where calls of a few ms are often preempted). Our generator is made
   before the clock starts (albumentations keeps its own). Same parameter ranges:

   ==================== ======================================================================
   ours                 albumentations
   ==================== ======================================================================
   rotate_scale         Affine(rotate=(-15, 15), scale=(0.9, 1.1), keep_ratio=True,
   angle [-15, 15]      interpolation=LINEAR, mask_interpolation=NEAREST, border_mode=CONSTANT,
   scale [0.9, 1.1]     fill=0, fill_mask=255): both rotate and scale about the centre
                        (theirs cv2.warpAffine, IPP where built in; ours cv2.remap with
                        fixed-point maps, without IPP: the same bytes on every CPU)
   elastic              ElasticTransform(alpha=30, sigma=5, noise_distribution="uniform",
   alpha [20, 40]       border_mode=REFLECT_101): both displace by alpha x GaussianBlur_sigma(
   sigma 5              U(-1, 1)) pixels (albumentations' alpha is a scalar: the range's middle;
                        the work does not depend on alpha); its mask border reflects, ours is 255
   brightness_contrast  RandomBrightnessContrast(brightness_limit=(-0.1, 0.1),
   brightness [-.1, .1] contrast_limit=(-0.2, 0.2)): theirs x * (1 + c) + b * 255, ours pivots
   contrast [0.8, 1.2]  contrast on the image mean (an eighth of a pass: every 8th row); both
                        apply a uint8 LUT with stringzilla.translate
   fog intensity        RandomFog(fog_coef_range=(0.1, 0.3)): theirs draws particles, ours
   [0.1, 0.3]           blends a smooth haze field; the intensity range is the same
   gaussian_blur sigma  GaussianBlur(blur_limit=0, sigma_limit=(0.5, 1.5)): kernel from sigma on
   [0.5, 1.5]           both sides (theirs 2 * int(3.5 sigma) + 1, OpenCV's 8-bit rule
                        round(6 sigma + 1) | 1: 3..11 vs 5..11 taps); theirs sepFilter2D
                        for uint8, ours cv2.GaussianBlur's bit-exact fixed-point path
   clahe clip 2, tile 8 CLAHE(clip_limit=(2, 2), tile_grid_size=(8, 8)): both on L of 8-bit LAB
   hflip / vflip        HorizontalFlip() / VerticalFlip()
   blur ksize 3         Blur(blur_limit=(3, 3))
   ==================== ======================================================================

2. Fidelity: ours against the transforms of commit ``--before`` (default ``BEFORE``, read with
   ``git show`` at run time), same generators, on the same pairs: PSNR over all images (inf =
   identical bytes) and the share of mask pixels that differ.
3. The ``geometric`` variant of params.yaml on every photo, ``copies`` per photo, one process:
   read (image bytes, decode, mask), transform, encode (PNG image, indexed PNG mask), write
   (atomic), timed apart; the same I/O without transforms alone; albumentations' chain with the
   same steps and probabilities (and without its fog, which alone dominates it); all four photo
   by photo in turn. Bound: ours per pair <= 1.3 x I/O alone + albumentations.
4. Threads: ``augment.run`` of that variant with 1 and 2 worker processes under
   ``cv2.setNumThreads`` 0 (sequential), 1 and 2 (``COCO_FOLDS_CV_THREADS``, which the stage's
   fork-server workers read at import), each in a fresh process, round-robin, best of
   ``--repeat-threads``; output digests must all agree. The machine's load average is printed
   per section: on a shared machine, read the figures with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import multiprocessing.forkserver
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.augmenting.transforms import THREADS_ENV, TRANSFORMS, rng_for  # noqa: E402
from pipeline.files.contracts import (  # noqa: E402
    AUGMENTED_DIR,
    CANONICAL_PATH,
    CLASSES_PATH,
    MASKS_DIR,
    read_classes,
    read_json_object,
    read_mask,
    variant_output_names,
)
from pipeline.files.fsio import atomic_write_bytes  # noqa: E402
from pipeline.files.images import normalise_image, read_image  # noqa: E402
from pipeline.files.params import Params, load_params  # noqa: E402
from pipeline.files.pngio import encode_indexed_png  # noqa: E402
from pipeline.stages import augment, masks, validate  # noqa: E402
from pipeline.tools.sample import generate  # noqa: E402

try:
    import albumentations as A  # noqa: N812
except ImportError:  # pragma: no cover - the bench extra is optional
    A = None

BEFORE = "da45883"  # transforms.py before issue 16
SHARED = ROOT.parent / "shared" / "data"
FACADE = (SHARED / "facade/valid/_annotations.coco.json", SHARED / "facade/valid")
IO_BOUND = 1.3

Pair = tuple[np.ndarray, np.ndarray]

OURS: dict[str, dict[str, Any]] = {
    "clahe": {"clip_limit": 2.0, "tile_grid_size": 8},
    "elastic": {"alpha": [20, 40], "sigma": 5},
    "blur": {"ksize": 3},
    "gaussian_blur": {"sigma": [0.5, 1.5]},
    "fog": {"intensity": [0.1, 0.3]},
    "hflip": {},
    "vflip": {},
    "rotate_scale": {"angle": [-15, 15], "scale": [0.9, 1.1]},
    "brightness_contrast": {"brightness": [-0.1, 0.1], "contrast": [0.8, 1.2]},
}


def theirs(name: str, p: float = 1.0) -> Any:
    """The albumentations counterpart of one of our transforms (table in the module doc)."""
    make: dict[str, Callable[[], Any]] = {
        "clahe": lambda: A.CLAHE(clip_limit=(2, 2), tile_grid_size=(8, 8), p=p),
        "elastic": lambda: A.ElasticTransform(
            alpha=30,
            sigma=5,
            noise_distribution="uniform",
            border_mode=cv2.BORDER_REFLECT_101,
            p=p,
        ),
        "blur": lambda: A.Blur(blur_limit=(3, 3), p=p),
        "gaussian_blur": lambda: A.GaussianBlur(blur_limit=0, sigma_limit=(0.5, 1.5), p=p),
        "fog": lambda: A.RandomFog(fog_coef_range=(0.1, 0.3), p=p),
        "hflip": lambda: A.HorizontalFlip(p=p),
        "vflip": lambda: A.VerticalFlip(p=p),
        "rotate_scale": lambda: A.Affine(
            rotate=(-15, 15),
            scale=(0.9, 1.1),
            keep_ratio=True,  # one scale for both axes, like ours
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=255,
            p=p,
        ),
        "brightness_contrast": lambda: A.RandomBrightnessContrast(
            brightness_limit=(-0.1, 0.1), contrast_limit=(-0.2, 0.2), p=p
        ),
    }
    transform = make[name]()
    transform.set_random_seed(0)
    return transform


# ---------------------------------------------------------------- data


def bench_params(annotations: str, images: str, workers: int = 1) -> Params:
    """params.yaml pointed at the photos; no item cache (every run computes), drops allowed."""
    base = load_params(ROOT / "params.yaml")
    dataset = dataclasses.replace(
        base.dataset,
        annotations=annotations,
        images=images,
        max_dropped_fraction=1.0,  # facade valid: 24 of its 108 photos sit in a subfolder
    )
    cache = dataclasses.replace(base.cache, dir=None)
    return dataclasses.replace(base, workers=workers, dataset=dataset, cache=cache)


def prepare(work: Path, n_generated: int) -> tuple[Params, str]:
    """Params pointing at the photos; canonical annotations + masks under ``work``, made by
    the real validate and masks stages."""
    ann_path, images = FACADE
    label = "facade valid"
    if not (ann_path.exists() and images.is_dir()):
        generated = generate(
            work / "generated", n_images=n_generated, n_batches=1, sizes=((1024, 1024),)
        )
        ann_path, images = generated / "annotations.json", generated / "images"
        label = f"generated ({FACADE[1]} not present)"
    params = bench_params(str(ann_path), str(images))
    validate.run(params, work)
    masks.run(params, work)
    return params, label


def tasks_of(work: Path, params: Params) -> list[augment.Task]:
    """The augment stage's tasks: every photo of the canonical json with its mask."""
    coco = read_json_object(work / CANONICAL_PATH)
    return augment.build_tasks(coco, Path(str(params.dataset.images)), work / MASKS_DIR)


def read_pair(task: augment.Task) -> Pair:
    """Mask, then the photo oriented to the mask's size, as the stage reads them."""
    mask = read_mask(task.mask_path)
    return normalise_image(read_image(task.image_path, mask.shape)), mask


def cases(pairs: list[Pair]) -> dict[str, list[Pair]]:
    """uint8 at full size and at 512, and 16-bit (x257) at full size."""
    small = [
        (
            cv2.resize(img, (512, 512), interpolation=cv2.INTER_AREA),
            cv2.resize(m, (512, 512), interpolation=cv2.INTER_NEAREST),
        )
        for img, m in pairs
    ]
    wide = [(img.astype(np.uint16) * np.uint16(257), m) for img, m in pairs]
    h, w = pairs[0][1].shape
    return {f"{w}x{h} uint8": pairs, "512x512 uint8": small, f"{w}x{h} uint16": wide}


# ---------------------------------------------------------------- 1. per transform


def run_ours(name: str, pair: Pair, rng: np.random.Generator) -> Pair:
    out, out_mask = TRANSFORMS[name](pair[0], pair[1], rng, **OURS[name])
    return np.ascontiguousarray(out), np.ascontiguousarray(out_mask)


def run_theirs(transform: Any, pair: Pair) -> Pair:
    res = transform(image=pair[0], mask=pair[1])
    return np.ascontiguousarray(res["image"]), np.ascontiguousarray(res["mask"])


def albumentations_problem(transform: Any, pair: Pair) -> str | None:
    """Why albumentations cannot stand in for us on this input, or None."""
    try:
        out, _ = run_theirs(transform, pair)
    except Exception as exc:  # noqa: BLE001 - any refusal means "not supported"
        text = " ".join(str(exc).split())
        return f"{type(exc).__name__}: {text.partition(' error: ')[2] or text}"[:90]
    if out.dtype != pair[0].dtype:
        return f"returns {out.dtype} for {pair[0].dtype}"
    return None


def time_transform(name: str, pairs: list[Pair], repeat: int) -> tuple[float, float | str, float]:
    """Median ms per image: ours, and albumentations' (or why it was not run); and the median
    of the per-run ratios ours / theirs (nan when theirs was not run).

    Each pair is run by both sides in turn, who goes first alternating, so neither side always
    finds the image already in cache. On a loaded machine a call of a few ms is often
    preempted (times are bimodal: 2.4 or 6.4 ms), and a median near the switch swings; the
    median of back-to-back ratios is far steadier.
    """
    transform = theirs(name)
    problem = albumentations_problem(transform, pairs[0])
    run_ours(name, pairs[0], rng_for(0, name, -1))  # warm-up, as theirs had above
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for r in range(repeat):
        for i, pair in enumerate(pairs):
            rng = rng_for(0, name, i, r)
            jobs = {
                "ours": lambda pair=pair, rng=rng: run_ours(name, pair, rng),
                "theirs": lambda pair=pair: run_theirs(transform, pair),
            }
            order = ["ours", "theirs"] if (i + r) % 2 == 0 else ["theirs", "ours"]
            for side in order:
                if side == "theirs" and problem is not None:
                    continue
                start = time.perf_counter()
                jobs[side]()
                times[side].append(time.perf_counter() - start)
    ours = 1e3 * float(np.median(times["ours"]))
    if problem:
        return ours, problem, math.nan
    paired = float(np.median(np.divide(times["ours"], times["theirs"])))
    return ours, 1e3 * float(np.median(times["theirs"])), paired


def per_transform(
    sets: dict[str, list[Pair]], repeat: int, names: list[str]
) -> dict[str, dict[str, Any]]:
    n_images = len(next(iter(sets.values())))
    print(f"\n1. per transform: median ms/image, {n_images} images x {repeat}; {load_note()}")
    print(
        f"{'transform':<21}{'case':<18}{'ours':>8}{'albu':>9}{'ours/albu':>11}{'paired':>9}"
        "   (paired: median of back-to-back ratios)"
    )
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        for case, pairs in sets.items():
            ours, other, paired = time_transform(name, pairs, repeat)
            table.setdefault(name, {})[case] = (ours, other)
            if isinstance(other, str):
                print(f"{name:<21}{case:<18}{ours:>8.3f}   n/a: albumentations {other}")
            else:
                cells = f"{ours:>8.3f}{other:>9.3f}{ours / other:>10.2f}x{paired:>8.2f}x"
                print(f"{name:<21}{case:<18}{cells}")
    return table


# ---------------------------------------------------------------- 2. fidelity


def load_before(rev: str) -> types.ModuleType | None:
    """transforms.py as of ``rev``, as a module of its own (it also sets OpenCV's threads)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:pipeline/augmenting/transforms.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    threads = cv2.getNumThreads()
    module = types.ModuleType("_transforms_before")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{rev}:pipeline/augmenting/transforms.py", "exec"), module.__dict__)
    cv2.setNumThreads(threads)
    return module


def psnr(mse: float, top: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(top * top / mse)


def compare_before(before: types.ModuleType, name: str, pairs: list[Pair]) -> tuple[float, float]:
    """PSNR of ours vs before over all pairs (pooled MSE), and the share of mask pixels that
    differ."""
    squared, count, mask_changes, mask_pixels = 0.0, 0, 0, 0
    for i, (img, m) in enumerate(pairs):
        old, old_mask = before.TRANSFORMS[name](img, m, rng_for(0, name, i), **OURS[name])
        new, new_mask = TRANSFORMS[name](img, m, rng_for(0, name, i), **OURS[name])
        diff = new.astype(np.float64) - old.astype(np.float64)
        squared += float(np.sum(diff * diff))
        count += diff.size
        mask_changes += int(np.count_nonzero(old_mask != new_mask))
        mask_pixels += new_mask.size
    top = float(np.iinfo(pairs[0][0].dtype).max)
    return psnr(squared / count, top), mask_changes / mask_pixels


def fidelity(sets: dict[str, list[Pair]], names: list[str], rev: str) -> None:
    before = load_before(rev)
    print(f"\n2. fidelity vs {rev} (PSNR dB over all images, inf = identical bytes; mask pixels")
    print("   that differ)")
    if before is None:
        print(f"skipped: git show {rev}:pipeline/augmenting/transforms.py failed (no git history?)")
        return
    print(f"{'transform':<21}" + "".join(f"{case:>24}" for case in sets))
    for name in names:
        cells = []
        for pairs in sets.values():
            value, changed = compare_before(before, name, pairs)
            masks = "same" if changed == 0 else f"{100 * changed:.2g}%"
            cells.append(f"{value:>8.1f} masks {masks:>6}")
        print(f"{name:<21}" + "".join(f"{cell:>24}" for cell in cells))


# ---------------------------------------------------------------- 3. variant per pair


def tick(times: dict[str, float], key: str, start: float) -> float:
    now = time.perf_counter()
    times[key] = times.get(key, 0.0) + now - start
    return now


def pair_work(
    task: augment.Task,
    variant: augment.Variant,
    palette: np.ndarray,
    out: Path,
    times: dict[str, float],
    chain: bool = True,
) -> None:
    """The stage's work for one photo, timed by part; ``chain=False`` writes the inputs as read."""
    start = time.perf_counter()
    image, mask = read_pair(task)
    start = tick(times, "read", start)
    for copy_ in range(variant.copies):
        out_image, out_mask = image, mask
        if chain:
            out_image, out_mask = augment.augment_pair(image, mask, variant, task.image_id, copy_)
        start = tick(times, "transform", start)
        image_bytes = augment.encode_image(out_image, variant.format, variant.jpeg_quality)
        mask_bytes = encode_indexed_png(out_mask, palette)
        start = tick(times, "encode", start)
        image_rel, mask_rel = variant_output_names(task.file_name, copy_, variant.format)
        atomic_write_bytes(out / image_rel, image_bytes)
        atomic_write_bytes(out / mask_rel, mask_bytes)
        start = tick(times, "write", start)


def albumentations_chain(steps: list[dict[str, Any]]) -> Any:
    return A.Compose([theirs(step["name"], step.get("p", 1.0)) for step in steps], seed=0)


def albumentations_work(compose: Any, pair: Pair, copies: int) -> float:
    start = time.perf_counter()
    for _ in range(copies):
        run_theirs(compose, pair)
    return time.perf_counter() - start


def variant_times(
    work: Path, tasks: list[augment.Task], variant: augment.Variant
) -> dict[str, dict[str, float]]:
    """Seconds by part: ours, I/O alone, albumentations' chain with and without its fog.

    Photo by photo, all four in turn, so a burst of load elsewhere hits them alike.
    """
    palette = read_classes(work / CLASSES_PATH).palette
    no_fog = [step for step in variant.transforms if step["name"] != "fog"]
    chains = {
        "albu": albumentations_chain(variant.transforms),
        "albu_no_fog": albumentations_chain(no_fog),
    }
    times: dict[str, dict[str, float]] = {"ours": {}, "io": {}, "albu": {}, "albu_no_fog": {}}
    for task in tasks:
        pair_work(task, variant, palette, work / "pairs_ours", times["ours"])
        pair_work(task, variant, palette, work / "pairs_io", times["io"], chain=False)
        pair = read_pair(task)
        for key, compose in chains.items():
            times[key]["transform"] = times[key].get("transform", 0.0) + albumentations_work(
                compose, pair, variant.copies
            )
    return times


def variant_section(work: Path, params: Params, variant: augment.Variant) -> None:
    tasks = tasks_of(work, params)
    n_pairs = len(tasks) * variant.copies
    chain = ", ".join(
        step["name"] + (f" p={step['p']}" if "p" in step else "") for step in variant.transforms
    )
    print(f"\n3. variant {variant.name!r} ({chain}); {len(tasks)} photos x {variant.copies}")
    print(f"   {load_note()}")
    times = variant_times(work, tasks, variant)
    ms = {key: {k: v * 1e3 / n_pairs for k, v in parts.items()} for key, parts in times.items()}
    total, io_alone = sum(ms["ours"].values()), sum(ms["io"].values())
    albu, albu_no_fog = ms["albu"]["transform"], ms["albu_no_fog"]["transform"]
    parts = ", ".join(f"{k} {v:.1f}" for k, v in ms["ours"].items())
    print("ms per pair (read is per photo / copies):")
    print(f"  ours: {parts}; total {total:.1f}")
    io_parts = ", ".join(f"{k} {v:.1f}" for k, v in ms["io"].items() if k != "transform")
    print(f"  I/O alone (no transforms): {io_parts}; total {io_alone:.1f}")
    print(
        f"  albumentations chain (transforms only): {albu:.1f}; without its fog {albu_no_fog:.1f}"
    )
    bound = IO_BOUND * io_alone + albu
    verdict = "within" if total <= bound else "OVER"
    print(f"  bound {IO_BOUND} x I/O + albumentations = {bound:.1f}: ours {total:.1f} {verdict}")
    no_fog_bound = IO_BOUND * io_alone + albu_no_fog
    verdict = "within" if total <= no_fog_bound else "over"
    print(f"  (with albumentations' chain without its fog: {no_fog_bound:.1f}, ours {verdict})")
    print(f"  ours {1e3 / total:.1f} pairs/s in one process")


def expected_chain(variant: augment.Variant, table: dict[str, dict[str, Any]], case: str) -> None:
    """Sum of p x median ms from section 1: the chain's cost without the luck of the p draws."""
    if any(case not in table.get(step["name"], {}) for step in variant.transforms):
        return  # --only left a step out
    sums = {"ours": 0.0, "albu": 0.0, "albu without fog": 0.0}
    for step in variant.transforms:
        ours, other = table[step["name"]][case]
        p = step.get("p", 1.0)
        sums["ours"] += p * ours
        sums["albu"] += p * (other if isinstance(other, float) else math.nan)
        if step["name"] != "fog":
            sums["albu without fog"] += p * (other if isinstance(other, float) else math.nan)
    cells = ", ".join(f"{key} {value:.1f}" for key, value in sums.items())
    print(f"  expected transform ms per pair from section 1 ({case}, sum of p x median): {cells}")


# ---------------------------------------------------------------- 4. thread settings


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def run_variant_child(spec_path: str) -> int:
    """In a fresh process: set OpenCV's threads, run the augment stage, print time and digest.

    The stage's worker processes start from a fork server that this process launches, so they
    get the setting through COCO_FOLDS_CV_THREADS (read by pipeline.augmenting.transforms at
    import).
    """
    spec = json.loads(Path(spec_path).read_text())
    cv2.setNumThreads(spec["threads"])
    params = bench_params(spec["annotations"], spec["images"], spec["workers"])
    work, out = Path(spec["work"]), Path(spec["out"])
    shutil.rmtree(out, ignore_errors=True)  # no previous build to hard-link identical files from
    for rel in (CANONICAL_PATH, CLASSES_PATH, MASKS_DIR):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).symlink_to(work / rel)
    start, start_cpu = time.perf_counter(), cpu_seconds()
    augment.run(params, out, spec["variant"])
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    result = digest(out / AUGMENTED_DIR / spec["variant"])
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "digest": result}))
    return 0


def cpu_seconds() -> float:
    """CPU time of this process and its threads, plus the stage's pool workers once they have
    exited: they are children of the fork server, whose /proc stat sums them (Linux)."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    total = mine.ru_utime + mine.ru_stime
    server = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    if server:
        try:
            fields = Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # pragma: no cover - no procfs
            return math.nan
        total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # u/s, cu/cs
    return total


def timed_run(
    work: Path, params: Params, variant: str, threads: int, workers: int
) -> tuple[float, float, str]:
    spec = {
        "threads": threads,
        "workers": workers,
        "annotations": params.dataset.annotations,
        "images": params.dataset.images,
        "variant": variant,
        "work": str(work),
        "out": str(work / f"threads_{threads}_{workers}"),
    }
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "TQDM_DISABLE": "1", THREADS_ENV: str(threads)}
    done = subprocess.run(
        [sys.executable, __file__, "--_child", str(spec_path)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds"], result["cpu"], result["digest"]


def threads_section(work: Path, params: Params, variant: augment.Variant, repeat: int) -> None:
    """Every setting once per round, rounds repeated: a burst of load elsewhere hits them all."""
    n_pairs = len(tasks_of(work, params)) * variant.copies
    settings = [(workers, threads) for workers in (1, 2) for threads in (0, 1, 2)]
    print(f"\n4. threads: augment.run of {variant.name!r}, {n_pairs} pairs, best of {repeat}")
    print(f"   {load_note()}")
    runs: dict[tuple[int, int], list[float]] = {setting: [] for setting in settings}
    cpu: dict[tuple[int, int], list[float]] = {setting: [] for setting in settings}
    digests = set()
    for _ in range(repeat):
        for workers, threads in settings:
            seconds, cpu_seconds, out_digest = timed_run(
                work, params, variant.name, threads, workers
            )
            runs[workers, threads].append(seconds)
            cpu[workers, threads].append(cpu_seconds)
            digests.add(out_digest)
    print(
        f"{'cv2 threads':<14}{'workers':>8}{'best s':>9}{'pairs/s':>9}{'cpu s':>8}"
        "   all runs (s); cpu s: median CPU time of the run's processes, less load-sensitive"
    )
    for (workers, threads), seconds in runs.items():
        best = min(seconds)
        every = " ".join(f"{value:.2f}" for value in seconds)
        used = float(np.median(cpu[workers, threads]))
        print(f"{threads:<14}{workers:>8}{best:>9.2f}{n_pairs / best:>9.1f}{used:>8.1f}   {every}")
    same = "identical" if len(digests) == 1 else f"DIFFER ({len(digests)} digests)"
    print(f"outputs across thread settings and worker counts: {same}")


def load_note() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        return "load average unknown"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="pairs per transform timing")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the pairs")
    parser.add_argument("--repeat-threads", type=int, default=2, help="runs per thread setting")
    parser.add_argument("--only", help="comma-separated transforms for sections 1 and 2")
    parser.add_argument("--before", default=BEFORE, help="git revision section 2 compares with")
    parser.add_argument(
        "--cv-threads", type=int, help="cv2.setNumThreads for sections 1-3 (default: ours)"
    )
    parser.add_argument("--skip-variant", action="store_true", help="skip sections 3 and 4")
    parser.add_argument("--skip-threads", action="store_true", help="skip section 4")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        return run_variant_child(args._child)
    if args.cv_threads is not None:
        cv2.setNumThreads(args.cv_threads)
    if A is None:
        print("albumentations is not installed: nothing to compare against.")
        print('Install the benchmark extra: pip install -e ".[bench]" (albumentations==2.0.8).')
        return 0
    print(
        f"albumentations {A.__version__}, OpenCV {cv2.__version__} ({cv2.__file__}), "
        f"numpy {np.__version__}, cv2 threads {cv2.getNumThreads()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_transforms_") as tmp:
        work = Path(tmp)
        params, label = prepare(work, args.images)
        tasks = tasks_of(work, params)
        print(f"data: {label}, {len(tasks)} photos; {load_note()}")
        sets = cases([read_pair(task) for task in tasks[: args.images]])
        names = args.only.split(",") if args.only else list(OURS)
        table = per_transform(sets, args.repeat, names)
        fidelity(sets, names, args.before)
        if not args.skip_variant:
            variant = augment.check_variant(params, "geometric")
            variant_section(work, params, variant)
            expected_chain(variant, table, next(iter(sets)))
            if not args.skip_threads:
                threads_section(work, params, variant, args.repeat_threads)
        print(f"\ndone; {load_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
