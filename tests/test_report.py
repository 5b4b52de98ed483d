"""The report stage: figures exist and are readable, and every number behind them is the stats.

The stages run in-process (``pipeline.<stage>.run(params, root)``) on the embedded sample and on
the real datasets when present; the expected numbers are recomputed here from the CSVs with
plain Python, independently of ``pipeline.drawing.report_tables``. The pure builds (tables, figures)
are also driven directly on synthetic inputs: 60 classes, every validation kind.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from matplotlib import image as mpimg
from matplotlib.figure import Figure
from matplotlib.text import Text

from pipeline.drawing import figures, gallery
from pipeline.drawing import report_tables as tables
from pipeline.execution.itemcache import ItemCache, Memo, damaged_entries
from pipeline.files.contracts import (
    FIGURES_DIR,
    GALLERY_DIR,
    IMAGE_STATS_PATH,
    PLOTS_DIR,
    RANDOM_FOLDS_PATH,
    REPORT_README_PATH,
    VALIDATION_KINDS,
    Classes,
    FoldRow,
    FoldTable,
    ImageStats,
    Instances,
    read_image_stats,
)
from pipeline.files.errors import DatasetError
from pipeline.files.params import Params, load_params, parse_params
from pipeline.splitting.baselines import random_group_folds
from pipeline.stages import report
from pipeline.tools.sample import generate
from tests.conftest import ROOT, copy_repo, real_dataset

FIGURES = ("class_balance", "object_sizes", "fold_balance", "fold_sizes", "validation")
PLOTS = (
    "class_balance",
    "object_sizes",
    "object_area_histogram",
    "fold_balance_ours",
    "fold_balance_random",
    "fold_sizes",
    "group_sizes",
    "validation",
)
# Modules that are stages: the report meets them only through their files.
OTHER_STAGES = ("validate", "masks", "vectors", "split", "export", "augment")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-5, abs=1e-9)


def run_pipeline(
    workdir: Path,
    dataset: dict[str, Any],
    split: dict[str, Any],
    report_params: dict[str, Any] | None = None,
) -> str:
    """validate -> masks -> vectors -> split -> augment-index -> report, in-process; the
    report's summary line."""
    from pipeline.stages import augment, masks, validate, vectors
    from pipeline.stages import split as split_stage

    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["workers"] = 1
    raw["dataset"].update(dataset)
    raw["split"].update(split)
    raw["report"].update(report_params or {})
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    params = parse_params(raw)
    for stage in (validate, masks, vectors, split_stage):
        stage.run(params, workdir)
    augment.write_index(params, workdir)  # the variant list (variants not built: noted)
    return report.run(params, workdir)


def work_params(work: Path) -> Params:
    return load_params(work / "params.yaml")


def without_store(params: Params) -> Params:
    """The same params with the item store off: every figure and sheet is drawn."""
    return dataclasses.replace(params, cache=dataclasses.replace(params.cache, dir=None))


def build(work: Path) -> tuple[report.ReportInputs, tables.ReportTables]:
    """The stage's inputs and tables for a finished run, as ``report.run`` builds them."""
    params = work_params(work)
    inputs = report.read_inputs(work)
    return inputs, tables.build_tables(inputs, params.masks.size_thresholds)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("report_sample")
    shutil.copytree(ROOT / "data" / "sample", work / "data" / "sample")
    run_pipeline(
        work, {"annotations": "data/sample/annotations.json", "images": "data/sample/images"}, {}
    )
    return work


@pytest.fixture(scope="module")
def facade_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ann, images = real_dataset("facade_valid")
    work = tmp_path_factory.mktemp("report_facade")
    run_pipeline(
        work,
        {"annotations": str(ann), "images": str(images), "check_images": False},
        {"group_regex": "^(.*)_scaled_"},
    )
    return work


