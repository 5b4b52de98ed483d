"""Per-item work on a Dask cluster (``executor.kind: dask``): the same results, in the same order.

The contract of :class:`pipeline.execution.executor.LocalExecutor` holds: ``func(context, item)``
for every
item, results in input order whatever the worker count or order of completion, so the stage
writes the same bytes. What differs is where the work runs (see docs/dask.md):

- ``executor.address`` names a running scheduler (``tcp://host:8786``; ``tls://`` with Dask's
  own TLS configuration, ``distributed.comm.tls.*``); without it a ``LocalCluster`` of
  ``workers`` processes (one thread each) is started for the stage and closed after it.
- Paths: an item or context with paths (:class:`pipeline.execution.work.HasPaths`) is sent with
  absolute paths (relative ones are taken against the working directory, the repository root
  ``dvc repro`` runs in), the longest matching prefix of ``executor.path_map`` replaced by the
  workers' prefix. Workers read inputs from a filesystem they share; results (PNG bytes, stats
  rows) come back to the stage, which writes them.
- Same bytes need the same libraries: before any work the versions of the packages that decide
  bytes are compared with every worker's (``client.get_versions``), and the source of this
  package too; every result carries its worker's versions, so a worker that joins later (an
  adaptive cluster) is checked by its first result.
- Memory: chunks are submitted in a bounded window (4 per worker thread) and taken in input
  order: a slow writer holds back the submissions, never 118k futures at once.
- Chunks grow from the local pool's size to about half a second of work each, as measured on
  the workers: Dask's cost is per task, so 32 masks per task (~40 ms) paid ~25% of overhead.
- A worker that dies is replaced and its work rerun by Dask. When Dask gives up on a chunk
  (``KilledWorker``: every worker that ran it died) its items are rerun one per task, so the
  error names the item that kills workers.

Security: the scheduler runs whatever pickled code its clients send and has no authentication
by default; keep a plain ``tcp://`` scheduler on a trusted network, or configure TLS in Dask.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import itertools
import logging
import os
import re
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
from distributed import Client, Future, KilledWorker, LocalCluster, get_worker
from distributed.versions import VersionMismatchWarning, get_versions
from tqdm import tqdm

from pipeline.execution.work import Described, HasPaths, Work, chunk_size, progress
from pipeline.files.environment import BYTE_PACKAGES, OPENCV_WHEELS, PYTHON
from pipeline.files.errors import DatasetError
from pipeline.files.params import PARAMS_FILE, ExecutorParams

__all__ = [
    "DaskExecutor",
    "KILLED",
    "PACKAGES",
    "SOURCE",
    "Stamp",
    "TRIM",
    "byte_versions",
    "check_versions",
    "cluster_threads",
    "connect",
    "environment",
    "mismatch",
    "path_converter",
    "source_digest",
    "warn_slow_malloc",
    "worker_path",
]

# The versions compared with every worker's: environment.yaml's list, and this package.
PACKAGES = (*BYTE_PACKAGES, "coco-folds")
SOURCE = "coco-folds source"  # digest of this package's modules: the code, not its version
_WINDOW_PER_THREAD = 4  # chunks in flight per worker thread, as the local pool per process
# Work per task once measured. Dask's own cost is per task, ~10 ms of CPU on client, scheduler
# and worker together (measured on the masks stage): at 0.5 s of work per task that is ~2%, at
# the local pool's 32 masks (~40 ms) it was ~25% (docs/dask.md, "Benchmark").
_TASK_SECONDS = 0.5
_MAX_ITEMS = 1024  # items per task at most: a task's results wait on its worker until taken
# Dask's nanny starts each worker with MALLOC_TRIM_THRESHOLD_=65536 (its config
# `distributed.nanny.pre-spawn-environ`). Any explicit trim threshold freezes glibc's mmap
# threshold at 128 KiB, so every mask-sized array is a fresh mmap, page-faulted and unmapped:
# the per-image work then costs ~1.7x the CPU (docs/dask.md, "Worker memory settings"). The
# stage's own LocalCluster leaves it unset (an environment variable of the stage's still wins).
TRIM = "MALLOC_TRIM_THRESHOLD_"
KILLED = (
    "every Dask worker that ran it died (KilledWorker: out of memory, or a crash in a native "
    "library?); run it alone with `executor.kind: local` and `workers: 1` to see why"
)


# ---------------------------------------------------------------- paths


def worker_path(path: str, path_map: Mapping[str, str]) -> str:
    """``path`` as the workers see it: absolute (symlinks kept), the longest matching local
    prefix of ``path_map`` (whole path components only) replaced by the workers' prefix."""
    absolute = os.path.abspath(path)
    for local in sorted(path_map, key=lambda p: -len(os.path.abspath(p))):
        prefix = os.path.abspath(local).rstrip(os.sep)
        if absolute == prefix or absolute.startswith(prefix + os.sep):
            return path_map[local].rstrip("/") + absolute[len(prefix) :]
    return absolute


