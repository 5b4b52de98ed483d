"""``python -m pipeline cache prune [--max-size-gb N]``: trim the item store now (the stages
trim it after each run; see :mod:`pipeline.execution.itemcache`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline.execution.cli import check_store_location
from pipeline.execution.itemcache import open_cache
from pipeline.files.params import load_params

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """``python -m pipeline cache prune [--max-size-gb N]``: trim the store now."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline cache", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["prune"])
    parser.add_argument("--max-size-gb", type=float, help="default: cache.max_size_gb")
    args = parser.parse_args(argv)
    params = load_params()
    check_store_location(params, Path("."))
    cache = params.cache
    limit = cache.max_size_gb if args.max_size_gb is None else args.max_size_gb
    start = time.perf_counter()
    removed, kept = 0, 0
    if cache.dir and Path(cache.dir).is_dir():  # no store yet: nothing to prune, none created
        removed, kept = open_cache(cache.dir, limit, Path(".")).prune()
    print(
        f"cache: {removed} entries removed, {kept / 2**30:.2f} GB kept "
        f"({time.perf_counter() - start:.1f} s)",
        file=sys.stdout,
    )
