"""The augment stage: manifest contract, mask classes, any dtype/layout from disk, clear errors
with nothing half-written, byte-identical results for any worker count, and a real ``dvc repro``
where editing one variant re-runs only that variant."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.augmenting.transforms import apply_chain, rng_for
from pipeline.files.classes import make_palette
from pipeline.files.contracts import (
    CANONICAL_PATH,
    CLASSES_PATH,
    MASKS_DIR,
    read_manifest,
    read_mask,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_bytes
from pipeline.files.images import normalise_image
from pipeline.files.params import Params, load_params, parse_params
from pipeline.files.pngio import encode_indexed_png
from pipeline.stages import augment, masks, validate
from pipeline.tools.sample import generate
from tests.conftest import copy_repo, run_cli

GEOMETRIC = [
    {"name": "rotate_scale", "angle": [-15, 15], "scale": [0.9, 1.1]},
    {"name": "elastic", "alpha": [20, 40], "sigma": 5, "p": 0.5},
    {"name": "brightness_contrast", "brightness": [-0.1, 0.1], "contrast": [0.8, 1.2]},
    {"name": "clahe", "clip_limit": 2.0, "tile_grid_size": 4, "p": 0.5},
]


def make_params(
    images: Path | str, variants: dict[str, Any], on_error: str = "fail", workers: int = 1
) -> Params:
    return parse_params(
        {
            "workers": workers,
            "dataset": {"annotations": "data/sample/annotations.json", "images": str(images)},
            "augment": {"on_error": on_error, "variants": variants},
        }
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-image sample after the real validate and masks stages (read-only for tests)."""
    root = tmp_path_factory.mktemp("prepared")
    generate(root / "data" / "sample", n_images=12, n_batches=3, seed=11)
    params = make_params("data/sample/images", {})
    validate.run(params, root)
    masks.run(params, root)
    return root


def link_inputs(prepared: Path, root: Path) -> None:
    """``root`` sees prepared's canonical json, masks and class table (as symlinks)."""
    for rel in (CANONICAL_PATH, CLASSES_PATH, MASKS_DIR):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (root / rel).exists():
            (root / rel).symlink_to(prepared / rel)


def run_variant(
    prepared: Path, root: Path, variants: dict[str, Any], name: str, **kwargs: Any
) -> Path:
    """Build variant ``name`` under ``root`` from prepared's inputs; its folder."""
    link_inputs(prepared, root)
    params = make_params(prepared / "data/sample/images", variants, **kwargs)
    augment.run(params, root, name)
    return root / "data/augmented" / name


def written(variant_dir: Path) -> int:
    return len(read_rows(variant_dir / "manifest.csv")[1])


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


# ---------------------------------------------------------------- contract


def test_manifest_contract_and_mask_classes(prepared: Path, tmp_path: Path) -> None:
    variants = {"geo": {"seed": 3, "copies": 2, "transforms": GEOMETRIC}}
    root = run_variant(prepared, tmp_path, variants, "geo")
    assert written(root) == 24 and read_rows(root / "skipped.csv")[1] == []
    assert sorted(p.name for p in root.parent.iterdir()) == ["geo"]  # no temp folder left

    header, rows = read_rows(root / "manifest.csv")
    assert header == ["source_image_id", "image", "mask", "variant", "seed", "copy"]
    assert (root / "skipped.csv").read_text() == "file,image_id,reason\n"
    coco = json.loads((prepared / CANONICAL_PATH).read_text())
    by_id = {im["id"]: im for im in coco["images"]}
    keys = [(int(r["source_image_id"]), int(r["copy"])) for r in rows]
    assert keys == sorted((i, c) for i in by_id for c in range(2))

    palette = make_palette()
    listed = set()
    for row in rows:
        assert row["variant"] == "geo" and row["seed"] == "3"
        stem = Path(by_id[int(row["source_image_id"])]["file_name"]).with_suffix("")
        assert row["image"] == f"images/{stem}__c{row['copy']}.png"
        assert row["mask"] == f"masks/{stem}__c{row['copy']}.png"
        listed |= {row["image"], row["mask"]}
        image = cv2.imread(str(root / row["image"]), cv2.IMREAD_UNCHANGED)
        mask = read_mask(root / row["mask"])
        source = read_mask(prepared / "data/masks" / f"{stem}.png")
        assert image.shape[:2] == mask.shape == source.shape
        assert set(np.unique(mask)) <= set(np.unique(source)) | {255}
        with Image.open(root / row["mask"]) as pil:
            assert pil.mode == "P"
            assert np.array_equal(np.array(pil.getpalette()).reshape(-1, 3)[:256], palette)
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*.png")}
    assert on_disk == listed  # nothing written that the manifest does not list


