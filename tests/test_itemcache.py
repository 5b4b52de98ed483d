"""The item cache's own promises: concurrent runs, the size limit, the prune command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.execution.itemcache import MARKER, ItemCache, Memo, cached_map, item_key, seal
from tests.conftest import ROOT

WRITER = """
import sys
from pipeline.execution.itemcache import MARKER, ItemCache, Memo, cached_map, item_key, seal
cache = ItemCache(sys.argv[1], 1 << 30)
keys = [item_key("item", str(i)) for i in range(400)]
compute = lambda indices: iter([str(i).encode() * 50 for i in indices])
out = list(cached_map(cache, keys, compute, (lambda b: b, lambda b: b)))
assert out == [str(i).encode() * 50 for i in range(400)], "wrong result"
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_two_concurrent_runs_leave_whole_entries(tmp_path: Path) -> None:
    store = tmp_path / "store"
    runs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(store)], env=_env()) for _ in range(3)
    ]
    assert [run.wait(timeout=120) for run in runs] == [0, 0, 0]
    cache = ItemCache(store, 1 << 30)
    for i in range(400):
        assert cache.get(item_key("item", str(i))) == str(i).encode() * 50
    assert not list(store.rglob(".entry.*")), "a temp file was left behind"


def test_prune_removes_least_recently_used_first(tmp_path: Path) -> None:
    cache = ItemCache(tmp_path, 2600)
    keys = [item_key(str(i)) for i in range(5)]
    for age, key in enumerate(keys):
        cache.put(key, b"x" * 1000)
        os.utime(cache._path(key), (1_000_000 + age, 1_000_000 + age))
    cache.get(keys[0])  # used now: the newest
    removed, kept = cache.prune()
    assert (removed, kept) == (3, 2 * len(seal(b"x" * 1000)))
    assert [cache.has(k) for k in keys] == [True, False, False, False, True]


@settings(max_examples=30, deadline=None)
@given(hits=st.lists(st.booleans(), min_size=1, max_size=30))
def test_cached_map_gives_what_a_fresh_run_gives(tmp_path_factory, hits: list[bool]) -> None:
    cache = ItemCache(tmp_path_factory.mktemp("store"), 1 << 20)
    keys = [item_key("k", str(i)) for i in range(len(hits))]
    for key, hit in zip(keys, hits, strict=True):
        if hit:
            cache.put(key, key.encode())
    computed: list[int] = []

    def compute(indices: list[int]):
        computed.extend(indices)
        return iter([keys[i].encode() for i in indices])

    out = list(cached_map(cache, keys, compute, (lambda b: b, lambda b: b)))
    assert out == [k.encode() for k in keys]
    assert computed == [i for i, hit in enumerate(hits) if not hit]


def test_prune_command_trims_the_store(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("cache:\n  dir: store\n  max_size_gb: 20\n")
    cache = ItemCache(tmp_path / "store", 1 << 30)
    for i in range(3):
        cache.put(item_key(str(i)), b"y" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "cache", "prune", "--max-size-gb", "0"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "3 entries removed" in done.stdout
    left = sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert left == [MARKER, "store-usage.msgpack"]  # no entry; the size the walk found


def test_settle_walks_the_store_only_when_it_may_be_over_its_limit(tmp_path: Path) -> None:
    """A stage's settle() trusts the last walk's size plus what was written since; writes
    that could pass the limit (or a day-old walk) make it prune for real."""
    cache = ItemCache(tmp_path / "store", max_bytes=10_000)
    cache.put("a" * 64, b"x" * 1000)
    cache.settle()  # no walk yet: walks, keeps everything
    assert cache.has("a" * 64)
    big = tmp_path / "store" / "bb" / ("b" * 62)
    big.parent.mkdir()
    big.write_bytes(seal(b"y" * 20_000))  # not written through put: the bound does not see it
    later = ItemCache(tmp_path / "store", max_bytes=10_000)
    later.settle()
    assert big.exists()  # trusted the bound (1 kB + nothing written)
    later.put("c" * 64, b"z" * 9000)  # the bound passes the limit
    later.settle()
    assert not big.exists() and later.has("c" * 64)
    usage = Memo(later, "store-usage")
    usage.put("walked", usage.entries["walked"] - 2 * 86400)
    usage.put("size", 0)
    usage.save()
    big.parent.mkdir(exist_ok=True)
    big.write_bytes(seal(b"y" * 20_000))
    ItemCache(tmp_path / "store", max_bytes=10_000).settle()  # a day-old walk: walked anew
    assert not big.exists()
