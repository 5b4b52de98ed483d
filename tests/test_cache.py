"""``python -m pipeline cache prune``: trims the item store to the size limit, least recently
used first, with the limit from the command line or params.yaml."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pipeline.execution.itemcache import MARKER, ItemCache, item_key, seal
from pipeline.tools.cache import main

PAYLOAD = 1000  # bytes per entry's payload
ENTRY = len(seal(bytes(PAYLOAD)))  # bytes per entry on disk: the payload behind its checksum


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ItemCache, list[str]]:
    """Five 1000-byte entries under ./store, oldest first; params.yaml points the cache there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("cache:\n  dir: store\n")
    cache = ItemCache(tmp_path / "store", 1 << 30)
    keys = [item_key("entry", str(i)) for i in range(5)]
    for age, key in enumerate(keys):
        cache.put(key, bytes([age]) * PAYLOAD)
        os.utime(cache._path(key), (1_000_000 + age, 1_000_000 + age))
    return cache, keys


def gb(n_bytes: int) -> str:
    return repr(n_bytes / 2**30)


def summary(out: str) -> tuple[int, str]:
    match = re.fullmatch(r"cache: (\d+) entries removed, (\d+\.\d\d) GB kept \(\d+\.\d s\)\n", out)
    assert match, out
    return int(match.group(1)), match.group(2)


def test_prune_keeps_the_newest_entries_within_the_limit(
    store: tuple[ItemCache, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Oldest entries go first until the store fits the limit given."""
    cache, keys = store
    main(["prune", "--max-size-gb", gb(2 * ENTRY + 500)])
    assert summary(capsys.readouterr().out) == (3, "0.00")
    assert [cache.has(k) for k in keys] == [False, False, False, True, True]
    entries = [p for p in cache.dir.rglob("*") if p.is_file() and p.name != MARKER]
    assert sum(p.stat().st_size for p in entries) <= 2 * ENTRY + 500


def test_a_read_entry_counts_as_recently_used(
    store: tuple[ItemCache, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Reading an entry makes it the newest, so it is pruned last."""
    cache, keys = store
    assert cache.get(keys[0]) == bytes([0]) * PAYLOAD
    main(["prune", "--max-size-gb", gb(ENTRY)])
    assert summary(capsys.readouterr().out)[0] == 4
    assert [cache.has(k) for k in keys] == [True, False, False, False, False]


def test_default_limit_is_params_cache_max_size_gb(
    store: tuple[ItemCache, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --max-size-gb the limit is params.yaml's cache.max_size_gb."""
    cache, keys = store
    (tmp_path / "params.yaml").write_text(f"cache:\n  dir: store\n  max_size_gb: {gb(3 * ENTRY)}\n")
    main(["prune"])
    assert summary(capsys.readouterr().out)[0] == 2
    assert [cache.has(k) for k in keys] == [False, False, True, True, True]


def test_under_the_limit_nothing_is_removed(
    store: tuple[ItemCache, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A store under the limit is left whole."""
    cache, keys = store
    main(["prune"])  # the default limit: 20 GB
    assert summary(capsys.readouterr().out) == (0, "0.00")
    assert all(cache.has(k) for k in keys)


@pytest.mark.parametrize("params", ["cache:\n  dir: null\n", "cache:\n  dir: elsewhere\n"])
def test_no_store_or_no_cache_prunes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], params: str
) -> None:
    """cache.dir null or a store not made yet: nothing removed, nothing created."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(params)
    main(["prune", "--max-size-gb", "0"])
    assert summary(capsys.readouterr().out) == (0, "0.00")
    assert not (tmp_path / "elsewhere").exists()


def test_only_prune_is_a_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown commands and bad sizes are argparse errors (exit code 2)."""
    monkeypatch.chdir(tmp_path)
    for argv in ([], ["clear"], ["prune", "--max-size-gb", "lots"]):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2
