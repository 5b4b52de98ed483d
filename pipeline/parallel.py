"""Ordered process-parallel map with a progress bar.

Results come back in input order whatever the worker count, so outputs that depend on them are
byte-identical with 1 or N processes. With one worker it runs in-process (easy to debug).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def pmap(
    func: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int,
    desc: str,
    initializer: Callable[..., Any] | None = None,
    initargs: Iterable[Any] = (),
    chunksize: int | None = None,
) -> list[R]:
    disable = None  # tqdm hides itself when stderr is not a terminal only if disable=None
    if workers <= 1 or len(items) <= 1:
        if initializer is not None:
            initializer(*initargs)
        return [func(item) for item in tqdm(items, desc=desc, disable=disable, unit="img")]
    if chunksize is None:
        chunksize = max(1, min(32, len(items) // (workers * 8) or 1))
    ctx = (
        mp.get_context("spawn")
        if mp.get_start_method(allow_none=True) == "spawn"
        else mp.get_context("fork")
    )
    with ctx.Pool(workers, initializer=initializer, initargs=tuple(initargs)) as pool:
        return list(
            tqdm(
                pool.imap(func, items, chunksize=chunksize),
                total=len(items),
                desc=desc,
                disable=disable,
                unit="img",
            )
        )