@pytest.fixture(scope="module")
def taco_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TACO (json only: 60 classes, batch groups) on every 10th image, through the stages."""
    ann, _ = real_dataset("taco")
    work = tmp_path_factory.mktemp("report_taco")
    coco = json.loads(ann.read_text(encoding="utf-8"))
    coco["images"] = coco["images"][::10]
    keep = {im["id"] for im in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    (work / "taco.json").write_text(json.dumps(coco), encoding="utf-8")
    (work / "no_images").mkdir()
    run_pipeline(
        work,
        {"annotations": "taco.json", "images": "no_images", "missing_images": "keep"},
        {"group_regex": "^([^/]+)/"},
        {"gallery_per_class": 1, "gallery_per_fold": 2},  # 12 MP masks: keep the test quick
    )
    return work


# ---------------------------------------------------------------- independent recomputation


def stats_rows(work: Path) -> list[dict[str, str]]:
    """The two stats tables (long layout) joined into one wide row per image, read with the
    csv module only: ``<class>__<measure>`` columns, zero where class_stats.csv has no row."""
    names = [c["name"] for c in json.loads((work / "data/classes.json").read_text())["classes"]]
    measures = ("pixels", "instances", "small", "medium", "large", "hidden")
    rows = []
    for r in read(work / IMAGE_STATS_PATH):
        row = {k: r[k] for k in ("image_id", "file_name", "width", "height")}
        row[f"{names[0]}__pixels"] = r["background_pixels"]
        row |= {f"{c}__{m}": "0" for c in names[1:] for m in measures}
        row["ignore__pixels"] = r["ignore_pixels"]
        rows.append(row)
    by_id = {r["image_id"]: r for r in rows}
    for r in read(work / "data/stats/class_stats.csv"):
        for m in measures:
            by_id[r["image_id"]][f"{r['class']}__{m}"] = r[m]
    return rows


def labelled_pixels(rows: list[dict[str, str]]) -> int:
    return sum(int(r["width"]) * int(r["height"]) - int(r["ignore__pixels"]) for r in rows)


def expected_class_balance(work: Path) -> dict[str, dict[str, float]]:
    rows = stats_rows(work)
    classes = [c[: -len("__instances")] for c in rows[0] if c.endswith("__instances")]
    labelled = labelled_pixels(rows)
    instances = sum(int(r[f"{c}__instances"]) for r in rows for c in classes)
    out = {}
    for c in classes:
        px = sum(int(r[f"{c}__pixels"]) for r in rows)
        im = sum(int(r[f"{c}__pixels"]) > 0 for r in rows)
        inst = sum(int(r[f"{c}__instances"]) for r in rows)
        out[c] = {
            "pixels": px,
            "pixel_share_pct": 100 * px / labelled,
            "images": im,
            "image_share_pct": 100 * im / len(rows),
            "instances": inst,
            "instance_share_pct": 100 * inst / instances,
        }
    return out


def check_class_balance(work: Path) -> list[str]:
    """Class shares from the stats table; the background share (in the figure title) comes from
    the column params name as background, wherever it stands. Returns every class."""
    expected = expected_class_balance(work)
    got = {r["class"]: r for r in read(work / PLOTS_DIR / "class_balance.csv")}
    # A class no image has is left out of the plot table, as the figures leave it out.
    present = [c for c, e in expected.items() if e["pixels"] or e["instances"]]
    assert list(got) == present
    for c, exp in ((c, expected[c]) for c in present):
        for key, value in exp.items():
            assert float(got[c][key]) == approx(value), (c, key)
    stats = stats_rows(work)
    background = work_params(work).classes.background
    share = 100 * sum(int(r[f"{background}__pixels"]) for r in stats) / labelled_pixels(stats)
    assert build(work)[1].background_share_pct == approx(share)
    return list(expected)


def visible_areas(work: Path, classes: list[str]) -> dict[str, list[int]]:
    areas: dict[str, list[int]] = defaultdict(list)
    for r in read(work / "data/stats/instances.csv"):
        k = int(r["class_index"])
        if 1 <= k <= len(classes) and r["iscrowd"] == "0":
            areas[classes[k - 1]].append(int(r["visible_pixels"]))
    return areas


def check_object_sizes(work: Path, classes: list[str]) -> None:
    """Buckets from the stats table equal the same from instances.csv, and the plot tables."""
    stats = stats_rows(work)
    t0, t1 = work_params(work).masks.size_thresholds
    sizes = {r["class"]: r for r in read(work / PLOTS_DIR / "object_sizes.csv")}
    areas = visible_areas(work, classes)
    for c in classes:
        buckets = {
            b: sum(int(r[f"{c}__{b}"]) for r in stats)
            for b in ("small", "medium", "large", "hidden")
        }
        a = np.array(areas[c], dtype=np.int64)
        from_instances = {
            "small": int(((a > 0) & (a <= t0)).sum()),
            "medium": int(((a > t0) & (a <= t1)).sum()),
            "large": int((a > t1).sum()),
            "hidden": int((a == 0).sum()),
        }
        assert buckets == from_instances, c
        total = sum(buckets.values())
        if c not in sizes:  # a class no image has: left out of the plot table
            assert total == 0 and not any(int(r[f"{c}__pixels"]) for r in stats), c
            continue
        assert int(sizes[c]["objects"]) == total
        for b, n in buckets.items():
            assert int(sizes[c][b]) == n
            assert float(sizes[c][f"{b}_pct"]) == approx(100 * n / total if total else 0)
        visible = a[a > 0]
        assert int(sizes[c]["visible_objects"]) == visible.size
        if visible.size:
            assert float(sizes[c]["p50_px"]) == approx(float(np.median(visible)))
    histogram = read(work / PLOTS_DIR / "object_area_histogram.csv")
    all_visible = np.array([v for c in classes for v in areas[c] if v > 0])
    assert sum(int(r["objects"]) for r in histogram) == all_visible.size
    low = 0
    for r in histogram:
        high = int(r["area_up_to_px"])
        assert int(r["objects"]) == int(((all_visible > low) & (all_visible <= high)).sum())
        low = high


def check_fold_balance(work: Path, classes: list[str]) -> None:
    """Our fold balance recomputed from folds.csv + image_stats.csv."""
    stats = stats_rows(work)
    folds = {r["image_id"]: r for r in read(work / "data/splits/folds.csv")}
    rest = [r for r in stats if folds[r["image_id"]]["fold"] != "test"]
    k = work_params(work).split.n_splits
    ours = {
        (int(r["fold"]), r["class"]): r for r in read(work / PLOTS_DIR / "fold_balance_ours.csv")
    }
    shown = sorted({c for _, c in ours}, key=classes.index)
    assert len(ours) == k * len(shown)
    assert all(not any(int(r[f"{c}__pixels"]) for r in stats) for c in set(classes) - set(shown))
    all_labelled = labelled_pixels(rest)
    for f in range(k):
        in_fold = [r for r in rest if folds[r["image_id"]]["fold"] == str(f)]
        labelled = labelled_pixels(in_fold)
        for c in shown:
            row = ours[(f, c)]
            images = sum(int(r[f"{c}__pixels"]) > 0 for r in in_fold)
            pixels = sum(int(r[f"{c}__pixels"]) for r in in_fold)
            assert int(row["images"]) == images
            assert int(row["pixels"]) == pixels
            assert float(row["image_share_pct"]) == approx(100 * images / len(in_fold))
            assert float(row["pixel_share_pct"]) == approx(100 * pixels / labelled)
            all_images = sum(int(r[f"{c}__pixels"]) > 0 for r in rest)
            all_pixels = sum(int(r[f"{c}__pixels"]) for r in rest)
            assert float(row["overall_image_share_pct"]) == approx(100 * all_images / len(rest))
            assert float(row["overall_pixel_share_pct"]) == approx(100 * all_pixels / all_labelled)


def check_fold_and_group_sizes(work: Path) -> None:
    """Fold and group sizes; the random split keeps groups together and covers the same images."""
    folds = {r["image_id"]: r for r in read(work / "data/splits/folds.csv")}
    rest = [x for x in folds.values() if x["fold"] != "test"]
    sizes_rows = read(work / PLOTS_DIR / "fold_sizes.csv")
    for r in sizes_rows:
        if r["split"] == "ours":
            members = [x for x in folds.values() if x["fold"] == r["fold"]]
            assert int(r["images"]) == len(members)
            assert int(r["groups"]) == len({x["group"] for x in members})
    for split in ("ours", "random"):
        assert sum(int(r["images"]) for r in sizes_rows if r["split"] == split) == len(rest)
    groups = read(work / PLOTS_DIR / "group_sizes.csv")
    count: dict[str, int] = defaultdict(int)
    for x in folds.values():
        count[x["group"]] += 1
    assert {g["group"]: int(g["images"]) for g in groups} == count
    random_images: dict[str, int] = defaultdict(int)
    for g in groups:
        assert g["fold"] == {x["fold"] for x in folds.values() if x["group"] == g["group"]}.pop()
        random_images[g["random_fold"]] += int(g["images"])
    assert {f: n for f, n in random_images.items() if f != "test"} == {
        r["fold"]: int(r["images"])
        for r in sizes_rows
        if r["split"] == "random" and int(r["images"])
    }


def check_numbers(work: Path) -> None:
    """Every plot table equals what the stats, folds and validation files say."""
    classes = check_class_balance(work)
    check_object_sizes(work, classes)
    check_fold_balance(work, classes)
    check_fold_and_group_sizes(work)
    validation = json.loads((work / "reports/validation.json").read_text(encoding="utf-8"))
    got_v = {r["kind"]: int(r["count"]) for r in read(work / PLOTS_DIR / "validation.csv")}
    assert got_v == validation["problems"]


def check_figures(work: Path) -> None:
    for name in FIGURES:
        path = work / FIGURES_DIR / f"{name}.png"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 10_000, name
        pixels = mpimg.imread(path)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 600, name
        assert float(pixels[..., :3].std()) > 0.05, f"{name} looks blank"
    readme = (work / REPORT_README_PATH).read_text(encoding="utf-8")
    for name in FIGURES:
        assert f"(figures/{name}.png)" in readme


# ---------------------------------------------------------------- the stage on the sample


def test_figures_are_written_and_not_blank(sample_run: Path) -> None:
    check_figures(sample_run)


def test_numbers_behind_figures_equal_the_stats(sample_run: Path) -> None:
    check_numbers(sample_run)


def test_stage_writes_exactly_what_the_pure_builds_make(sample_run: Path) -> None:
    """The files on disk are the bytes ``build_files`` returns (figures drawn again: same)."""
    inputs, built = build(sample_run)
    files = report.build_files(built, inputs.quality, work_params(sample_run).report)
    written = {
        p.relative_to(sample_run).as_posix()
        for folder in (FIGURES_DIR, PLOTS_DIR)
        for p in (sample_run / folder).iterdir()
    }
    assert set(files) == written | {REPORT_README_PATH}
    assert written == {f"{FIGURES_DIR}/{n}.png" for n in FIGURES} | {
        f"{PLOTS_DIR}/{n}.csv" for n in PLOTS
    }
    for path, data in files.items():
        assert (sample_run / path).read_bytes() == data, path


def test_pngs_are_byte_identical_whatever_the_rc(
    sample_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib

    before = {n: (sample_run / FIGURES_DIR / f"{n}.png").read_bytes() for n in FIGURES}
    monkeypatch.setitem(matplotlib.rcParams, "font.size", 17)  # a user's rc must not leak in
    monkeypatch.setitem(matplotlib.rcParams, "axes.facecolor", "#ffeeee")
    report.run(without_store(work_params(sample_run)), sample_run)  # drawn, not reused
    after = {n: (sample_run / FIGURES_DIR / f"{n}.png").read_bytes() for n in FIGURES}
    assert before == after


def test_main_prints_one_summary_line(
    sample_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(sample_run)
    report.main([])
    out = capsys.readouterr().out
    assert re.fullmatch(
        r"report: \d+ classes in \d+ images: 5 figures in reports/figures/, 8 plot tables in "
        r"reports/plots/, \d+ contact sheets in reports/gallery/, summary in "
        r"reports/README\.md( \(\d+ figures and \d+ sheets reused\))? \(\d+\.\d s\)\n",
        out,
    ), out


def test_sample_figures_are_readable(sample_run: Path) -> None:
    _, built = build(sample_run)
    assert_readable(figures.plot_validation(built.validation_counts, built.validation, 100))
    assert_readable(figures.plot_fold_sizes(built.fold_sizes, built.group_sizes, 100))


def test_max_classes_limits_rows_and_says_so(sample_run: Path) -> None:
    stats = read_image_stats(sample_run)
    balance = tables.class_balance(stats)
    colors = dict.fromkeys(stats.classes, "#336699")
    fig = figures.plot_class_balance(balance, colors, 60, 90.0, 3, 100)
    assert len(fig.axes[0].get_yticklabels()) == 3
    assert "more classes not shown" in fig.get_suptitle()


# ---------------------------------------------------------------- bad input


def test_bad_report_params_name_the_field() -> None:
    with pytest.raises(DatasetError, match=r"params\.yaml: report\.max_classes: "):
        parse_params({"report": {"max_classes": 0}})
    with pytest.raises(DatasetError, match=r"report\.dpi: must be an integer >= 1, got 0"):
        parse_params({"report": {"dpi": 0}})


def test_a_random_split_of_other_folds_stops_the_stage(sample_run: Path, tmp_path: Path) -> None:
    """The random baseline must be the split stage's, of the same folds: an error naming the
    fix, nothing written."""
    work = tmp_path / "work"
    shutil.copytree(sample_run, work)
    before = (work / REPORT_README_PATH).stat().st_mtime_ns
    path = work / RANDOM_FOLDS_PATH
    lines = path.read_text().splitlines()
    lines[1:] = [re.sub(r",[^,]*$", ",test", line) for line in lines[1:2]] + lines[2:]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="random_group_folds.csv: not the random split"):
        report.run(work_params(work), work)
    assert (work / REPORT_README_PATH).stat().st_mtime_ns == before


def test_folds_and_stats_of_different_images_are_refused() -> None:
    stats = synthetic_stats(["a", "b"], np.ones((4, 2), np.int64))
    rows = tuple(FoldRow(i, f"{i}.jpg", "g", str(i % 2)) for i in range(3))
    with pytest.raises(DatasetError, match="folds and stats list different images"):
        tables.folds_by_stats_row(FoldTable(rows, 2), stats, "folds.csv")


def test_missing_input_names_the_stage_that_makes_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"image_stats\.csv: not found; run `dvc repro masks`"):
        report.run(Params(), tmp_path)
    assert not (tmp_path / "reports").exists()


def test_report_imports_no_other_stage() -> None:
    """Stages meet only through files: importing the report loads no other stage module."""
    code = "import sys, pipeline.stages.report; print(' '.join(sorted(sys.modules)))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert not {f"pipeline.{s}" for s in OTHER_STAGES} & loaded


# ---------------------------------------------------------------- pure builds, synthetic


def test_random_split_is_seeded_group_aware_and_balanced() -> None:
    rng = np.random.default_rng(0)
    groups = [f"g{int(g)}" for g in rng.integers(0, 40, size=300)]
    a = random_group_folds(groups, 5, seed=42)
    assert np.array_equal(a, random_group_folds(groups, 5, seed=42))
    assert not np.array_equal(a, random_group_folds(groups, 5, seed=43))
    for g in set(groups):
        assert len({int(f) for f, x in zip(a, groups, strict=True) if x == g}) == 1
    sizes = np.bincount(a, minlength=5)
    assert sizes.max() - sizes.min() <= max(np.unique(groups, return_counts=True)[1])


def synthetic_stats(names: list[str], counts: np.ndarray, seed: int = 1) -> ImageStats:
    """1000x1000 images whose objects are half small, half medium."""
    rng = np.random.default_rng(seed)
    n_img = counts.shape[0]
    pixels = counts * rng.integers(10, 5000, size=counts.shape)
    zeros = np.zeros_like(counts)
    return ImageStats(
        image_ids=list(range(n_img)),
        file_names=[f"b{i % 15}/{i}.jpg" for i in range(n_img)],
        classes=names,
        width=np.full(n_img, 1000),
        height=np.full(n_img, 1000),
        background=1_000_000 - pixels.sum(1),
        ignore=np.zeros(n_img, np.int64),
        measures={
            "pixels": pixels,
            "instances": counts,
            "small": counts // 2,
            "medium": counts - counts // 2,
            "large": zeros,
            "hidden": zeros,
        },
    )


def synthetic_inputs(names: list[str], n_img: int = 200) -> tables.ReportInputs:
    """A heavily imbalanced dataset in 15 batches, every validation kind found."""
    rng = np.random.default_rng(1)
    counts = rng.poisson(np.geomspace(5, 0.01, len(names)), size=(n_img, len(names)))
    stats = synthetic_stats(names, counts)
    per_class = counts.sum(0)
    groups = [f.split("/")[0] for f in stats.file_names]
    fold = random_group_folds(groups, 5, seed=0)
    other = random_group_folds(groups, 5, seed=1)
    return tables.ReportInputs(
        stats=stats,
        instances=Instances(
            class_index=np.repeat(np.arange(1, len(names) + 1), per_class),
            iscrowd=np.zeros(per_class.sum(), np.int64),
            visible_pixels=rng.integers(1, 20000, size=per_class.sum()),
        ),
        classes=Classes(
            names=["background", *names],
            colors=[(0, 0, 0)] + [(51, 102, 153)] * len(names),
            category_ids=[[i] for i in range(len(names) + 1)],
            palette=np.zeros((256, 3), np.uint8),
        ),
        folds=FoldTable(
            tuple(FoldRow(i, stats.file_names[i], groups[i], str(fold[i])) for i in range(n_img)),
            5,
        ),
        random_folds=FoldTable(
            tuple(FoldRow(i, stats.file_names[i], groups[i], str(k)) for i, k in enumerate(other)),
            5,
        ),
        validation={"problems": {k: int(rng.integers(0, 5000)) for k in VALIDATION_KINDS}},
        quality={},
    )


def _shown_ticklabels(axis: Any) -> list[Text]:
    """Tick labels matplotlib actually draws: text set and tick inside the view limits."""
    lo, hi = sorted(axis.get_view_interval())
    pad = (hi - lo) * 1e-9
    return [
        t.label1
        for t in axis.get_major_ticks()
        if t.label1.get_visible() and t.label1.get_text() and lo - pad <= t.get_loc() <= hi + pad
    ]


def assert_readable(fig: Figure) -> None:
    """No two tick labels of an axis overlap, titles do not overlap, all text is inside."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    shown: list[Text] = [fig._suptitle] if fig._suptitle is not None else []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = _shown_ticklabels(axis)
            boxes = [t.get_window_extent(renderer) for t in labels]
            for i, a in enumerate(boxes):
                for b in boxes[i + 1 :]:
                    assert not a.overlaps(b), f"tick labels overlap: {labels[i].get_text()}"
            shown += labels + [axis.label]
        shown.append(ax.title)
        legend = ax.get_legend()
        shown += legend.get_texts() if legend else []
    for legend in fig.legends:
        shown += legend.get_texts()
    titles = [
        t.get_window_extent(renderer)
        for t in [fig._suptitle] + [ax.title for ax in fig.axes]
        if t is not None and t.get_text()
    ]
    for i, a in enumerate(titles):
        for b in titles[i + 1 :]:
            assert not a.overlaps(b), "titles overlap"
    for text in shown:
        if text.get_visible() and text.get_text().strip():
            box = text.get_window_extent(renderer)
            assert box.x0 >= -1 and box.y0 >= -1, text.get_text()
            assert box.x1 <= width + 1 and box.y1 <= height + 1, text.get_text()


