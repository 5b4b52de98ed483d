"""The gallery: which pictures it chooses, that it draws them the same every time, that its page
is safe with hostile names and that a real browser loads every picture on it.

The stages run in-process on a generated sample (with both augmented variants) and on a json
without image files; the page is opened in headless Chromium (Debian's ``chromium`` and
``chromium-driver`` packages, driven by selenium) where they are installed, else those tests are
skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.drawing import gallery
from pipeline.files.contracts import (
    Classes,
    FoldRow,
    FoldTable,
    ImageStats,
    Instances,
    ManifestRow,
)
from pipeline.files.params import Params, ReportParams, parse_params
from pipeline.stages import augment, masks, report, split, validate, vectors
from pipeline.tools.sample import generate
from tests.conftest import ROOT, real_dataset

GALLERY = Path(gallery.GALLERY_DIR)
HOSTILE_NAME = "a<script>alert(1)</script>#%?.jpg"
HOSTILE_CLASS = "<img src=x onerror=alert(1)>"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def run_stages(work: Path, raw: dict[str, Any], with_variants: bool = True) -> Params:
    """Every stage the report reads from, in-process, under ``work``."""
    raw = {**raw, "workers": 1}
    (work / "params.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    params = parse_params(raw)
    for stage in (validate, masks, vectors, split):
        stage.run(params, work)
    augment.write_index(params, work)  # the variant list the report reads
    if with_variants:
        for name in params.augment.variants:
            augment.run(params, work, name)
    report.run(params, work)
    return params


def base_params(dataset: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["dataset"].update(dataset)
    for name, values in sections.items():
        raw[name] = {**(raw.get(name) or {}), **values}
    return raw


@pytest.fixture(scope="module")
def sample_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("gallery_sample")
    generate(work / "sample", n_images=30, n_batches=6, seed=3)
    run_stages(
        work, base_params({"annotations": "sample/annotations.json", "images": "sample/images"})
    )
    return work


class Page(HTMLParser):
    """Tags, image sources and links of a page, as a browser would see the markup."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "img":
            self.images.append(values["src"] or "")
        if tag == "a":
            self.links.append(values["href"] or "")


def parse_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def target(index: Path, href: str) -> Path:
    """The file a relative or file:// link of the page points to."""
    if href.startswith("file://"):
        return Path(unquote(urlparse(href).path))
    return (index.parent / unquote(href)).resolve()


# ---------------------------------------------------------------- the stage on the sample


def test_gallery_has_every_part_and_every_link_resolves(sample_gallery: Path) -> None:
    index = sample_gallery / GALLERY / "index.html"
    page = parse_page(index)
    sheets = sorted(
        p.relative_to(sample_gallery / GALLERY).as_posix()
        for p in (sample_gallery / GALLERY).rglob("*.png")
    )
    assert sorted(page.images) == sheets
    n_classes = len(read_stats(sample_gallery).classes)
    assert sum(s.startswith("classes/") for s in sheets) <= n_classes
    assert [s for s in sheets if s.startswith("folds/")] == [
        f"folds/fold_{k}.png" for k in range(5)
    ]
    assert [s for s in sheets if s.startswith("variants/")] == [
        "variants/variant_01.png",
        "variants/variant_02.png",
    ]
    assert page.links, "entries link photos and masks"
    for href in page.links:
        if not href.startswith("#"):
            assert target(index, href).is_file(), href
    assert "script" not in page.tags


def read_stats(work: Path) -> ImageStats:
    from pipeline.files.contracts import read_image_stats

    return read_image_stats(work)


def test_gallery_is_byte_identical_and_keeps_no_stale_sheet(sample_gallery: Path) -> None:
    before = {
        p: p.read_bytes() for p in sorted((sample_gallery / GALLERY).rglob("*")) if p.is_file()
    }
    stale = sample_gallery / GALLERY / "classes" / "class_999.png"
    stale.write_bytes(b"old")
    params = parse_params(yaml.safe_load((sample_gallery / "params.yaml").read_text()))
    summary = report.run(params, sample_gallery)  # warm: every sheet from the item store
    after = {
        p: p.read_bytes() for p in sorted((sample_gallery / GALLERY).rglob("*")) if p.is_file()
    }
    assert after == before
    assert not list((sample_gallery / "reports").glob(".gallery.*")), "temporary folders left"
    sheets = [p for p in before if p.suffix == ".png"]
    assert f"and {len(sheets)} sheets reused" in summary, summary
    assert any("variants" in p.parts for p in sheets)


