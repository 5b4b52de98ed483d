"""The command line every stage shares: ``python -m pipeline <stage> [args]``.

Each stage module has ``run(params, root, ...) -> str`` (the work, returning a one-line summary
with its counts) and a ``main(argv)`` that calls :func:`stage_main`: argument parsing, params,
timing and the summary line ``<stage>: <counts> (<seconds> s)`` live here once.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.execution.itemcache import check_location, damaged_entries
from pipeline.files.contracts import output_paths
from pipeline.files.environment import check_environment
from pipeline.files.params import Params, load_params

__all__ = ["check_store_location", "stage_main"]


def check_store_location(params: Params, root: Path) -> None:
    """``cache.dir`` apart from every output, the image folder and the annotations."""
    if not params.cache.dir:
        return
    store = Path(params.cache.dir)
    store = store if store.is_absolute() else root / store
    dataset = [params.dataset.annotations, params.dataset.images]
    protected = [root / p for p in output_paths()] + [root / p for p in dataset if p]
    check_location(store, protected)


def _damage_note(before: int) -> str:
    """The store entries this stage found damaged (the list is per process: tests run many
    stages in one)."""
    found = damaged_entries()[before:]
    if not found:
        return ""
    return f"; {len(found)} damaged store entries removed and recomputed (first: {found[0]})"


def stage_main(
    stage: str,
    doc: str | None,
    argv: list[str] | None,
    work: Callable[[Params, Path, argparse.Namespace], str],
    add_arguments: Callable[[argparse.ArgumentParser], Any] | None = None,
) -> None:
    """Parse ``argv``, load params.yaml, run ``work`` and print its summary with the time."""
    parser = argparse.ArgumentParser(
        prog=f"python -m pipeline {stage}",
        description=(doc or "").strip().splitlines()[0] if doc else None,
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    check_environment(Path("."))
    params = load_params()
    check_store_location(params, Path("."))
    start, damaged = time.perf_counter(), len(damaged_entries())
    summary = work(params, Path("."), args)
    print(f"{stage}: {summary}{_damage_note(damaged)} ({time.perf_counter() - start:.1f} s)")