def test_sixty_classes_stay_readable() -> None:
    """TACO's 60 class names (real when present) on a synthetic, heavily imbalanced table."""
    try:
        ann, _ = real_dataset("taco")
        names = [c["name"] for c in json.loads(ann.read_text(encoding="utf-8"))["categories"]]
    except pytest.skip.Exception:
        names = [f"class with a long name {i:02d}" for i in range(60)]
    t = tables.build_tables(synthetic_inputs(names), (1024, 9216))
    order = [r["class"] for r in tables.by_pixel_share(t.class_balance)]
    figs = [
        figures.plot_class_balance(
            t.class_balance, t.colors, t.n_images, t.background_share_pct, 60, 100
        ),
        figures.plot_object_sizes(t.size_buckets, t.areas, t.thresholds, 60, 100),
        figures.plot_fold_balance(t.fold_balance, order, 5, 60, 100),
    ]
    for fig in figs:
        assert fig.get_figheight() >= figures.ROW_INCHES * 60
        assert_readable(fig)
        assert len(fig.axes[0].get_yticklabels()) == 60
    every_kind = figures.plot_validation(t.validation_counts, t.validation, 100)
    assert_readable(every_kind)
    found = sum(r["count"] > 0 for r in t.validation_counts)
    assert len(every_kind.axes[0].get_yticklabels()) == found


