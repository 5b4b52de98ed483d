"""Every stage at COCO scale: wall time and peak memory next to plain ``json.load``.

    python benchmarks/bench_scale.py [--images 118287] [--baseline-checkout DIR]

Generates a COCO-shaped json of N images (deterministic, compact as COCO's own files; see
``benchmarks/scale.py``), then in a temp git+DVC repo runs every stage through
``dvc repro -s <stage>`` (DVC's own hashing included) with ``check_images: false``,
``missing_images: keep`` and no augment variants. For each stage it prints the wall time and the
peak of the summed PSS of the whole process tree (dvc, the stage, its workers), sampled from
/proc every 100 ms, and beside them the same for ``python -c "import json;
json.load(open(F))"`` on the same file, measured in the same run. ``--baseline-checkout`` runs
the same stages with another checkout's code (e.g. a ``git worktree`` of an older commit) in
the same run, so the two can be compared side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import Measured, generate_coco, measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
STAGES = ("validate", "masks", "vectors", "split", "augment-index", "export", "report")


def dataset(n_images: int, seed: int) -> Path:
    """The generated json, cached under benchmarks/out (it takes a minute at COCO scale)."""
    path = OUT / f"coco_{n_images}_{seed}.json"
    if not path.exists():
        generate_coco(path, n_images, seed)
    return path


def env_for(checkout: Path) -> dict[str, str]:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(checkout))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env[key] = "bench"
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env[key] = "bench@example.com"
    return env


def make_repo(checkout: Path, work: Path, annotations: Path) -> Path:
    """A temp git+DVC repo with ``checkout``'s tracked files, pointed at ``annotations``."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        if (checkout / rel).is_file() and not rel.startswith(("data/", "reports/")):
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkout / rel, work / rel)
    (work / "dvc.lock").unlink(missing_ok=True)
    (work / "images").mkdir()
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["workers"] = 0
    params["dataset"].update(
        annotations=str(annotations),
        images="images",
        check_images=False,
        missing_images="keep",
    )
    params["augment"]["variants"] = {}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = env_for(checkout)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=work, env=env, check=True)
    return work


def run_stages(checkout: Path, annotations: Path, keep: bool) -> dict[str, Measured]:
    work = Path(tempfile.mkdtemp(prefix="bench_scale_")) / "repo"
    work.mkdir()
    make_repo(checkout, work, annotations)
    env = env_for(checkout)
    out: dict[str, Measured] = {}
    try:
        for stage in STAGES:
            out[stage] = measure(["dvc", "repro", "-s", stage], work, env)
            if out[stage].returncode:
                print(f"{stage} failed:\n{out[stage].output[-3000:]}")
                break
        out["exports_mb"] = _size_mb(work / "data" / "exports")  # type: ignore[assignment]
    finally:
        if not keep:
            shutil.rmtree(work.parent, ignore_errors=True)
    return out


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def json_load(annotations: Path) -> Measured:
    code = f"import json; json.load(open({str(annotations)!r}))"
    return measure([sys.executable, "-c", code], ROOT, dict(os.environ))


def report(runs: dict[str, dict[str, Measured]], reference: Measured, json_mb: float) -> None:
    print(
        f"json.load: {reference.seconds:.1f} s, peak {reference.peak_mb:.0f} MB "
        f"(file {json_mb:.0f} MB)"
    )
    names = list(runs)
    head = f"{'stage':<14}" + "".join(
        f"{n + ' s':>12}{'x json':>8}{n + ' MB':>13}{'x json':>8}" for n in names
    )
    print(head)
    totals = dict.fromkeys(names, 0.0)
    for stage in STAGES:
        cells = []
        for name in names:
            m = runs[name].get(stage)
            if m is None:
                cells.append(f"{'-':>12}{'':>8}{'-':>13}{'':>8}")
                continue
            totals[name] += m.seconds
            cells.append(
                f"{m.seconds:>12.1f}{m.seconds / reference.seconds:>8.2f}"
                f"{m.peak_mb:>13.0f}{m.peak_mb / reference.peak_mb:>8.2f}"
            )
        print(f"{stage:<14}" + "".join(cells))
    print(f"{'total':<14}" + "".join(f"{totals[n]:>12.1f}{'':>8}{'':>13}{'':>8}" for n in names))
    for name in names:
        exports = runs[name].get("exports_mb")
        if isinstance(exports, float):
            print(f"{name}: exports {exports:.0f} MB = {exports / json_mb:.2f}x the dataset json")
    if len(names) == 2:
        print(f"whole repro: {names[1]} / {names[0]} = {totals[names[1]] / totals[names[0]]:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-checkout", type=Path, help="another checkout to compare")
    parser.add_argument("--keep", action="store_true", help="keep the temp repos")
    parser.add_argument(
        "--small", type=int, default=5_000, help="also run ours at this N: masks s/image ratio"
    )
    args = parser.parse_args(argv)
    annotations = dataset(args.images, args.seed)
    json_mb = annotations.stat().st_size / 2**20
    reference = json_load(annotations)
    runs: dict[str, dict[str, Measured]] = {}
    if args.baseline_checkout:
        runs["baseline"] = run_stages(args.baseline_checkout.resolve(), annotations, args.keep)
    runs["ours"] = run_stages(ROOT, annotations, args.keep)
    print(f"{args.images} images; {os.cpu_count()} cores")
    report(runs, reference, json_mb)
    if args.small and args.small < args.images:
        small = run_stages(ROOT, dataset(args.small, args.seed), args.keep)
        big_rate = runs["ours"]["masks"].seconds / args.images
        small_rate = small["masks"].seconds / args.small
        print(
            f"masks: {1000 * big_rate:.2f} ms/image at N={args.images}, "
            f"{1000 * small_rate:.2f} ms/image at N={args.small}: ratio {big_rate / small_rate:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
