"""The vectors and split stages on real files: groups, holdout, warnings and bad input."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import masks, split, validate, vectors
from pipeline.errors import DatasetError
from pipeline.params import DEFAULTS
from pipeline.split import groups_from_regex
from pipeline.vectors import build_vectors


def params_for(sample: Path, **split_params: Any) -> dict[str, Any]:
    params = copy.deepcopy(DEFAULTS)
    params["workers"] = 1
    params["dataset"]["annotations"] = str(sample / "annotations.json")
    params["dataset"]["images"] = str(sample / "images")
    params["split"].update({"group_regex": "^([^/]+)/", **split_params})
    return params


def run_until_split(workdir: Path, params: dict[str, Any], monkeypatch) -> list[dict]:
    monkeypatch.chdir(workdir)
    validate.run(params)
    masks.run(params)
    vectors.run(params)
    split.run(params)
    with open(split.FOLDS_PATH, newline="") as fh:
        return list(csv.DictReader(fh))


def test_folds_keep_groups_together_and_are_deterministic(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = params_for(sample_dir, n_splits=3, seed=5)
    (tmp_path / "a").mkdir()
    rows = run_until_split(tmp_path / "a", params, monkeypatch)
    first = Path(split.FOLDS_PATH).read_bytes()
    assert list(rows[0]) == ["image_id", "file_name", "group", "fold"]
    fold_of_group: dict[str, set[str]] = {}
    for row in rows:
        assert row["group"] == row["file_name"].split("/")[0]
        fold_of_group.setdefault(row["group"], set()).add(row["fold"])
    assert all(len(f) == 1 for f in fold_of_group.values())
    assert {r["fold"] for r in rows} == {"0", "1", "2"}
    quality = json.loads(Path(split.QUALITY_PATH).read_text())
    assert quality["ours"]["group_leakage"] == 0
    assert {"multilabel_stratified_kfold", "kfold"} <= set(quality)

    (tmp_path / "b").mkdir()
    run_until_split(tmp_path / "b", params, monkeypatch)
    assert Path(split.FOLDS_PATH).read_bytes() == first
    params["split"]["seed"] = 6
    split.run(params)
    assert Path(split.FOLDS_PATH).read_bytes() != first


def test_holdout_test_part(sample_dir: Path, tmp_path: Path, monkeypatch) -> None:
    rows = run_until_split(
        tmp_path, params_for(sample_dir, n_splits=3, test_fraction=0.25), monkeypatch
    )
    test_groups = {r["group"] for r in rows if r["fold"] == "test"}
    fold_groups = {r["group"] for r in rows if r["fold"] != "test"}
    assert test_groups and not test_groups & fold_groups
    share = sum(r["fold"] == "test" for r in rows) / len(rows)
    assert 0.1 < share < 0.4
    quality = json.loads(Path(split.QUALITY_PATH).read_text())
    assert quality["n_test_images"] == sum(r["fold"] == "test" for r in rows)


def test_more_folds_than_groups_is_a_clear_error(sample_dir, tmp_path, monkeypatch) -> None:
    params = params_for(sample_dir, n_splits=5)
    params["split"]["group_regex"] = "^(batch_0[12])"  # two groups + unmatched singletons
    monkeypatch.chdir(tmp_path)
    validate.run(params)
    masks.run(params)
    vectors.run(params)
    split.run(params)
    notes = json.loads(Path(split.WARNINGS_PATH).read_text())["warnings"]
    assert any("do not match group_regex" in n for n in notes)
    params["split"]["group_regex"] = "^(batch)_"  # one group for everything
    with pytest.raises(DatasetError, match="params.yaml: split.n_splits: 1 groups cannot fill"):
        split.run(params)
    params["split"]["group_regex"] = "(["
    with pytest.raises(DatasetError, match="split.group_regex: invalid regular expression"):
        split.run(params)


def test_rare_class_is_listed_by_name(tmp_path: Path, monkeypatch) -> None:
    from pipeline.sample import generate

    sample = generate(tmp_path / "s", n_images=20, n_batches=20, seed=11)
    coco = json.loads((sample / "annotations.json").read_text())
    rare = coco["categories"][-1]["id"]
    keep = [a for a in coco["annotations"] if a["category_id"] != rare]
    holder = next(a for a in coco["annotations"] if a["category_id"] != rare)
    keep.append({**holder, "id": 10**6, "category_id": rare})  # one image with the rare class
    coco["annotations"] = keep
    (sample / "annotations.json").write_text(json.dumps(coco))
    (tmp_path / "w").mkdir()
    run_until_split(tmp_path / "w", params_for(sample, group_regex=None), monkeypatch)
    notes = json.loads(Path(split.WARNINGS_PATH).read_text())["warnings"]
    name = coco["categories"][-1]["name"]
    assert any(f"'{name}__present'" in n and "no positive" in n for n in notes), notes
    quality = json.loads(Path(split.QUALITY_PATH).read_text())
    assert quality["warnings"] == len(notes)


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_splits", 1), ("n_splits", "5"), ("seed", -1), ("test_fraction", 1.0)],
)
def test_bad_split_params(field: str, value: Any) -> None:
    with pytest.raises(DatasetError, match=f"params.yaml: split.{field}"):
        split.check_split_params({field: value})


def test_empty_dataset_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    sample = tmp_path / "empty"
    (sample / "images").mkdir(parents=True)
    (sample / "annotations.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]})
    )
    monkeypatch.chdir(tmp_path)
    params = params_for(sample)
    validate.run(params)
    masks.run(params)
    with pytest.raises(DatasetError, match="no image to build vectors for"):
        vectors.run(params)


def test_vectors_from_stats_rows() -> None:
    rows = [
        {
            "image_id": "1",
            "file_name": "a.jpg",
            "width": "10",
            "height": "10",
            "background__pixels": "50",
            "can__pixels": "50",
            "can__instances": "1",
            "can__small": "1",
            "can__medium": "0",
            "can__large": "0",
            "can__hidden": "0",
            "ignore__pixels": "0",
        },
        {
            "image_id": "2",
            "file_name": "b.jpg",
            "width": "10",
            "height": "10",
            "background__pixels": "95",
            "can__pixels": "5",
            "can__instances": "1",
            "can__small": "0",
            "can__medium": "1",
            "can__large": "0",
            "can__hidden": "0",
            "ignore__pixels": "0",
        },
    ]
    names, matrix = build_vectors(
        rows, {"presence": True, "small_presence": True, "pixel_share_bins": [0.1, 0.4]}
    )
    assert names == ["can__present", "can__small_present", "can__share_ge0.1", "can__share_ge0.4"]
    assert matrix.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    with pytest.raises(DatasetError, match="vectors.pixel_share_bins"):
        build_vectors(rows, {"pixel_share_bins": [0.5, 0.1]})


def test_groups_from_regex_uses_first_capture_group() -> None:
    names = ["IMG_1_scaled_0_png.rf.a.jpg", "IMG_1_scaled_1_png.rf.b.jpg", "other.jpg"]
    keys, unmatched = groups_from_regex(names, "^(.*)_scaled_")
    assert keys == ["IMG_1", "IMG_1", "other.jpg"] and unmatched == ["other.jpg"]
    assert np.unique(keys).size == 2


def test_no_positive_at_all_still_splits_by_groups(tmp_path: Path, monkeypatch) -> None:
    from pipeline.sample import generate

    sample = generate(tmp_path / "s", n_images=12, n_batches=6, seed=2)
    coco = json.loads((sample / "annotations.json").read_text())
    coco["annotations"] = []  # e.g. a detection export without masks
    (sample / "annotations.json").write_text(json.dumps(coco))
    (tmp_path / "w").mkdir()
    rows = run_until_split(tmp_path / "w", params_for(sample, n_splits=3), monkeypatch)
    assert sorted({r["fold"] for r in rows}) == ["0", "1", "2"]
    assert all(
        len({r["fold"] for r in rows if r["group"] == g}) == 1 for g in {r["group"] for r in rows}
    )
    notes = json.loads(Path(split.WARNINGS_PATH).read_text())["warnings"]
    assert any("vector columns have no positive image" in n for n in notes)
    assert not any("has no positive samples" in n for n in notes)


def test_groups_from_an_image_field(tmp_path: Path, monkeypatch) -> None:
    from pipeline.sample import generate

    sample = generate(tmp_path / "s", n_images=16, n_batches=8, seed=4)
    coco = json.loads((sample / "annotations.json").read_text())
    for index, image in enumerate(coco["images"]):
        if index != 0:  # one image without the field: its own group, and listed
            image["capture"] = f"cap{index // 3}"
    (sample / "annotations.json").write_text(json.dumps(coco))
    (tmp_path / "w").mkdir()
    params = params_for(sample, n_splits=3, group_regex=None, group_field="capture")
    rows = run_until_split(tmp_path / "w", params, monkeypatch)
    capture = {str(im["id"]): im.get("capture") for im in coco["images"]}
    for row in rows:
        assert row["group"] == (capture[row["image_id"]] or row["file_name"])
    for group in {r["group"] for r in rows}:
        assert len({r["fold"] for r in rows if r["group"] == group}) == 1
    notes = json.loads(Path(split.WARNINGS_PATH).read_text())["warnings"]
    assert any("1 images have no 'capture' field" in n for n in notes), notes
    params["split"]["group_regex"] = "^(x)"
    with pytest.raises(DatasetError, match="set group_regex or group_field, not both"):
        split.run(params)
