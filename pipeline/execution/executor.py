"""Per-item work (one image's mask, one image's variants, one file check), in input order.

``func(context, item)`` runs for every item; ``context`` (the class table, a variant, the
params) is sent to each worker once. Results come back in input order whatever the worker count
or order of completion, so the stage that writes them writes the same bytes with 1 or N
processes. Work is submitted in a bounded window of chunks: a slow writer holds back the
workers instead of letting every result pile up in memory.

Workers are started from a fresh single-threaded server process (``forkserver``), never forked
from the stage itself: a fork of a process that runs threads (a progress bar's monitor, a test
runner) can deadlock on a lock one of those threads held.

``executor.kind: dask`` in params.yaml runs the same work on a Dask cluster
(:mod:`pipeline.execution.dask_executor`, imported only then). Workers of a cluster may see the
files under other paths: an item or context that holds paths implements :class:`HasPaths`, and the
Dask executor sends it with absolute, mapped paths; an item that implements :class:`Described`
is named in the error when it kills every worker that runs it. The local executor uses
neither: paths stay as the stage made them.
"""

from __future__ import annotations

import collections
import gc
import itertools
import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm import tqdm

from pipeline.execution.work import Executor, Work, chunk_size, progress

if TYPE_CHECKING:
    from pipeline.files.params import Params

__all__ = ["C", "LocalExecutor", "R", "T", "make_executor"]

T = TypeVar("T")
R = TypeVar("R")
C = TypeVar("C")
# Chunks in flight per worker: enough to keep every worker busy, few enough to bound memory.
_WINDOW_PER_WORKER = 4


class LocalExecutor:
    """The machine's cores: in this process for one worker, else a process pool."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, int(workers))

    def map(
        self,
        func: Callable[[C, T], R],
        items: Iterable[T],
        context: C,
        desc: str,
        total: int | None = None,
        chunk: int | None = None,
    ) -> Iterator[R]:
        """``func(context, item)`` for every item, in input order; ``items`` may be lazy
        (a generator), then ``total`` sizes the progress bar and the chunks. Items that are
        already batches of work pass ``chunk=1``."""
        total = len(items) if total is None and isinstance(items, Sized) else total or 0
        if self.workers == 1 or total <= 1:
            yield from _in_process(func, items, context, desc, total)
        else:
            size = chunk_size(total, self.workers, chunk)
            yield from _in_pool(func, items, context, (desc, total, size), self.workers)


def _in_process(
    func: Work, items: Iterable[Any], context: Any, desc: str, total: int
) -> Iterator[Any]:
    with progress(total, desc) as bar:
        for item in items:
            yield func(context, item)
            bar.update(1)


_STATE: dict[str, Any] = {}


def _init_worker(func: Work, context: Any) -> None:
    # Per-item work builds no reference cycles; the cycle collector would only slow it down.
    gc.disable()
    _STATE["func"], _STATE["context"] = func, context


def _run_chunk(chunk: list[Any]) -> list[Any]:
    func, context = _STATE["func"], _STATE["context"]
    return [func(context, item) for item in chunk]


def _pool_context(module: str) -> mp.context.BaseContext:
    """forkserver (spawn where there is none), with the work's module imported once in the
    server so every worker starts with numpy, OpenCV and pycocotools already loaded."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([module])  # no effect once the server runs: harmless
    return ctx


def _in_pool(
    func: Work, items: Iterable[Any], context: Any, spec: tuple[str, int, int], workers: int
) -> Iterator[Any]:
    desc, total, size = spec
    source = iter(items)
    chunks = iter(lambda: list(itertools.islice(source, size)), [])
    ctx = _pool_context(func.__module__)
    pool = ctx.Pool(workers, initializer=_init_worker, initargs=(func, context))
    try:
        with progress(total, desc) as bar:
            pending: collections.deque = collections.deque()
            for chunk in chunks:
                pending.append(pool.apply_async(_run_chunk, (chunk,)))
                if len(pending) >= workers * _WINDOW_PER_WORKER:
                    yield from _drain(pending.popleft(), bar)
            while pending:
                yield from _drain(pending.popleft(), bar)
    except KeyboardInterrupt:
        pool.terminate()
        raise
    finally:
        _close(pool)


def _close(pool: Any) -> None:
    """Let the few chunks in flight finish, then stop: ``terminate()`` (what ``with Pool``
    does) can kill a worker while it holds the result queue's lock and hang the parent
    when a worker has raised."""
    pool.close()
    pool.join()


def _drain(result: Any, bar: tqdm) -> Iterator[Any]:
    values = result.get()
    bar.update(len(values))
    yield from values


def make_executor(run_on: Params | int) -> Executor:
    """The executor a stage's params choose (``workers`` and ``executor``); an int is a local
    pool of that many processes (tests, benchmarks). Dask is imported only when chosen."""
    if isinstance(run_on, int):
        return LocalExecutor(run_on)
    if run_on.executor.kind == "dask":
        from pipeline.execution.dask_executor import DaskExecutor

        return DaskExecutor(run_on.n_workers, run_on.executor)
    return LocalExecutor(run_on.n_workers)