def test_manifest_rows_each_belong_to_one_source_image(prepared: Path, tmp_path: Path) -> None:
    """The leak-free contract: filtering rows by a fold's train ids keeps train files only."""
    variants = {"v": {"seed": 1, "copies": 3, "transforms": [{"name": "hflip", "p": 0.5}]}}
    folder = run_variant(prepared, tmp_path, variants, "v")
    rows = [r._asdict() for r in read_manifest(folder / "manifest.csv", "v")]
    coco = json.loads((prepared / CANONICAL_PATH).read_text())
    id_of_stem = {str(Path(im["file_name"]).with_suffix("")): im["id"] for im in coco["images"]}
    paths = [row[key] for row in rows for key in ("image", "mask")]
    assert len(paths) == len(set(paths))  # no file shared between rows
    for row in rows:
        for key in ("image", "mask"):
            stem = row[key].split("/", 1)[1].rsplit("__c", 1)[0]
            assert id_of_stem[stem] == row["source_image_id"]
    ids = sorted(id_of_stem.values())
    for fold in range(3):
        val = set(ids[fold::3])
        train_rows = [r for r in rows if r["source_image_id"] not in val]
        assert not {r["source_image_id"] for r in train_rows} & val
        assert len(train_rows) == 3 * (len(ids) - len(val))


