"""pipeline.folds.mmseg: the mmsegmentation layout (relative symlinks, split lists, metainfo)."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.files.errors import DatasetError
from pipeline.folds.exported import mmseg_metainfo, num_classes
from pipeline.folds.mmseg import LAYOUT_CONFIG, LAYOUT_MARKER, LAYOUT_METAINFO, mmseg_layout
from pipeline.folds.read import read_mask
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
    # The same values as an mmengine base config: assignments of literals, no import.
    tree = ast.parse((out / LAYOUT_CONFIG).read_text())
    assert all(isinstance(node, ast.Assign) for node in tree.body)
    assert {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body} == info


def test_suffix_and_folder_overrides(project: Path, tmp_path: Path) -> None:
    photos = shutil.copytree(project / "data" / "sample" / "images", tmp_path / "photos")
    out = mmseg_layout(tmp_path / "mm", root=project, images=photos, img_suffix=".jpeg")
    marker = json.loads((out / LAYOUT_MARKER).read_text())
    assert marker == {
        "img_suffix": ".jpeg",
        "seg_map_suffix": ".png",
        "augmented_prefix": "_augmented",
    }
    links = sorted((out / "img_dir").rglob("*.jpeg"))
    assert links and all(p.is_file() for p in links)
    originals = [p for p in links if "_augmented" not in p.parts]
    assert originals and all(p.resolve().is_relative_to(photos.resolve()) for p in originals)
    assert not list((out / "img_dir").rglob("*.jpg"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mm.")]  # no temp left
