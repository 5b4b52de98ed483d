"""The vectors and split stages on real files: groups, holdout, warnings and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.files.contracts import (
    CLASS_MEASURES,
    FOLDS_PATH,
    SPLIT_QUALITY_PATH,
    SPLIT_WARNINGS_PATH,
    VECTORS_PATH,
    ImageStats,
    Vectors,
    read_rows,
)
from pipeline.files.errors import DatasetError
from pipeline.files.params import Params, parse_params
from pipeline.stages import masks, split, validate, vectors
from pipeline.stages.split import build_split, groups_from_regex
from pipeline.stages.vectors import build_vectors


def params_for(sample: Path, **split_params: Any) -> Params:
    """Params for a sample outside the work folder (absolute paths), grouped by batch."""
    return parse_params(
        {
            "workers": 1,
            "dataset": {
                "annotations": str(sample / "annotations.json"),
                "images": str(sample / "images"),
            },
            "split": {"group_regex": "^([^/]+)/", **split_params},
        }
    )


def run_until_split(root: Path, params: Params) -> list[dict[str, str]]:
    """validate -> masks -> vectors -> split under ``root``; returns the folds.csv rows."""
    root.mkdir(parents=True, exist_ok=True)
    for stage in (validate, masks, vectors, split):
        summary = stage.run(params, root)
        assert isinstance(summary, str) and summary
    return read_rows(root / FOLDS_PATH)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_folds_keep_groups_together_and_are_deterministic(sample_dir: Path, tmp_path: Path) -> None:
    params = params_for(sample_dir, n_splits=3, seed=5)
    rows = run_until_split(tmp_path / "a", params)
    first = (tmp_path / "a" / FOLDS_PATH).read_bytes()
    assert list(rows[0]) == ["image_id", "file_name", "group", "fold"]
    fold_of_group: dict[str, set[str]] = {}
    for row in rows:
        assert row["group"] == row["file_name"].split("/")[0]
        fold_of_group.setdefault(row["group"], set()).add(row["fold"])
    assert all(len(f) == 1 for f in fold_of_group.values())
    assert {r["fold"] for r in rows} == {"0", "1", "2"}
    quality = read_json(tmp_path / "a" / SPLIT_QUALITY_PATH)
    assert quality["ours"]["group_leakage"] == 0
    assert {"multilabel_stratified_kfold", "kfold"} <= set(quality)

    run_until_split(tmp_path / "b", params)
    assert (tmp_path / "b" / FOLDS_PATH).read_bytes() == first
    split.run(params_for(sample_dir, n_splits=3, seed=6), tmp_path / "b")
    assert (tmp_path / "b" / FOLDS_PATH).read_bytes() != first


def test_summary_counts_what_was_written(sample_dir: Path, tmp_path: Path) -> None:
    params = params_for(sample_dir, n_splits=3)
    run_until_split(tmp_path, params)
    line = vectors.run(params, tmp_path)
    written = read_rows(tmp_path / VECTORS_PATH)
    n_columns = len(written[0]) - 2  # after image_id, file_name
    assert (
        n_columns > 0 and line == f"{len(written)} images x {n_columns} columns in {VECTORS_PATH}"
    )
    line = split.run(params, tmp_path)
    quality = read_json(tmp_path / SPLIT_QUALITY_PATH)
    assert line.startswith(f"{len(written)} images, 4 groups, 3 folds; ")  # 4 batch folders
    assert (
        f"LD {quality['ours']['LD']} (MLSKF {quality['multilabel_stratified_kfold']['LD']})" in line
    )
    assert "group leakage 0" in line and f"{quality['warnings']} warnings in" in line
    assert "seconds ours " in line and "multilabel_stratified_kfold " in line and "kfold " in line


def test_holdout_test_part(sample_dir: Path, tmp_path: Path) -> None:
    params = params_for(sample_dir, n_splits=3, test_fraction=0.25)
    rows = run_until_split(tmp_path, params)
    test_groups = {r["group"] for r in rows if r["fold"] == "test"}
    fold_groups = {r["group"] for r in rows if r["fold"] != "test"}
    assert test_groups and not test_groups & fold_groups
    share = sum(r["fold"] == "test" for r in rows) / len(rows)
    assert 0.1 < share < 0.4
    quality = read_json(tmp_path / SPLIT_QUALITY_PATH)
    assert quality["n_test_images"] == sum(r["fold"] == "test" for r in rows)
    assert f"({quality['n_test_images']} held out for test)" in split.run(params, tmp_path)


def test_more_folds_than_groups_is_a_clear_error(sample_dir: Path, tmp_path: Path) -> None:
    # two groups + unmatched singletons
    run_until_split(tmp_path, params_for(sample_dir, n_splits=5, group_regex="^(batch_0[12])"))
    notes = read_json(tmp_path / SPLIT_WARNINGS_PATH)["warnings"]
    assert any("do not match group_regex" in n for n in notes)
    one_group = params_for(sample_dir, n_splits=5, group_regex="^(batch)_")
    with pytest.raises(DatasetError, match="params.yaml: split.n_splits: 1 groups cannot fill"):
        split.run(one_group, tmp_path)
    with pytest.raises(DatasetError, match="split.group_regex: invalid regular expression"):
        params_for(sample_dir, group_regex="([")


def test_rare_class_is_listed_by_name(tmp_path: Path) -> None:
    from pipeline.tools.sample import generate

    sample = generate(tmp_path / "s", n_images=20, n_batches=20, seed=11)
    coco = json.loads((sample / "annotations.json").read_text())
    rare = coco["categories"][-1]["id"]
    keep = [a for a in coco["annotations"] if a["category_id"] != rare]
    holder = next(a for a in coco["annotations"] if a["category_id"] != rare)
    keep.append({**holder, "id": 10**6, "category_id": rare})  # one image with the rare class
    coco["annotations"] = keep
    (sample / "annotations.json").write_text(json.dumps(coco))
    run_until_split(tmp_path / "w", params_for(sample, group_regex=None))
    notes = read_json(tmp_path / "w" / SPLIT_WARNINGS_PATH)["warnings"]
    name = coco["categories"][-1]["name"]
    assert any(f"'{name}__present'" in n and "no positive" in n for n in notes), notes
    quality = read_json(tmp_path / "w" / SPLIT_QUALITY_PATH)
    assert quality["warnings"] == len(notes)


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_splits", 1), ("n_splits", "5"), ("seed", -1), ("test_fraction", 1.0)],
)
def test_bad_split_params(field: str, value: Any) -> None:
    """The schema refuses them before the stage runs, naming the key."""
    with pytest.raises(DatasetError, match=f"params.yaml: split.{field}"):
        parse_params({"split": {field: value}})


def test_empty_dataset_is_a_clear_error(tmp_path: Path) -> None:
    sample = tmp_path / "empty"
    (sample / "images").mkdir(parents=True)
    (sample / "annotations.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]})
    )
    params = params_for(sample)
    validate.run(params, tmp_path)
    masks.run(params, tmp_path)
    with pytest.raises(DatasetError, match="image_stats.csv: no image in the stats table"):
        vectors.run(params, tmp_path)


STATS_HEADER = [
    "image_id",
    "file_name",
    "width",
    "height",
    "background__pixels",
    *(f"can__{m}" for m in CLASS_MEASURES),
    "ignore__pixels",
]


def stats_of(*rows: list[int | str]) -> ImageStats:
    """One class "can": the stats as the vectors stage gets them, from rows in STATS_HEADER
    order (the wide view, one row per image)."""
    column = {name: [row[i] for row in rows] for i, name in enumerate(STATS_HEADER)}

    def ints(name: str) -> np.ndarray:
        return np.array(column[name], dtype=np.int64)

    return ImageStats(
        image_ids=[int(v) for v in column["image_id"]],
        file_names=[str(v) for v in column["file_name"]],
        classes=["can"],
        width=ints("width"),
        height=ints("height"),
        background=ints("background__pixels"),
        ignore=ints("ignore__pixels"),
        measures={m: ints(f"can__{m}").reshape(-1, 1) for m in CLASS_MEASURES},
    )


def test_vectors_from_stats_rows() -> None:
    stats = stats_of(
        [1, "a.jpg", 10, 10, 50, 50, 1, 1, 0, 0, 0, 0],
        [2, "b.jpg", 10, 10, 95, 5, 1, 0, 1, 0, 0, 0],
    )
    config = parse_params(
        {"vectors": {"presence": True, "small_presence": True, "pixel_share_bins": [0.1, 0.4]}}
    ).vectors
    names, matrix = build_vectors(stats, config)
    assert names == ["can__present", "can__small_present", "can__share_ge0.1", "can__share_ge0.4"]
    assert matrix.dtype == np.uint8
    assert matrix.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    with pytest.raises(DatasetError, match="vectors.pixel_share_bins"):
        parse_params({"vectors": {"pixel_share_bins": [0.5, 0.1]}})
    with pytest.raises(DatasetError, match="choose at least one of presence"):
        parse_params(
            {"vectors": {"presence": False, "small_presence": False, "pixel_share_bins": []}}
        )


def test_vector_shares_count_labelled_pixels_only() -> None:
    """Ignored pixels are not part of an image's area: 30 of 60 labelled pixels is 0.5."""
    stats = stats_of([1, "a.jpg", 10, 10, 30, 30, 1, 0, 0, 1, 0, 40])
    only_bins = parse_params(
        {"vectors": {"presence": False, "small_presence": False, "pixel_share_bins": [0.5, 0.6]}}
    ).vectors
    names, matrix = build_vectors(stats, only_bins)
    assert names == ["can__share_ge0.5", "can__share_ge0.6"] and matrix.tolist() == [[1, 0]]


