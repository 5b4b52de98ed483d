"""pipeline.folds.coco: a fold's training COCO json written by the trainer from the exports'
val files, the same dataset as the export stage's ``train.json``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.files.errors import DatasetError
from pipeline.files.params import parse_params
from pipeline.folds.coco import COCO_OUT, coco_json
from pipeline.stages import export
from tests.test_export import build_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("coco_project"))


def by_id(items: list[dict]) -> list[dict]:
    return sorted(items, key=lambda item: item["id"])


def test_train_json_from_the_val_files_equals_the_stages(project: Path, tmp_path: Path) -> None:
    repo = shutil.copytree(project, tmp_path / "repo")
    written = coco_json(1, root=repo)
    assert written == repo / COCO_OUT / "fold_1_train.json"
    assert (written.parent / ".gitignore").read_text().splitlines()[-1] == "*"
    ours = json.loads(written.read_text())
    params = yaml.safe_load((project / "params.yaml").read_text())
    stage = shutil.copytree(project, tmp_path / "stage")
    export.run(parse_params(params | {"export": {"coco_json": True}}), stage)
    theirs = json.loads((stage / "data/exports/fold_1/train.json").read_text())
    assert list(ours) == list(theirs)
    assert by_id(ours["images"]) == by_id(theirs["images"])
    assert by_id(ours["annotations"]) == by_id(theirs["annotations"])
    assert {k: v for k, v in ours.items() if k not in ("images", "annotations")} == {
        k: v for k, v in theirs.items() if k not in ("images", "annotations")
    }
    # The exports' own file when they hold one; val and test are always there.
    assert coco_json(1, root=stage) == stage / "data/exports/fold_1/train.json"
    assert coco_json(0, "val", repo) == repo / "data/exports/fold_0/val.json"
    assert coco_json(0, "test", repo) == repo / "data/exports/test.json"
    out = coco_json(2, root=repo, out=tmp_path / "mine.json")
    assert out == tmp_path / "mine.json" and json.loads(out.read_text())["images"]


def test_bad_requests(project: Path) -> None:
    with pytest.raises(DatasetError, match="fold 3 does not exist"):
        coco_json(3, root=project)
    with pytest.raises(ValueError, match="part must be"):
        coco_json(0, "all", project)
