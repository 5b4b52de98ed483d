"""Export stage: per-fold COCO subsets, CSVs, mmseg lists, and leak-free augmented manifests."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.files.contracts import (
    IGNORE,
    FoldTable,
    ManifestRow,
    augmented_path,
    image_path,
    mask_path,
    parse_folds,
    read_class_distribution,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import check_relative
from pipeline.files.params import Params, load_params, parse_params
from pipeline.stages import export
from pipeline.stages.export import (
    build_exports,
    coco_files,
    coco_parts,
    load_manifests,
    map_coco,
    mapped_categories,
    subset_coco,
    write_coco_files,
    write_tree,
)
from tests.conftest import python_exe, run_cli

STAGES = ("validate", "masks", "vectors", "split", "augment-index", "augment", "export")


def run_stages(root: Path, stages: tuple[str, ...] = STAGES) -> None:
    """``python -m pipeline <stage>`` for each stage, in ``root``."""
    for stage in stages:
        argv = {"augment-index": ["augment", "--index"], "augment": ["augment", "flip"]}
        args = [python_exe(), "-m", "pipeline", *argv.get(stage, [stage])]
        done = run_cli(args, cwd=root, check=False)
        if done.returncode:
            pytest.fail(f"stage {stage} failed:\n{done.stdout}\n{done.stderr}")


def build_project(
    root: Path,
    *,
    test_fraction: float = 0.2,
    n_splits: int = 3,
    n_images: int = 24,
    n_batches: int = 8,
    seed: int = 3,
) -> Path:
    """A small project folder on a generated sample, every stage up to export run for real
    (``python -m pipeline <stage>``), with one cheap augment variant of two copies."""
    from pipeline.tools.sample import generate

    generate(root / "data" / "sample", n_images=n_images, n_batches=n_batches, seed=seed)
    params = {
        "workers": 1,
        "dataset": {"annotations": "data/sample/annotations.json", "images": "data/sample/images"},
        "split": {
            "n_splits": n_splits,
            "seed": 42,
            "group_regex": "^([^/]+)/",
            "test_fraction": test_fraction,
        },
        "augment": {
            "variants": {
                "flip": {"seed": 1, "copies": 2, "transforms": [{"name": "hflip", "p": 0.5}]}
            }
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_stages(root)
    return root


def rows_of(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("export_project"))


# ---------------------------------------------------------------- crafted inputs


def crafted() -> tuple[dict[str, Any], FoldTable, dict[str, list[ManifestRow]]]:
    """8 images in 2 folds plus 2 test images; a manifest with variants of *every* image."""
    coco = {
        "info": {"description": "crafted", "extra": [1, 2]},
        "licenses": [{"id": 1, "name": "x"}],
        "images": [
            {
                "id": 10 + i,
                "file_name": f"b{i // 2}/{i}.jpg",
                "width": 4,
                "height": 3,
                "capture": f"c{i}",
            }
            for i in range(10)
        ],
        "annotations": [
            {
                "id": 100 + i,
                "image_id": 10 + i // 2,
                "category_id": 7,
                "segmentation": [[0, 0, 1, 0, 1, 1]],
                "area": 0.5,
                "bbox": [0, 0, 1, 1],
                "iscrowd": 0,
                "note": f"n{i}",
            }
            for i in range(20)
        ],
        "categories": [{"id": 7, "name": "can", "supercategory": "metal"}],
        "custom_top": {"kept": True},
    }
    labels = ["0", "0", "1", "1", "0", "0", "1", "1", "test", "test"]
    rows = [
        {
            "image_id": str(10 + i),
            "file_name": f"b{i // 2}/{i}.jpg",
            "group": f"b{i // 2}",
            "fold": labels[i],
        }
        for i in range(10)
    ]
    folds = parse_folds(rows)
    manifest = [
        ManifestRow(
            10 + i, f"images/b{i // 2}/{i}__c{c}.png", f"masks/b{i // 2}/{i}__c{c}.png", "v", 1, c
        )
        for i in range(10)
        for c in range(2)
    ]
    return coco, folds, {"v": manifest}


def test_subset_keeps_ids_fields_and_order() -> None:
    coco, _, _ = crafted()
    sub = subset_coco(coco, [13, 11])
    assert [im["id"] for im in sub["images"]] == [11, 13]
    assert sub["images"][0] == coco["images"][1]  # extra field "capture" kept
    assert [a["id"] for a in sub["annotations"]] == [102, 103, 106, 107]
    assert sub["annotations"][0]["note"] == "n2"
    for key in ("info", "licenses", "categories", "custom_top"):
        assert sub[key] == coco[key]
    assert list(sub) == list(coco)  # top-level key order preserved
    assert len(coco["images"]) == 10  # input untouched


def exports_of(coco, folds, root, manifests=None, coco_json=True) -> dict[str, bytes]:  # noqa: ANN001
    """Every export file in memory, train.json included unless ``coco_json`` is False."""
    ids = [im["id"] for im in coco["images"]]
    files = build_exports(ids, folds, root, manifests, coco_json=coco_json)
    return files | coco_files(coco, folds, coco_json)


def test_build_exports_files_and_contents() -> None:
    coco, folds, manifests = crafted()
    files = exports_of(coco, folds, "data/sample/images", manifests)
    assert {
        "fold_0/train.json",
        "fold_1/val.csv",
        "test.json",
        "test.csv",
        "folds.csv",
        "exports.json",
        "mmseg/splits/fold_0_train.txt",
        "mmseg/splits/test.txt",
        "fold_1/train_augmented.csv",
        "mmseg/splits/fold_1_train_augmented.txt",
    } <= set(files)
    train = json.loads(files["fold_0/train.json"])
    val = json.loads(files["fold_0/val.json"])
    assert [im["id"] for im in train["images"]] == [12, 13, 16, 17]
    assert [im["id"] for im in val["images"]] == [10, 11, 14, 15]
    assert {a["image_id"] for a in train["annotations"]} == {12, 13, 16, 17}
    assert train["info"] == coco["info"] and train["custom_top"] == {"kept": True}
    test = json.loads(files["test.json"])
    assert [im["id"] for im in test["images"]] == [18, 19]
    rows = rows_of(files["fold_0/val.csv"])
    assert rows[0] == {
        "image_id": "10",
        "file_name": "b0/0.jpg",
        "image": "data/sample/images/b0/0.jpg",
        "mask": "data/masks/b0/0.png",
    }
    assert files["mmseg/splits/fold_0_val.txt"].decode().split() == ["b0/0", "b0/1", "b2/4", "b2/5"]
    meta = json.loads(files["exports.json"])
    assert meta["n_folds"] == 2 and meta["test"] == 2 and meta["variants"] == ["v"]
    assert meta["mmseg"]["img_suffix"] == ".jpg"


def test_augmented_variants_never_leak_crafted() -> None:
    """Variants exist for every image; fold k's train lists only fold k's train images'."""
    coco, folds, manifests = crafted()
    files = exports_of(coco, folds, "img", manifests)
    test_ids = set(folds.ids("test"))
    for k in range(folds.n_folds):
        val_ids = {int(r["image_id"]) for r in rows_of(files[f"fold_{k}/val.csv"])}
        train_ids = {int(r["image_id"]) for r in rows_of(files[f"fold_{k}/train.csv"])}
        aug = rows_of(files[f"fold_{k}/train_augmented.csv"])
        sources = {int(r["source_image_id"]) for r in aug}
        assert sources == train_ids
        assert not sources & (val_ids | test_ids)
        assert len(aug) == 2 * len(train_ids)
        assert all(r["image"].startswith("data/augmented/v/images/") for r in aug)
        mmseg = files[f"mmseg/splits/fold_{k}_train_augmented.txt"].decode().split()
        val_stems = {f"b{(i - 10) // 2}/{i - 10}" for i in val_ids}
        assert not any(s.endswith(tuple(f"/{v}__c0" for v in val_stems)) for s in mmseg)


