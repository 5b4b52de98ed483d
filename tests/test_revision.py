"""pipeline.folds.revision: the parts a trainer repo pinned hold what the exports were made
from, and every file is the pinned one, or ``fold``, ``test``, ``classes``, ``mmseg_layout``
and the CLI refuse, naming the part and the command that fixes it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pipeline.files.sources import dir_md5, file_md5
from pipeline.folds import verify
from pipeline.folds.dvcfile import Pin, read_pin
from pipeline.folds.exported import metadata
from pipeline.folds.mmseg import mmseg_layout
from pipeline.folds.read import classes, fold, mmseg_metainfo, num_classes
from pipeline.folds.read import test as held_out
from pipeline.folds.revision import (
    ContentMismatchError,
    MixedRevisionsError,
    check,
    check_revisions,
    fix_command,
    overridden,
    used_parts,
)
from tests.conftest import python_exe, run_cli
from tests.test_dvcfile import dvc_file
from tests.test_export import build_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("revision_project"))


def test_a_mix_of_revisions_is_refused(project: Path, tmp_path: Path) -> None:
    repo = shutil.copytree(project, tmp_path / "trainer")
    sources = metadata(repo)["sources"]
    dvc_file(repo, "data/exports", dir_md5(repo / "data" / "exports"), "folds-v1")
    dvc_file(repo, "data/masks", sources["data/masks"], "folds-v1")
    dvc_file(repo, "data/augmented/flip", sources["data/augmented/flip"], "folds-v1")
    assert fold(0, root=repo, variants="all").train  # one revision: fine
    dvc_file(repo, "data/masks", "other.dir", "folds-v2")
    for call in (
        lambda: fold(0, root=repo),
        lambda: held_out(repo),
        lambda: classes(repo),
        lambda: num_classes(repo),
        lambda: mmseg_metainfo(repo),
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
    dvc_file(repo, "data/exports", dir_md5(repo / "data" / "exports"), "folds-v1")
    dvc_file(repo, "data/augmented", cache_listing(repo, augmented), "folds-v1")
    listing = verify.cache_listing(repo, read_pin(repo, "data/augmented").md5)
    assert verify.part_hash(listing, "flip") == dir_md5(augmented / "flip")
    assert fold(0, root=repo, variants="all").train  # the same content: fine
    first = sorted(p for p in (augmented / "flip").rglob("*") if p.is_file())[0]
    other = cache_listing(repo, augmented, change=first.relative_to(augmented).as_posix())
    dvc_file(repo, "data/augmented", other, "folds-v2")
    with pytest.raises(MixedRevisionsError, match=r"data/augmented \(pinned at folds-v2 by"):
        fold(0, root=repo)
    dvc_file(repo, "data/augmented", "f" * 32 + ".dir", "folds-v2")  # listing not fetched
    assert fold(0, root=repo).train  # cannot be told: not checked


# ---------------------------------------------------------------- every file as pinned


def pinned_trainer(project: Path, tmp_path: Path, rev: str = "folds-v2") -> Path:
    """A copy of the project pinned as `get` pins it: .dvc files with the real hashes, and the
    exports' listing in the DVC cache (as `dvc import` leaves it), so mismatches are named."""
    repo = shutil.copytree(project, tmp_path / "trainer")
    (repo / ".dvc").mkdir()
    sources = metadata(repo)["sources"]
    dvc_file(repo, "data/exports", cache_listing(repo, repo / "data" / "exports"), rev)
    for part in ("data/masks", "data/augmented/flip"):
        dvc_file(repo, part, sources[part], rev)
    return repo