def test_symlinked_inputs_are_read(tmp_path: Path) -> None:
    """DVC's symlink cache makes inputs links to files elsewhere: reading them is fine."""
    _write_dataset(tmp_path, {"a.png": np.full((8, 8, 3), 7, np.uint8)})
    elsewhere = tmp_path / "cache"
    elsewhere.mkdir()
    for path in (tmp_path / "images/a.png", tmp_path / "data/masks/a.png"):
        target = elsewhere / path.parent.name
        shutil.move(path, target)
        path.symlink_to(target)
    folder = _run_dataset(tmp_path, {"v": {"seed": 1, "transforms": []}}, "v")
    assert written(folder) == 1
    image = cv2.imread(str(folder / "images/a__c0.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(image, np.full((8, 8, 3), 7, np.uint8))  # read through the links


def test_output_is_the_chain_applied_with_rng_for(prepared: Path, tmp_path: Path) -> None:
    """A manifest row is enough to redo its item: rng_for(seed, variant, id, copy)."""
    variants = {"v": {"seed": 9, "copies": 1, "transforms": GEOMETRIC}}
    folder = run_variant(prepared, tmp_path, variants, "v")
    _, rows = read_rows(folder / "manifest.csv")
    coco = json.loads((prepared / CANONICAL_PATH).read_text())
    image_info = next(im for im in coco["images"] if im["id"] == int(rows[0]["source_image_id"]))
    image = cv2.imread(
        str(prepared / "data/sample/images" / image_info["file_name"]), cv2.IMREAD_UNCHANGED
    )
    source = read_mask(prepared / "data/masks" / Path(image_info["file_name"]).with_suffix(".png"))
    want_image, want_mask = apply_chain(
        image, source, GEOMETRIC, rng_for(9, "v", image_info["id"], 0)
    )
    assert np.array_equal(
        cv2.imread(str(folder / rows[0]["image"]), cv2.IMREAD_UNCHANGED), want_image
    )
    assert np.array_equal(read_mask(folder / rows[0]["mask"]), want_mask)


def test_one_and_two_workers_byte_identical(prepared: Path, tmp_path: Path) -> None:
    variants = {"geo": {"seed": 2, "copies": 2, "transforms": GEOMETRIC}}
    one_dir = run_variant(prepared, tmp_path / "w1", variants, "geo", workers=1)
    two_dir = run_variant(prepared, tmp_path / "w2", variants, "geo", workers=2)
    run_variant(prepared, tmp_path / "w2", variants, "geo", workers=2)  # rebuild replaces
    one, two = tree_digest(one_dir), tree_digest(two_dir)
    assert one == two and len(one) == 12 * 2 * 2 + 2
    assert sorted(p.name for p in two_dir.parent.iterdir()) == ["geo"]
    other = {"geo": {"seed": 3, "copies": 2, "transforms": GEOMETRIC}}
    assert tree_digest(run_variant(prepared, tmp_path / "w3", other, "geo")) != one  # seed


# ---------------------------------------------------------------- dtypes and layouts from disk


def _write_dataset(root: Path, images: dict[str, np.ndarray]) -> dict[str, Any]:
    """A canonical-annotations + masks + classes.json trio around the given image files."""
    coco: dict[str, Any] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    palette = make_palette()
    for index, (file_name, image) in enumerate(sorted(images.items())):
        h, w = image.shape[:2]
        ext = Path(file_name).suffix
        ok, buf = cv2.imencode(ext, image)
        assert ok, file_name
        (root / "images" / file_name).parent.mkdir(parents=True, exist_ok=True)
        (root / "images" / file_name).write_bytes(buf.tobytes())
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 : h // 2, w // 4 : w // 2] = 1
        mask[h // 2 :, w // 2 :] = 2
        mask[:3, :3] = 255
        mask_file = root / MASKS_DIR / Path(file_name).with_suffix(".png")
        atomic_write_bytes(mask_file, encode_indexed_png(mask, palette))
        coco["images"].append({"id": 10 + index, "file_name": file_name, "width": w, "height": h})
    (root / CANONICAL_PATH).parent.mkdir(parents=True, exist_ok=True)
    (root / CANONICAL_PATH).write_text(json.dumps(coco))
    classes = [
        {"index": i, "name": n, "color": [int(c) for c in palette[i]], "category_ids": []}
        for i, n in enumerate(["background", "a", "b"])
    ]
    (root / CLASSES_PATH).write_text(json.dumps({"classes": classes, "palette": palette.tolist()}))
    return coco


def _run_dataset(root: Path, variants: dict[str, Any], name: str, **kwargs: Any) -> Path:
    augment.run(make_params(root / "images", variants, **kwargs), root, name)
    return root / "data/augmented" / name


def _layouts() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (40, 56, 4), dtype=np.uint8)
    u16 = rng.integers(0, 65536, (40, 56, 4), dtype=np.uint16)
    return {
        "bgr8.png": u8[:, :, :3].copy(),
        "bgr16.png": u16[:, :, :3].copy(),
        "gray8.png": u8[:, :, 0].copy(),
        "gray16.png": u16[:, :, 0].copy(),
        "bgra8.png": u8,
        "bgra16.png": u16,
        "sub/photo.jpg": u8[:, :, :3].copy(),
        "tiff16.tif": u16[:, :, 1].copy(),
    }


def test_every_dtype_and_layout_from_disk(tmp_path: Path) -> None:
    images = _layouts()
    _write_dataset(tmp_path, images)
    chain = [
        {"name": "clahe", "clip_limit": 3.0, "tile_grid_size": 4},
        *GEOMETRIC,
        {"name": "fog", "intensity": 0.2},
        {"name": "hflip"},
    ]
    folder = _run_dataset(tmp_path, {"all": {"seed": 1, "transforms": chain}}, "all")
    assert written(folder) == len(images) and read_rows(folder / "skipped.csv")[1] == []
    for file_name, source in images.items():
        stem = Path(file_name).with_suffix("")
        out = cv2.imread(str(folder / "images" / f"{stem}__c0.png"), cv2.IMREAD_UNCHANGED)
        assert out.dtype == source.dtype and out.shape == source.shape, file_name
        assert not np.array_equal(out, source)
        mask = read_mask(folder / "masks" / f"{stem}__c0.png")
        assert set(np.unique(mask)) <= {0, 1, 2, 255}

    jpg = _run_dataset(tmp_path, {"j": {"seed": 1, "format": "jpg", "transforms": chain}}, "j")
    assert written(jpg) == len(images)
    for file_name, source in images.items():
        stem = Path(file_name).with_suffix("")
        out = cv2.imread(str(jpg / "images" / f"{stem}__c0.jpg"), cv2.IMREAD_UNCHANGED)
        assert out.dtype == np.uint8 and out.shape[:2] == source.shape[:2]
        assert out.ndim == 2 if source.ndim == 2 else out.shape[2] == 3


def test_normalise_image_rule() -> None:
    assert normalise_image(np.ones((2, 3), bool)).max() == 255
    signed = normalise_image(np.array([[-5, 70000]], np.int32))
    assert signed.dtype == np.uint16 and signed.tolist() == [[0, 65535]]
    floats = normalise_image(np.array([[np.nan, 2.0, 0.25]], np.float64))
    assert floats.dtype == np.float32 and floats.tolist() == [[0.0, 1.0, 0.25]]
    assert normalise_image(np.zeros((2, 3, 2), np.uint8)).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="layout"):
        normalise_image(np.zeros((2, 3, 5), np.uint8))
    stored = augment.storable_image(np.array([[0.0, 1.0]], np.float32), "png")
    assert stored.dtype == np.uint16 and stored.tolist() == [[0, 65535]]


# ---------------------------------------------------------------- errors leave nothing behind


def test_corrupt_image_fails_naming_file_and_keeps_old_variant(tmp_path: Path) -> None:
    images = _layouts()
    coco = _write_dataset(tmp_path, images)
    ids = {im["file_name"]: im["id"] for im in coco["images"]}
    variants = {"v": {"seed": 1, "transforms": [{"name": "vflip"}]}}
    out = _run_dataset(tmp_path, variants, "v").parent
    before = tree_digest(out / "v")
    (tmp_path / "images/gray8.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DatasetError) as info:
        _run_dataset(tmp_path, variants, "v", workers=2)
    assert "gray8.png" in str(info.value) and "unreadable" in str(info.value)
    assert sorted(p.name for p in out.iterdir()) == ["v"]  # no temp folder
    assert tree_digest(out / "v") == before  # the old variant is untouched

    (tmp_path / "images/bgr8.png").unlink()
    _run_dataset(tmp_path, variants, "v", on_error="skip")
    _, skipped = read_rows(out / "v/skipped.csv")
    assert [(Path(r["file"]).name, r["reason"].split(":")[0]) for r in skipped] == [
        ("bgr8.png", "missing"),
        ("gray8.png", "unreadable"),
    ]
    assert [int(r["image_id"]) for r in skipped] == [ids["bgr8.png"], ids["gray8.png"]]
    _, rows = read_rows(out / "v/manifest.csv")
    assert {int(r["source_image_id"]) for r in rows} == set(ids.values()) - {
        ids["bgr8.png"],
        ids["gray8.png"],
    }
    assert written(out / "v") == len(images) - 2
    assert not list((out / "v/images").glob("gray8*"))


def test_size_mismatch_and_missing_mask(tmp_path: Path) -> None:
    _write_dataset(tmp_path, {"a.png": np.zeros((20, 30, 3), np.uint8)})
    cv2.imwrite(str(tmp_path / "images/a.png"), np.zeros((30, 20, 3), np.uint8))
    variants = {"v": {"seed": 1, "transforms": []}}
    with pytest.raises(DatasetError, match=r"a\.png.*image is 20x30 but its mask is 30x20"):
        _run_dataset(tmp_path, variants, "v")
    (tmp_path / MASKS_DIR / "a.png").unlink()
    with pytest.raises(DatasetError, match="mask not found; run `dvc repro masks`"):
        _run_dataset(tmp_path, variants, "v", on_error="skip")
    assert list((tmp_path / "data/augmented").iterdir()) == []


@pytest.mark.parametrize(
    ("variants", "name", "field", "message"),
    [
        ({"a": {"seed": 1, "transforms": []}}, "b", "augment.variants.b", "unknown variant 'b'"),
        ({"../x": {"seed": 1, "transforms": []}}, "../x", "augment.variants.../x", "safe folder"),
        ({".a": {"seed": 1, "transforms": []}}, ".a", "augment.variants..a", "safe folder"),
        ({"a": {"seed": -1, "transforms": []}}, "a", "augment.variants.a.seed", "non-negative"),
        ({"a": {"seed": 1, "copies": 0, "transforms": []}}, "a", "augment.variants.a.copies", ""),
        (
            {"a": {"seed": 1, "format": "tif", "transforms": []}},
            "a",
            "augment.variants.a.format",
            "",
        ),
        ({"a": {"seed": 1, "seeds": 2, "transforms": []}}, "a", "augment.variants.a", "seeds"),
        ({"a": {"seed": 1}}, "a", "augment.variants.a.transforms", "missing"),
        (
            {"a": {"seed": 1, "transforms": [{"name": "hflip"}, {"name": "sharpen"}]}},
            "a",
            "augment.variants.a.transforms",
            "sharpen",
        ),
        (
            {"a": {"seed": 1, "transforms": [{"name": "blur", "ksize": 0}]}},
            "a",
            "augment.variants.a.transforms",
            "ksize",
        ),
    ],
)
def test_bad_params_fail_before_any_work(
    tmp_path: Path, variants: dict[str, Any], name: str, field: str, message: str
) -> None:
    with pytest.raises(DatasetError) as info:  # no inputs exist: params fail first
        augment.run(make_params(tmp_path / "images", variants), tmp_path, name)
    text = str(info.value)
    assert text.startswith(f"params.yaml: {field}: ") and message in text
    assert not (tmp_path / "data").exists()


def test_on_error_value_checked(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="params.yaml: augment.on_error"):
        make_params(tmp_path, {"a": {"seed": 1, "transforms": []}}, on_error="ignore")


def test_colliding_output_names_rejected(tmp_path: Path) -> None:
    # x.png and x.tif would share every output named after the mask (x.png, x__c0.png):
    # validate refuses them, so no stage after it ever sees such a pair.
    image = np.zeros((8, 8, 3), np.uint8)
    coco = _write_dataset(tmp_path, {"x.png": image, "x.tif": image})
    with pytest.raises(DatasetError, match="differ only by extension: both would write the mask"):
        validate.validate_coco(coco, file="annotations.json")


def test_repo_params_variants_are_valid() -> None:
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    for name in params.augment.variants:
        assert augment.check_variant(params, name).name == name


# ---------------------------------------------------------------- the real DVC CLI


def test_dvc_repro_reruns_only_the_edited_variant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = copy_repo(tmp_path / "repo")
    shutil.rmtree(repo / "data")  # outputs copied along are not part of the project
    (repo / "dvc.lock").unlink(missing_ok=True)
    generate(repo / "data" / "sample", n_images=12, n_batches=3, seed=5)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    if not (repo / ".dvc").is_dir():
        run_cli([sys.executable, "-m", "dvc", "init", "-q"], repo)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv(
        "PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    )
    params = yaml.safe_load((repo / "params.yaml").read_text())
    names = sorted(params["augment"]["variants"])
    assert len(names) >= 2, "the test needs two variants in params.yaml"
    edited, kept = names[0], names[1]

    def dvc(*args: str) -> str:
        return run_cli([sys.executable, "-m", "dvc", *args], repo).stdout

    out = dvc("repro", "augment")
    for stage in ("validate", "masks", *(f"augment@{n}" for n in names)):
        assert f"Running stage '{stage}'" in out
    assert json.loads(dvc("status", "--json", "augment")) == {}
    kept_before = tree_digest(repo / "data/augmented" / kept)
    kept_manifest_mtime = (repo / "data/augmented" / kept / "manifest.csv").stat().st_mtime_ns
    edited_before = tree_digest(repo / "data/augmented" / edited)

    params["augment"]["variants"][edited]["seed"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(dvc("status", "--json", "augment"))
    assert list(status) == [f"augment@{edited}"]

    out = dvc("repro", "augment")
    assert out.count("Running stage") == 1 and f"Running stage 'augment@{edited}'" in out
    assert tree_digest(repo / "data/augmented" / kept) == kept_before
    assert (
        repo / "data/augmented" / kept / "manifest.csv"
    ).stat().st_mtime_ns == kept_manifest_mtime
    assert tree_digest(repo / "data/augmented" / edited) != edited_before

    out = dvc("repro", "augment")
    assert "Running stage" not in out
    assert not [
        p
        for p in (repo / "data/augmented").iterdir()
        if p.name.startswith(".") and p.name != ".gitignore"
    ]
