"""The local executor: results in input order with 1 or N processes, bounded memory, errors."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.execution.executor import LocalExecutor, make_executor
from pipeline.execution.work import chunk_size
from pipeline.files.errors import DatasetError
from pipeline.files.params import ExecutorParams, Params, resolve_workers


def scaled(context: int, item: int) -> int:
    """The work: deterministic, so any order mix-up shows."""
    return context * item + 1


def late_first(context: float, item: int) -> tuple[int, int]:
    """Early items sleep longest, so later chunks finish first."""
    time.sleep(context * max(0, 8 - item))
    return item, os.getpid()


def refuse_seven(context: None, item: int) -> int:
    if item == 7:
        raise DatasetError("is seven", file="items.json", item=f"item {item}", field="value")
    return item


def whose_pid(context: None, item: int) -> int:
    return os.getpid()


@settings(max_examples=25, deadline=None)
@given(items=st.lists(st.integers(-1000, 1000), max_size=60), context=st.integers(-3, 3))
def test_one_worker_gives_func_of_each_item_in_order(items: list[int], context: int) -> None:
    """One worker runs in this process: exactly ``[func(context, item) ...]``."""
    out = list(LocalExecutor(1).map(scaled, items, context, "test"))
    assert out == [scaled(context, i) for i in items]


@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_two_workers_return_results_in_input_order(chunk: int | None) -> None:
    """Chunks finish out of order (early ones sleep), yet results come back in input order,
    from worker processes, with any chunk size."""
    items = list(range(40))
    out = list(LocalExecutor(2).map(late_first, items, 0.02, "test", chunk=chunk))
    assert [item for item, _ in out] == items
    assert os.getpid() not in {pid for _, pid in out}


def test_one_and_two_workers_give_the_same_results() -> None:
    """The worker count never changes what the stage gets (so never the bytes it writes)."""
    items = list(range(-50, 150, 3))
    one = list(LocalExecutor(1).map(scaled, items, 7, "test"))
    assert list(LocalExecutor(2).map(scaled, iter(items), 7, "test", total=len(items))) == one


def test_a_single_item_runs_in_this_process() -> None:
    """One item (or none) is not worth a pool, whatever the worker count."""
    assert list(LocalExecutor(2).map(whose_pid, [0], None, "test")) == [os.getpid()]
    assert list(LocalExecutor(2).map(whose_pid, [], None, "test")) == []


def test_lazy_items_are_read_a_bounded_window_ahead() -> None:
    """A generator is consumed at most a window of chunks ahead of the results taken."""
    pulled = 0

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in range(100_000):
            pulled += 1
            yield i

    workers, total = 2, 100_000
    results = LocalExecutor(workers).map(scaled, source(), 1, "test", total=total)
    assert next(results) == 1
    size = chunk_size(total, workers, None)
    assert pulled <= (workers * 4 + 1) * size  # 4 chunks in flight per worker, plus one
    results.close()  # the pool stops after the chunks in flight
    assert pulled < total


def test_an_error_in_a_worker_reaches_the_stage_whole() -> None:
    """A DatasetError raised in a worker is re-raised here with its text and fields."""
    with pytest.raises(DatasetError) as caught:
        list(LocalExecutor(2).map(refuse_seven, list(range(20)), None, "test", chunk=2))
    assert str(caught.value) == "items.json: item 7: value: is seven"
    assert (caught.value.file, caught.value.item, caught.value.field) == (
        "items.json",
        "item 7",
        "value",
    )


@pytest.mark.parametrize(("asked", "kept"), [(0, 1), (-3, 1), (1, 1), (4, 4)])
def test_worker_count_is_at_least_one(asked: int, kept: int) -> None:
    """Zero or negative worker counts run in this process (one worker)."""
    assert LocalExecutor(asked).workers == kept


def test_params_choose_the_executor() -> None:
    """An int is a local pool of that size; params give ``workers`` resolved (0 = all cores)."""
    assert isinstance(make_executor(3), LocalExecutor) and make_executor(3).workers == 3
    for workers in (0, 2, -1):
        chosen = make_executor(Params(workers=workers))
        assert isinstance(chosen, LocalExecutor)
        assert chosen.workers == resolve_workers(workers)
    dask = make_executor(Params(workers=2, executor=ExecutorParams(kind="dask")))
    assert type(dask).__name__ == "DaskExecutor" and not isinstance(dask, LocalExecutor)
