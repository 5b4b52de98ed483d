"""A dataset grows: incremental rebuild time, and folds that stay put.

    python benchmarks/bench_growth.py [--images 30000]

On the scale benchmark's generator (N images, COCO-shaped), in one temp git+DVC repo: a full
build stage by stage (``dvc repro -s``), then the split is pinned (``splits/pinned.csv``) and the
dataset grows by 1% new images while 1% of the images get edited polygons; the rebuild runs the
same way with ``split.stable: true``. Printed: per stage the full and the incremental time and
their ratio (targets: masks <= 10%, the whole repro <= 20%), the images a stable split moved
(target 0), its LD and LPD against the mean of 5 fresh seeded splits of the grown set (target
<= 1.25x), and how many images a fresh split moves instead (ours and MultilabelStratifiedKFold,
fold labels matched for the fewest moves).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_scale import STAGES, env_for, make_repo  # noqa: E402
from scale import generate_coco, measure  # noqa: E402

from pipeline.execution.itemcache import unseal  # noqa: E402
from pipeline.files.contracts import read_image_stats, read_vectors  # noqa: E402
from pipeline.files.params import parse_params  # noqa: E402
from pipeline.splitting.baselines import library_folds  # noqa: E402
from pipeline.stages.split import build_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def grown_dataset(base: Path, out: Path, n_images: int, seed: int) -> Path:
    """``base``'s images plus 1% new ones (the generator shares its first images), with the
    polygons of 1% of the old images edited (shifted by 1.5 px)."""
    generate_coco(out, n_images + n_images // 100, seed)
    coco = json.loads(out.read_text())
    edited = set(range(1, n_images + 1, 100))
    for ann in coco["annotations"]:
        if ann["image_id"] in edited and isinstance(ann["segmentation"], list):
            ann["segmentation"] = [
                [round(v + 1.5, 2) for v in part] for part in ann["segmentation"]
            ]
    out.write_text(json.dumps(coco, separators=(",", ":")))
    return out


def repro_stages(repo: Path) -> dict[str, float]:
    env = env_for(ROOT)
    times = {}
    for stage in STAGES:
        done = measure(["dvc", "repro", "-s", stage], repo, env)
        if done.returncode:
            raise SystemExit(f"{stage} failed:\n{done.output[-3000:]}")
        times[stage] = done.seconds
    return times


def commit(repo: Path, message: str) -> None:
    env = env_for(ROOT)
    subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=repo, env=env, check=True)


def folds_of(path: Path) -> dict[str, str]:
    with open(path, newline="") as fh:
        return {r["file_name"]: r["fold"] for r in csv.DictReader(fh)}


def moved_after_matching(old: dict[str, int], new: dict[str, int], k: int) -> int:
    """Images whose fold changed, after renaming the new folds to match the old ones best."""
    both = sorted(old.keys() & new.keys())
    overlap = np.zeros((k, k), dtype=np.int64)
    for name in both:
        overlap[old[name], new[name]] += 1
    rows, cols = linear_sum_assignment(-overlap)
    return len(both) - int(overlap[rows, cols].sum())


def fresh_quality(repo: Path, seeds: range) -> tuple[float, float]:
    """Mean LD and LPD of fresh splits of the grown set (the same vectors, other seeds)."""
    vectors = read_vectors(repo / "data/vectors/vectors.csv")
    stats = read_image_stats(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    lds, lpds = [], []
    for seed in seeds:
        config = parse_params({"split": params["split"] | {"seed": seed, "stable": False}}).split
        ours = build_split(vectors, stats, config).quality["ours"]
        lds.append(ours["LD"])
        lpds.append(ours["LPD"])
    return float(np.mean(lds)), float(np.mean(lpds))


def mlskf_moves(base_vectors: Path, grown_vectors: Path, k: int) -> int:
    folds = []
    for path in (base_vectors, grown_vectors):
        v = read_vectors(path)
        fold = library_folds(v.matrix, k, 42, np.ones(len(v.image_ids), bool))
        labels = fold["multilabel_stratified_kfold"][0]
        folds.append(dict(zip(v.file_names, labels.tolist(), strict=True)))
    return moved_after_matching(folds[0], folds[1], k)


def checksum_seconds(store: Path) -> tuple[int, float]:
    """(entries, seconds) to verify every entry of the item store once: the checksum work of
    a run that reuses all of them (an incremental masks run reads each unchanged image's)."""
    entries = [p.read_bytes() for p in store.glob("??/*") if p.is_file()]
    start = time.perf_counter()
    bad = sum(unseal(data) is None for data in entries)
    seconds = time.perf_counter() - start
    if bad:
        raise SystemExit(f"{bad} entries of {store} fail their checksum")
    return len(entries), seconds


def set_params(repo: Path, **split: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["split"].update(split)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_growth_"))
    try:
        data = work / "coco.json"
        generate_coco(data, args.images, args.seed)
        (work / "repo").mkdir()
        repo = make_repo(ROOT, work / "repo", data)
        full = repro_stages(repo)
        shutil.copy(repo / "data/splits/folds.csv", repo / "splits/pinned.csv")
        base_folds = folds_of(repo / "splits/pinned.csv")
        shutil.copy(repo / "data/vectors/vectors.csv", work / "base_vectors.csv")
        set_params(repo, stable=True)
        commit(repo, "pin")
        grown_dataset(data, data, args.images, args.seed)
        incremental = repro_stages(repo)
        report_growth(repo, work, full, incremental, base_folds)
        n, seconds = checksum_seconds(repo / ".cache/coco-folds")
        print(
            f"store checksums: {n} entries verified in {seconds:.2f} s = "
            f"{seconds / incremental['masks']:.1%} of the incremental masks run (target <= 5%)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report_growth(
    repo: Path,
    work: Path,
    full: dict[str, float],
    incremental: dict[str, float],
    base_folds: dict[str, str],
) -> None:
    print(f"{'stage':<14}{'full s':>9}{'grown s':>9}{'ratio':>8}")
    for stage in STAGES:
        print(
            f"{stage:<14}{full[stage]:>9.1f}{incremental[stage]:>9.1f}"
            f"{incremental[stage] / full[stage]:>8.2f}"
        )
    total_full, total_inc = sum(full.values()), sum(incremental.values())
    print(f"{'whole repro':<14}{total_full:>9.1f}{total_inc:>9.1f}{total_inc / total_full:>8.2f}")
    quality = json.loads((repo / "reports/split_quality.json").read_text())
    print(f"stable split: {quality['pinned']}")
    ld, lpd = fresh_quality(repo, range(5))
    ours = quality["ours"]
    print(
        f"stable LD {ours['LD']:.6g} = {ours['LD'] / ld:.2f}x fresh mean {ld:.6g}; "
        f"LPD {ours['LPD']:.6g} = {ours['LPD'] / lpd:.2f}x fresh mean {lpd:.6g}"
    )
    set_params(repo, stable=False)
    subprocess.run(
        [sys.executable, "-m", "pipeline", "split"],
        cwd=repo,
        env=env_for(ROOT),
        check=True,
        capture_output=True,
    )
    k = int(quality["n_splits"])
    old = {n: int(f) for n, f in base_folds.items() if f != "test"}
    new = {n: int(f) for n, f in folds_of(repo / "data/splits/folds.csv").items() if f != "test"}
    print(
        f"a fresh split of the grown set moves {moved_after_matching(old, new, k)} of "
        f"{len(old)} images (ours, same seed); MultilabelStratifiedKFold moves "
        f"{mlskf_moves(work / 'base_vectors.csv', repo / 'data/vectors/vectors.csv', k)}"
    )


if __name__ == "__main__":
    sys.exit(main())