def test_classes_no_image_has_are_left_out_and_named() -> None:
    """facade's unused category id 0: no row in any figure, one note line naming it."""
    inputs = synthetic_inputs(["wall", "window", "unused"], n_img=40)
    for m in ("pixels", "instances", "small", "medium"):
        inputs.stats.measures[m][:, 2] = 0
    t = tables.build_tables(inputs, (64, 512))
    assert t.absent == ["unused"]
    assert len(t.class_balance) == 3  # the plot table keeps every class
    order = [r["class"] for r in tables.by_pixel_share(t.class_balance)]
    figs = [
        figures.plot_class_balance(
            t.class_balance, t.colors, t.n_images, t.background_share_pct, 60, 100, t.absent
        ),
        figures.plot_object_sizes(t.size_buckets, t.areas, t.thresholds, 60, 100, t.absent),
        figures.plot_fold_balance(t.fold_balance, order, 5, 60, 100, t.absent),
    ]
    for fig in figs:
        labels = [x.get_text() for x in fig.axes[0].get_yticklabels()]
        assert "unused" not in " ".join(labels) and len(labels) == 2
        assert "left out, no image has them: unused" in fig.get_suptitle()
        assert_readable(fig)


def test_share_axes_end_at_100_percent() -> None:
    """A class in every image: the Images panel ends at 100 %, its value inside the bar."""
    inputs = synthetic_inputs(["everywhere", "rare"], n_img=30)
    inputs.stats.measures["pixels"][:, 0] += 1
    t = tables.build_tables(inputs, (64, 512))
    fig = figures.plot_class_balance(
        t.class_balance, t.colors, t.n_images, t.background_share_pct, 60, 100
    )
    for ax in fig.axes[:3]:
        assert ax.get_xlim()[1] <= 100.0
    assert fig.axes[1].get_xlim()[1] == 100.0
    assert_readable(fig)


