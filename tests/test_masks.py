"""Masks are pixel-identical to pycocotools under every overlap policy and crowd mode."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.files.classes import build_class_table, make_palette
from pipeline.files.contracts import CLASS_MEASURES, IGNORE, read_image_stats, read_json, read_mask
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_json
from pipeline.files.params import ClassesParams, parse_params
from pipeline.stages import masks as masks_stage
from pipeline.stages.masks import MaskSettings, group_annotations, image_stats, render_mask
from pipeline.stages.validate import validate_coco
from tests.conftest import REAL_DATASETS, real_dataset
from tests.identity import Identity, check_identity

MAX_IDENTITY_IMAGES = 40


def canonical(path: Path) -> dict[str, Any]:
    return validate_coco(read_json(path), file=str(path)).coco


def table_of(categories: list[dict[str, Any]], **config: Any):
    return build_class_table(categories, ClassesParams(**config))


def paint(image, anns, table, overlap="area", crowd="ignore"):
    return render_mask(image, anns, MaskSettings(table, make_palette(), overlap, crowd))


def assert_identical(path: Path, image_ids: list[int] | None = None) -> Identity:
    """Every compared mask equals pycocotools on the input json (see tests/identity.py)."""
    found = check_identity(path, image_ids)
    assert not found.failures, found.failures[:5]
    return found


def test_pixel_identity_on_sample(sample_dir: Path) -> None:
    found = assert_identical(sample_dir / "annotations.json")
    coco = read_json(sample_dir / "annotations.json")
    # No image holds a changed annotation: the sample's flaws are all kept as written.
    assert found.skipped_images == []
    assert found.masks == len(coco["images"]) * 9 and found.share == 1.0


def test_reference_is_the_input_json_not_ours(tmp_path: Path) -> None:
    """A polygon leaving the frame is painted as pycocotools paints the user's points."""
    coco = {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 20, "height": 16}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[-6.5, 3.2, 18.7, -4.1, 27.3, 14.9, 2.2, 21.8]],
            }
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    found = assert_identical(path)
    assert found.masks == 9 and found.share == 1.0
    kept = validate_coco(coco).coco["annotations"][0]["segmentation"]
    assert kept == coco["annotations"][0]["segmentation"]  # points kept, not clamped


@pytest.mark.parametrize("name", list(REAL_DATASETS))
def test_pixel_identity_on_real_datasets(name: str) -> None:
    ann_path, _ = real_dataset(name)
    ids = [im["id"] for im in read_json(ann_path)["images"]]
    # The reference (annToMask per annotation, painted on full-size images) is slow on TACO's
    # 12-megapixel photos and facade's 1024x1024 ones: test an evenly spaced subset here;
    # `python benchmarks/bench_masks.py --identity-all` checks every image.
    ids = ids[:: max(1, len(ids) // MAX_IDENTITY_IMAGES)]
    found = assert_identical(ann_path, ids)
    assert found.masks >= (len(ids) - len(found.skipped_images)) * 9
    assert len(found.skipped_images) <= len(ids) // 4


def test_overlap_policies_on_a_known_case() -> None:
    big = [[0, 0, 20, 0, 20, 20, 0, 20]]
    small = [[5, 5, 10, 5, 10, 10, 5, 10]]
    coco = {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 20, "height": 20}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "segmentation": small, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 0, "segmentation": big, "iscrowd": 0},
        ],
        "categories": [{"id": 0, "name": "zero"}, {"id": 7, "name": "seven"}],
    }
    table = table_of(coco["categories"])
    assert table.index_of_category == {0: 1, 7: 2}  # id 0 is a class, not background
    anns = coco["annotations"]
    image = coco["images"][0]
    area, records = paint(image, anns, table, "area")
    order, _ = paint(image, anns, table, "order")
    maximum, _ = paint(image, anns, table, "max")
    assert area[7, 7] == 2 and area[1, 1] == 1  # small object stays visible
    assert order[7, 7] == 1  # json order: the big one was last
    assert maximum[7, 7] == 2
    assert records[0]["visible_pixels"] == records[0]["mask_pixels"] > 0
    assert records[1]["visible_pixels"] == records[1]["mask_pixels"] - records[0]["mask_pixels"]


def test_crowd_modes_and_class_merging() -> None:
    coco = {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 10, "height": 10}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 4,
                "iscrowd": 1,
                "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 9,
                "iscrowd": 0,
                "segmentation": [[2, 2, 4, 2, 4, 4, 2, 4]],
            },
        ],
        "categories": [{"id": 4, "name": "a"}, {"id": 9, "name": "b"}],
    }
    image, anns = coco["images"][0], coco["annotations"]
    merged = table_of(coco["categories"], map={4: "thing", 9: "thing"})
    assert merged.names == ["background", "thing"]
    ignore, _ = paint(image, anns, merged, "area", "ignore")
    assert ignore[0, 0] == IGNORE and ignore[3, 3] == 1
    as_class, _ = paint(image, anns, merged, "area", "class")
    assert as_class[0, 0] == 1
    skip, _ = paint(image, anns, merged, "area", "skip")
    assert skip[0, 0] == 0 and skip[3, 3] == 1
    dropped = table_of(coco["categories"], drop=(9,))
    mask, _ = paint(image, anns, dropped, "area", "class")
    assert set(np.unique(mask)) == {1}
    ignored = table_of(coco["categories"], ignore=(9,))
    mask, _ = paint(image, anns, ignored, "area", "skip")
    assert mask[3, 3] == IGNORE