def test_build_exports_is_deterministic() -> None:
    coco, folds, manifests = crafted()
    assert exports_of(coco, folds, "img", manifests) == exports_of(coco, folds, "img", manifests)


def test_train_json_only_on_request_and_streamed_equals_memory(tmp_path: Path) -> None:
    """By default each image is in one val.json (1x the dataset, not 5x); the stage streams
    the same bytes coco_files builds in memory."""
    coco, folds, _ = crafted()
    assert set(coco_parts(folds, False)) == {"fold_0/val.json", "fold_1/val.json", "test.json"}
    assert "fold_0/train.json" in coco_parts(folds, True)
    data = (json.dumps(coco, ensure_ascii=False) + "\n").encode()  # the canonical format
    for coco_json in (False, True):
        out = tmp_path / str(coco_json)
        write_coco_files(data, coco_parts(folds, coco_json), out)
        written = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.json")}
        assert written == coco_files(coco, folds, coco_json)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([], "no image"),
        ([{"image_id": "1", "file_name": "a.jpg", "group": "g"}], "missing columns"),
        ([{"image_id": "x", "file_name": "a.jpg", "group": "g", "fold": "0"}], "not an integer"),
        (
            [
                {"image_id": "1", "file_name": "a.jpg", "group": "g", "fold": "0"},
                {"image_id": "1", "file_name": "b.jpg", "group": "g", "fold": "1"},
            ],
            "listed twice",
        ),
        ([{"image_id": "1", "file_name": "a.jpg", "group": "g", "fold": "val"}], "integer or"),
        (
            [
                {"image_id": "1", "file_name": "a.jpg", "group": "g", "fold": "0"},
                {"image_id": "2", "file_name": "b.jpg", "group": "g", "fold": "2"},
            ],
            "0..k-1",
        ),
        ([{"image_id": "1", "file_name": "../a.jpg", "group": "g", "fold": "0"}], "climbs out"),
    ],
)
def test_parse_folds_errors(rows: list[dict[str, str]], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        parse_folds(rows, "folds.csv")


def test_manifest_errors(tmp_path: Path) -> None:
    def manifest(text: str) -> None:
        (tmp_path / "v").mkdir(exist_ok=True)
        (tmp_path / "v" / "manifest.csv").write_text(text)

    manifest("source_image_id,image,mask\n9,images/a.png,masks/a.png\n")
    with pytest.raises(DatasetError, match="not in the folds table"):
        load_manifests(["v"], {1}, tmp_path)
    manifest("source_image_id,image,mask\n1,../../x.png,masks/a.png\n")
    with pytest.raises(DatasetError, match="climbs out"):
        load_manifests(["v"], {1}, tmp_path)
    manifest("source_image_id\n1\n")
    with pytest.raises(DatasetError, match="missing columns"):
        load_manifests(["v"], {1}, tmp_path)
    with pytest.raises(DatasetError, match="absent/manifest.csv"):
        load_manifests(["absent"], {1}, tmp_path)


def test_folds_and_json_must_agree() -> None:
    coco, folds, _ = crafted()
    coco["images"] = coco["images"][:-1]
    with pytest.raises(DatasetError, match="disagree"):
        exports_of(coco, folds, "img")


def test_write_tree_is_atomic_and_prunes(tmp_path: Path) -> None:
    out = tmp_path / "exports"
    write_tree(out, {"fold_0/a.csv": b"1\n", "fold_9/old.csv": b"x\n", "top.json": b"{}\n"})
    write_tree(out, {"fold_0/a.csv": b"2\n", "top.json": b"{}\n"})
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "fold_0",
        "fold_0/a.csv",
        "top.json",
    ]
    assert (out / "fold_0/a.csv").read_bytes() == b"2\n"
    assert not list(out.rglob(".*.tmp"))


