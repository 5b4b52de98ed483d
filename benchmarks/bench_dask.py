"""Benchmark: the masks stage on the local process pool vs on Dask, same core count, one run.

    python benchmarks/bench_dask.py [--images 20000] [--workers 2] [--rounds 2]

A COCO-shaped json of ``--images`` images (``benchmarks/scale.py``'s generator) goes through
the real validate stage once; then ``python -m pipeline masks`` runs, as ``dvc repro`` runs it,
with four executors of ``--workers`` processes (one thread each):

- ``local``: the process pool (``executor.kind: local``);
- ``dask, LocalCluster per stage``: ``executor.address: null``, the stage starts and stops its
  own cluster (its start is timed);
- ``dask, running cluster``: a ``LocalCluster`` started before the stage and named by
  ``executor.address``, as docs/dask.md says to configure a cluster you start (glibc's malloc
  defaults: no ``MALLOC_TRIM_THRESHOLD_``); its start is not timed;
- ``dask, running, Dask's malloc``: the same with Dask's nanny default
  ``MALLOC_TRIM_THRESHOLD_=65536``, to show what that setting costs.

The modes alternate for ``--rounds`` rounds (the machine is shared: noise hits all of them).
For each: the best wall time as images per second and its overhead over the local pool, and
the least CPU time per image (user + system, sampled from /proc: the stage's process tree and,
for a running cluster, its workers; the scheduler of a running cluster is not in it) and its
overhead. On a loaded machine the CPU time says what an image costs, the wall time mostly what
the other jobs left; the load average is printed with every run. Peak memory is the summed PSS
of the stage's process tree; ``stage ms/img`` the CPU of the stage process alone (the writer;
with its own LocalCluster, the scheduler too). Every run's outputs are compared byte for byte.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scale import (  # noqa: E402
    Measured,
    _children,
    _descendants,
    generate_coco,
    measure,
)

OUTPUTS = ("data/masks", "data/stats", "data/classes.json")


# The environment as it was before any cluster started: a Dask nanny writes its pre-spawn
# variables (MALLOC_TRIM_THRESHOLD_) into its own process's environment, and every stage run
# after it would inherit them.
ENVIRON = dict(os.environ)


def stage_env() -> dict[str, str]:
    env = dict(ENVIRON)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def write_params(repo: Path, workers: int, executor: dict) -> None:
    params = {
        "workers": workers,
        "executor": executor,
        "dataset": {
            "annotations": "annotations.json",
            "images": None,
            "check_images": False,
            "missing_images": "keep",
        },
        "augment": {"variants": {}},
        "cache": {"dir": None},  # every run computes every mask: the executors, not the cache
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def process_cpu(pid: int) -> float:
    """User+system seconds so far of one process (/proc), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class TreeCpu:
    """CPU seconds of every process that appears below this one while it runs, sampled from
    /proc every 100 ms (each loses at most its last 100 ms). Sampling, not ``RUSAGE_CHILDREN``:
    the pool's forkserver and its workers outlive the stage's own wait and are reaped by init,
    so their time never reaches the stage's rusage."""

    def __init__(self) -> None:
        self.before = set(_descendants(os.getpid()))
        self.seen: dict[int, float] = {}
        self.stages: set[int] = set()  # new direct children: the stage process itself
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while self.running:
            self.stages.update(set(_children().get(os.getpid(), [])) - self.before)
            for pid in set(_descendants(os.getpid())) - self.before:
                self.seen[pid] = max(self.seen.get(pid, 0.0), process_cpu(pid))
            time.sleep(0.1)

    def stop(self) -> tuple[float, float]:
        """CPU seconds of the whole new tree, and of the stage process alone."""
        self.running = False
        self.thread.join()
        return sum(self.seen.values()), sum(self.seen.get(pid, 0.0) for pid in self.stages)


def run_stage(repo: Path, stage: str) -> tuple[Measured, float, float]:
    """The stage as dvc runs it: wall time, peak PSS, and the CPU seconds of its process tree
    (a running cluster's workers are not in it) and of the stage process alone."""
    cpu = TreeCpu()
    done = measure([sys.executable, "-m", "pipeline", stage], repo, stage_env())
    tree, alone = cpu.stop()
    if done.returncode:
        raise SystemExit(f"{stage} failed in {repo}:\n{done.output}")
    return done, tree, alone


def digest(repo: Path) -> str:
    """One digest of every output file's name and bytes."""
    h = hashlib.sha256()
    for top in OUTPUTS:
        paths = [repo / top] if (repo / top).is_file() else sorted((repo / top).rglob("*"))
        for path in paths:
            if path.is_file():
                h.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def prepare(work: Path, n_images: int) -> Path:
    """The canonical json of a generated set, by the real validate stage."""
    base = work / "prepared"
    base.mkdir()
    generate_coco(base / "annotations.json", n_images)
    write_params(base, 1, {"kind": "local"})
    run_stage(base, "validate")
    return base / "data/interim/annotations.json"