def path_converter(path_map: Mapping[str, str]) -> Callable[[Any], Any]:
    """What the executor applies to the context and to every item before sending it."""

    def to_worker(path: str) -> str:
        return worker_path(path, path_map)

    def convert(obj: Any) -> Any:
        return obj.with_paths(to_worker) if isinstance(obj, HasPaths) else obj

    return convert


# ---------------------------------------------------------------- versions


@functools.cache
def source_digest() -> str:
    """The modules of this package, hashed: a worker with other code makes other bytes, even
    under the same version number (an editable install of another commit)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def byte_versions(packages: Mapping[str, str | None]) -> dict[str, str | None]:
    """The versions that decide bytes, from a ``{distribution: version}`` table (Dask's
    ``get_versions``: python as ``3.11.7.final.0``, OpenCV under whichever wheel is there)."""
    found = {name: packages.get(name) for name in PACKAGES}
    found["opencv-python-headless"] = next(
        (packages[n] for n in OPENCV_WHEELS if packages.get(n)), None
    )
    found[PYTHON] = ".".join(str(packages.get(PYTHON) or "").split(".")[:2]) or None
    return found


@functools.cache
def environment() -> dict[str, str | None]:
    """This process's versions that decide bytes, and the digest of this package's source."""
    found = get_versions(packages=[*PACKAGES, *OPENCV_WHEELS])["packages"]
    return {**byte_versions(found), SOURCE: source_digest()}


def mismatch(ours: Mapping[str, Any], theirs: Mapping[str, Any], worker: str) -> str | None:
    """One line naming the worker and the first package whose version differs, or None."""
    for name in sorted(set(ours) | set(theirs)):
        if ours.get(name) != theirs.get(name):
            return (
                f"Dask worker {worker} has {name} {theirs.get(name) or 'not installed'}, this "
                f"machine {ours.get(name) or 'not installed'}: outputs would not be "
                "byte-identical; install the same versions (and commit) on the workers"
            )
    return None


def check_versions(client: Client) -> None:
    """Refuse to start when a worker's versions or code differ from this machine's."""
    info = client.get_versions(packages=[*PACKAGES, *OPENCV_WHEELS])
    try:
        sources = client.run(source_digest)
    except Exception as exc:  # noqa: BLE001 - whatever a worker without this package raises
        raise DatasetError(
            f"Dask workers cannot run this package's code ({type(exc).__name__}: {exc}); "
            "install coco-folds, the same commit, on the workers"
        ) from None
    for worker, found in sorted(info["workers"].items()):
        if not isinstance(found, dict):
            continue  # a worker that left while answering
        theirs = {**byte_versions(found["packages"]), SOURCE: sources.get(worker)}
        problem = mismatch(environment(), theirs, worker)
        if problem:
            raise DatasetError(problem)


def _trim_threshold() -> str | None:
    return os.environ.get(TRIM)


def warn_slow_malloc(client: Client) -> None:
    """One line on stderr when workers run with a malloc trim threshold (Dask's default)."""
    found = {v for v in client.run(_trim_threshold).values() if v is not None}
    if found:
        print(
            f"dask: workers run with {TRIM}={min(found)} (Dask's nanny default): per-image "
            "work costs up to ~1.7x the CPU; see docs/dask.md, 'Worker memory settings'",
            file=sys.stderr,
        )


# ---------------------------------------------------------------- on a worker


def _context(value: Any) -> Any:
    """The context as a task result, not scattered data: if every worker holding it dies,
    Dask recomputes it from the task, where scattered data would be lost."""
    return value


Stamp = tuple[str, dict, float]  # the worker, its versions, the seconds the chunk took


def _run_chunk(func: Work, context: Any, items: list[Any]) -> tuple[Stamp, list[Any]]:
    """A chunk's results, stamped with the worker and its versions (checked by the stage) and
    the time it took (which sizes the next chunks)."""
    start = time.perf_counter()
    values = [func(context, item) for item in items]
    return (get_worker().address, environment(), time.perf_counter() - start), values


# ---------------------------------------------------------------- on the stage's side


@contextlib.contextmanager
def connect(settings: ExecutorParams, workers: int) -> Iterator[Client]:
    """A client of the configured scheduler, or of a LocalCluster of ``workers`` processes."""
    if settings.address is None:
        cluster = _local_cluster(workers)
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                _close_quietly(client)
        finally:
            _close_quietly(cluster)
        return
    try:
        with warnings.catch_warnings():  # Dask's table of differing versions: ours is one line
            warnings.simplefilter("ignore", VersionMismatchWarning)
            client = Client(settings.address)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:  # refused, bad address, TLS
        raise DatasetError(
            f"cannot reach the Dask scheduler at {settings.address} ({exc}); start it "
            "(`dask scheduler`) or fix the address",
            file=PARAMS_FILE,
            field="executor.address",
        ) from None
    try:
        yield client
    finally:
        with _quiet("distributed.client"):  # a lost scheduler's reconnection, cancelled
            client.close()


def _close_quietly(closable: Client | LocalCluster) -> None:
    """Close the stage's own cluster without letting its teardown speak: a nanny still
    restarting a killed worker can raise while closing ("can only join a started process"),
    which would replace the stage's real one-line error (or fail a stage that finished). Its
    threads may still log after the close returns, so Dask's log stays silenced from here on:
    the stage's own cluster was started silent too (``silence_logs``)."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    with contextlib.suppress(Exception):
        closable.close()


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Dask's log ``name`` silenced for a moment: the stage says what went wrong, in one line."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _local_cluster(workers: int) -> LocalCluster:
    """The stage's own cluster, quiet: worker deaths Dask recovers from are no error, and one
    it cannot is the stage's own one-line error; the dashboard's port is printed, taken or not.
    Security (TLS) comes from Dask's config, as for any Dask cluster; glibc's malloc keeps its
    defaults (see TRIM)."""
    with (
        warnings.catch_warnings(),
        dask.config.set({f"distributed.nanny.pre-spawn-environ.{TRIM}": None}),
    ):
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            silence_logs=logging.CRITICAL,
        )


def cluster_threads(client: Client, fallback: int) -> int:
    """Worker threads now in the cluster; ``fallback`` while none has joined yet."""
    threads = sum(client.nthreads().values())
    if not threads:
        print("dask: no worker yet; work waits for workers to join", file=sys.stderr)
    return threads or fallback


@dataclass
class _Sizer:
    """Items per chunk: the local pool's size (at most 32) until chunks come back, then as many
    as make about _TASK_SECONDS of work on a worker, as measured there, never fewer than at
    first, at most _MAX_ITEMS, and no more than leave _WINDOW_PER_THREAD chunks per thread for
    the rest of the items (the last chunks stay small: every worker gets some). A size the
    caller chose stays."""

    size: int
    total: int  # 0 when unknown
    threads: int
    fixed: bool
    items: int = 0
    seconds: float = 0.0

    def observe(self, items: int, seconds: float) -> None:
        self.items += items
        self.seconds += seconds

    def next(self, taken: int) -> int:
        """The size of the chunk that starts after ``taken`` items."""
        if self.fixed or not self.items:
            return self.size
        want = int(_TASK_SECONDS * self.items / self.seconds) if self.seconds > 0 else _MAX_ITEMS
        size = min(_MAX_ITEMS, want)
        if self.total:
            size = min(size, (self.total - taken) // (self.threads * _WINDOW_PER_THREAD))
        return max(self.size, size)


@dataclass
class _Job:
    """One ``map`` on the cluster: submits chunks and takes their results back."""

    client: Client
    func: Work
    context: Future
    convert: Callable[[Any], Any]
    name: str  # key prefix: the tasks' name on the dashboard
    sizer: _Sizer
    submitted: int = field(default=0)

    def submit(self, items: list[Any]) -> Future:
        self.submitted += 1
        sent = [self.convert(item) for item in items]
        key = f"{self.name}-{self.submitted}"
        return self.client.submit(_run_chunk, self.func, self.context, sent, key=key, pure=False)

    def results(self, future: Future, chunk: tuple[int, list[Any]]) -> list[Any]:
        """A chunk's results; when Dask gave up on it, its items one by one."""
        try:
            result = future.result()
        except KilledWorker:
            return self._one_by_one(*chunk)
        values = _checked(result)
        self.sizer.observe(len(values), result[0][2])
        return values

    def _one_by_one(self, first: int, items: list[Any]) -> list[Any]:
        """Each item of a chunk as its own task: the one that kills every worker is named in
        the error; the others are results like any (a chunk may die of a neighbour's crash)."""
        if len(items) == 1:
            raise self._killed(items[0], first)
        singles = [self.submit([item]) for item in items]
        out = []
        for position, (item, single) in enumerate(zip(items, singles, strict=True)):
            try:
                out.extend(_checked(single.result()))
            except KilledWorker:
                raise self._killed(item, first + position) from None
        return out

    def _killed(self, item: Any, position: int) -> DatasetError:
        return DatasetError(KILLED, item=_describe(item, position, self.name))


def _checked(result: tuple[Stamp, list[Any]]) -> list[Any]:
    (worker, versions, _), values = result
    problem = mismatch(environment(), versions, worker)
    if problem:
        raise DatasetError(problem)
    return values


def _describe(item: Any, position: int, name: str) -> str:
    return item.describe() if isinstance(item, Described) else f"{name}: item {position}"


class DaskExecutor:
    """Per-item work on a Dask cluster; the LocalExecutor's interface and results."""

    def __init__(self, workers: int, settings: ExecutorParams) -> None:
        self.workers = max(1, int(workers))
        self.settings = settings

    def map(
        self,
        func: Callable[[Any, Any], Any],
        items: Iterable[Any],
        context: Any,
        desc: str,
        total: int | None = None,
        chunk: int | None = None,
    ) -> Iterator[Any]:
        """``func(context, item)`` for every item, in input order (see LocalExecutor.map)."""
        total = len(items) if total is None and isinstance(items, Sized) else total or 0
        with connect(self.settings, self.workers) as client:
            check_versions(client)
            warn_slow_malloc(client)
            print(f"{desc}: Dask dashboard at {client.dashboard_link}", file=sys.stderr)
            threads = cluster_threads(client, self.workers)
            sizer = _Sizer(chunk_size(total, threads, chunk), total, threads, chunk is not None)
            name = re.sub(r"\W+", "_", desc).strip("_") + "-" + uuid.uuid4().hex[:8]
            convert = path_converter(self.settings.path_map)
            ctx = client.submit(_context, convert(context), key=f"{name}-context", pure=False)
            job = _Job(client, func, ctx, convert, name, sizer)
            window = threads * _WINDOW_PER_THREAD
            with progress(total, desc) as bar:
                try:
                    yield from _stream(job, _chunks(items, sizer), window, bar)
                except CancelledError:  # the scheduler went away mid-stage
                    raise DatasetError(
                        f"lost the Dask scheduler at {client.scheduler.address} mid-stage; "
                        "nothing was half-written: restart it and run the stage again"
                    ) from None


def _chunks(items: Iterable[Any], sizer: _Sizer) -> Iterator[tuple[int, list[Any]]]:
    """(position of the first item, items) for consecutive chunks, each as large as the sizer
    says when it is made (chunks are made as the window frees, after results came back)."""
    source = iter(items)
    first = 0
    while batch := list(itertools.islice(source, sizer.next(first))):
        yield first, batch
        first += len(batch)


def _stream(
    job: _Job, chunks: Iterator[tuple[int, list[Any]]], window: int, bar: tqdm
) -> Iterator[Any]:
    """Submit chunks while at most ``window`` are in flight; yield results in input order."""
    pending: collections.deque = collections.deque()
    for chunk in chunks:
        pending.append((job.submit(chunk[1]), chunk))
        if len(pending) >= window:
            yield from _drain(job, *pending.popleft(), bar)
    while pending:
        yield from _drain(job, *pending.popleft(), bar)


def _drain(job: _Job, future: Future, chunk: tuple[int, list[Any]], bar: tqdm) -> Iterator[Any]:
    values = job.results(future, chunk)
    del future  # released on the cluster once its results are here
    bar.update(len(values))
    yield from values
