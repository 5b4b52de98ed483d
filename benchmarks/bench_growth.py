"""A dataset grows: incremental rebuild time, what it is made of, and folds that stay put.

    python benchmarks/bench_growth.py [--images 20000] [--check-clean]

On the scale benchmark's generator (N images, COCO-shaped), in one temp git+DVC repo: a full
build (one ``dvc repro``), then the split is pinned (``splits/pinned.csv``) and the dataset
grows by 1% new images while 1% of the images get edited polygons; the rebuild is one ``dvc
repro`` with ``split.stable: true``. A ``python`` shim first on DVC's PATH times every stage
process, so each build splits into the stages' own work (the time each stage prints), their
interpreter start and imports, and DVC itself (hashing, lock writing, its own start). Printed:
per stage the full and the incremental time and their ratio (targets: masks <= 10%, the whole
repro <= 20%), the fixed costs of a no-op ``dvc repro``, the images a stable split moved
(target 0), its LD and LPD against the mean of 5 fresh seeded splits of the grown set (target
<= 1.25x), and how many images a fresh split moves instead (ours and
MultilabelStratifiedKFold, fold labels matched for the fewest moves). ``--check-clean`` also
builds the grown json from scratch in a second repo and compares every output byte for byte.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_scale import env_for, make_repo  # noqa: E402
from scale import generate_coco, measure  # noqa: E402

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


SHIM = """#!/bin/sh
start=$(date +%s.%N)
"{python}" "$@"
code=$?
echo "$start $(date +%s.%N) $*" >> "{log}"
exit $code
"""


@dataclass
class Build:
    """One ``dvc repro``: wall time, and per stage its process time and its own work."""

    wall: float
    process: dict[str, float]
    work: dict[str, float]

    @property
    def dvc(self) -> float:
        return self.wall - sum(self.process.values())


def shim_env(work: Path) -> tuple[dict[str, str], Path]:
    """DVC's environment with a ``python`` first on PATH that logs each stage's start and end."""
    bin_dir, log = work / "shim", work / "stages.log"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "python"
    shim.write_text(SHIM.format(python=sys.executable, log=log))
    shim.chmod(0o755)
    env = env_for(ROOT)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env, log


def repro(repo: Path, work: Path, profile: Path | None = None) -> Build:
    env, log = shim_env(work)
    log.unlink(missing_ok=True)
    cmd = ["dvc", "repro"]
    if profile is not None:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "dvc", "repro"]
    done = measure(cmd, repo, env)
    if done.returncode:
        raise SystemExit(f"dvc repro failed:\n{done.output[-3000:]}")
    process: dict[str, float] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        start, end, *cmd = line.split()
        stage = stage_of(cmd)
        process[stage] = process.get(stage, 0.0) + float(end) - float(start)
    printed = re.finditer(r"^([\w-]+): .*\(([\d.]+) s\)$", done.output, re.M)
    own = {m[1]: float(m[2]) for m in printed}
    return Build(done.seconds, process, {st: own.get(st[:7], own.get(st, 0.0)) for st in process})


def stage_of(cmd: list[str]) -> str:
    """The dvc.yaml stage of a ``python -m pipeline.stages.<stage> ...`` command line."""
    if cmd[:1] != ["-m"] or not cmd[1:2] or not cmd[1].startswith("pipeline.stages."):
        return " ".join(cmd)
    stage = cmd[1].rsplit(".", 1)[1]
    if stage == "augment":
        return "augment-index" if "--index" in cmd else f"augment@{cmd[2]}"
    return stage


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


def set_params(repo: Path, **split: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["split"].update(split)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-clean", action="store_true", help="compare with a clean build")
    parser.add_argument(
        "--profile-dvc", action="store_true", help="where DVC's time goes in a grown build"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_growth_"))
    try:
        data = work / "coco.json"
        generate_coco(data, args.images, args.seed)
        json_s = measure(
            [sys.executable, "-c", f"import json; json.load(open({str(data)!r}))"],
            work,
            env_for(ROOT),
        ).seconds
        (work / "repo").mkdir()
        repo = make_repo(ROOT, work / "repo", data)
        full = repro(repo, work)
        shutil.copy(repo / "data/splits/folds.csv", repo / "splits/pinned.csv")
        base_folds = folds_of(repo / "splits/pinned.csv")
        shutil.copy(repo / "data/vectors/vectors.csv", work / "base_vectors.csv")
        set_params(repo, stable=True)
        commit(repo, "pin")
        grown_dataset(data, data, args.images, args.seed)
        incremental = repro(repo, work)
        noop = repro(repo, work)
        if args.profile_dvc:
            grown_dataset(data, data, args.images + args.images // 100, args.seed)  # +1% more
            repro(repo, work, work / "dvc.prof")
            dvc_profile(work / "dvc.prof")
        print(
            f"{args.images} images, 2 builds; load average {os.getloadavg()[0]:.1f}; "
            f"json.load of the base json {json_s:.1f} s"
        )
        report_times(full, incremental, noop)
        if args.check_clean:
            check_clean(repo, work, data)
        report_growth(repo, work, base_folds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report_times(full: Build, incremental: Build, noop: Build) -> None:
    """Per stage: process time full and grown, ratio, and the grown run's own work."""
    print(f"{'stage':<14}{'full s':>9}{'grown s':>9}{'ratio':>8}{'grown work s':>14}")
    for stage in full.process:
        f, g = full.process[stage], incremental.process.get(stage, 0.0)
        print(f"{stage:<14}{f:>9.1f}{g:>9.1f}{g / f:>8.2f}{incremental.work.get(stage, 0):>14.1f}")
    print(
        f"{'dvc itself':<14}{full.dvc:>9.1f}{incremental.dvc:>9.1f}"
        f"{incremental.dvc / full.dvc:>8.2f}"
    )
    print(
        f"{'whole repro':<14}{full.wall:>9.1f}{incremental.wall:>9.1f}"
        f"{incremental.wall / full.wall:>8.2f}  (target <= 0.20; masks <= 0.10)"
    )
    own = sum(incremental.work.values())
    start = sum(incremental.process.values()) - own
    print(
        f"grown build outside the stages' own work: {incremental.wall - own:.1f} s "
        f"= {start:.1f} s interpreter start, imports and params in {len(incremental.process)} "
        f"stage processes + {incremental.dvc:.1f} s in DVC (start, hashing, locks)"
    )
    print(f"no-op dvc repro: {noop.wall:.1f} s ({len(noop.process)} stages ran)")