def test_a_copied_class_table_is_refused(project: Path, tmp_path: Path) -> None:
    """The issue's case: another revision's classes.json copied over the exports' one."""
    repo = pinned_trainer(project, tmp_path)
    table = repo / "data" / "exports" / "classes.json"
    names = classes(repo).names
    doc = json.loads(table.read_text())
    doc["classes"].append({**doc["classes"][-1], "index": len(names), "name": "extra"})
    table.write_text(json.dumps(doc))
    for call in (
        lambda: num_classes(repo),
        lambda: classes(repo),
        lambda: mmseg_metainfo(repo),
        lambda: fold(0, root=repo),
        lambda: mmseg_layout(tmp_path / "mm", root=repo),
    ):
        with pytest.raises(ContentMismatchError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(
            "data/exports/classes.json is not the class table data/exports (pinned at folds-v2)"
        ), message
        assert message.endswith("Restore it: `python -m pipeline.folds update --rev folds-v2`")
    assert not (tmp_path / "mm").exists()


def test_an_edited_export_or_mask_is_refused_and_named(project: Path, tmp_path: Path) -> None:
    repo = pinned_trainer(project, tmp_path)
    assert fold(0, root=repo, variants="all").train
    listed = repo / "data" / "exports" / "fold_0" / "val.csv"
    saved = listed.read_bytes()
    listed.write_bytes(saved.replace(b"\n", b"\r\n"))
    with pytest.raises(ContentMismatchError, match="files changed on disk .changed: fold_0/val"):
        fold(1, root=repo)
    listed.write_bytes(saved)
    assert fold(1, root=repo)  # back as pinned
    mask = sorted((repo / "data" / "masks").rglob("*.png"))[0]
    mask.write_bytes(mask.read_bytes() + b"\0")
    with pytest.raises(ContentMismatchError, match="data/masks is not what data/exports"):
        fold(0, root=repo)
    fold(0, root=repo, masks=repo / "data" / "masks")  # the caller's own masks: not checked
    classes(repo)  # the class table does not read the masks
    flip = sorted((repo / "data" / "augmented" / "flip").rglob("*.png"))[0]
    mask.write_bytes(mask.read_bytes()[:-1])
    flip.unlink()
    assert fold(0, root=repo).train  # no variant asked for: not read, not checked
    with pytest.raises(ContentMismatchError, match="data/augmented/flip is not what"):
        fold(0, root=repo, variants=["flip"])
    shutil.rmtree(repo / "data" / "masks")  # a fresh clone before `dvc pull`
    with pytest.raises(ContentMismatchError, match="not on disk: fetch it with `dvc pull`"):
        fold(0, root=repo)


def test_the_fix_is_the_one_line_for_where_you_are(project: Path, tmp_path: Path) -> None:
    assert fix_command(tmp_path, Pin("data/exports", "x", "u", "folds-v3", "abc")) == (
        "`python -m pipeline.folds update --rev folds-v3`"
    )
    assert "update --rev abc" in fix_command(tmp_path, Pin("data/exports", "x", "u", None, "abc"))
    assert "get <dataset repo> --rev <tag>" in fix_command(tmp_path, None)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert fix_command(tmp_path, None).startswith("`dvc repro export`")
    # The pipeline repo itself: a mask rebuilt after the export is refused too.
    repo = shutil.copytree(project, tmp_path / "pipeline")
    (repo / "dvc.yaml").write_text("stages: {}\n")
    mask = sorted((repo / "data" / "masks").rglob("*.png"))[0]
    mask.write_bytes(mask.read_bytes() + b"\0")
    with pytest.raises(ContentMismatchError, match="Bring it back: `dvc repro export`"):
        held_out(repo)


def test_used_parts_and_check_return_the_metadata(project: Path) -> None:
    meta = metadata(project)
    assert used_parts(meta, ["flip"]) == ["data/masks", "data/sample/images", "data/augmented/flip"]
    assert used_parts(meta, masks=False, images=False) == []
    assert check(project, used_parts(meta, meta["variants"])) == meta


def test_part_hash_of_a_file_and_of_nothing() -> None:
    entries = [
        {"md5": "a" * 32, "relpath": "flip/x.png"},
        {"md5": "b" * 32, "relpath": "index.json"},
    ]
    assert verify.part_hash(entries, "index.json") == "b" * 32
    assert verify.part_hash(entries, "absent") is None
    assert verify.cache_listing(Path("/nonexistent"), "abc") is None  # not a .dir hash