def test_build_split_needs_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The split is built from values; only run() reads and writes."""
    monkeypatch.chdir(tmp_path)
    stats = stats_of(
        *([i, f"g{i % 3}/{i}.jpg", 10, 10, 90, 10, 1, i % 2, 0, 0, 0, 0] for i in range(9))
    )
    matrix = np.array([[1, i % 2] for i in range(9)], dtype=np.uint8)
    vecs = Vectors(
        stats.image_ids, stats.file_names, ["can__present", "can__small_present"], matrix
    )
    out = build_split(
        vecs, stats, parse_params({"split": {"n_splits": 3, "group_regex": "^(g\\d)/"}}).split
    )
    assert list(tmp_path.iterdir()) == []
    assert [row[2] for row in out.folds] == [f"g{i % 3}" for i in range(9)]
    assert {row[3] for row in out.folds} == {"0", "1", "2"}
    assert out.quality["n_groups"] == 3 and out.quality["ours"]["group_leakage"] == 0
    assert len(out.pixel_share) == 3  # 3 folds x 1 class
    assert set(out.seconds) == {"ours", "multilabel_stratified_kfold", "kfold"}


def test_groups_from_regex_uses_first_capture_group() -> None:
    names = ["IMG_1_scaled_0_png.rf.a.jpg", "IMG_1_scaled_1_png.rf.b.jpg", "other.jpg"]
    keys, unmatched = groups_from_regex(names, "^(.*)_scaled_")
    assert keys == ["IMG_1", "IMG_1", "other.jpg"] and unmatched == ["other.jpg"]
    assert np.unique(keys).size == 2


def test_no_positive_at_all_still_splits_by_groups(tmp_path: Path) -> None:
    from pipeline.tools.sample import generate

    sample = generate(tmp_path / "s", n_images=12, n_batches=6, seed=2)
    coco = json.loads((sample / "annotations.json").read_text())
    coco["annotations"] = []  # e.g. a detection export without masks
    (sample / "annotations.json").write_text(json.dumps(coco))
    rows = run_until_split(tmp_path / "w", params_for(sample, n_splits=3))
    assert sorted({r["fold"] for r in rows}) == ["0", "1", "2"]
    assert all(
        len({r["fold"] for r in rows if r["group"] == g}) == 1 for g in {r["group"] for r in rows}
    )
    notes = read_json(tmp_path / "w" / SPLIT_WARNINGS_PATH)["warnings"]
    assert any("vector columns have no positive image" in n for n in notes)
    assert not any("has no positive samples" in n for n in notes)


def test_groups_from_an_image_field(tmp_path: Path) -> None:
    from pipeline.tools.sample import generate

    sample = generate(tmp_path / "s", n_images=16, n_batches=8, seed=4)
    coco = json.loads((sample / "annotations.json").read_text())
    for index, image in enumerate(coco["images"]):
        if index != 0:  # one image without the field: its own group, and listed
            image["capture"] = f"cap{index // 3}"
    (sample / "annotations.json").write_text(json.dumps(coco))
    params = params_for(sample, n_splits=3, group_regex=None, group_field="capture")
    rows = run_until_split(tmp_path / "w", params)
    capture = {str(im["id"]): im.get("capture") for im in coco["images"]}
    for row in rows:
        assert row["group"] == (capture[row["image_id"]] or row["file_name"])
    for group in {r["group"] for r in rows}:
        assert len({r["fold"] for r in rows if r["group"] == group}) == 1
    notes = read_json(tmp_path / "w" / SPLIT_WARNINGS_PATH)["warnings"]
    assert any("1 of 16 images have no 'capture' field" in n for n in notes), notes
    with pytest.raises(DatasetError, match="set group_regex or group_field, not both"):
        params_for(sample, group_regex="^(x)", group_field="capture")


REUSE_PROBE = """
import sys
import numpy as np
from pipeline.execution.itemcache import ItemCache
from pipeline.stages.split import stored_baselines
y = np.random.default_rng(3).integers(0, 2, (60, 5)).astype(np.uint8)
rest = np.ones(60, bool)
rest[:7] = False
folds = stored_baselines(ItemCache(sys.argv[1], 1 << 30))(y, 4, 9, rest)
print(sorted({k.split(".")[0] for k in sys.modules} & {"iterstrat", "sklearn"}))
print({name: (fold.tolist(), secs is None) for name, (fold, secs) in folds.items()})
"""


def test_stored_baselines_are_reused_without_importing_scikit_learn(tmp_path: Path) -> None:
    """The second run reads the baselines' folds from the store (no seconds: reused), gets the
    library's folds exactly, and never imports iterative-stratification or scikit-learn (the
    stage's own splitter does not need it: a second per run)."""
    import subprocess
    import sys

    from pipeline.splitting.baselines import library_folds

    def probe() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", REUSE_PROBE, str(tmp_path / "store")],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()

    first, second = probe(), probe()
    assert first[0] == "['iterstrat', 'sklearn']" and second[0] == "[]"
    y = np.random.default_rng(3).integers(0, 2, (60, 5)).astype(np.uint8)
    rest = np.ones(60, bool)
    rest[:7] = False
    expected = {n: (f.tolist(), False) for n, (f, _) in library_folds(y, 4, 9, rest).items()}
    assert first[1] == str(expected)
    assert second[1] == str({n: (f, True) for n, (f, _) in expected.items()})
