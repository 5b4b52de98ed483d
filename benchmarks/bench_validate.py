"""The validate stage against plain ``json.load`` of the same file, in one run.

    python benchmarks/bench_validate.py [--images 118287] [--repeats 3] [--code DIR] [--profile]

Generates (or reuses, under benchmarks/out) the COCO-shaped json of ``benchmarks/scale.py``,
makes a temp repo as ``bench_scale.py`` does (``check_images: false``, ``missing_images: keep``,
no image files) and times, alternating and best of ``--repeats``, two subprocesses that both pay
for the interpreter's start: ``python -c "import json; json.load(open(F))"`` and
``python -m pipeline validate``. Printed: both wall times, their ratio (target <= 1.5), the peak
summed PSS of each process tree, and the load average beside them (the machine may be shared).
The three outputs of every validate run must be byte-identical; ``--code DIR`` also runs the
``pipeline`` package found in DIR (e.g. a copy of an older version) in the same rounds, and
checks its outputs are the same bytes.

``--profile`` runs validate once more in this process under cProfile (workers still in their
own processes) and prints the stage's phases: where the main process spends its time, and how
long it waits for the workers.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import dataset, env_for, make_repo  # noqa: E402
from scale import measure as scale_measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = (
    "data/interim/annotations.json",
    "reports/validation.json",
    "reports/validation_issues.csv",
)
# The validate functions whose cumulative time makes the phases (main process).
PHASES = (
    ("read_annotations", "read the file"),
    ("read_source", "parse: top level, annotation slices, ids"),
    ("check_structure", "structure checks (images, ids)"),
    ("prepare", "images and categories, canonical"),
    ("stream_canonical", "annotations: batches out, texts written"),
    ("atomic_write_csv", "validation_issues.csv"),
)


@dataclass
class Measured:
    seconds: float
    peak_mb: float
    cpu_seconds: float  # user + system of the whole process tree (workers included)
    returncode: int
    output: str


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_by_pid(root: int) -> dict[int, float]:
    """CPU seconds so far of ``root`` and every process below it, by pid."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    fields = fh.read().rpartition(b")")[2].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        found[pid] = stats.get(pid, (0, 0.0))[1]
        todo.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return found


def measure(cmd: list[str], cwd: Path, env: dict[str, str], interval: float = 0.1) -> Measured:
    """Run ``cmd``: wall time, peak summed PSS and CPU time of its process tree. The command's
    own CPU time is exact (its rusage); its descendants' is sampled every ``interval`` (each
    may miss up to ``interval`` before it ends)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu: dict[int, float] = {}
    root: list[int] = []

    def watch(pid: int) -> None:
        root[:] = [pid]
        cpu.update(_cpu_by_pid(pid))

    done = scale_measure(cmd, cwd, env, interval, watch)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    for pid in root:  # the command itself: its rusage above is exact
        cpu.pop(pid, None)
    tree_cpu = own + sum(cpu.values())
    return Measured(done.seconds, done.peak_mb, tree_cpu, done.returncode, done.output)


def digests(repo: Path) -> tuple[str, ...]:
    return tuple(hashlib.sha256((repo / rel).read_bytes()).hexdigest() for rel in OUTPUTS)


def validate_repo(annotations: Path, code: Path | None) -> Path:
    """A temp repo for ``annotations``; with ``code``, its ``pipeline`` package replaces ours."""
    work = Path(tempfile.mkdtemp(prefix="bench_validate_")) / "repo"
    work.mkdir()
    make_repo(ROOT, work, annotations)
    if code is not None:
        shutil.rmtree(work / "pipeline")
        shutil.copytree(code / "pipeline", work / "pipeline")
    return work


def run_validate(repo: Path) -> tuple[Measured, tuple[str, ...]]:
    for rel in OUTPUTS:
        (repo / rel).unlink(missing_ok=True)
    env = dict(env_for(ROOT), PYTHONPATH=str(repo))
    done = measure([sys.executable, "-m", "pipeline", "validate"], repo, env)
    if done.returncode:
        raise SystemExit(f"validate failed in {repo}:\n{done.output[-3000:]}")
    return done, digests(repo)


def json_load(annotations: Path) -> Measured:
    code = f"import json; json.load(open({str(annotations)!r}))"
    return measure([sys.executable, "-c", code], ROOT, dict(os.environ))


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def rounds(annotations: Path, repos: dict[str, Path], repeats: int) -> dict[str, list[Measured]]:
    """json.load and every validate, alternating; each validate's outputs compared."""
    runs: dict[str, list[Measured]] = {"json.load": [], **{name: [] for name in repos}}
    reference: tuple[str, ...] | None = None
    for index in range(repeats):
        runs["json.load"].append(json_load(annotations))
        line = [f"round {index + 1}: json.load {runs['json.load'][-1].seconds:.1f} s"]
        for name, repo in repos.items():
            measured, sums = run_validate(repo)
            runs[name].append(measured)
            if reference is None:
                reference = sums
            elif sums != reference:
                raise SystemExit(f"{name}: outputs differ from the first run's: {sums}")
            line.append(f"{name} {measured.seconds:.1f} s")
        print(", ".join(line) + f" ({load()})", flush=True)
    print(
        "outputs (sha256): "
        + " ".join(f"{rel}={s[:12]}" for rel, s in zip(OUTPUTS, reference, strict=False))
    )
    return runs


