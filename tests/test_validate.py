"""Bad input: one clear error naming file, id and field, or a counted, listed warning."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from pipeline.errors import DatasetError
from pipeline.sample import uncompressed_rle
from pipeline.validate import KINDS, build_report, load_coco_json, rle_string_counts, validate_coco


def coco_dict() -> dict[str, Any]:
    square = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]
    return {
        "images": [
            {"id": 1, "file_name": "a/1.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "a/2.jpg", "width": 64, "height": 48},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "segmentation": [square], "iscrowd": 0},
            {"id": 11, "image_id": 2, "category_id": 5, "segmentation": [square], "iscrowd": 0},
        ],
        "categories": [{"id": 3, "name": "can"}, {"id": 5, "name": "bottle"}],
    }


def check(coco: Any, **kwargs: Any):
    return validate_coco(coco, file="ann.json", **kwargs)


def kinds(result) -> dict[str, int]:
    return {k: v for k, v in result.counts().items() if v}


# ------------------------------------------------------------------ errors (stop the stage)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("images"), "missing top-level key 'images'"),
        (lambda d: d.pop("categories"), "missing top-level key 'categories'"),
        (lambda d: d.update(annotations={}), "annotations: must be a list"),
        (lambda d: d["images"][0].pop("width"), "images[0]: width: missing key 'width'"),
        (lambda d: d["images"][1].update(id=1), "image id 1: id: duplicate image id"),
        (lambda d: d["categories"][1].update(id=3), "category id 3: id: duplicate category id"),
        (
            lambda d: d["images"][0].update(file_name="../x.jpg"),
            "image id 1: file_name: '../x.jpg' climbs out of the image folder",
        ),
        (lambda d: d["images"][0].update(file_name="a/../../x.jpg"), "climbs out"),
        (lambda d: d["images"][0].update(file_name="/etc/passwd"), "absolute path"),
        (lambda d: d["images"][0].update(file_name="C:\\x.jpg"), "absolute path"),
        (lambda d: d["images"][0].update(width=0), "image id 1: width: must be positive"),
        (lambda d: d["images"][0].update(height="48"), "height: must be an integer"),
        (
            lambda d: d["images"][0].update(width=100000, height=100000),
            "exceeds dataset.max_pixels",
        ),
        (lambda d: d["images"][1].update(file_name="a/1.jpg"), "also used by image id 1"),
        (lambda d: d["images"][1].update(file_name="a/1.png"), "differ only by extension"),
        (lambda d: d["categories"][0].pop("name"), "categories[0]: name: missing key"),
    ],
)
def test_structural_problems_are_one_clear_error(mutate, expected: str) -> None:
    coco = coco_dict()
    mutate(coco)
    with pytest.raises(DatasetError) as info:
        check(coco)
    message = str(info.value)
    assert message.startswith("ann.json: ")
    assert expected in message


def test_malformed_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"images": [1, 2,,]}')
    with pytest.raises(DatasetError, match=r"bad\.json: malformed json at line 1 column 18"):
        load_coco_json(path)
    with pytest.raises(DatasetError, match="annotations file not found"):
        load_coco_json(tmp_path / "absent.json")
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(DatasetError, match="bad.json"):
        load_coco_json(path)


def test_top_level_not_an_object() -> None:
    with pytest.raises(DatasetError, match="top level must be a json object"):
        check([1, 2])


# ------------------------------------------------------------------ warnings (counted, listed)


@pytest.mark.parametrize(
    ("mutate", "kind", "kept_annotations"),
    [
        (lambda d: d["annotations"][0].update(image_id=99), "annotation_unknown_image", 1),
        (lambda d: d["annotations"][0].update(category_id=7), "annotation_unknown_category", 1),
        (lambda d: d["annotations"][0].pop("segmentation"), "annotation_missing_field", 1),
        (lambda d: d["annotations"][0].pop("category_id"), "annotation_missing_field", 1),
        (
            lambda d: d["annotations"][0].update(segmentation=[[1.0, 2.0, 3.0, 4.0, 5.0]]),
            "polygon_odd_coordinates",
            1,
        ),
        (
            lambda d: d["annotations"][0].update(segmentation=[[1.0, 2.0, 3.0, 4.0]]),
            "polygon_too_few_points",
            1,
        ),
        (
            lambda d: d["annotations"][0].update(segmentation=[[1.0, float("nan"), 3, 4, 5, 6]]),
            "polygon_not_finite",
            1,
        ),
        (
            lambda d: d["annotations"][0].update(segmentation=[[1.0, float("inf"), 3, 4, 5, 6]]),
            "polygon_not_finite",
            1,
        ),
        (
            lambda d: d["annotations"][0].update(segmentation=[["a", 2, 3, 4, 5, 6]]),
            "polygon_not_numeric",
            1,
        ),
        (lambda d: d["annotations"][0].update(segmentation=[]), "segmentation_empty", 1),
        (
            lambda d: d["annotations"][0].update(segmentation=[[5, 5, 5, 5, 5, 5]]),
            "segmentation_zero_area",
            1,
        ),
        (lambda d: d["annotations"][0].update(segmentation="oops"), "segmentation_bad_type", 1),
        (
            lambda d: d["annotations"][0].update(
                segmentation={"size": [48, 64], "counts": [10, 20, 5]}
            ),
            "rle_bad_counts",
            1,
        ),
        (
            lambda d: d["annotations"][0].update(segmentation={"size": [48, 64], "counts": "#$%"}),
            "rle_bad_counts",
            1,
        ),
        (
            lambda d: d["annotations"][0].update(segmentation={"size": [10, 10], "counts": [100]}),
            "rle_size_mismatch",
            1,
        ),
        (
            lambda d: d["annotations"][0].update(
                segmentation={"size": [48, 64], "counts": [48 * 64]}
            ),
            "segmentation_zero_area",
            1,
        ),
        (lambda d: d["annotations"][0].update(iscrowd=2), "annotation_bad_iscrowd", 2),
        (
            lambda d: d["annotations"][0].update(segmentation=[[-5, -5, 80, 0, 80, 60, 0, 60]]),
            "coordinates_clipped",
            2,
        ),
        (lambda d: d["annotations"].pop(1), "image_without_annotations", 1),
    ],
)
def test_item_problems_are_counted_and_listed(mutate, kind: str, kept_annotations: int) -> None:
    coco = coco_dict()
    mutate(coco)
    result = check(coco)
    assert result.counts()[kind] >= 1, kinds(result)
    assert len(result.coco["annotations"]) == kept_annotations
    listed = [i for i in result.issues if i.kind == kind]
    assert listed and all(i.message for i in listed)
    report = build_report(result)
    # Every annotation is either kept or accounted for as dropped.
    assert report["annotations_kept"] + report["annotations_dropped"] == report["annotations_in"]
    dropped_kinds = {i.kind for i in result.issues if i.action == "dropped"}
    assert (report["annotations_dropped"] > 0) == bool(
        dropped_kinds - {"image_missing", "image_unreadable", "image_size_mismatch"}
    )


def test_clipped_polygon_stays_inside_image() -> None:
    coco = coco_dict()
    coco["annotations"][0]["segmentation"] = [[-5, -5, 80, 0, 80, 60, 0, 60]]
    seg = check(coco).coco["annotations"][0]["segmentation"][0]
    assert min(seg) >= 0 and max(seg[0::2]) <= 64 and max(seg[1::2]) <= 48


def test_rle_valid_forms_are_kept() -> None:
    coco = coco_dict()
    binary = np.zeros((48, 64), dtype=np.uint8)
    binary[5:20, 7:30] = 1
    rle = mask_utils.encode(np.asfortranarray(binary))
    coco["annotations"][0]["segmentation"] = {"size": [48, 64], "counts": rle["counts"].decode()}
    runs = uncompressed_rle(binary)["counts"]
    coco["annotations"][1]["segmentation"] = {"size": [48, 64], "counts": runs}
    coco["annotations"][1]["iscrowd"] = 1
    result = check(coco)
    assert len(result.coco["annotations"]) == 2
    assert sum(result.counts().values()) == 0
    assert rle_string_counts(rle["counts"].decode()) == runs


def test_duplicate_annotation_ids_are_renumbered_and_listed() -> None:
    coco = coco_dict()
    coco["annotations"][1]["id"] = 10
    result = check(coco)
    assert result.counts()["annotation_duplicate_id"] == 1
    ids = [a["id"] for a in result.coco["annotations"]]
    assert ids == [10, 11]
    assert result.coco["annotations"][1]["original_id"] == 10


def test_category_without_annotations_is_listed() -> None:
    coco = coco_dict()
    coco["categories"].append({"id": 0, "name": "unused"})
    assert check(coco).counts()["category_without_annotations"] == 1


# ------------------------------------------------------------------ image files


def write_images(root: Path, coco: dict[str, Any]) -> None:
    for img in coco["images"]:
        path = root / img["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((img["height"], img["width"], 3), 128, np.uint8))


def test_missing_unreadable_and_wrong_size_images(tmp_path: Path) -> None:
    coco = coco_dict()
    coco["images"].append({"id": 3, "file_name": "a/3.jpg", "width": 64, "height": 48})
    coco["images"].append({"id": 4, "file_name": "a/4.jpg", "width": 64, "height": 48})
    write_images(tmp_path, coco)
    (tmp_path / "a/1.jpg").unlink()
    (tmp_path / "a/2.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "a/3.jpg"), np.zeros((64, 48, 3), np.uint8))  # swapped: EXIF?
    result = check(coco, images_root=str(tmp_path))
    counts = result.counts()
    assert counts["image_missing"] == 1
    assert counts["image_unreadable"] == 1
    assert counts["image_size_mismatch"] == 1
    assert [im["id"] for im in result.coco["images"]] == [4]
    assert result.coco["annotations"] == []  # both annotations belonged to dropped images
    report = build_report(result)
    assert report["annotations_dropped_with_their_image"] == 2
    swapped = next(i for i in result.issues if i.kind == "image_size_mismatch")
    assert "EXIF" in swapped.message and "a/3.jpg" in swapped.message

    with pytest.raises(DatasetError, match=r"image id 1: file_name: .*a/1\.jpg is missing"):
        check(coco, images_root=str(tmp_path), missing_images="error")
    kept = check(coco, images_root=str(tmp_path), missing_images="keep")
    assert {im["id"] for im in kept.coco["images"]} == {1, 2, 4}


def test_exif_rotated_photo_is_kept_and_read_oriented(tmp_path: Path) -> None:
    from PIL import Image

    from pipeline.images import read_image

    coco = coco_dict()
    write_images(tmp_path, coco)
    raw = np.zeros((48, 64, 3), np.uint8)  # stored 64 wide, 48 high ...
    raw[:, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # ... shown rotated 90 degrees clockwise: 48 wide, 64 high
    Image.fromarray(raw).save(tmp_path / "a/1.jpg", exif=exif, quality=95)
    coco["images"][0].update(width=48, height=64)
    result = check(coco, images_root=str(tmp_path))
    assert result.counts()["image_exif_orientation"] == 1
    assert result.counts()["image_size_mismatch"] == 0
    assert len(result.coco["images"]) == 2
    oriented = read_image(tmp_path / "a/1.jpg", (64, 48))
    assert oriented.shape[:2] == (64, 48)
    assert oriented[:8].mean() > 200 and oriented[-8:].mean() < 50  # the white band is on top
    assert read_image(tmp_path / "a/1.jpg").shape[:2] == (48, 64)  # no shape: raw pixels


def test_symlinked_images_are_read(tmp_path: Path) -> None:
    coco = coco_dict()
    store = tmp_path / "cache"
    write_images(store, coco)
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    for img in coco["images"]:  # like a DVC symlink cache
        (root / img["file_name"]).symlink_to(store / img["file_name"])
    result = check(coco, images_root=str(root))
    assert len(result.coco["images"]) == 2 and result.counts()["image_missing"] == 0


# ------------------------------------------------------------------ fuzz

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=8), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
fields = [
    "id",
    "image_id",
    "category_id",
    "segmentation",
    "iscrowd",
    "file_name",
    "width",
    "height",
    "name",
    "size",
    "counts",
]


@st.composite
def mutated_coco(draw) -> Any:
    coco = coco_dict()
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["images", "annotations", "categories", "seg", "top"]))
        value = draw(json_values)
        if where == "top":
            key = draw(st.sampled_from(["images", "annotations", "categories"]))
            if draw(st.booleans()):
                coco[key] = value
            else:
                coco.pop(key, None)
        elif where == "seg":
            seg = draw(
                st.one_of(
                    st.lists(
                        st.lists(
                            st.one_of(st.floats(allow_nan=True), st.integers(-5, 80)), max_size=10
                        ),
                        max_size=3,
                    ),
                    st.fixed_dictionaries(
                        {
                            "size": st.lists(st.integers(-2, 70), max_size=3),
                            "counts": st.one_of(
                                st.text(max_size=10), st.lists(st.integers(-5, 4000), max_size=6)
                            ),
                        }
                    ),
                    json_values,
                )
            )
            if isinstance(coco.get("annotations"), list) and coco["annotations"]:
                target = coco["annotations"][0]
                if isinstance(target, dict):
                    target["segmentation"] = seg
        else:
            items = coco.get(where)
            if isinstance(items, list) and items and isinstance(items[0], dict):
                items[0][draw(st.sampled_from(fields))] = value
    return coco


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_coco())
def test_fuzz_malformed_coco_gives_clear_error_or_counted_warning(coco: Any) -> None:
    original = copy.deepcopy(coco)
    try:
        result = check(coco)
    except DatasetError as exc:
        assert str(exc).startswith("ann.json")
        return
    report = build_report(result)
    json.dumps(report)  # the report is always serialisable
    assert set(result.counts()) == set(KINDS)
    n_in = len(original["annotations"])
    assert report["annotations_kept"] + report["annotations_dropped"] == n_in
    # Every dropped annotation has a listed reason.
    listed = {
        i.annotation_id for i in result.issues if i.action == "dropped" and i.annotation_id != ""
    }
    kept = {a["id"] for a in result.coco["annotations"]}
    for ann in original["annotations"]:
        assert ann["id"] in kept or ann["id"] in listed
