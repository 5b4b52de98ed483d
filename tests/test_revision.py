"""pipeline.folds.revision: the parts a trainer repo pinned hold what the exports were made
from, or ``fold``, ``test``, ``mmseg_layout`` and the CLI refuse the mix."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pipeline.files.sources import dir_md5, file_md5
from pipeline.folds import revision
from pipeline.folds.dvcfile import Pin, read_pin
from pipeline.folds.exported import metadata
from pipeline.folds.mmseg import mmseg_layout
from pipeline.folds.read import fold
from pipeline.folds.read import test as held_out
from pipeline.folds.revision import MixedRevisionsError, check_revisions, overridden
from tests.conftest import python_exe, run_cli
from tests.test_dvcfile import dvc_file
from tests.test_export import build_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("revision_project"))


def test_a_mix_of_revisions_is_refused(project: Path, tmp_path: Path) -> None:
    repo = shutil.copytree(project, tmp_path / "trainer")
    sources = metadata(repo)["sources"]
    dvc_file(repo, "data/exports", "e.dir", "folds-v1")
    dvc_file(repo, "data/masks", sources["data/masks"], "folds-v1")
    dvc_file(repo, "data/augmented/flip", sources["data/augmented/flip"], "folds-v1")
    assert fold(0, root=repo, variants="all").train  # one revision: fine
    dvc_file(repo, "data/masks", "other.dir", "folds-v2")
    for call in (
        lambda: fold(0, root=repo),
        lambda: held_out(repo),
        lambda: mmseg_layout(tmp_path / "mm", root=repo),
    ):
        with pytest.raises(MixedRevisionsError) as caught:
            call()
        message = str(caught.value)
        assert "data/masks (pinned at folds-v2 by data/masks.dvc)" in message
        assert "not what data/exports (pinned at folds-v1) was made from" in message
        assert "`python -m pipeline.folds update --rev folds-v1` (or --rev folds-v2)" in message
    # The caller's own masks replace data/masks: its pin no longer matters.
    assert fold(0, root=repo, masks=repo / "data" / "masks").val
    shown = run_cli([python_exe(), "-m", "pipeline.folds", "show", "0"], cwd=repo, check=False)
    assert shown.returncode == 1 and "mix of revisions" in shown.stderr


def test_every_stale_part_is_named_and_unpinned_exports_are_said(
    project: Path, tmp_path: Path
) -> None:
    repo = shutil.copytree(project, tmp_path / "trainer")
    dvc_file(repo, "data/masks", "other.dir", "folds-v2")
    dvc_file(repo, "data/augmented/flip", "old.dir", "folds-v0")
    with pytest.raises(MixedRevisionsError) as caught:
        check_revisions(repo)
    assert str(caught.value) == (
        "data/augmented/flip (pinned at folds-v0 by data/augmented/flip.dvc), data/masks "
        "(pinned at folds-v2 by data/masks.dvc) are not what data/exports (not pinned by a .dvc "
        "file) was made from: a mix of revisions. Bring every part to one revision: "
        "`python -m pipeline.folds update --rev <tag>` (or --rev folds-v0) (or --rev folds-v2)"
    )
    check_revisions(repo, skip=["data/masks", "data/augmented/flip"])  # not used: not checked


def test_a_part_without_a_dvc_file_or_hash_is_not_checked(project: Path, tmp_path: Path) -> None:
    repo = shutil.copytree(project, tmp_path / "trainer")
    check_revisions(repo)  # the pipeline repo itself: nothing pinned, nothing to tell
    (repo / "data" / "masks.dvc").write_text("outs:\n- path: masks\n")  # no md5
    check_revisions(repo)
    assert read_pin(repo, "data/masks") == Pin("data/masks", None, None, None, None)


def test_overridden_parts_are_the_callers_folders() -> None:
    meta = {"images": "data/sample/images"}
    assert overridden(meta, None, None) == []
    assert overridden(meta, "/my/photos", None) == ["data/sample/images"]
    assert overridden(meta, "/my/photos", Path("/my/masks")) == ["data/sample/images", "data/masks"]


def cache_listing(repo: Path, folder: Path, change: str | None = None) -> str:
    """Store ``folder``'s DVC listing in ``repo``'s cache as ``dvc import`` does; its hash.
    ``change`` names a file whose md5 the listing says differently (another revision)."""
    entries = sorted(
        (
            {"md5": "0" * 32 if p.relative_to(folder).as_posix() == change else file_md5(p),
             "relpath": p.relative_to(folder).as_posix()}
            for p in folder.rglob("*")
            if p.is_file()
        ),
        key=lambda e: e["relpath"],
    )  # fmt: skip
    text = json.dumps(entries, sort_keys=True)
    digest = hashlib.md5(text.encode()).hexdigest()
    path = repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / f"{digest[2:]}.dir"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return digest + ".dir"


def test_a_folder_imported_whole_is_checked_through_its_listing(
    project: Path, tmp_path: Path
) -> None:
    """The README's old way, ``dvc import ... data/augmented``: the hash of each variant inside
    comes from the folder's listing in the DVC cache, as DVC itself computes it."""
    repo = shutil.copytree(project, tmp_path / "trainer")
    augmented = repo / "data" / "augmented"
    dvc_file(repo, "data/exports", "e.dir", "folds-v1")
    dvc_file(repo, "data/augmented", cache_listing(repo, augmented), "folds-v1")
    listing = revision._dir_listing(repo, read_pin(repo, "data/augmented").md5)
    assert revision._part_hash(listing, "flip") == dir_md5(augmented / "flip")
    assert fold(0, root=repo, variants="all").train  # the same content: fine
    first = sorted(p for p in (augmented / "flip").rglob("*") if p.is_file())[0]
    other = cache_listing(repo, augmented, change=first.relative_to(augmented).as_posix())
    dvc_file(repo, "data/augmented", other, "folds-v2")
    with pytest.raises(MixedRevisionsError, match=r"data/augmented \(pinned at folds-v2 by"):
        fold(0, root=repo)
    dvc_file(repo, "data/augmented", "f" * 32 + ".dir", "folds-v2")  # listing not fetched
    assert fold(0, root=repo).train  # cannot be told: not checked


def test_part_hash_of_a_file_and_of_nothing() -> None:
    entries = [
        {"md5": "a" * 32, "relpath": "flip/x.png"},
        {"md5": "b" * 32, "relpath": "index.json"},
    ]
    assert revision._part_hash(entries, "index.json") == "b" * 32
    assert revision._part_hash(entries, "absent") is None
    assert revision._dir_listing(Path("/nonexistent"), "abc") is None  # not a .dir hash