def test_gallery_size_follows_the_params(sample_gallery: Path) -> None:
    """A few MB on the sample; half the pictures per part, about half the bytes."""
    total = sum(p.stat().st_size for p in (sample_gallery / GALLERY).rglob("*") if p.is_file())
    assert total < 4_000_000
    raw = yaml.safe_load((sample_gallery / "params.yaml").read_text())
    raw["report"].update(
        gallery_per_class=1, gallery_per_fold=2, gallery_per_variant=1, gallery_tile=96
    )
    params = parse_params(raw)
    inputs = report.read_inputs(sample_gallery)
    plan = gallery.plan_gallery(
        report.read_gallery_inputs(sample_gallery, params, inputs), params.report
    )
    files = report.build_gallery(sample_gallery, plan, inputs.classes.palette, 96)
    assert sum(len(b) for b in files.values()) < total / 4
    for sheet in plan.sheets():
        assert all(len(row) <= 6 for row in sheet.rows)
        assert sum(len(row) for row in sheet.rows) <= 4


def test_class_sheets_show_the_class_and_its_smallest_objects(sample_gallery: Path) -> None:
    """Every drawn image holds the class; the zooms are the class's smallest objects."""
    params = parse_params(yaml.safe_load((sample_gallery / "params.yaml").read_text()))
    inputs = report.read_inputs(sample_gallery)
    plan = gallery.plan_gallery(
        report.read_gallery_inputs(sample_gallery, params, inputs), params.report
    )
    stats, inst = inputs.stats, inputs.instances
    row_of = {i: r for r, i in enumerate(stats.image_ids)}
    for sheet in plan.sections[0].sheets:
        index = int(re.search(r"class_(\d+)", sheet.path).group(1))
        overlays, zooms = sheet.rows[0], sheet.rows[1] if len(sheet.rows) > 1 else ()
        for tile in overlays:
            assert stats.measure("pixels")[row_of[tile.source.image_id], index - 1] > 0
        visible = np.sort(
            inst.visible_pixels[
                (inst.class_index == index) & (inst.iscrowd == 0) & (inst.visible_pixels > 0)
            ]
        )
        assert [t.target_px for t in zooms] == sorted(t.target_px for t in zooms)
        if zooms:
            assert zooms[0].target_px == visible[0]


# ---------------------------------------------------------------- pure pieces