def test_validation_figure_shows_only_kinds_found() -> None:
    counts = [
        {"kind": k, "action": VALIDATION_KINDS[k], "count": 5 if i < 3 else 0}
        for i, k in enumerate(VALIDATION_KINDS)
    ]
    fig = figures.plot_validation(counts, {"problems_total": 15}, 100)
    labels = [x.get_text() for x in fig.axes[0].get_yticklabels()]
    assert len(labels) == 3
    zero = len(VALIDATION_KINDS) - 3
    assert (
        f"{zero} of the {len(VALIDATION_KINDS)} kinds checked found nothing" in fig.get_suptitle()
    )
    assert_readable(fig)
    none = figures.plot_validation([{**c, "count": 0} for c in counts], {}, 100)
    assert "0 kinds found" in none.get_suptitle()
    assert_readable(none)


def test_synthetic_figures_are_pngs_and_deterministic() -> None:
    """The pure figure build: same tables, same bytes; one PNG per figure."""
    t = tables.build_tables(synthetic_inputs(["cat", "dog", "bird"], n_img=40), (64, 512))
    first = figures.draw_figures(t, 60, 40)
    assert list(first) == list(FIGURES)
    assert all(data.startswith(PNG_MAGIC) for data in first.values())
    assert figures.draw_figures(t, 60, 40) == first


