"""Hostile input through the real CLI: one clear line or a listed repair, never a traceback,
and nothing written outside the output folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from tests.conftest import png_header_only, python_exe, real_dataset, run_cli

# The stage outputs, and the declared item cache (params cache.dir).
OUTPUT_FOLDERS = (
    "data/interim",
    "data/masks",
    "data/stats",
    "data/classes.json",
    "reports",
    ".cache",
)


def base_coco() -> dict[str, Any]:
    square = [2.0, 2.0, 20.0, 2.0, 20.0, 18.0, 2.0, 18.0]
    return {
        "images": [
            {"id": 1, "file_name": "b/1.jpg", "width": 32, "height": 24},
            {"id": 2, "file_name": "b/2.jpg", "width": 32, "height": 24},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [square], "area": 1.0},
            {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [square], "area": 1.0},
        ],
        "categories": [{"id": 1, "name": "can"}],
    }


def setup_repo(root: Path, coco: dict[str, Any] | str, **dataset: Any) -> Path:
    images = root / "images"
    for name in ("b/1.jpg", "b/2.jpg"):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(images / name), np.full((24, 32, 3), 90, np.uint8))
    text = coco if isinstance(coco, str) else json.dumps(coco)
    (root / "ann.json").write_text(text, encoding="utf-8")
    params = {
        "workers": 1,
        "dataset": {"annotations": "ann.json", "images": "images", **dataset},
        "augment": {"variants": {}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_stage(root: Path, stage: str) -> tuple[int, str]:
    done = run_cli([python_exe(), "-m", "pipeline", stage], cwd=root, check=False)
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text
    return done.returncode, text


def mutate(case: str, coco: dict[str, Any], root: Path) -> dict[str, Any] | str:
    """Apply one hostile case; returns the json (text where json.dumps cannot write it)."""
    if case == "nan_area":
        return json.dumps(coco).replace('"area": 1.0', '"area": NaN', 1)
    if case == "infinity_image_field":
        return json.dumps(coco).replace('"width": 32,', '"width": 32, "license": Infinity,', 1)
    if case == "bomb_png":
        (root / "images/b/1.jpg").write_bytes(png_header_only(50000, 50000))
    elif case == "mask_folder_clash":
        coco["images"][1]["file_name"] = "b/1.png/2.jpg"
    elif case == "variant_folder_clash":
        coco["images"][1]["file_name"] = "b/1__c0.png/2.jpg"
    elif case == "newline_name":
        coco["images"][1]["file_name"] = "b/1\nnew\nline.jpg"
    elif case == "long_component":
        coco["images"][1]["file_name"] = "b/" + "x" * 300 + ".jpg"
    elif case == "lone_surrogate":
        return json.dumps(coco).replace('"can"', '"c\\udc80n"')
    elif case == "huge_integer":
        return json.dumps(coco).replace("[2.0, 2.0,", "[1" + "0" * 400 + ", 2.0,", 1)
    return coco


CASES = {
    # case: (validate exit code, text that must appear in the output or the issues table)
    "nan_area": (0, "value_not_finite"),
    "infinity_image_field": (0, "value_not_finite"),
    "bomb_png": (0, "image_size_mismatch"),
    "mask_folder_clash": (1, "has the name of an output file of image id 1"),
    "variant_folder_clash": (1, "has the name of an output file of image id 1"),
    "newline_name": (1, "image id 2: file_name: 'b/1\\nnew\\nline.jpg' contains the control"),
    "long_component": (1, "image id 2: file_name: path component"),
    "lone_surrogate": (0, "string_not_unicode"),
    "huge_integer": (0, "polygon_not_finite"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_case_is_a_line_or_a_listed_repair(tmp_path: Path, case: str) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    setup_repo(root, base_coco(), max_dropped_fraction=1.0)
    text = mutate(case, base_coco(), root)
    (root / "ann.json").write_text(text if isinstance(text, str) else json.dumps(text))
    before = tree(root)
    code, out = run_stage(root, "validate")
    expected_code, expected = CASES[case]
    assert code == expected_code, out
    if code:
        lines = [line for line in out.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ann.json: "), out
        assert expected in lines[0], out
    else:
        issues = (root / "reports/validation_issues.csv").read_text(encoding="utf-8")
        assert expected in issues
        code, out = run_stage(root, "masks")  # the canonical json is usable downstream
        assert code == 0, out
    new = tree(root) - before
    assert all(p.startswith(OUTPUT_FOLDERS) or p == "data" for p in new), sorted(new)


def test_output_folder_in_the_way_is_one_line(tmp_path: Path) -> None:
    root = setup_repo(tmp_path, base_coco())
    (root / "reports").write_text("a file where the stage wants a folder")
    code, out = run_stage(root, "validate")
    assert code == 1
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "reports" in lines[0], out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_unwritable_output_folder_is_one_line(tmp_path: Path) -> None:
    root = setup_repo(tmp_path, base_coco())
    (root / "reports").mkdir()
    (root / "reports").chmod(0o555)
    try:
        code, out = run_stage(root, "validate")
    finally:
        (root / "reports").chmod(0o755)
    assert code == 1 and out.startswith("error: ") and "ermission denied" in out, out


def test_large_silent_loss_stops_with_the_fraction_and_reasons(tmp_path: Path) -> None:
    ann, images = real_dataset("facade_valid")  # 24 of 108 files sit in a subfolder
    root = tmp_path / "repo"
    root.mkdir()
    params = {"workers": 1, "dataset": {"annotations": str(ann), "images": str(images)}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    code, out = run_stage(root, "validate")
    assert code == 1
    assert "24 of 108 images (22.2%) would be dropped" in out
    assert "dataset.max_dropped_fraction = 0.05" in out and "image_missing 24" in out
    assert not (root / "data/interim/annotations.json").exists()
    params["dataset"]["max_dropped_fraction"] = 0.25  # images pass; their annotations do not
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    code, out = run_stage(root, "validate")
    assert code == 1 and "1112 of 3849 annotations (28.9%)" in out
    assert "with their image 1112" in out
    params["dataset"]["max_dropped_fraction"] = 0.3
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    code, out = run_stage(root, "validate")
    assert code == 0 and "84/108 images" in out


def test_too_few_groups_says_how_to_fix_it(tmp_path: Path, sample_dir: Path) -> None:
    """TACO's unofficial json names every file unofficial/...: one group with the default."""
    coco = json.loads((sample_dir / "annotations.json").read_text())
    for image in coco["images"]:
        image["file_name"] = "unofficial/" + image["file_name"]
    root = tmp_path / "repo"
    shutil.copytree(sample_dir / "images", root / "images" / "unofficial")
    (root / "ann.json").write_text(json.dumps(coco))
    params = {
        "workers": 1,
        "dataset": {"annotations": "ann.json", "images": "images"},
        "split": {"group_regex": "^([^/]+)/", "n_splits": 3},  # the sample has 4 batches
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("validate", "masks", "vectors"):
        assert run_stage(root, stage)[0] == 0
    code, out = run_stage(root, "split")
    assert code == 1
    assert "1 groups cannot fill n_splits=3 folds; set split.group_regex: '^([^/]+/[^/]+)/'" in out
