"""pipeline.folds.mmseg: the mmsegmentation layout (relative symlinks, split lists, metainfo)
and its own check, run by ``metainfo.py`` when mmengine loads it (mmengine itself runs in the
trainer repo test, tests/test_trainer_repo.py)."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.files.errors import DatasetError
from pipeline.folds.mmseg import (
    LAYOUT_CONFIG,
    LAYOUT_MARKER,
    LAYOUT_METAINFO,
    StaleLayoutError,
    check_layout,
    mmseg_layout,
)
from pipeline.folds.read import mmseg_metainfo, num_classes, read_mask
from pipeline.folds.revision import ContentMismatchError, MixedRevisionsError
from tests.test_dvcfile import dvc_file
from tests.test_export import build_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("mmseg_project"))


def test_mmseg_layout_relative_symlinks(project: Path, tmp_path: Path) -> None:
    out = mmseg_layout(project / "mmseg", root=project)
    split = (out / "splits" / "fold_0_train_augmented.txt").read_text().split()
    assert split and any(s.startswith("_augmented/flip/") for s in split)
    for stem in split:
        img, ann = out / "img_dir" / f"{stem}.jpg", out / "ann_dir" / f"{stem}.png"
        assert img.is_symlink() and ann.is_symlink()
        assert not os.path.isabs(os.readlink(img)) and not os.path.isabs(os.readlink(ann))
        assert img.is_file() and ann.is_file()
    for name in ("fold_2_val.txt", "test.txt"):
        assert (out / "splits" / name).read_bytes() == (
            project / "data" / "exports" / "mmseg" / "splits" / name
        ).read_bytes()
    # Relative links survive moving the whole project.
    moved = shutil.copytree(project, tmp_path / "moved", symlinks=True)
    link = moved / "mmseg" / "ann_dir" / f"{split[0]}.png"
    assert link.is_symlink() and link.resolve().is_relative_to(moved.resolve())
    assert read_mask(link).ndim == 2
    # A rerun replaces the layout; a foreign folder is refused.
    (out / "img_dir" / "stale.jpg").symlink_to("nowhere")
    mmseg_layout(out, root=project)
    assert not (out / "img_dir" / "stale.jpg").is_symlink()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="not an mmseg layout"):
        mmseg_layout(foreign, root=project)
    assert (foreign / "keep.txt").exists()


def test_mmseg_layout_writes_metainfo(project: Path, tmp_path: Path) -> None:
    out = mmseg_layout(tmp_path / "mm", root=project)
    info = json.loads((out / LAYOUT_METAINFO).read_text())
    assert info["metainfo"] == mmseg_metainfo(project)
    assert info["num_classes"] == num_classes(project) and info["ignore_index"] == 255
    assert info["img_suffix"] == ".jpg" and info["seg_map_suffix"] == ".png"
    # The same values as an mmengine base config: assignments of literals, then the check;
    # no import statement (it would turn on mmengine's lazy-import mode).
    tree = ast.parse((out / LAYOUT_CONFIG).read_text())
    assigned = [n for n in tree.body if isinstance(n, ast.Assign)]
    assert {n.targets[0].id: ast.literal_eval(n.value) for n in assigned} == info
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert (out / ".gitignore").read_text().splitlines()[-1] == "*"  # the layout ignores itself


def load_like_mmengine(layout: Path) -> dict:
    """What mmengine's Config.fromfile does with a base config: fill in ``{{ fileDirname }}``
    and run it; the names it keeps (none with ``__``)."""
    text = (layout / LAYOUT_CONFIG).read_text().replace("{{ fileDirname }}", str(layout))
    scope: dict = {}
    exec(compile(text, str(layout / LAYOUT_CONFIG), "exec"), scope, scope)  # noqa: S102
    return {k: v for k, v in scope.items() if not k.startswith("__")}


def test_the_layout_checks_itself_when_its_config_loads(project: Path, tmp_path: Path) -> None:
    repo = shutil.copytree(project, tmp_path / "repo")
    out = mmseg_layout(repo / "data" / "mmseg", root=repo)
    assert load_like_mmengine(out)["num_classes"] == num_classes(repo)
    assert "24 images" in check_layout(out)
    # A mask changed on disk after the layout was built: the config refuses to load.
    mask = sorted((repo / "data" / "masks").rglob("*.png"))[0]
    saved = mask.read_bytes()
    mask.write_bytes(sorted((repo / "data" / "masks").rglob("*.png"))[1].read_bytes())
    with pytest.raises(ContentMismatchError, match="data/masks is not what data/exports"):
        load_like_mmengine(out)
    mask.write_bytes(saved)
    load_like_mmengine(out)
    # The layout's own lists edited by hand.
    listed = out / "splits" / "fold_0_val.txt"
    listed.write_text(listed.read_text() + "extra\n")
    with pytest.raises(StaleLayoutError, match="fold_0_val.txt changed since the layout"):
        check_layout(out)
    mmseg_layout(out, root=repo)
    # The exports made again (another revision): the layout is stale, rebuild it.
    meta = repo / "data" / "exports" / "exports.json"
    meta.write_text(meta.read_text().replace('"n_images"', '"n_images_"'))
    with pytest.raises(StaleLayoutError, match="Rebuild it") as caught:
        check_layout(out)
    assert "`python -m pipeline.folds mmseg-layout --out data/mmseg`" in str(caught.value)
    assert issubclass(StaleLayoutError, MixedRevisionsError)


def test_a_pinned_part_moved_alone_is_refused_by_the_layout(project: Path, tmp_path: Path) -> None:
    repo = shutil.copytree(project, tmp_path / "repo")
    out = mmseg_layout(repo / "data" / "mmseg", root=repo)
    dvc_file(repo, "data/masks", "other.dir", "folds-v1")  # `dvc update` of the masks alone
    with pytest.raises(MixedRevisionsError, match="data/masks \\(pinned at folds-v1"):
        load_like_mmengine(out)


def test_a_layout_without_its_record_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StaleLayoutError, match="records nothing to check"):
        check_layout(tmp_path)
    with pytest.raises(DatasetError, match="load it with mmengine"):
        check_layout("{{ fileDirname }}")


def test_suffix_and_folder_overrides(project: Path, tmp_path: Path) -> None:
    photos = shutil.copytree(project / "data" / "sample" / "images", tmp_path / "photos")
    out = mmseg_layout(tmp_path / "mm", root=project, images=photos, img_suffix=".jpeg")
    marker = json.loads((out / LAYOUT_MARKER).read_text())
    assert {k: marker[k] for k in ("img_suffix", "seg_map_suffix", "augmented_prefix")} == {
        "img_suffix": ".jpeg",
        "seg_map_suffix": ".png",
        "augmented_prefix": "_augmented",
    }
    assert (out / marker["root"]).resolve() == project.resolve()
    assert (out / marker["images"]).resolve() == photos.resolve()  # the caller's own photos
    assert check_layout(out)
    links = sorted((out / "img_dir").rglob("*.jpeg"))
    assert links and all(p.is_file() for p in links)
    originals = [p for p in links if "_augmented" not in p.parts]
    assert originals and all(p.resolve().is_relative_to(photos.resolve()) for p in originals)
    assert not list((out / "img_dir").rglob("*.jpg"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mm.")]  # no temp left