# ---------------------------------------------------------------- real stages


def check_coco_part(exports: Path, rel: str, canonical: dict[str, Any]) -> list[int]:
    """A part's COCO json holds its images and their annotations as the canonical json does
    (with the class table's categories: ``export.coco_classes: mapped``, the default)."""
    coco = json.loads((exports / rel).read_text())
    canonical = map_coco(canonical, json.loads((exports / "classes.json").read_text()))
    by_id = {im["id"]: im for im in canonical["images"]}
    ids = [im["id"] for im in coco["images"]]
    assert all(by_id[i] == im for i, im in zip(ids, coco["images"], strict=True))
    assert coco["categories"] == canonical["categories"] and coco["info"] == canonical["info"]
    assert coco["annotations"] == [a for a in canonical["annotations"] if a["image_id"] in set(ids)]
    return ids


def test_stage_outputs_on_real_pipeline(project: Path, tmp_path: Path) -> None:
    exports = project / "data" / "exports"
    meta = json.loads((exports / "exports.json").read_text())
    assert meta["n_folds"] == 3 and meta["test"] > 0 and meta["variants"] == ["flip"]
    assert meta["coco"] == ["fold_0/val.json", "fold_1/val.json", "fold_2/val.json", "test.json"]
    assert meta["coco_classes"] == "mapped"
    rows = read_class_distribution(exports / "class_distribution.csv")
    assert {(r.fold, r.part) for r in rows} == {
        *((str(k), p) for k in range(3) for p in ("train", "val")),
        ("test", "test"),
    }
    assert (exports / "folds.csv").read_bytes() == (
        project / "data" / "splits" / "folds.csv"
    ).read_bytes()
    canonical = json.loads((project / "data" / "interim" / "annotations.json").read_text())
    seen: list[int] = []
    for k in range(3):
        assert not (exports / f"fold_{k}" / "train.json").exists()  # export.coco_json: false
        for part in ("train", "val"):
            rows = export_rows(exports / f"fold_{k}" / f"{part}.csv")
            ids = [int(r["image_id"]) for r in rows]
            if part == "val":
                assert check_coco_part(exports, f"fold_{k}/val.json", canonical) == ids
                seen.extend(ids)
            for r in rows:
                assert (project / r["image"]).is_file() and (project / r["mask"]).is_file()
            stems = (exports / "mmseg" / "splits" / f"fold_{k}_{part}.txt").read_text().split()
            assert stems == [r["file_name"].rsplit(".", 1)[0] for r in rows]
    test_ids = check_coco_part(exports, "test.json", canonical)
    assert sorted(seen + test_ids) == sorted(im["id"] for im in canonical["images"])
    # With export.coco_json, each fold also gets its train.json: the images of its train.csv.
    copy = shutil.copytree(project, tmp_path / "copy")
    params = yaml.safe_load((copy / "params.yaml").read_text())
    export.run(parse_params(params | {"export": {"coco_json": True}}), copy)
    for k in range(3):
        ids = check_coco_part(copy / "data/exports", f"fold_{k}/train.json", canonical)
        csv_ids = [int(r["image_id"]) for r in export_rows(exports / f"fold_{k}" / "train.csv")]
        assert ids == csv_ids


