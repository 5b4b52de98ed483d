"""Incremental builds: a grown dataset, or any changed key input, gives a clean build's bytes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.files.params import Params, parse_params
from pipeline.stages import augment, masks, validate
from pipeline.tools.sample import generate
from tests.conftest import copy_repo, python_exe, run_cli
from tests.test_pipeline_dvc import output_digests, sh

VARIANT = {
    "seed": 3,
    "copies": 2,
    "transforms": [
        {"name": "hflip", "p": 0.5},
        {"name": "rotate_scale", "angle": [-10, 10], "scale": [0.9, 1.1]},
    ],
}


def params_for(cache: Path | None, **changes: Any) -> Params:
    raw: dict[str, Any] = {
        "workers": 2,
        "cache": {"dir": str(cache) if cache else None},
        "dataset": {"annotations": "data/sample/annotations.json", "images": "data/sample/images"},
        "augment": {"variants": {"v": VARIANT}},
    }
    for section, values in changes.items():
        raw[section] = raw.get(section, {}) | values
    return parse_params(raw)


def build(root: Path, params: Params) -> dict[str, str]:
    """validate, masks and the variant; the digest of every output file."""
    validate.run(params, root)
    masks.run(params, root)
    augment.run(params, root, "v")
    return digests(root)


def digests(root: Path) -> dict[str, str]:
    out = {}
    for top in ("data", "reports"):
        for path in sorted((root / top).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and rel.parts[:2] != ("data", "sample"):
                out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def grow(root: Path, extra: Path) -> None:
    """Add ``extra``'s images as a new batch and edit the polygons of two existing images."""
    coco = json.loads((root / "data/sample/annotations.json").read_text())
    more = json.loads((extra / "annotations.json").read_text())
    image_offset = max(im["id"] for im in coco["images"])
    ann_offset = max(a["id"] for a in coco["annotations"])
    for image in more["images"]:
        name = "grown/" + image["file_name"].replace("/", "_")
        target = root / "data/sample/images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(extra / "images" / image["file_name"], target)
        image["id"] += image_offset
        image["file_name"] = name
    for ann in more["annotations"]:
        ann["id"] += ann_offset
        ann["image_id"] += image_offset
    edited = {coco["images"][1]["id"], coco["images"][5]["id"]}
    for ann in coco["annotations"]:
        if ann["image_id"] in edited and isinstance(ann["segmentation"], list):
            ann["segmentation"] = [[v + 1.5 for v in part] for part in ann["segmentation"]]
    coco["images"] += more["images"]
    coco["annotations"] += more["annotations"]
    (root / "data/sample/annotations.json").write_text(json.dumps(coco))


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    generate(root / "data/sample", n_images=16, n_batches=4, seed=21)
    return root


def clean_copy(project: Path, tmp_path: Path) -> Path:
    clean = tmp_path / "clean"
    shutil.copytree(project / "data/sample", clean / "data/sample")
    return clean