def report(runs: dict[str, list[Measured]]) -> None:
    base = min(runs["json.load"], key=lambda m: m.seconds)
    base_cpu = min(m.cpu_seconds for m in runs["json.load"])
    print(f"{'':<12}{'best s':>8}{'x json':>8}{'CPU s':>8}{'x json':>8}{'peak MB':>9}{'x json':>8}")
    for name, measured in runs.items():
        best = min(measured, key=lambda m: m.seconds)
        cpu = min(m.cpu_seconds for m in measured)
        peak = max(m.peak_mb for m in measured)
        print(
            f"{name:<12}{best.seconds:>8.1f}{best.seconds / base.seconds:>8.2f}"
            f"{cpu:>8.1f}{cpu / base_cpu:>8.2f}{peak:>9.0f}{peak / base.peak_mb:>8.2f}"
        )
    print(load())


def profile(repo: Path) -> None:
    """validate once in this process under cProfile; its phases by cumulative time."""
    os.chdir(repo)
    sys.path.insert(0, str(repo))
    from pipeline.files.params import load_params
    from pipeline.stages import validate

    params = load_params()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(validate.run, params, Path("."))
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    cumulative: dict[str, float] = {}
    for (file, _, func), (_, _, _, cum, _) in stats.items():
        if "pipeline" in file:
            cumulative[func] = max(cumulative.get(func, 0.0), cum)
    print(f"validate in-process under cProfile: {total:.1f} s ({load()})")
    for func, what in PHASES:
        print(f"  {func:<18}{cumulative.get(func, 0.0):>7.1f} s  {what}")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118_287)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--code", type=Path, help="a folder with another pipeline package")
    parser.add_argument("--profile", action="store_true", help="phases, under cProfile")
    parser.add_argument("--keep", action="store_true", help="keep the temp repos")
    args = parser.parse_args(argv)
    annotations = dataset(args.images, args.seed)
    size_mb = annotations.stat().st_size / 2**20
    print(f"{args.images} images, {size_mb:.0f} MB json; {os.cpu_count()} cores; {load()}")
    repos = {"validate": validate_repo(annotations, None)}
    if args.code:
        repos["--code"] = validate_repo(annotations, args.code.resolve())
    try:
        report(rounds(annotations, repos, args.repeats))
        if args.profile:
            profile(repos["validate"])
    finally:
        if not args.keep:
            for repo in repos.values():
                shutil.rmtree(repo.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