# ---------------------------------------------------------------- reuse from the item store

REUSED = re.compile(r"\((\d+) figures and (\d+) sheets reused\)")
SMALL_GALLERY = {"gallery_per_class": 2, "gallery_per_fold": 3}


def reused(summary: str) -> tuple[int, int]:
    """(figures, sheets) the report took from the item store, from its summary line."""
    found = REUSED.search(summary)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def report_digests(root: Path) -> dict[str, str]:
    """sha256 of every report output: figures, plot tables, gallery, README."""
    paths = [p for top in (FIGURES_DIR, PLOTS_DIR, GALLERY_DIR) for p in (root / top).rglob("*")]
    paths.append(root / REPORT_README_PATH)
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(paths)
        if p.is_file()
    }


def cold_report(work: Path, dest: Path) -> dict[str, str]:
    """The report of ``work``'s inputs run on a copy without the item store (a cold run)."""
    shutil.copytree(work, dest, ignore=shutil.ignore_patterns(".cache"))
    assert reused(report.run(work_params(dest), dest)) == (0, 0)
    return report_digests(dest)


def grow_sample(root: Path) -> None:
    """One new image (a copy of the first under a new name) and one image's polygons moved."""
    path = root / "data/sample/annotations.json"
    coco = json.loads(path.read_text(encoding="utf-8"))
    first = coco["images"][0]
    new = {**first, "id": max(i["id"] for i in coco["images"]) + 1}
    new["file_name"] = "grown/" + first["file_name"].replace("/", "_")
    images = root / "data/sample/images"
    (images / "grown").mkdir()
    shutil.copy(images / first["file_name"], images / new["file_name"])
    next_id = max(a["id"] for a in coco["annotations"]) + 1
    copies = [a for a in coco["annotations"] if a["image_id"] == first["id"]]
    for k, ann in enumerate(copies):
        coco["annotations"].append({**ann, "id": next_id + k, "image_id": new["id"]})
    edited = coco["images"][3]["id"]
    for ann in coco["annotations"]:
        if ann["image_id"] == edited and isinstance(ann["segmentation"], list):
            ann["segmentation"] = [[v + 1.5 for v in part] for part in ann["segmentation"]]
    coco["images"].append(new)
    path.write_text(json.dumps(coco), encoding="utf-8")


