"""What every executor shares: the work's shape, the protocols items may implement, chunking
and the progress bar. The local pool (:mod:`pipeline.execution.executor`) and Dask
(:mod:`pipeline.execution.dask_executor`) both build on it, so neither imports the other's
module at load time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

from tqdm import tqdm

__all__ = ["Described", "Executor", "HasPaths", "Work", "chunk_size", "progress"]

T = TypeVar("T")
R = TypeVar("R")
C = TypeVar("C")
Work = Callable[[Any, Any], Any]

_MAX_CHUNK = 32  # items per unit of work at most


@runtime_checkable
class HasPaths(Protocol):
    """Work that reads files: a copy of itself with every path passed through ``convert``."""

    def with_paths(self, convert: Callable[[str], str]) -> Any: ...


@runtime_checkable
class Described(Protocol):
    """Work that can name itself in an error, e.g. ``image id 7 (batch_01/0001.jpg)``."""

    def describe(self) -> str: ...


class Executor(Protocol):
    """What a stage gets from :func:`make_executor`: local pool or Dask, the same ``map``."""

    def map(
        self,
        func: Callable[[C, T], R],
        items: Iterable[T],
        context: C,
        desc: str,
        total: int | None = None,
        chunk: int | None = None,
    ) -> Iterator[R]: ...


def progress(total: int, desc: str, unit: str = "img") -> tqdm:
    """The one progress bar look: items per second, hidden when stderr is not a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, disable=None, mininterval=0.5)


def chunk_size(total: int, workers: int, chunk: int | None) -> int:
    """Items per unit of work: ~8 units per worker, at most _MAX_CHUNK items each."""
    return chunk or max(1, min(_MAX_CHUNK, total // (workers * 8) or 1))
