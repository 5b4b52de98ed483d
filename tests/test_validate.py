"""Bad input: one clear error naming file, id and field, or a counted, listed warning."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from benchmarks.scale import generate_coco
from pipeline.files.contracts import (
    CANONICAL_PATH,
    ISSUE_COLUMNS,
    VALIDATION_ISSUES_PATH,
    VALIDATION_REPORT_PATH,
    mask_relpath,
    read_json,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import csv_text, dumps_json, is_plain_name
from pipeline.files.params import parse_params
from pipeline.files.rle import string_counts
from pipeline.stages.validate import (
    KINDS,
    Plan,
    _checked_images,
    _plain_images,
    build_report,
    check_images,
    check_structure,
    issue_rows,
    needs_value_scan,
    probe_images,
    read_annotations,
    run,
    source_of,
    validate_coco,
)
from pipeline.tools.sample import uncompressed_rle
from tests.conftest import png_header_only, png_of_zeros

OUTPUT_FILES = (CANONICAL_PATH, VALIDATION_REPORT_PATH, VALIDATION_ISSUES_PATH)


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


def check(coco: Any, images_root: str | None = None, **kwargs: Any):
    """Validate like the stage does: structure, then (with a folder) every image file."""
    probes = None
    if images_root is not None:
        names = check_structure(coco, "ann.json", 200_000_000)
        probes = probe_images(coco["images"], names, images_root, 1)
    return validate_coco(
        coco, file="ann.json", probes=probes, images_label=images_root or "", **kwargs
    )


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
        read_json(path)
    with pytest.raises(DatasetError, match="annotations file not found"):
        read_annotations(tmp_path / "absent.json", "absent.json")
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(DatasetError, match="bad.json"):
        read_json(path)


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
            "coordinates_outside_image",
            2,
        ),
        (
            lambda d: d["annotations"][0].update(segmentation=[[1, 1, 200, 1, 20, 20]]),
            "polygon_far_outside",
            1,
        ),
        (
            lambda d: d["annotations"][0].update(segmentation=[[10**400, 1, 20, 1, 20, 20]]),
            "polygon_not_finite",
            1,
        ),
        (lambda d: d["annotations"][0].update(area=float("nan")), "value_not_finite", 2),
        (lambda d: d["images"][0].update(license=float("inf")), "value_not_finite", 2),
        (lambda d: d["categories"][0].update(name="c\udc80n"), "string_not_unicode", 2),
        (lambda d: d["annotations"][0].update(note={"x\ud800": 1}), "string_not_unicode", 2),
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


def test_points_outside_the_image_are_kept_as_written() -> None:
    coco = coco_dict()
    coco["annotations"][0]["segmentation"] = [[-5, -5.5, 80, 0, 80, 60, 0, 60]]
    seg = check(coco).coco["annotations"][0]["segmentation"]
    assert seg == [[-5, -5.5, 80, 0, 80, 60, 0, 60]]


def test_far_outside_margin_is_the_image_size() -> None:
    coco = coco_dict()  # images are 64x48: points may go to -64..128, -48..96
    coco["annotations"][0]["segmentation"] = [[-64, -48, 128, -48, 128, 96]]
    coco["annotations"][1]["segmentation"] = [[-64.5, 0, 10, 0, 10, 10]]
    result = check(coco)
    assert [a["id"] for a in result.coco["annotations"]] == [10]
    far = [i for i in result.issues if i.kind == "polygon_far_outside"]
    assert [i.annotation_id for i in far] == [11] and far[0].action == "dropped"


def test_non_finite_values_and_surrogates_are_repaired_and_writable() -> None:
    coco = coco_dict()
    coco["info"] = {"year": float("nan"), "note": "x\udc80"}
    coco["annotations"][0].update(area=float("nan"), bbox=[1.0, float("inf"), 2.0, 3.0])
    coco["images"][1]["flickr_url"] = "http://\ud83d"
    result = check(coco)
    ann = result.coco["annotations"][0]
    assert ann["area"] is None and ann["bbox"] == [1.0, None, 2.0, 3.0]
    assert result.coco["info"] == {"year": None, "note": "x\ufffd"}
    assert result.coco["images"][1]["flickr_url"] == "http://\ufffd"
    fields = {(i.kind, i.field) for i in result.issues}
    assert {("value_not_finite", "area"), ("value_not_finite", "bbox[1]")} <= fields
    assert ("value_not_finite", "info.year") in fields
    assert ("string_not_unicode", "flickr_url") in fields
    dumps_json(result.coco).encode("utf-8")  # the writer accepts the canonical json
    csv_text(ISSUE_COLUMNS, issue_rows(result.issues)).encode("utf-8")


def test_value_scan_is_skipped_only_when_the_text_cannot_need_it() -> None:
    assert needs_value_scan(b'{"area": NaN}') and needs_value_scan(b'{"x": -Infinity}')
    assert needs_value_scan(b'{"name": "c\\udc80"}')
    assert not needs_value_scan(b'{"name": "caf\\u00e9", "area": 1.5e300}')


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/1\nnew\nline.jpg", "control character '\\n'"),
        ("a/1\t.jpg", "control character"),
        ("a/\x85.jpg", "control character"),
        ("a/c\udc80.jpg", "lone surrogate"),
        ("a/" + "x" * 250 + ".jpg", "bytes; at most 239 fit"),
        ("a/" + "é" * 120 + ".jpg", "bytes; at most 239 fit"),
    ],
)
def test_names_that_cannot_be_files_are_one_clear_error(name: str, expected: str) -> None:
    coco = coco_dict()
    coco["images"][0]["file_name"] = name
    with pytest.raises(DatasetError) as info:
        check(coco)
    assert str(info.value).startswith("ann.json: image id 1: file_name: ")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("first", "second", "output"),
    [
        ("x.jpg", "x.png/y.jpg", "mask"),
        ("x.jpg", "x__c0.png/y.jpg", "variant image"),
        ("d/x.jpg", "d/x__c12.jpg/y.jpg", "variant image (jpg)"),
    ],
)
def test_output_paths_that_clash_with_folders_are_refused(
    first: str, second: str, output: str
) -> None:
    coco = coco_dict()
    coco["images"][0]["file_name"] = first
    coco["images"][1]["file_name"] = second
    with pytest.raises(DatasetError, match="has the name of an output file of image id 1"):
        check(coco)


def test_folder_names_that_merely_look_like_outputs_are_fine() -> None:
    coco = coco_dict()
    coco["images"][0]["file_name"] = "x.png/y.jpg"  # no image with stem 'x'
    coco["images"][1]["file_name"] = "z__c0.png/w.jpg"
    assert len(check(coco).coco["images"]) == 2


def test_ids_beyond_int64_are_refused() -> None:
    coco = coco_dict()
    coco["images"][0]["id"] = 2**70
    with pytest.raises(DatasetError, match="out of the 64-bit integer range"):
        check(coco)


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
    assert string_counts(rle["counts"].decode()).tolist() == runs


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

    from pipeline.files.images import read_image

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


def test_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    coco = coco_dict()
    write_images(tmp_path, coco)
    (tmp_path / "a/1.jpg").write_bytes(png_header_only(50000, 50000))  # over OpenCV's limit
    (tmp_path / "a/2.jpg").write_bytes(png_header_only(30000, 30000))  # under it: 2.7 GB
    result = check(coco, images_root=str(tmp_path))
    mismatch = [i for i in result.issues if i.kind == "image_size_mismatch"]
    assert [i.image_id for i in mismatch] == [1, 2]
    assert "is 50000x50000, json says 64x48" in mismatch[0].message


def test_bomb_header_costs_no_pixel_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_of_zeros(30000, 30000))  # valid: 900 MB of pixels once decoded
    # VmHWM is this process's own peak (ru_maxrss would carry the forking parent's over exec).
    code = (
        "import re; from pathlib import Path; "
        "from pipeline.stages.validate import probe_image; "
        f"print(probe_image(Path({str(bomb)!r}), (24, 32)).status); "
        "print(re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text())[1])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, max_rss_kb = done.stdout.split()
    assert status == "mismatch"
    assert int(max_rss_kb) < 400_000, f"{int(max_rss_kb) // 1024} MB: pixels were decoded"


def test_header_matching_json_is_decoded_once_and_kept(tmp_path: Path) -> None:
    coco = coco_dict()
    write_images(tmp_path, coco)
    (tmp_path / "a/2.jpg").write_bytes(png_header_only(64, 48))  # truncated pixel data
    result = check(coco, images_root=str(tmp_path))
    assert [i.image_id for i in result.issues if i.kind == "image_unreadable"] == [2]
    assert [im["id"] for im in result.coco["images"]] == [1]


# ------------------------------------------------------------------ fuzz

# Text as json.loads can produce it: lone surrogates (from \\udXXX escapes) and control
# characters included, so the writer path (canonical json, issues CSV) is fuzzed too.
hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        st.characters(max_codepoint=0x1F),
    ),
    max_size=6,
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.integers(min_value=2**62, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
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
                            st.one_of(
                                st.floats(allow_nan=True),
                                st.integers(-5, 80),
                                st.integers(min_value=10**300, max_value=10**400),
                            ),
                            max_size=10,
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
    # The writer path: the canonical json and the issues table always encode as UTF-8.
    dumps_json(result.coco, indent=None).encode("utf-8")
    csv_text(ISSUE_COLUMNS, issue_rows(result.issues)).encode("utf-8")
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


# ---------------------------------------------------------------- the stage's fast paths


def numbered_one_by_one(ids: list[Any]) -> tuple[list[int], dict[int, int]]:
    """The renumbering as a plain loop: a later use of an id gets the next id after the
    largest, in file order."""
    seen: set[int] = set()
    next_id = max((int(i) for i in ids), default=0) + 1
    out, originals = [], {}
    for index, raw in enumerate(ids):
        aid = int(raw)
        if aid in seen:
            originals[index], aid, next_id = aid, next_id, next_id + 1
        seen.add(aid)
        out.append(aid)
    return out, originals


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-3, 6),
            st.integers(2**63 - 3, 2**63 - 1),
            st.integers(-3, 6).map(float),
        ),
        max_size=12,
    )
)
def test_duplicate_ids_are_numbered_as_one_by_one(ids: list[Any]) -> None:
    """One stable sort numbers duplicates as the loop does, past int64 as Python ints."""
    anns = [{"id": i, "image_id": 1, "category_id": 3, "segmentation": []} for i in ids]
    coco = {**coco_dict(), "annotations": anns}
    source = source_of(coco)
    check_structure(source, "ann.json", 200_000_000)
    numbered, originals = Plan(source, {1, 2}, {1, 2}).numbered()
    assert (numbered.tolist(), originals) == numbered_one_by_one(ids)


@pytest.mark.parametrize(
    ("name", "plain"),
    [
        ("a/1.jpg", True),
        ("x" * 55 + ".jpg", True),  # 59 characters: the longest plain name
        ("x" * 56 + ".jpg", False),
        ("a/./1.jpg", False),
        ("a//1.jpg", False),
        ("é/1.jpg", False),
        ("-a/_b.c.jpg", True),
        (".hidden/1.jpg", True),  # check_relative keeps it as it is
        ("a\\1.jpg", False),
    ],
)
def test_plain_image_lists_skip_the_walk_with_the_same_names(name: str, plain: bool) -> None:
    """Names the glance accepts are those check_relative keeps as they are; any other list
    is walked image by image, with the same result."""
    images = [
        {"id": 7, "file_name": name, "width": 64, "height": 48},
        {"id": 3, "file_name": "b/2.png", "width": 10, "height": 10},
    ]
    walked = _checked_images(images, "ann.json", 200_000_000)
    glanced = _plain_images(images, 200_000_000)
    assert glanced is None or glanced == walked
    assert check_images(images, "ann.json", 200_000_000) == walked
    assert (glanced is not None) == plain


plain_names = st.text(alphabet="abXY09_-. /~", min_size=1, max_size=64).filter(is_plain_name)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(plain_names, min_size=1, max_size=6, unique=True))
def test_names_the_glance_accepts_are_kept_by_check_relative(names: list[str]) -> None:
    """Guards the glance against a change of check_relative: every name it accepts
    (fsio.is_plain_name: printable ASCII, clean, at most 59 characters) is one check_relative
    keeps as it is."""
    images = [{"id": i, "file_name": n, "width": 8, "height": 8} for i, n in enumerate(names)]
    glanced = _plain_images(images, 200_000_000)
    if len({mask_relpath(n) for n in names}) == len(names):  # else two would share a mask
        assert glanced is not None
        assert glanced == _checked_images(images, "ann.json", 200_000_000)
    else:
        assert glanced is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": 3}, "duplicate image id"),
        ({"width": 0}, "must be positive"),
        ({"width": 2**40}, "exceeds dataset.max_pixels"),
        ({"file_name": "b/2.jpg"}, "differ only by extension"),
        ({"id": True}, "must be an integer"),
    ],
)
def test_a_list_with_a_problem_is_walked_and_the_problem_named(
    change: dict[str, Any], expected: str
) -> None:
    images = [
        {"id": 3, "file_name": "b/2.png", "width": 10, "height": 10},
        {"id": 7, "file_name": "a/1.jpg", "width": 64, "height": 48, **change},
    ]
    assert _plain_images(images, 200_000_000) is None
    with pytest.raises(DatasetError, match=expected):
        check_images(images, "ann.json", 200_000_000)


_ONE_PATTERN = re.compile(rb"[eE]\+?(?:30[89]|3[1-9][0-9]|[4-9][0-9][0-9]|[0-9]{4})|[0-9]{309}")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"0",
                b"7",
                b"e",
                b"E",
                b"+",
                b"-",
                b".",
                b"30",
                b"309",
                b"1000",
                b"NaN",
                b"\\u",
                b"d8",
                b"D",
                b"a",
                b'"',
                b"1" * 150,
                b"Infinity",
            ]
        ),
        max_size=12,
    )
)
def test_value_scan_is_the_one_pattern_it_was(parts: list[bytes]) -> None:
    """The scan (literal-led patterns, 309 digits as zeros) finds what one regex found."""
    text = b"".join(parts)
    old = b"NaN" in text or b"Infinity" in text
    old = old or bool(re.search(rb"\\u[dD][89a-fA-F]", text) or _ONE_PATTERN.search(text))
    assert needs_value_scan(text) == old


def test_the_stage_writes_the_same_bytes_with_one_or_two_workers(tmp_path: Path) -> None:
    """At a generated COCO-shaped set (polygons, crowd RLE, points on the border): raw batches
    on one worker (in this process) or two give byte-identical outputs, equal to the in-memory
    validate_coco of the same json."""
    data = generate_coco(tmp_path / "coco.json", 60)
    outputs = []
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        root.mkdir()
        params = parse_params(
            {
                "workers": workers,
                "dataset": {
                    "annotations": str(data),
                    "images": "images",
                    "check_images": False,
                    "missing_images": "keep",
                },
            }
        )
        run(params, root)
        outputs.append([(root / rel).read_bytes() for rel in OUTPUT_FILES])
    assert outputs[0] == outputs[1]
    expected = validate_coco(json.loads(data.read_bytes()), file=str(data))
    assert outputs[0][0].decode() == json.dumps(expected.coco, ensure_ascii=False) + "\n"
    assert expected.totals["annotations_kept"] > 300
