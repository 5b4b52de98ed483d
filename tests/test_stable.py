"""split.stable: a pinned split is kept as the dataset grows; new images fill in."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.files.errors import DatasetError
from pipeline.files.params import Params, parse_params
from pipeline.stages import masks, split, validate, vectors
from pipeline.tools.sample import generate


def params_for(**split_params: Any) -> Params:
    return parse_params(
        {
            "workers": 1,
            "cache": {"dir": None},
            "dataset": {
                "annotations": "data/sample/annotations.json",
                "images": "data/sample/images",
            },
            "split": {"n_splits": 3, "group_regex": "^([^/]+)/", **split_params},
        }
    )


def run_split(root: Path, params: Params) -> dict[str, dict[str, str]]:
    for stage in (validate, masks, vectors, split):
        stage.run(params, root)
    with open(root / "data/splits/folds.csv", newline="") as fh:
        return {r["file_name"]: r for r in csv.DictReader(fh)}


def pin(root: Path) -> None:
    (root / "splits").mkdir(exist_ok=True)
    shutil.copy(root / "data/splits/folds.csv", root / "splits/pinned.csv")


def grow(root: Path, tmp: Path) -> tuple[set[str], set[str], str]:
    """Add a new batch and one image to an existing batch, remove two images.

    Returns (new names, removed names, the name added to an existing batch).
    """
    coco = json.loads((root / "data/sample/annotations.json").read_text())
    extra = generate(tmp / "extra", n_images=6, n_batches=1, seed=99)
    more = json.loads((extra / "annotations.json").read_text())
    offset = max(im["id"] for im in coco["images"])
    ann_offset = max(a["id"] for a in coco["annotations"])
    existing_batch = coco["images"][0]["file_name"].split("/")[0]
    new_names = set()
    for index, image in enumerate(more["images"]):
        folder = existing_batch if index == 0 else "new_batch"
        name = f"{folder}/grown_{index}.jpg"
        target = root / "data/sample/images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(extra / "images" / image["file_name"], target)
        image["file_name"], image["id"] = name, image["id"] + offset
        new_names.add(name)
    for ann in more["annotations"]:
        ann["id"] += ann_offset
        ann["image_id"] += offset
    removed = {coco["images"][-1]["file_name"], coco["images"][-2]["file_name"]}
    gone = {im["id"] for im in coco["images"] if im["file_name"] in removed}
    coco["images"] = [im for im in coco["images"] if im["id"] not in gone] + more["images"]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] not in gone]
    coco["annotations"] += more["annotations"]
    (root / "data/sample/annotations.json").write_text(json.dumps(coco))
    return new_names, removed, f"{existing_batch}/grown_0.jpg"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    generate(root / "data/sample", n_images=24, n_batches=8, seed=4)
    return root


def quality(root: Path) -> dict[str, Any]:
    return json.loads((root / "reports/split_quality.json").read_text())


def test_pinned_folds_stay_and_new_images_fill_in(project: Path, tmp_path: Path) -> None:
    before = run_split(project, params_for())
    pin(project)
    new_names, removed, joined = grow(project, tmp_path)
    after = run_split(project, params_for(stable=True, seed=7))  # seed: new images only
    kept = before.keys() - removed
    assert all(after[n]["fold"] == before[n]["fold"] for n in kept)  # 0 moved
    assert not removed & after.keys()
    group_fold = before[next(n for n in before if n.startswith(joined.split("/")[0] + "/"))]
    assert after[joined]["fold"] == group_fold["fold"]  # a growing group stays in its fold
    new_batch = {after[n]["fold"] for n in new_names if n.startswith("new_batch/")}
    assert len(new_batch) == 1  # a new group is never split
    assert quality(project)["pinned"] == {"stable": 1, "moved": 0, "added": 6, "removed": 2}
    assert quality(project)["ours"]["group_leakage"] == 0


def test_without_stable_the_changes_are_counted(project: Path, tmp_path: Path) -> None:
    run_split(project, params_for())
    pin(project)
    grow(project, tmp_path)
    run_split(project, params_for(seed=7))
    counts = quality(project)["pinned"]
    assert counts["stable"] == 0 and counts["added"] == 6 and counts["removed"] == 2
    assert counts["moved"] > 0  # a fresh split reshuffles


def test_holdout_is_kept_too(project: Path, tmp_path: Path) -> None:
    before = run_split(project, params_for(test_fraction=0.25))
    pin(project)
    grow(project, tmp_path)
    after = run_split(project, params_for(test_fraction=0.25, stable=True))
    tested = {n for n, r in before.items() if r["fold"] == "test" and n in after}
    assert tested and all(after[n]["fold"] == "test" for n in tested)
    assert quality(project)["pinned"]["moved"] == 0


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"n_splits": 4}, "split.n_splits: is 4 but the pinned split has 3 folds"),
        ({"test_fraction": 0.2}, "split.test_fraction: is 0.2 but the pinned split has no test"),
        ({"group_regex": "^(.*)$"}, "the group rule (group_regex / group_field) changed"),
    ],
)
def test_settings_folds_cannot_survive_are_one_clear_error(
    project: Path, changed: dict[str, Any], message: str
) -> None:
    run_split(project, params_for())
    pin(project)
    with pytest.raises(DatasetError) as info:
        split.run(params_for(stable=True, **changed), project)
    assert message in str(info.value) and "set split.stable: false to re-split" in str(info.value)


def test_stable_without_a_pinned_split_says_how_to_pin(project: Path) -> None:
    run_split(project, params_for())
    (project / "splits").mkdir()
    (project / "splits/pinned.csv").write_text("image_id,file_name,group,fold\n")
    with pytest.raises(DatasetError, match="python -m pipeline.folds pin"):
        split.run(params_for(stable=True), project)