@pytest.fixture(scope="module")
def growth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A generated set reported cold and warm, then grown (folds pinned) and reported warm,
    and the grown inputs reported cold on a copy: digests and summaries of each run."""
    work = tmp_path_factory.mktemp("report_growth") / "repo"
    generate(work / "data/sample", n_images=24, n_batches=6, seed=11)
    dataset = {"annotations": "data/sample/annotations.json", "images": "data/sample/images"}
    runs: dict[str, Any] = {"cold": run_pipeline(work, dataset, {}, SMALL_GALLERY)}
    runs["cold_digests"] = report_digests(work)
    runs["warm"] = report.run(work_params(work), work)
    runs["warm_digests"] = report_digests(work)
    (work / "splits").mkdir()
    shutil.copy(work / "data/splits/folds.csv", work / "splits/pinned.csv")
    grow_sample(work)
    runs["grown"] = run_pipeline(work, dataset, {"stable": True}, SMALL_GALLERY)
    runs["grown_digests"] = report_digests(work)
    runs["grown_cold_digests"] = cold_report(work, work.parent / "cold")
    runs["work"] = work
    return runs


def n_sheets(digests: dict[str, str]) -> int:
    return sum(p.startswith(GALLERY_DIR) and p.endswith(".png") for p in digests)


def test_a_warm_run_reuses_everything_and_equals_the_cold_run(growth: dict[str, Any]) -> None:
    assert reused(growth["cold"]) == (0, 0)
    assert growth["warm_digests"] == growth["cold_digests"]
    assert reused(growth["warm"]) == (len(FIGURES), n_sheets(growth["cold_digests"]))


def test_a_grown_set_reuses_most_sheets_and_equals_a_cold_run(growth: dict[str, Any]) -> None:
    """One image added, one edited: the pictures mostly stay, so do the sheets' PNGs."""
    assert growth["grown_digests"] == growth["grown_cold_digests"]
    assert growth["grown_digests"] != growth["cold_digests"]
    total = n_sheets(growth["grown_digests"])
    _, sheets = reused(growth["grown"])
    assert total >= 10 and total / 2 < sheets < total, growth["grown"]