def test_spread_pick_runs_from_small_to_large_and_is_seeded() -> None:
    rows = np.arange(100)
    key = np.arange(100)[::-1].astype(float)  # row 99 has the smallest key
    rank = gallery.name_rank(gallery.name_hashes([f"{i}.jpg" for i in rows]), 1, "class", 1)
    a = gallery.spread_pick(rows, key, rank, 4)
    assert np.array_equal(a, gallery.spread_pick(rows, key, rank, 4))
    assert list(key[a]) == sorted(key[a])
    assert [int(k) // 25 for k in key[a]] == [0, 1, 2, 3]
    assert gallery.spread_pick(rows[:2], key[:2], rank[:2], 4).size == 2
    for run, row in enumerate(a.tolist()):  # the best ranked row of its quarter
        quarter = rows[key // 25 == run]
        assert rank[row] == rank[quarter].min()


def test_name_rank_is_seeded_per_use_and_ignores_the_row() -> None:
    names = [f"batch_{i % 3}/{i}.jpg" for i in range(50)]
    hashes = gallery.name_hashes(names)
    rank = gallery.name_rank(hashes, 0, "fold", 2)
    assert np.array_equal(rank, gallery.name_rank(gallery.name_hashes(names), 0, "fold", 2))
    assert np.array_equal(gallery.name_rank(hashes[::-1], 0, "fold", 2), rank[::-1])
    for other in ((1, "fold", 2), (0, "class", 2), (0, "fold", 3)):
        assert not np.array_equal(gallery.name_rank(hashes, *other), rank)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    added=st.integers(1, 10),
    pick=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_stable_pick_keeps_what_no_new_image_outranks(
    n: int, added: int, pick: int, seed: int
) -> None:
    """Images added (at any rows): every pick is an old pick or a new image, and an old pick
    is lost only to a new image."""
    names = [f"{i}.jpg" for i in range(n + added)]
    rank = gallery.name_rank(gallery.name_hashes(names), seed, "fold", 0)
    before = set(gallery.stable_pick(np.arange(n), rank[:n], pick).tolist())
    after = set(gallery.stable_pick(np.arange(n + added), rank, pick).tolist())
    new = after - before
    assert new <= set(range(n, n + added))
    assert len(before - after) == len(new) - (len(after) - len(before))  # room left: none lost
    assert len(after) == min(pick, n + added)


def grown(inputs: gallery.GalleryInputs, extra: int, seed: int) -> gallery.GalleryInputs:
    """``inputs`` with ``extra`` new images (random pixels, new names) inserted at random rows."""
    rng = np.random.default_rng(seed)
    stats, n = inputs.stats, len(inputs.stats.image_ids)
    at = np.sort(rng.choice(n + extra, size=extra, replace=False))
    keep = np.setdiff1d(np.arange(n + extra), at)
    order = np.empty(n + extra, np.int64)
    order[keep], order[at] = np.arange(n), np.arange(n, n + extra)
    pixels = np.vstack([stats.measure("pixels"), rng.integers(0, 900, (extra, len(stats.classes)))])
    pixels[n:, -1] = 0
    counts = (pixels > 0).astype(np.int64)
    names = stats.file_names + [f"new/{seed}_{k}.jpg" for k in range(extra)]
    ids = stats.image_ids + [10_000 + k for k in range(extra)]
    table = ImageStats(
        [ids[i] for i in order],
        [names[i] for i in order],
        stats.classes,
        np.full(n + extra, 100),
        np.full(n + extra, 80),
        8000 - pixels[order].sum(1),
        np.zeros(n + extra, np.int64),
        {"pixels": pixels[order], "instances": counts[order], "small": counts[order]},
    )
    folds = FoldTable(
        inputs.folds.rows
        + tuple(FoldRow(ids[n + k], names[n + k], "new", str(k % 4)) for k in range(extra)),
        inputs.folds.n_folds,
    )
    return dataclasses.replace(inputs, stats=table, folds=folds)


def picks(plan: gallery.GalleryPlan) -> dict[str, list[int]]:
    return {
        s.path: [t.source.image_id for row in s.rows for t in row if t.source]
        for s in plan.sheets()
    }


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_grown_set_keeps_most_pictures(seed: int) -> None:
    """1% more images, anywhere in the table: at least 90% of the pictures stay, and most
    sheets show exactly the same images (their PNGs are reused)."""
    config = ReportParams(gallery_per_class=4, gallery_per_fold=6)
    inputs = synthetic(n_img=400, n_classes=6, seed=seed % 1000)
    before = picks(gallery.plan_gallery(inputs, config))
    after = picks(gallery.plan_gallery(grown(inputs, 4, seed), config))
    assert before.keys() == after.keys()
    kept = sum(len(set(before[p]) & set(after[p])) for p in before)
    assert kept >= 0.9 * sum(len(set(images)) for images in before.values())
    assert sum(before[p] == after[p] for p in before) >= 0.6 * len(before)


def test_grid_keeps_rows_even() -> None:
    tiles = [gallery.Tile(None)] * 8
    assert [len(r) for r in gallery.grid(tiles)] == [4, 4]
    assert [len(r) for r in gallery.grid(tiles[:7])] == [4, 3]
    assert [len(r) for r in gallery.grid(tiles[:6])] == [6]
    assert gallery.grid([]) == ()


def test_fit_text_is_ascii_and_cut_in_the_middle() -> None:
    text = "batch_01/" + "x" * 200 + "_end.jpg"
    cut = gallery.fit_text(text, 150)
    assert cut.startswith("batch_01/") and cut.endswith("_end.jpg") and ".." in cut
    assert gallery.fit_text("caf\u00e9 \U0001f600", 500) == "caf? ?"


def issue(kind: str, action: str, image: str, n: int = 0) -> dict[str, str]:
    return {
        "kind": kind,
        "action": action,
        "image_id": image,
        "annotation_id": str(n),
        "category_id": "",
        "field": "",
        "message": f"{kind} {n}",
    }


def test_issues_take_each_kind_in_turn_and_stay_bounded() -> None:
    rows = [issue("image_missing", "dropped", str(i)) for i in range(5000)]
    rows += [issue("polygon_not_finite", "dropped", "7", n) for n in range(50)]
    rows += [issue("coordinates_outside_image", "kept", "8")]  # only listed: not shown
    rows += [issue("value_not_finite", "repaired", "9")]
    sample = gallery.sample_issues(iter(rows), 4)
    assert [i for i, _ in sample.picked] == [7, 9, 0, 1]  # kinds in VALIDATION_KINDS order
    assert sample.counts == {"image_missing": 5000, "polygon_not_finite": 50, "value_not_finite": 1}
    assert sample.images == 5000  # 7 and 9 are among the 5000 missing images too
    assert len(dict(sample.picked)[7]) == gallery.ROWS_PER_ISSUE_IMAGE
    assert gallery.sample_issues(iter(rows), 0).picked == []


def synthetic(n_img: int = 40, n_classes: int = 5, seed: int = 0) -> gallery.GalleryInputs:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 3, size=(n_img, n_classes)) * rng.integers(
        1, 500, size=(n_img, n_classes)
    )
    pixels[:, -1] = 0  # a class no image has
    counts = (pixels > 0).astype(np.int64)
    stats = ImageStats(
        image_ids=list(range(10, 10 + n_img)),
        file_names=[f"g{i % 8}/{i}.jpg" for i in range(n_img)],
        classes=[f"c{j}" for j in range(n_classes)],
        width=np.full(n_img, 100),
        height=np.full(n_img, 80),
        background=8000 - pixels.sum(1),
        ignore=np.zeros(n_img, np.int64),
        measures={"pixels": pixels, "instances": counts, "small": counts},
    )
    image_of, class_of = np.nonzero(counts)
    instances = Instances(
        class_index=class_of + 1,
        iscrowd=np.zeros(image_of.size, np.int64),
        visible_pixels=pixels[image_of, class_of],
        image_id=image_of + 10,
        annotation_id=np.arange(image_of.size),
    )
    folds = FoldTable(
        tuple(FoldRow(i + 10, stats.file_names[i], f"g{i % 8}", str(i % 4)) for i in range(n_img)),
        4,
    )
    classes = Classes(
        ["background", *stats.classes],
        [(0, 0, 0)] * (n_classes + 1),
        [[j] for j in range(n_classes + 1)],
        np.zeros((256, 3), np.uint8),
    )
    manifest = [
        ManifestRow(i + 10, f"images/{i}__c0.png", f"masks/{i}__c0.png", "v", 1, 0)
        for i in range(n_img)
    ]
    sample = gallery.sample_issues(iter([]), 3)
    return gallery.GalleryInputs(
        stats, instances, classes, folds, {"v": manifest, "w": None}, sample, "imgs"
    )


def test_plan_is_seeded_bounded_and_leaves_out_empty_classes() -> None:
    inputs = synthetic()
    config = ReportParams(
        gallery_per_class=3, gallery_per_fold=5, gallery_per_variant=2, max_classes=3
    )
    plan = gallery.plan_gallery(inputs, config)
    assert plan == gallery.plan_gallery(inputs, config)
    classes, folds, variants, issues = plan.sections
    assert len(classes.sheets) == 3
    assert any("c4" in note and "no image has them" in note for note in classes.notes)
    assert any("1 more classes" in note for note in classes.notes)
    assert all(len(row) <= 3 for s in classes.sheets for row in s.rows)
    assert [s.path for s in folds.sheets] == [f"folds/fold_{k}.png" for k in range(4)]
    assert all(sum(map(len, s.rows)) == 5 for s in folds.sheets)
    assert [len(row) for row in variants.sheets[0].rows] == [4, 4]
    assert any("w is not built" in note for note in variants.notes)
    assert issues.sheets == ()
    other = gallery.plan_gallery(inputs, ReportParams(gallery_seed=1))
    assert other.sections[1] != gallery.plan_gallery(inputs, ReportParams()).sections[1]
    photo = classes.sheets[0].rows[0][0].source.photo
    assert photo.startswith("imgs/g")


def test_tiles_draw_masks_alone_and_zoom_on_the_object() -> None:
    palette = np.zeros((256, 3), np.uint8)
    palette[1] = (200, 0, 0)
    mask = np.zeros((300, 400), np.uint8)
    mask[10:200, 10:200] = 1
    mask[250:253, 350:352] = 1  # a 6 px object
    tile = gallery.Tile(None, "overlay", (1,), ("#1", "x.jpg"))
    plain = gallery.draw_tile(tile, gallery.Picture(mask), palette, 160)
    assert plain.shape == (120 + gallery.CAPTION_PX, 160, 3)
    zoom = gallery.Tile(None, "zoom", (1,), ("#2", "x.jpg"), target_px=6)
    found = gallery.zoom_window(mask, 1, 6, 4 / 3)
    assert found is not None and found[1] == (350, 250, 2, 3)
    drawn = gallery.draw_tile(zoom, gallery.Picture(mask), palette, 160)
    red = (drawn[:120, :, 2] > 200) & (drawn[:120, :, 0] < 50)
    assert red.sum() > 6 * 25, "the 6 px object is enlarged"
    photo = np.full((300, 400, 3), 90, np.uint16) * 256  # 16-bit photos are shown too
    on_photo = gallery.draw_tile(tile, gallery.Picture(mask, photo), palette, 160)
    assert not np.array_equal(on_photo, plain)


# ---------------------------------------------------------------- hostile names


@pytest.fixture(scope="module")
def hostile_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample whose first image is named ``a<script>alert(1)</script>#%?.jpg`` and whose
    first class is named like an HTML tag: both reach the page only as text."""
    work = tmp_path_factory.mktemp("gallery_hostile")
    generate(work / "sample", n_images=10, n_batches=5, seed=5)
    coco = json.loads((work / "sample/annotations.json").read_text(encoding="utf-8"))
    first = coco["images"][0]
    source = work / "sample/images" / first["file_name"]
    dest = work / "sample/images" / HOSTILE_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    source.rename(dest)
    first["file_name"] = HOSTILE_NAME
    coco["categories"][0]["name"] = HOSTILE_CLASS
    (work / "sample/annotations.json").write_text(json.dumps(coco), encoding="utf-8")
    raw = base_params(
        {"annotations": "sample/annotations.json", "images": "sample/images"},
        split={"n_splits": 3},
        augment={"variants": {}},
    )
    run_stages(work, raw, with_variants=False)
    return work


def test_hostile_names_are_text_never_markup(hostile_gallery: Path) -> None:
    index = hostile_gallery / GALLERY / "index.html"
    text = index.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "<img src=x" not in text
    assert html.escape(HOSTILE_NAME) in text
    assert html.escape(HOSTILE_CLASS) in text
    page = parse_page(index)
    assert set(page.tags) <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "h3",
        "p",
        "nav",
        "a",
        "section",
        "article",
        "img",
        "ol",
        "li",
        "code",
    }
    hostile_links = [h for h in page.links if "%3Cscript%3E" in h]
    assert hostile_links, "the hostile photo is linked, URL-encoded"
    for href in hostile_links:
        assert "#" not in href and "?" not in href and "<" not in href
        assert target(index, href).is_file(), href
    photo = (hostile_gallery / "sample/images" / HOSTILE_NAME).resolve()
    assert photo in {target(index, href) for href in hostile_links}


# ---------------------------------------------------------------- a pinned split


def test_pinned_changes_reach_the_readme_and_the_gallery(tmp_path: Path) -> None:
    """With a pinned split (issue 12), the moved / added / removed counts of
    split_quality.json are said in reports/README.md and on the gallery's folds section."""
    from tests.test_stable import grow, params_for, pin, run_split

    root = tmp_path / "project"
    generate(root / "data/sample", n_images=24, n_batches=8, seed=4)
    run_split(root, params_for())
    pin(root)
    grow(root, tmp_path)
    params = params_for(stable=True, seed=7)
    run_split(root, params)
    augment.write_index(params, root)
    report.run(params, root)
    sentence = (
        "Against the pinned split: 0 images moved, 6 images added, 2 images removed; "
        "folds kept (split.stable: true)."
    )
    assert sentence in (root / "reports/README.md").read_text(encoding="utf-8")
    page = (root / GALLERY / "index.html").read_text(encoding="utf-8")
    folds = page[page.index('<section id="folds">') :]
    assert sentence in folds[: folds.index("</section>")]


def test_no_pinned_split_no_sentence() -> None:
    assert gallery.pinned_text(None) is None
    assert gallery.pinned_text({"stable": 0, "moved": 1, "added": 0, "removed": 0}) == (
        "Against the pinned split: 1 image moved, 0 images added, 0 images removed; "
        "re-split (split.stable: false)."
    )
    plan = gallery.plan_gallery(synthetic(), ReportParams())
    assert plan.sections[1].notes == ()


# ---------------------------------------------------------------- a json without image files


def test_json_without_images_gives_masks_alone(tmp_path: Path) -> None:
    """TACO's json (every 20th image, no image files): masks alone, and the page says so."""
    ann, _ = real_dataset("taco")
    coco = json.loads(ann.read_text(encoding="utf-8"))
    coco["images"] = coco["images"][::20]
    keep = {im["id"] for im in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    (tmp_path / "taco.json").write_text(json.dumps(coco), encoding="utf-8")
    (tmp_path / "no_images").mkdir()
    raw = base_params(
        {"annotations": "taco.json", "images": "no_images", "missing_images": "keep"},
        augment={"variants": {}},
        report={"gallery_per_class": 1, "gallery_per_fold": 2, "max_classes": 8},
    )
    run_stages(tmp_path, raw, with_variants=False)
    index = tmp_path / GALLERY / "index.html"
    text = index.read_text(encoding="utf-8")
    assert "no photo found" in text and "masks alone" in text
    assert "(photo missing)" not in text
    page = parse_page(index)
    assert len([s for s in page.images if s.startswith("classes/")]) == 8
    assert all((index.parent / s).is_file() for s in page.images)


# ---------------------------------------------------------------- a real browser


def open_in_browser(index: Path) -> dict[str, Any]:
    """Load the page from disk in headless Chromium; report its images, scripts and alerts."""
    if BROWSER is None or DRIVER is None:
        pytest.skip(
            "no chromium / chromedriver installed (apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(index.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images)"
            ".map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
        )
        scripts = driver.execute_script("return document.scripts.length")
        try:
            alert = driver.switch_to.alert.text
        except NoAlertPresentException:
            alert = None
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return {"images": images, "scripts": scripts, "alert": alert}


def test_browser_loads_every_picture(sample_gallery: Path) -> None:
    seen = open_in_browser(sample_gallery / GALLERY / "index.html")
    assert len(seen["images"]) >= 10
    broken = [src for src, complete, width in seen["images"] if not (complete and width > 0)]
    assert not broken, broken
    assert seen["scripts"] == 0


def test_browser_runs_nothing_from_hostile_names(hostile_gallery: Path) -> None:
    seen = open_in_browser(hostile_gallery / GALLERY / "index.html")
    assert seen["alert"] is None and seen["scripts"] == 0
    assert all(complete and width > 0 for _, complete, width in seen["images"])