def export_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_no_variant_of_a_validation_image_in_training_real(project: Path) -> None:
    """With the real augment stage's output (variants of every image, test ones included)."""
    exports = project / "data" / "exports"
    manifest = export_rows(project / "data" / "augmented" / "flip" / "manifest.csv")
    all_sources = {int(r["source_image_id"]) for r in manifest}
    test_ids = {int(r["image_id"]) for r in export_rows(exports / "test.csv")}
    assert test_ids and test_ids <= all_sources  # the leak would be possible: variants exist
    for k in range(3):
        val_ids = {int(r["image_id"]) for r in export_rows(exports / f"fold_{k}" / "val.csv")}
        train_ids = {int(r["image_id"]) for r in export_rows(exports / f"fold_{k}" / "train.csv")}
        assert val_ids <= all_sources
        aug = export_rows(exports / f"fold_{k}" / "train_augmented.csv")
        sources = {int(r["source_image_id"]) for r in aug}
        assert sources == train_ids
        assert not sources & val_ids and not sources & test_ids
        assert len(aug) == sum(int(r["source_image_id"]) in train_ids for r in manifest)
        for r in aug:
            assert (project / r["image"]).is_file() and (project / r["mask"]).is_file()
        # the mmseg list used for augmented training names no val/test image or variant
        val_stems = {
            r["file_name"].rsplit(".", 1)[0] for r in export_rows(exports / f"fold_{k}" / "val.csv")
        }
        listed = (exports / "mmseg" / "splits" / f"fold_{k}_train_augmented.txt").read_text()
        for line in listed.split():
            base = (
                line.split("/images/", 1)[1].rsplit("__c", 1)[0]
                if line.startswith("_augmented/")
                else line
            )
            assert base not in val_stems


