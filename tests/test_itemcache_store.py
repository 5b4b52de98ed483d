"""The item store owns only what it wrote and never passes a damaged entry on: unit tests of the
marker, adoption, location checks and checksums, and the two serious cases end to end through
the real `dvc repro`."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.execution.itemcache import (
    MARKER,
    ItemCache,
    Memo,
    cached_map,
    check_location,
    damaged_entries,
    item_key,
    seal,
    unseal,
)
from pipeline.files.errors import DatasetError
from tests.conftest import copy_repo
from tests.test_pipeline_dvc import dvc_env, output_digests, sh


def user_folder(root: Path) -> dict[Path, bytes]:
    """A data root as users have them: photos two levels down, a json, a big capture."""
    files = {
        root / "train2017" / "0001.jpg": b"\xff\xd8photo one",
        root / "train2017" / "0002.jpg": b"\xff\xd8photo two",
        root / "annotations" / "instances.json": b'{"images": []}',
        root / "capture.bin": os.urandom(4096),
        root / "ab" / ("c" * 62): b"a file that merely looks like an entry",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def assert_untouched(files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        assert path.read_bytes() == data, path
    root = next(iter(files)).parents[1]
    assert not (root / MARKER).exists()


# ---------------------------------------------------------------- ownership


def test_a_folder_of_user_files_is_refused_and_untouched(tmp_path: Path) -> None:
    files = user_folder(tmp_path / "data_root")
    with pytest.raises(DatasetError, match=r"params\.yaml: cache\.dir: .*did not write"):
        ItemCache(tmp_path / "data_root", 0)
    assert_untouched(files)


def test_a_new_or_empty_folder_is_marked(tmp_path: Path) -> None:
    for path in (tmp_path / "new", tmp_path / "empty"):
        if path.name == "empty":
            path.mkdir()
        ItemCache(path, 1 << 20)
        assert (path / MARKER).is_file()


def test_an_earlier_versions_store_is_adopted_and_its_entries_recomputed(tmp_path: Path) -> None:
    """Entry names only (no marker, no checksum): adopted, marked; old entries are misses."""
    store = tmp_path / "store"
    key = item_key("old")
    (store / key[:2]).mkdir(parents=True)
    (store / key[:2] / key[2:]).write_bytes(b"payload of an earlier version")
    (store / "validate-probes.msgpack").write_bytes(b"\x80")
    cache = ItemCache(store, 1 << 20)
    assert (store / MARKER).is_file()
    before = len(damaged_entries())
    assert cache.get(key) is None
    assert len(damaged_entries()) == before  # an old format is not damage
    assert not (store / key[:2] / key[2:]).exists()


def test_prune_removes_only_entries_of_a_marked_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    cache = ItemCache(store, 0)
    keys = [item_key(str(i)) for i in range(3)]
    for key in keys:
        cache.put(key, b"x" * 100)
    stranger = store / "notes.txt"  # written by someone else after the store was made
    stranger.write_text("mine")
    lookalike = store / "zz" / ("0" * 62)
    lookalike.parent.mkdir()
    lookalike.write_text("not an entry folder")
    assert cache.prune()[0] == 3
    assert stranger.read_text() == "mine" and lookalike.read_text() == "not an entry folder"
    assert (store / MARKER).is_file()


@pytest.mark.parametrize(
    ("store", "protected"),
    [
        ("data/masks/cache", "data/masks"),  # inside an output
        ("photos", "photos"),  # the image folder itself
        ("photos/.store", "photos"),  # inside the image folder
        (".", "data/masks"),  # around an output
    ],
)
def test_a_store_overlapping_what_the_pipeline_uses_is_refused(
    tmp_path: Path, store: str, protected: str
) -> None:
    with pytest.raises(DatasetError, match=r"cache\.dir: .*overlaps"):
        check_location(tmp_path / store, [tmp_path / protected, tmp_path / "ann.json"])


def test_a_store_beside_them_is_fine(tmp_path: Path) -> None:
    check_location(tmp_path / ".cache/coco-folds", [tmp_path / "data/masks", tmp_path / "x"])


# ---------------------------------------------------------------- checksums


def test_seal_round_trip_and_every_damage_is_caught() -> None:
    payload = b"\x89PNG mask bytes" * 10
    entry = seal(payload)
    assert unseal(entry) == payload
    flipped = bytearray(entry)
    flipped[-3] ^= 0x01
    for bad in (bytes(flipped), entry[:-1], entry[:10], entry + b"x", b"", payload):
        assert unseal(bad) is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "alter", "empty"])
def test_a_damaged_entry_is_recomputed_never_passed_on(tmp_path: Path, damage: str) -> None:
    cache = ItemCache(tmp_path / "store", 1 << 20)
    keys = [item_key("k", str(i)) for i in range(4)]
    fresh = [f"value {i}".encode() * 20 for i in range(4)]
    compute = lambda indices: iter([fresh[i] for i in indices])  # noqa: E731
    codec = (lambda b: b, lambda b: b)
    assert list(cached_map(cache, keys, compute, codec)) == fresh
    path = cache._path(keys[1])
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-5] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "alter":
        data[-1:] = b"!"  # still the same length, still "decodable" as bytes
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    before = len(damaged_entries())
    assert list(cached_map(cache, keys, compute, codec)) == fresh
    assert len(damaged_entries()) == before + (damage != "empty")
    assert unseal(path.read_bytes()) == fresh[1]  # recomputed and stored again


def test_a_damaged_memo_is_dropped(tmp_path: Path) -> None:
    cache = ItemCache(tmp_path / "store", 1 << 20)
    memo = Memo(cache, "probes")
    memo.put("a", "1")
    memo.save()
    assert Memo(cache, "probes").get("a") == "1"
    path = tmp_path / "store" / "probes.msgpack"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert Memo(cache, "probes").get("a") is None


def test_a_failed_memo_save_leaves_no_temp_file(tmp_path: Path) -> None:
    cache = ItemCache(tmp_path / "store", 1 << 20)
    memo = Memo(cache, "probes")
    memo.put("a", object())  # msgpack cannot encode it
    with pytest.raises(TypeError):
        memo.save()
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [MARKER]


# ---------------------------------------------------------------- end to end, real dvc


def set_store(repo: Path, store: Path | str) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["cache"]["dir"] = str(store)
    params["workers"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def git_repo(tmp_path: Path) -> Path:
    repo = copy_repo(tmp_path / "repo")
    (repo / "dvc.lock").unlink(missing_ok=True)
    sh(["git", "init", "-q"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "copy"], repo)
    return repo


@pytest.mark.slow
def test_dvc_repro_never_removes_user_files(tmp_path: Path) -> None:
    """cache.dir at a data root, at the image folder, inside data/masks: one line naming the
    key, exit non-zero, every user file still there; `cache prune` refuses alike."""
    repo = git_repo(tmp_path)
    files = user_folder(tmp_path / "data_root")
    for store in (tmp_path / "data_root", "data/sample/images", "data/masks/store"):
        set_store(repo, store)
        done = subprocess.run(
            ["dvc", "repro", "masks"], cwd=repo, env=dvc_env(), capture_output=True, text=True
        )
        assert done.returncode != 0, store
        assert "error: params.yaml: cache.dir: " in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        prune = subprocess.run(
            [sys.executable, "-m", "pipeline", "cache", "prune", "--max-size-gb", "0"],
            cwd=repo,
            env=dvc_env(),
            capture_output=True,
            text=True,
        )
        assert prune.returncode == 1 and "cache.dir" in prune.stderr
    assert_untouched(files)
    assert len(list((repo / "data/sample/images").rglob("*.jpg"))) == 60


def damage_entries(store: Path) -> int:
    """Flip a byte in one entry, truncate another, alter a third, empty a fourth."""
    entries = sorted(p for p in store.glob("??/*") if p.is_file())
    for n, path in enumerate(entries[:4]):
        data = bytearray(path.read_bytes())
        if n == 0:
            data[len(data) // 2] ^= 0x10
        elif n == 1:
            data = data[: len(data) // 3]
        elif n == 2:
            data[-1] = (data[-1] + 1) % 256
        else:
            data = bytearray()
        path.write_bytes(bytes(data))
    return min(4, len(entries))


@pytest.mark.slow
def test_damaged_entries_never_reach_the_outputs(tmp_path: Path) -> None:
    """Entries flipped, truncated, altered: `dvc repro --force` exits 0, names the damage in
    the summary, and writes outputs byte-identical to a clean build."""
    repo = git_repo(tmp_path)
    store = tmp_path / "store"
    set_store(repo, store)
    sh(["dvc", "repro"], repo)
    clean = output_digests(repo)
    assert damage_entries(store) == 4
    for index in store.glob("masks-*.msgpack"):  # the run index would spare the masks' reads
        index.unlink()
    out = sh(["dvc", "repro", "--force"], repo)
    assert "damaged store entries removed and recomputed" in out
    assert output_digests(repo) == clean
    digest = hashlib.sha256
    for path in store.glob("??/*"):  # every entry whole again
        assert unseal(path.read_bytes()) is not None, digest(path.read_bytes()).hexdigest()