def test_a_damaged_sheet_entry_is_recomputed(growth: dict[str, Any]) -> None:
    """A flipped byte in a stored sheet: removed, counted, drawn again, same bytes written."""
    work = growth["work"]
    params = work_params(work)
    inputs = report.read_inputs(work)
    plan = gallery.plan_gallery(report.read_gallery_inputs(work, params, inputs), params.report)
    store = ItemCache(work / params.cache.dir, 2**30)
    sheet = plan.sheets()[0]
    memo = Memo(store, "report-file-hashes")
    key = report.sheet_key(work, sheet, inputs.classes.palette, params.report.gallery_tile, memo)
    entry = store.dir / key[:2] / key[2:]
    data = bytearray(entry.read_bytes())
    data[-1] ^= 0xFF
    entry.write_bytes(bytes(data))
    before = len(damaged_entries())
    summary = report.run(params, work)
    assert damaged_entries()[before:] == [str(entry)]
    assert reused(summary)[1] == n_sheets(growth["grown_digests"]) - 1
    assert report_digests(work) == growth["grown_digests"]
    assert store.get(key) is not None  # stored again, whole


def test_figures_are_drawn_again_only_when_their_data_changed(
    growth: dict[str, Any], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(growth["work"], work)
    path = work / "reports/validation.json"
    validation = json.loads(path.read_text(encoding="utf-8"))
    validation["images_in"] = int(validation.get("images_in", 0)) + 1
    path.write_text(json.dumps(validation), encoding="utf-8")
    figures_reused, _ = reused(report.run(work_params(work), work))
    assert figures_reused == len(FIGURES) - 1  # all but the validation summary


def test_fingerprint_tells_types_and_shapes_apart() -> None:
    f = report.fingerprint
    assert len({f([1]), f([1.0]), f([True]), f(["1"]), f([None])}) == 5
    a = np.arange(6, dtype=np.int64)
    assert len({f(a), f(a.reshape(2, 3)), f(a.astype(np.int32)), f(a.tolist())}) == 4
    assert f({"a": [0.1, a]}) == f({"a": [0.1, a.copy()]})
    with pytest.raises(TypeError):
        f([object()])


# ---------------------------------------------------------------- real datasets


def test_facade_report(facade_run: Path) -> None:
    check_figures(facade_run)
    check_numbers(facade_run)


def test_taco_report(taco_run: Path) -> None:
    """Real TACO categories (60, many rare, id 0) through the stages: figures and numbers."""
    check_figures(taco_run)
    check_numbers(taco_run)
    balance = read(taco_run / PLOTS_DIR / "class_balance.csv")
    _, t = build(taco_run)
    assert len(t.classes) == 60
    assert len(balance) == 60 - len(t.absent) and not {r["class"] for r in balance} & set(t.absent)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git CLI not installed")
def test_dvc_plots_show_renders_html(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    (repo / "dvc.lock").unlink(missing_ok=True)  # build everything from the sample
    bin_dir = Path(sys.executable).parent
    dvc = str(bin_dir / "dvc") if (bin_dir / "dvc").exists() else "dvc"
    env = dict(
        os.environ,
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(tmp_path / "site"),
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        GIT_CONFIG_NOSYSTEM="1",
    )
    env.pop("PYTHONPATH", None)

    def sh(*args: str) -> str:
        done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    sh("git", "init", "-q")
    if not (repo / ".dvc").is_dir():
        sh(dvc, "init", "-q")
    sh(dvc, "repro", "report")
    out = sh(dvc, "plots", "show", "--json")
    shown = json.loads(out[out.index("{") :])["data"]
    for name in FIGURES:
        assert f"reports/figures/{name}.png" in shown
    vega = [k for k, v in shown.items() if v and v[0].get("type") == "vega"]
    assert len(vega) >= 10
    for key in vega:
        assert shown[key][0]["content"]["data"]["values"], key
    sh(dvc, "plots", "show")
    html = (repo / "dvc_plots" / "index.html").read_text(encoding="utf-8")
    assert html.count("vegaEmbed") == len(vega)