def test_stage_rerun_is_byte_identical(project: Path, tmp_path: Path) -> None:
    exports = project / "data" / "exports"
    before = {p.relative_to(exports): p.read_bytes() for p in exports.rglob("*") if p.is_file()}
    done = run_cli([python_exe(), "-m", "pipeline", "export"], cwd=project)
    assert "export:" in done.stdout
    after = {p.relative_to(exports): p.read_bytes() for p in exports.rglob("*") if p.is_file()}
    assert before == after


def test_stage_missing_manifest_is_a_clear_error(project: Path) -> None:
    exports = project / "data" / "exports"
    before = {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()}
    index = project / "data" / "augmented" / "variants.json"
    saved = index.read_bytes()
    index.write_text(json.dumps({"variants": ["absent", "flip"]}))  # listed, never built
    try:
        with pytest.raises(DatasetError, match="absent/manifest.csv"):
            export.run(load_params(project / "params.yaml"), project)
    finally:
        index.write_bytes(saved)
    assert {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------- one class table for every trainer


def merged_classes() -> tuple[dict[str, Any], dict[str, Any]]:
    """The crafted json with four categories (7, 8 merged into "metal", 9 ignored, 10 dropped)
    and the class table the masks stage writes for it."""
    coco, _, _ = crafted()
    coco["categories"] = [
        {"id": 7, "name": "can", "supercategory": "metal"},
        {"id": 8, "name": "lid", "supercategory": "metal"},
        {"id": 9, "name": "cap", "supercategory": "plastic"},
        {"id": 10, "name": "bag", "supercategory": "plastic"},
    ]
    for i, ann in enumerate(coco["annotations"]):
        ann["category_id"] = 7 + i % 4
    coco["annotations"][0]["attributes"] = {"category_id": 99}  # a nested key of that name
    classes_doc = {
        "background": 0,
        "ignore": 255,
        "classes": [
            {"index": 0, "name": "background", "color": [0, 0, 0], "category_ids": []},
            {"index": 1, "name": "metal", "color": [128, 0, 0], "category_ids": [7, 8]},
        ],
        "ignored_category_ids": [9],
        "dropped_category_ids": [10],
        "palette": [[0, 0, 0]] * 256,
    }
    return coco, classes_doc


def test_mapped_coco_has_the_class_tables_categories() -> None:
    coco, classes_doc = merged_classes()
    assert mapped_categories(coco["categories"], classes_doc) == [
        {"id": 1, "name": "metal", "supercategory": "metal", "original_category_ids": [7, 8]}
    ]
    mapped = map_coco(coco, classes_doc)
    assert [a["id"] for a in mapped["annotations"]] == [
        a["id"] for a in coco["annotations"] if a["category_id"] in (7, 8)
    ]
    assert {a["category_id"] for a in mapped["annotations"]} == {1}
    assert mapped["annotations"][0]["attributes"] == {"category_id": 99}  # left as it was
    assert coco["annotations"][0]["category_id"] == 7  # the input is untouched
    classes_doc["classes"][1]["category_ids"] = [7]  # 8 is in no class: an error
    with pytest.raises(DatasetError, match="category 8 is not in the class table"):
        map_coco(coco, classes_doc)


def test_mapped_coco_streamed_equals_memory_and_original_is_unchanged(tmp_path: Path) -> None:
    coco, classes_doc = merged_classes()
    _, folds, _ = crafted()
    data = (json.dumps(coco, ensure_ascii=False) + "\n").encode()
    for mapped in (True, False):
        out = tmp_path / str(mapped)
        doc = classes_doc if mapped else None
        write_coco_files(data, coco_parts(folds, True), out, doc)
        written = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*.json")}
        assert written == coco_files(coco, folds, True, doc)
    original = json.loads((tmp_path / "False" / "fold_0" / "train.json").read_bytes())
    assert original == subset_coco(coco, folds.train_ids(0))


def test_mapped_coco_loads_in_pycocotools(tmp_path: Path) -> None:
    """An instance-segmentation loader sees the merged categories and the mapped ids."""
    from pycocotools.coco import COCO

    coco, classes_doc = merged_classes()
    _, folds, _ = crafted()
    data = (json.dumps(coco, ensure_ascii=False) + "\n").encode()
    write_coco_files(data, coco_parts(folds, True), tmp_path, classes_doc)
    loaded = COCO(str(tmp_path / "fold_0" / "train.json"))
    assert loaded.loadCats(loaded.getCatIds()) == mapped_categories(coco["categories"], classes_doc)
    anns = loaded.loadAnns(loaded.getAnnIds())
    assert anns and {a["category_id"] for a in anns} == {1}
    assert loaded.annToMask(anns[0]).shape == (3, 4)


def test_the_stage_writes_original_categories_on_request(project: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(project, tmp_path / "copy")
    params = yaml.safe_load((copy / "params.yaml").read_text())
    export.run(parse_params(params | {"export": {"coco_classes": "original"}}), copy)
    canonical = json.loads((copy / "data" / "interim" / "annotations.json").read_text())
    val = json.loads((copy / "data" / "exports" / "fold_0" / "val.json").read_text())
    assert val["categories"] == canonical["categories"]
    ids = {im["id"] for im in val["images"]}
    assert val["annotations"] == [a for a in canonical["annotations"] if a["image_id"] in ids]
    meta = json.loads((copy / "data" / "exports" / "exports.json").read_text())
    assert meta["coco_classes"] == "original"


# ---------------------------------------------------------------- fast paths, same text


# Names that look hostile but pass check_relative: dots everywhere, spaces, quotes, commas,
# non-ASCII, a folder named like the mmseg prefix, upper-case suffixes.
HOSTILE_NAMES = [
    "a b/c,d.jpg",
    ".hidden",
    "x.",
    "x..jpg",
    "...",
    "..a/b",
    "é/日本 語.png",
    "q\"uote's.jpg",
    "#1.JPG",
    "a.b.c",
    "_augmented2/x.jpg",
    "dir.with.dots/file",
    "trailing space .jpg",
    "%20/%2e%2e.jpg",
    "a/b/c/d/e/f.tar.gz",
    "\u00a0nbsp.jpg",
]
ROOTS = ["", ".", "./", "images", "images/", "./data//images/", "/abs/x", "/abs/x/", "//host/x",
         "///three", "C:\\data\\imgs", "../up", "a/./b", "/", "~user/imgs"]  # fmt: skip
COMPONENT = st.lists(st.sampled_from([*"ab.é _-#,'\"%日", "..", "\u00a0", "/"]), max_size=6).map(
    "".join
)


def check_paths(name: str, root: str) -> None:
    """Every fast path equals the pathlib version it stands for."""
    assert export.fast_mask_path(name) == mask_path(name)
    assert export.fast_image_path(root, name) == image_path(root, name)
    assert export.fast_augmented_path("flip", name) == augmented_path("flip", name)
    assert export.fast_augmented_path(name, "m/x.png") == augmented_path(name, "m/x.png")
    assert export._suffix(name) == PurePosixPath(name).suffix


@pytest.mark.parametrize("root", ROOTS)
def test_hostile_names_take_the_fast_path_and_equal_pathlib(root: str) -> None:
    for name in HOSTILE_NAMES:
        clean = check_relative(name, file="t", item="t")
        assert export._plain(clean) and clean == name  # the string path, not the fallback
        check_paths(name, root)
        assert export._top(name) == PurePosixPath(name).parts[0]


@settings(max_examples=400, deadline=None)
@given(st.lists(COMPONENT, min_size=1, max_size=4).map("/".join), st.sampled_from(ROOTS))
def test_paths_equal_pathlib_for_any_name(name: str, root: str) -> None:
    """Any text (empty and ``.`` components, leading or doubled slashes: the pathlib fallback)
    and every name check_relative lets through (the string path)."""
    check_paths(name, root)
    with contextlib.suppress(DatasetError):
        clean = check_relative(name, file="t", item="t")
        check_paths(clean, root)
        assert export._plain(clean)
        assert export._top(clean) == PurePosixPath(clean).parts[0]


# ---------------------------------------------------------------- category ids, block by block

INDEX = {1: 1, 2: 1, 3: 2, -4: 3, 7: IGNORE, 8: IGNORE}  # 2 merged into 1; 7, 8 left out
ANNOTATION = st.fixed_dictionaries(
    {
        "id": st.integers(0, 10**6),
        "image_id": st.integers(0, 50),
        "category_id": st.sampled_from([1, 2, 3, -4, 7, 8]),
        "segmentation": st.lists(st.floats(0, 500, allow_nan=False), max_size=6),
    },
    optional={
        "note": st.sampled_from(['"category_id": 3,', 'x\\"category_id\\": 1}', "é, }"]),
        "attributes": st.fixed_dictionaries({"category_id": st.sampled_from([1, 99, "x"])}),
        'a"category_id': st.sampled_from([2, 5]),
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ANNOTATION, st.randoms()), max_size=12))
def test_mapped_block_equals_the_item_by_item_rewrite(drawn: list) -> None:  # noqa: ANN001
    """Nested or escaped ``category_id`` keys, the key last, negative ids, ignored classes:
    the block gives the bytes of :func:`_mapped_annotation` applied item by item."""
    items = []
    for annotation, rng in drawn:
        keys = list(annotation)
        rng.shuffle(keys)  # the key anywhere, last included
        items.append(json.dumps({k: annotation[k] for k in keys}, ensure_ascii=False).encode())
    texts = [export._mapped_annotation(i.decode(), INDEX) for i in items]
    expected = ", ".join(t for t in texts if t is not None).encode()
    assert export._mapped_block(items, INDEX) == expected


def test_plain_annotations_take_the_block_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual block (one key each, ignored classes among them) never goes item by item."""
    items = [json.dumps({"id": i, "category_id": c, "area": 1.5}).encode() for i, c in
             enumerate([1, 7, 2, -4, 3, 8])]  # fmt: skip
    expected = export._mapped_items(items, INDEX)

    def item_by_item(*args: Any) -> bytes:
        raise AssertionError("the block went item by item")

    monkeypatch.setattr(export, "_mapped_items", item_by_item)
    assert export._mapped_block(items, INDEX) == expected
    assert expected.count(b"category_id") == 4  # 7 and 8 left out


def test_mapped_block_names_an_unknown_category() -> None:
    items = [json.dumps({"id": 1, "category_id": c}).encode() for c in (1, 42)]
    with pytest.raises(DatasetError, match="category 42 is not in the class table"):
        export._mapped_block(items, INDEX)


# ---------------------------------------------------------------- written only when changed


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
@pytest.mark.parametrize(
    "old, new",
    [
        ("same é text", "same é text"),
        ("same é text", "same é texT"),  # differs in the last chunk
        ("Xame é text", "same é text"),  # in the first
        ("same é text and more", "same é text"),  # the old file is longer
        ("same é", "same é text"),  # shorter
        (None, "new"),  # no file yet
        ("", ""),
    ],
)
def test_kept_if_same_writes_only_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, old: str | None, new: str
) -> None:
    monkeypatch.setattr(export, "_CHUNK", chunk)  # chunk edges inside a character too
    path = tmp_path / "f.json"
    if old is not None:
        path.write_text(old, encoding="utf-8")
        os.utime(path, ns=(1, 1))
    with contextlib.ExitStack() as stack:
        out = export._KeptIfSame(path, stack)
        for piece in new:
            out.write(piece.encode("utf-8"))
        changed = out.close()
    assert path.read_text(encoding="utf-8") == new
    assert changed == (old != new)
    assert (path.stat().st_mtime_ns == 1) == (old == new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]  # no temp file left


def test_an_interrupted_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "val.json"
    path.write_bytes(b"old bytes")
    with pytest.raises(RuntimeError), contextlib.ExitStack() as stack:
        out = export._KeptIfSame(path, stack)
        out.write(b"new bytes, half of them")
        out.close()
        raise RuntimeError("killed before the rename")
    assert path.read_bytes() == b"old bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val.json"]


# ---------------------------------------------------------------- the stage, in proportion


def tree_state(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Each file's bytes, inode and mtime."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            out[path.relative_to(folder).as_posix()] = (
                path.read_bytes(),
                stat.st_ino,
                stat.st_mtime_ns,
            )
    return out


def clean_export(repo: Path, params: Params) -> dict[str, bytes]:
    """What a fresh export of ``repo`` writes (in a copy without exports)."""
    copy = repo.parent / f"{repo.name}-clean"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns("exports"))
    export.run(params, copy)
    return {k: v[0] for k, v in tree_state(copy / "data" / "exports").items()}


def test_rerun_rewrites_only_what_changed_and_removes_stale_files(
    project: Path, tmp_path: Path
) -> None:
    repo = shutil.copytree(project, tmp_path / "repo")
    exports = repo / "data" / "exports"
    params = load_params(repo / "params.yaml")
    before = tree_state(exports)
    # A fold no longer produced (the split had four folds) and a stray file of an old run.
    for stale in ("fold_3/val.csv", "fold_3/val.json", "mmseg/splits/fold_3_train.txt"):
        (exports / stale).parent.mkdir(parents=True, exist_ok=True)
        (exports / stale).write_bytes(b"stale")
    summary = export.run(params, repo)
    assert f"{len(before)} unchanged, 3 removed" in summary
    assert tree_state(exports) == before  # same bytes, same inodes and mtimes
    assert not (exports / "fold_3").exists()
    # Another COCO flavour changes the COCO files and exports.json, nothing else.
    original = parse_params(yaml.safe_load((repo / "params.yaml").read_text())
                            | {"export": {"coco_classes": "original"}})  # fmt: skip
    export.run(original, repo)
    after = tree_state(exports)
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {k for k in before if k.endswith(".json") and k != "classes.json"}
    assert {k: v[0] for k, v in after.items()} == clean_export(repo, original)


def test_export_of_a_grown_set_equals_a_clean_export(project: Path, tmp_path: Path) -> None:
    """The sample grown by 25% (the first 24 images as they were, 6 new ones in two new
    batch folders), every stage re-run over the previous outputs: the exports equal a
    fresh export byte for byte, and a file whose bytes did not change was not rewritten."""
    from pipeline.tools.sample import generate

    repo = shutil.copytree(project, tmp_path / "repo")
    exports = repo / "data" / "exports"
    before = tree_state(exports)
    shutil.rmtree(repo / "data" / "sample")
    generate(repo / "data" / "sample", n_images=30, n_batches=10, seed=3)  # 3 per batch, as before
    run_stages(repo)
    after = tree_state(exports)
    params = load_params(repo / "params.yaml")
    assert {k: v[0] for k, v in after.items()} == clean_export(repo, params)
    meta = json.loads(after["exports.json"][0])
    assert meta["n_images"] == 30
    kept = [k for k in after if k in before and after[k][0] == before[k][0]]
    assert "classes.json" in kept
    assert all(after[k][1:] == before[k][1:] for k in kept)  # same inode and mtime
    assert all(after[k][1:] != before[k][1:] for k in after if k not in kept and k in before)