def one_run(
    work: Path, canonical: Path, workers: int, executor: dict
) -> tuple[Measured, float, float, str]:
    repo = work / "run"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "data/interim").mkdir(parents=True)
    (repo / "data/interim/annotations.json").symlink_to(canonical)
    write_params(repo, workers, executor)
    done, cpu, alone = run_stage(repo, "masks")
    return done, cpu, alone, digest(repo)


def cluster_cpu(pids: list[int]) -> float:
    """User+system seconds so far of the running cluster's worker processes."""
    return sum(process_cpu(pid) for pid in pids)


# What docs/dask.md recommends for a cluster you start (and the stage's own cluster does).
GLIBC_MALLOC = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


@contextlib.contextmanager
def running_cluster(workers: int, config: dict) -> Iterator[tuple[str, list[int]]]:
    """A warm LocalCluster kept running across runs: its address and worker pids."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set(config):  # read by the nannies as they start, and only then
        lc = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0")
    with lc, Client(lc) as client:
        client.run(lambda: __import__("pipeline.stages.masks"))
        trim = set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values())
        print(f"running cluster {lc.scheduler_address}: MALLOC_TRIM_THRESHOLD_ {trim}", flush=True)
        yield lc.scheduler_address, list(client.run(os.getpid).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="bench_dask_") as tmp,
        running_cluster(args.workers, GLIBC_MALLOC) as (address, pids),
        running_cluster(args.workers, {}) as (trimmed, trimmed_pids),
    ):
        work = Path(tmp)
        canonical = prepare(work, args.images)
        modes = {
            "local": ({"kind": "local"}, []),
            "dask, LocalCluster per stage": ({"kind": "dask", "address": None}, []),
            "dask, running cluster": ({"kind": "dask", "address": address}, pids),
            "dask, running, Dask's malloc": ({"kind": "dask", "address": trimmed}, trimmed_pids),
        }
        runs: dict[str, list[tuple[Measured, float, float]]] = {name: [] for name in modes}
        digests: set[str] = set()
        print(f"load average before the runs: {load()}", flush=True)
        for round_ in range(args.rounds):
            for name, (executor, cluster) in modes.items():
                before = cluster_cpu(cluster)
                done, cpu, alone, out = one_run(work, canonical, args.workers, executor)
                cpu += cluster_cpu(cluster) - before
                digests.add(out)
                runs[name].append((done, cpu, alone))
                print(
                    f"round {round_ + 1} {name:30s} {done.seconds:7.1f} s "
                    f"{cpu / args.images * 1000:6.2f} CPU ms/img "
                    f"(stage process {alone / args.images * 1000:.2f})   load average {load()}",
                    flush=True,
                )
        print(f"load average after the runs: {load()}")
    report(runs, args.images, args.workers, len(digests) == 1)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f} ({os.cpu_count()} cores)"


def report(
    runs: dict[str, list[tuple[Measured, float, float]]], n: int, workers: int, identical: bool
) -> None:
    """Best wall time and least CPU of each executor (each its own minimum over the rounds)."""
    wall = {name: min(d.seconds for d, _, _ in done) for name, done in runs.items()}
    cpu = {name: min(c for _, c, _ in done) for name, done in runs.items()}
    median_wall = {n: statistics.median(d.seconds for d, _, _ in r) for n, r in runs.items()}
    median_cpu = {n: statistics.median(c for _, c, _ in r) for n, r in runs.items()}
    alone = {name: min(a for _, _, a in done) for name, done in runs.items()}
    peak = {name: max(d.peak_mb for d, _, _ in done) for name, done in runs.items()}
    print(f"\nmasks stage, {n} COCO-shaped images, {workers} worker processes, best of rounds")
    head = f"{'executor':30s} {'s':>7s} {'images/s':>9s} {'overhead':>9s} {'peak MB':>8s}"
    print(head + f" {'CPU ms/img':>10s} {'CPU overhead':>12s} {'stage ms/img':>12s}")
    for name in runs:
        print(
            f"{name:30s} {wall[name]:7.1f} {n / wall[name]:9.0f} "
            f"{(wall[name] / wall['local'] - 1) * 100:8.1f}% {peak[name]:8.0f} "
            f"{cpu[name] / n * 1000:10.2f} {(cpu[name] / cpu['local'] - 1) * 100:11.1f}% "
            f"{alone[name] / n * 1000:12.2f}"
        )
    for name in runs:
        if name != "local":
            speed = wall["local"] / wall[name], median_wall["local"] / median_wall[name]
            cost = cpu[name] / cpu["local"], median_cpu[name] / median_cpu["local"]
            print(
                f"{name} / local: images/s ratio {speed[0]:.3f} (medians {speed[1]:.3f}), "
                f"CPU per image ratio {cost[0]:.3f} (medians {cost[1]:.3f})"
            )
    print(f"outputs byte-identical across executors: {identical}")
    if not identical:
        raise SystemExit("outputs differ between executors")


if __name__ == "__main__":
    main()