DVC_PARTS = {
    "hashing files (deps and outs, state database lookups)": (
        "dvc_data/hashfile/build.py",
        "build",
    ),
    "parsing dvc.yaml, dvc.lock, run-cache entries (ruamel)": ("ruamel/yaml/main.py", "load"),
    "writing dvc.lock and run-cache entries (ruamel)": ("ruamel/yaml/main.py", "dump"),
    "run-cache lookups and saves": ("dvc/stage/cache.py", "restore"),
    "committing outputs to .dvc/cache": ("dvc/output.py", "commit"),
    "unprotecting persistent outputs": ("dvc/output.py", "unprotect"),
}


def dvc_profile(path: Path) -> None:
    """DVC's own time in a profiled grown build, by part (parts overlap: the run-cache lookup
    hashes and parses too). Profiling slows Python code about 2x: read shares, not seconds."""
    stats = pstats.Stats(str(path))
    total = stage_wait = 0.0
    parts = dict.fromkeys(DVC_PARTS, 0.0)
    for (file, _, func), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if func == "<module>" and file.endswith("dvc/__main__.py"):
            total = cumulative
        if func == "<built-in method posix.waitpid>":
            stage_wait += cumulative
        for part, (suffix, name) in DVC_PARTS.items():
            if file.endswith(suffix) and func == name:
                parts[part] += cumulative
    own = total - stage_wait
    print(f"profiled grown dvc repro: {total:.1f} s, stages {stage_wait:.1f} s, DVC {own:.1f} s:")
    for part, seconds in parts.items():
        print(f"  {part}: {seconds:.1f} s = {seconds / own:.0%} of DVC's time")


def check_clean(repo: Path, work: Path, data: Path) -> None:
    """A clean build of the grown json (same pinned folds) against the incremental one."""
    (work / "clean").mkdir()
    clean = make_repo(ROOT, work / "clean", data)
    shutil.copy(repo / "splits/pinned.csv", clean / "splits/pinned.csv")
    set_params(clean, stable=True)
    commit(clean, "pin")
    repro(clean, work)
    ours, theirs = output_digests(repo), output_digests(clean)
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    print(
        f"clean build of the grown json: {len(ours)} output files, {len(differ)} differ"
        + (f" (first: {differ[:5]})" if differ else " (byte-identical)")
    )


def output_digests(repo: Path) -> dict[str, str]:
    out = {}
    for top in ("data", "reports"):
        for path in sorted((repo / top).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def report_growth(repo: Path, work: Path, base_folds: dict[str, str]) -> None:
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