def test_class_table_errors_name_params_field() -> None:
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]
    table = table_of(cats)
    assert table.names == ["background", "a", "a_id2"]  # same name, two ids: kept apart
    with pytest.raises(DatasetError, match="params.yaml: classes.map: category ids \\[2\\]"):
        table_of(cats, map={1: "x"})
    with pytest.raises(DatasetError, match="category id 5 is not in"):
        table_of(cats, drop=(5,))


def test_stats_are_measured_from_the_mask(sample_dir: Path) -> None:
    coco = canonical(sample_dir / "annotations.json")
    table = table_of(coco["categories"])
    by_image = group_annotations(coco)
    for image in coco["images"]:
        mask, records = paint(image, by_image[image["id"]], table)
        background, ignore, classes = image_stats(mask.shape, records, table.n_classes, (20, 400))
        counts = np.bincount(mask.ravel(), minlength=256)
        assert background == counts[0] and ignore == counts[IGNORE]
        rows = {index: dict(zip(CLASS_MEASURES, values, strict=True)) for index, *values in classes}
        for index in range(1, table.n_classes + 1):
            row = rows.get(index, dict.fromkeys(CLASS_MEASURES, 0))
            assert row["pixels"] == counts[index]
            instances = [r for r in records if r["class_index"] == index and not r["iscrowd"]]
            assert row["instances"] == len(instances)
            buckets = row["small"] + row["medium"] + row["large"] + row["hidden"]
            assert buckets == len(instances)
            assert row["small"] == sum(1 for r in instances if 0 < r["visible_pixels"] <= 20)
            assert (index in rows) == bool(counts[index] or instances)  # long layout: no zeros


def run_masks_stage(
    workdir: Path, coco: dict[str, Any], workers: int, **masks: Any
) -> dict[str, str]:
    atomic_write_json(workdir / "data/interim/annotations.json", coco)
    masks_stage.run(parse_params({"workers": workers, "masks": masks}), workdir)
    digests = {}
    for path in sorted((workdir / "data").rglob("*")):
        if path.is_file() and "interim" not in path.parts:
            rel = str(path.relative_to(workdir))
            digests[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def test_stage_outputs_identical_with_1_or_2_workers(sample_dir: Path, tmp_path: Path) -> None:
    coco = canonical(sample_dir / "annotations.json")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = run_masks_stage(tmp_path / "one", coco, 1)
    two = run_masks_stage(tmp_path / "two", coco, 2)
    assert one == two
    assert sum(1 for p in one if p.endswith(".png")) == len(coco["images"])
    # Paths follow the contract and the PNG is indexed with the palette.
    from PIL import Image

    first = coco["images"][0]["file_name"]
    png = tmp_path / "two" / "data" / "masks" / Path(first).with_suffix(".png")
    with Image.open(png) as im:
        assert im.mode == "P"
        palette = np.array(im.getpalette()[:768], np.uint8).reshape(256, 3)
        assert np.array_equal(np.array(im), read_mask(png))
    assert np.array_equal(palette, make_palette())
    leftovers = [p for p in (tmp_path / "two").rglob("*.tmp")]
    assert leftovers == []


def test_stage_stats_table_contract(sample_dir: Path, tmp_path: Path) -> None:
    coco = canonical(sample_dir / "annotations.json")
    run_masks_stage(tmp_path, coco, 1, size_thresholds=[400, 9216])
    with open(tmp_path / "data/stats/image_stats.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["image_id"]) for r in rows] == [im["id"] for im in coco["images"]]
    assert list(rows[0]) == [
        "image_id",
        "file_name",
        "width",
        "height",
        "background_pixels",
        "ignore_pixels",
    ]
    with open(tmp_path / "data/stats/class_stats.csv", newline="") as fh:
        class_rows = list(csv.DictReader(fh))
    assert list(class_rows[0]) == ["image_id", "class_index", "class", *CLASS_MEASURES]
    stats = read_image_stats(tmp_path)
    total_instances = int(stats.measure("instances").sum())
    crowd = sum(1 for a in coco["annotations"] if a.get("iscrowd"))
    assert total_instances == len(coco["annotations"]) - crowd
    assert total_instances == sum(int(r["instances"]) for r in class_rows)
    # "how many objects are 20 px or smaller": thresholds come from params.
    assert stats.measure("small").sum() > 0
    pixels = stats.background + stats.measure("pixels").sum(axis=1) + stats.ignore
    assert np.array_equal(pixels, stats.width * stats.height)


def test_file_name_cannot_escape_masks_folder(tmp_path: Path) -> None:
    coco = {
        "images": [{"id": 1, "file_name": "../evil.jpg", "width": 8, "height": 8}],
        "annotations": [],
        "categories": [{"id": 1, "name": "a"}],
    }
    with pytest.raises(DatasetError, match="climbs out"):
        validate_coco(coco, file="ann.json")
    # Even a hand-edited canonical file cannot make the stage write outside data/masks.
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(DatasetError):
        run_masks_stage(work, coco, 1)
    assert not (tmp_path / "evil.png").exists()
    assert not any((work / "data").rglob("*.png")) if (work / "data").exists() else True


@pytest.mark.parametrize(
    ("field", "value"), [("overlap", "biggest"), ("crowd", "drop"), ("size_thresholds", [10])]
)
def test_bad_mask_params(field: str, value: Any) -> None:
    with pytest.raises(DatasetError, match=f"params.yaml: masks.{field}"):
        parse_params({"masks": {field: value}})
