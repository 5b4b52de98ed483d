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

from pipeline.files.environment import check_environment
from pipeline.files.params import Params, load_params

__all__ = ["stage_main"]


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
    start = time.perf_counter()
    summary = work(load_params(), Path("."), args)
    print(f"{stage}: {summary} ({time.perf_counter() - start:.1f} s)")
