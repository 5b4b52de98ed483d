"""pipeline.folds.exported: what the exports say (exports.json, folds.csv, the class table as
it is on disk); the checked class table calls are pipeline.folds.read's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.files.errors import DatasetError
from pipeline.files.sources import dir_md5, file_md5
from pipeline.folds import exported
from pipeline.folds.read import classes, fold, mmseg_metainfo, num_classes
from tests.test_export import build_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("exported_project"))


def test_missing_exports_point_to_the_get_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        fold(0, root=tmp_path)
    assert "`python -m pipeline.folds get <dataset repo url> --rev <tag>`" in str(caught.value)
    assert "dvc import" not in str(caught.value)
    with pytest.raises(FileNotFoundError, match=r"no exports \(no exports.json\)"):
        exported.metadata(tmp_path)


def test_metadata_counts_and_variants(project: Path) -> None:
    meta = exported.metadata(project)
    assert exported.exports_dir(project) == project / "data" / "exports"
    assert exported.n_folds(project) == meta["n_folds"] == 3
    assert exported.variants(project) == meta["variants"] == ["flip"]
    rows = exported.load_folds(project)
    assert [r.file_name for r in rows] == [
        line.split(",")[1]
        for line in (project / "data" / "exports" / "folds.csv").read_text().splitlines()[1:]
    ]


def test_class_table_is_in_the_exports(project: Path) -> None:
    exports = project / "data" / "exports" / "classes.json"
    assert exports.read_bytes() == (project / "data" / "classes.json").read_bytes()
    table = classes(project)
    assert table.names == exported.class_table(project).names
    assert table.names[0] == "background" and table.ignore_index == 255
    assert num_classes(project) == len(table.names) > 1
    meta = mmseg_metainfo(project)
    assert meta["classes"] == table.names
    assert meta["palette"] == [list(c) for c in table.colors]
    assert all(len(c) == 3 for c in meta["palette"])
    assert all(table.category_ids[i] for i in range(1, len(table.names)))


def test_exports_without_a_class_table_say_so(project: Path, tmp_path: Path) -> None:
    repo = shutil.copytree(project, tmp_path / "old")
    (repo / "data" / "exports" / "classes.json").unlink()
    with pytest.raises(DatasetError, match="the exports hold no classes.json"):
        exported.class_table(repo)


def test_exports_record_the_content_they_were_made_from(project: Path) -> None:
    """Without dvc.lock (stages run by hand) the hashes are computed, in DVC's format."""
    sources = exported.metadata(project)["sources"]
    assert sources == {
        "data/augmented/flip": dir_md5(project / "data" / "augmented" / "flip"),
        "data/classes.json": file_md5(project / "data" / "classes.json"),
        "data/masks": dir_md5(project / "data" / "masks"),
    }  # no photos: they are recorded only from a current dvc.lock entry