def test_grown_dataset_equals_a_clean_build(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = build(project, params_for(cache))
    assert build(project, params_for(cache)) == first  # nothing changed: all reused
    grow(project, generate(tmp_path / "extra", n_images=4, n_batches=1, seed=5))
    grown = build(project, params_for(cache))
    clean = build(clean_copy(project, tmp_path), params_for(None))
    assert grown == clean
    assert set(grown) != set(first)  # the new images' masks and variants exist


def test_masks_reuse_what_did_not_change(project: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    params = params_for(cache)
    validate.run(params, project)
    masks.run(params, project)
    assert "reused" not in masks.run(params_for(None), project)  # no store, no reuse
    summary = masks.run(params, project)
    assert "16 unchanged" in summary and "reused" not in summary, summary  # no store read
    shutil.rmtree(project / "data/masks")
    summary = masks.run(params, project)
    assert "16 reused" in summary and "unchanged" not in summary, summary


def test_an_altered_mask_file_is_rewritten(project: Path, tmp_path: Path) -> None:
    """The run index trusts a mask file only while its size, mtime and inode are the ones it
    wrote: a file edited, replaced or removed behind its back is restored."""
    params = params_for(tmp_path / "cache")
    validate.run(params, project)
    masks.run(params, project)
    clean = digests(project)
    files = sorted((project / "data/masks").rglob("*.png"))
    files[0].write_bytes(b"not a png")
    files[1].unlink()
    files[2].write_bytes(files[3].read_bytes())
    summary = masks.run(params, project)
    assert "13 unchanged" in summary, summary
    assert digests(project) == clean


def test_a_damaged_run_index_is_not_trusted(project: Path, tmp_path: Path) -> None:
    params = params_for(tmp_path / "cache")
    validate.run(params, project)
    masks.run(params, project)
    clean = digests(project)
    for memo in (tmp_path / "cache").glob("masks-*.msgpack"):
        data = bytearray(memo.read_bytes())
        data[-1] ^= 1
        memo.write_bytes(bytes(data))
    summary = masks.run(params, project)
    assert "unchanged" not in summary and "16 reused" in summary, summary
    assert digests(project) == clean


CHANGES = {
    "class map": {
        "classes": {
            "map": {
                1: "a",
                2: "a",
                3: "b",
                5: "b",
                8: "c",
                13: "c",
                21: "d",
                34: "d",
                55: "e",
                89: "e",
            }
        }
    },
    "overlap": {"masks": {"overlap": "order"}},
    "crowd": {"masks": {"crowd": "class"}},
    "size thresholds": {"masks": {"size_thresholds": [20, 400]}},
    "variant params": {"augment": {"variants": {"v": VARIANT | {"seed": 4}}}},
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_key_input_changes_the_result(project: Path, tmp_path: Path, change: str) -> None:
    """An incremental build after changing one input equals a clean build with it: a key
    that forgot the input would reuse stale entries and fail here."""
    cache = tmp_path / "cache"
    before = build(project, params_for(cache))
    changed = build(project, params_for(cache, **CHANGES[change]))
    clean = build(clean_copy(project, tmp_path), params_for(None, **CHANGES[change]))
    assert changed == clean
    assert changed != before


@pytest.mark.slow
def test_code_version_is_part_of_the_key(tmp_path: Path) -> None:
    """Editing the code that encodes masks invalidates their entries (a real source edit)."""
    repo = copy_repo(tmp_path / "repo")
    cache = tmp_path / "cache"
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["cache"]["dir"] = str(cache)
    params["augment"]["variants"] = {}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))

    def stages(root: Path) -> dict[str, str]:
        for stage in ("validate", "masks"):
            run_cli([python_exe(), "-m", "pipeline", stage], cwd=root)
        return digests(root)

    stages(repo)
    pngio = repo / "pipeline/files/pngio.py"
    text = pngio.read_text()
    assert "_ENCODE_PARAMS: list[int] = []" in text
    pngio.write_text(
        text.replace("_ENCODE_PARAMS: list[int] = []", "_ENCODE_PARAMS: list[int] = [16, 9]")
    )  # cv2.IMWRITE_PNG_COMPRESSION = 16: other bytes, same pixels
    incremental = stages(repo)
    clean = copy_repo(tmp_path / "clean")
    shutil.copy(pngio, clean / "pipeline/files/pngio.py")
    params["cache"]["dir"] = None
    (clean / "params.yaml").write_text(yaml.safe_dump(params))
    assert incremental == stages(clean)


def dvc_project(root: Path, store: Path) -> Path:
    """A git+DVC copy of this repository with its own item store and 2 workers."""
    repo = copy_repo(root)
    (repo / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["workers"] = 2
    params["cache"]["dir"] = str(store)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], repo)
    commit_all(repo, "copy")
    return repo


def commit_all(repo: Path, message: str) -> None:
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", message], repo)


def pin_stable(repo: Path, pinned: Path) -> None:
    """Pin ``pinned`` as the split and keep its folds (``split.stable: true``)."""
    shutil.copy(pinned, repo / "splits/pinned.csv")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["split"]["stable"] = True
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
def test_dvc_repro_after_growth_equals_a_clean_build(tmp_path: Path) -> None:
    """The whole pipeline under the real dvc CLI: a grown dataset rebuilt incrementally (a warm
    store, persistent outputs, the run index) gives every output of a clean build of the grown
    json, byte for byte, and repaints only the masks that changed."""
    repo = dvc_project(tmp_path / "repo", tmp_path / "store")
    sh(["dvc", "repro"], repo)
    pin_stable(repo, repo / "data/splits/folds.csv")
    commit_all(repo, "pin")
    n_before = len(json.loads((repo / "data/sample/annotations.json").read_text())["images"])
    grow(repo, generate(tmp_path / "extra", n_images=4, n_batches=1, seed=5))
    out = sh(["dvc", "repro"], repo)
    assert f"{n_before - 2} unchanged" in out, out  # two edited images and four new ones
    assert "'moved': 0" in (repo / "reports/split_quality.json").read_text().replace('"', "'")
    clean = dvc_project(tmp_path / "clean", tmp_path / "clean-store")
    shutil.rmtree(clean / "data/sample")
    shutil.copytree(repo / "data/sample", clean / "data/sample")
    pin_stable(clean, repo / "splits/pinned.csv")
    sh(["dvc", "repro"], clean)
    assert output_digests(repo) == output_digests(clean)
    assert sh(["dvc", "status", "--json"], repo).strip() == "{}"
