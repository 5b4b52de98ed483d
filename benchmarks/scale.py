"""COCO-shaped datasets of any size, and the peak memory of a whole process tree.

Shared by ``benchmarks/bench_scale.py``, ``benchmarks/bench_growth.py`` and the CI-sized
scale test. The generator writes what COCO's own files look like: compact json (no
indentation, no spaces after separators), coordinates with 2 decimals, the usual fields only,
80 sparse category ids, ~7.3 annotations per image, polygons of ~20 points, 1% crowd regions as
uncompressed RLE. Deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# COCO's 80 category ids (1..90 with gaps) and its 12 supercategories, cycled.
COCO_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]
SUPER = ["person", "vehicle", "outdoor", "animal", "accessory", "sports", "kitchen", "food"]
SIZES = ((640, 480), (480, 640), (640, 427), (500, 375), (640, 640))
ANNS_PER_IMAGE = 863_846 / 118_287
CROWD_RATE = 0.01


def _header() -> str:
    info = {
        "description": "COCO-shaped benchmark set",
        "url": "",
        "version": "1.0",
        "year": 2026,
        "contributor": "coco-folds",
        "date_created": "2026/11/27",
    }
    licenses = [{"url": "", "id": 1, "name": "benchmark"}]
    return json.dumps({"info": info, "licenses": licenses}, separators=(",", ":"))[:-1]


def _image(rng: np.random.Generator, image_id: int) -> tuple[str, int, int]:
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    name = f"{image_id:012d}.jpg"
    text = (
        f'{{"license":1,"file_name":"{name}","coco_url":"","height":{height},"width":{width},'
        f'"date_captured":"2013-11-14 17:02:52","flickr_url":"","id":{image_id}}}'
    )
    return text, width, height


def _part(rng: np.random.Generator, cx: float, cy: float, radius: float, n: int) -> np.ndarray:
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius * rng.uniform(0.6, 1.0, n)
    return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)


def _polygon(rng: np.random.Generator, width: int, height: int) -> tuple[str, list[float]]:
    """~20 points per object; 15% of objects are occluded into a second part, as in COCO."""
    radius = float(np.exp(rng.uniform(np.log(3), np.log(min(width, height) / 3))))
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    parts = [_part(rng, cx, cy, radius, int(rng.integers(16, 35)))]
    if rng.random() < 0.15:
        parts.append(_part(rng, cx + radius, cy, radius / 2, int(rng.integers(8, 16))))
    parts = [np.clip(p, 0, [width, height]) for p in parts]
    text = (
        "["
        + ",".join("[" + ",".join(f"{v:.2f}" for v in np.round(p.ravel(), 2)) + "]" for p in parts)
        + "]"
    )
    points = np.concatenate(parts)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return text, [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)]


def _crowd(rng: np.random.Generator, width: int, height: int) -> tuple[str, list[float]]:
    """An uncompressed RLE rectangle, as COCO stores crowd regions."""
    w, h = int(rng.integers(20, width // 2)), int(rng.integers(20, height // 2))
    x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
    counts = [x * height + y]
    for _ in range(w):  # column-major: h ones per column, then the gap to the next column
        counts += [h, height - h]
    counts[-1] = height * width - sum(counts[:-1])
    text = f'{{"counts":[{",".join(map(str, counts))}],"size":[{height},{width}]}}'
    return text, [float(x), float(y), float(w), float(h)]


def _annotation(rng: np.random.Generator, ann_id: int, image_id: int, size: tuple) -> str:
    width, height = size
    crowd = rng.random() < CROWD_RATE
    seg, bbox = _crowd(rng, width, height) if crowd else _polygon(rng, width, height)
    category = COCO_IDS[min(int(rng.pareto(1.2) * 4), len(COCO_IDS) - 1)]
    area = round(bbox[2] * bbox[3] * (1.0 if crowd else 0.55), 2)
    return (
        f'{{"segmentation":{seg},"area":{area},"iscrowd":{int(crowd)},"image_id":{image_id},'
        f'"bbox":[{",".join(f"{v:.2f}" for v in bbox)}],"category_id":{category},"id":{ann_id}}}'
    )


def _categories() -> str:
    cats = [
        {"supercategory": SUPER[i % len(SUPER)], "id": cid, "name": f"class_{cid}"}
        for i, cid in enumerate(COCO_IDS)
    ]
    return json.dumps(cats, separators=(",", ":"))


def generate_coco(path: Path, n_images: int, seed: int = 0, first_id: int = 1) -> Path:
    """Write a COCO-shaped json of ``n_images`` images to ``path`` (streamed, bounded memory).

    Image ``i`` (from ``first_id``) depends only on (seed, i), so a larger set starts with the
    images of a smaller one: grown datasets share their first images.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    sizes: list[tuple[int, int]] = []
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(_header() + ',"images":[')
        for i in range(n_images):
            image_id = first_id + i
            text, width, height = _image(np.random.default_rng([seed, image_id, 0]), image_id)
            sizes.append((width, height))
            out.write(("," if i else "") + text)
        out.write('],"annotations":[')
        first = True
        for i, size in enumerate(sizes):
            image_id = first_id + i
            rng = np.random.default_rng([seed, image_id, 1])
            n = int(rng.poisson(ANNS_PER_IMAGE))
            for k in range(n):
                ann_id = image_id * 100 + k
                out.write(("" if first else ",") + _annotation(rng, ann_id, image_id, size))
                first = False
        out.write('],"categories":' + _categories() + "}")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- memory of a process tree


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(root: int) -> Iterator[int]:
    tree = _children()
    todo = [root]
    while todo:
        pid = todo.pop()
        yield pid
        todo.extend(tree.get(pid, []))


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_kb(root: int) -> int:
    """Summed PSS of ``root`` and every process below it (workers included)."""
    return sum(pss_kb(pid) for pid in _descendants(root))


@dataclass
class Measured:
    seconds: float
    peak_mb: float
    returncode: int
    output: str


def measure(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str],
    interval: float = 0.1,
    watch: Callable[[int], None] | None = None,
) -> Measured:
    """Run ``cmd``; wall time and the peak of its process tree's summed PSS (sampled);
    ``watch(pid)`` runs at every sample too (e.g. to read the tree's CPU time)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_pss_kb(proc.pid))
            if watch is not None:
                watch(proc.pid)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    seconds = time.perf_counter() - start
    sampler.join()
    return Measured(seconds, peak[0] / 1024, proc.returncode, output)
