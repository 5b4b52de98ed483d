"""Stage ``report``: figures people read instead of tables.

Classes, loss weights and folds are decided by looking, so this stage turns the stats tables,
the folds and the validation counts into PNG figures (``reports/figures/``), the numbers behind
them as DVC plot data (``reports/plots/``, rendered by ``dvc plots show``) and a short
``reports/README.md`` that embeds the figures with one line on how to read each.

The stage only reads and writes: the tables are built by :mod:`pipeline.drawing.report_tables`
(pure, so tests recompute them from the CSVs) and the figures drawn from them by
:mod:`pipeline.drawing.figures`. Fold balance compares our folds with a seeded random group-aware
split
of the same images (:func:`pipeline.splitting.baselines.random_group_folds`), so the figure shows
what stratification buys over merely keeping groups together.

The gallery (``reports/gallery/index.html`` and its contact sheets) shows the images
themselves: :mod:`pipeline.drawing.gallery` chooses them from the tables and draws them; this stage
reads only the masks and photos it names (photos through :mod:`pipeline.files.images`; none for a
json without image files), the augmented variants' manifests and the validation issues.

Cost: linear in images x classes and in annotations (instances.csv); figures are bounded by
``report.max_classes`` and the gallery by the ``report.gallery_*`` params, not by the dataset
size. Figures and contact sheets, the costly part, are kept in the item store (``cache.dir``,
:mod:`pipeline.execution.itemcache`) under a key of everything that decides their bytes: for a
figure the code and the exact data it draws, for a sheet the code, its specification (title,
tiles, captions) and the content of every mask and photo it draws (hashed once per file stamp).
A grown dataset redraws the figures (their counts all move) and the few sheets whose pictures
changed; the plot tables, the README and ``index.html`` are always rebuilt (cheap). The outputs
are the bytes of a clean build whatever the store holds; DVC deletes them before the stage
runs, so nothing is taken from the previous outputs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from pipeline.drawing import figures, gallery, report_tables
from pipeline.drawing.figures import draw_figure, figure_args
from pipeline.drawing.gallery import (
    GALLERY_DIR,
    INDEX_NAME,
    GalleryInputs,
    GalleryPlan,
    Picture,
    Sheet,
    Source,
    draw_sheet,
    draw_tile,
    pinned_text,
    plan_gallery,
    render_html,
    sample_issues,
    sheet_spec,
)
from pipeline.drawing.report_tables import (
    ReportInputs,
    ReportTables,
    Rows,
    build_tables,
    plot_tables,
)
from pipeline.execution.cli import command, stage_main
from pipeline.execution.itemcache import (
    ItemCache,
    Memo,
    code_version,
    content_hash,
    item_key,
    open_cache,
    pack,
    unpack,
)
from pipeline.files import contracts, images, orientation
from pipeline.files.contracts import (
    AUGMENTED_DIR,
    CLASSES_PATH,
    FIGURES_DIR,
    FOLDS_PATH,
    INSTANCES_PATH,
    MANIFEST_NAME,
    PLOTS_DIR,
    RANDOM_FOLDS_PATH,
    REPORT_README_PATH,
    SPLIT_QUALITY_PATH,
    VALIDATION_ISSUES_PATH,
    VALIDATION_REPORT_PATH,
    VARIANTS_INDEX_PATH,
    iter_validation_issues,
    read_classes,
    read_folds,
    read_image_stats,
    read_instances,
    read_json_object,
    read_manifest,
    read_mask,
    read_variants_index,
)
from pipeline.files.fsio import atomic_write_bytes, csv_text
from pipeline.files.images import read_image
from pipeline.files.params import Params, ReportParams

__all__ = [
    "FIGURES",
    "QUALITY_KEYS",
    "SPLITTERS",
    "Reuse",
    "build_files",
    "build_gallery",
    "draw_figures_reusing",
    "figures_version",
    "fingerprint",
    "load_picture",
    "main",
    "plot_csv",
    "read_gallery_inputs",
    "read_inputs",
    "render_readme",
    "run",
    "sheet_key",
    "sheets_version",
    "write_tree",
]

# Figure name -> (title, how to read it), in the README's order.
FIGURES: dict[str, tuple[str, str]] = {
    "class_balance": (
        "Class imbalance",
        "Classes sorted by pixel share; compare the three panels: a class with "
        "few pixels but many images is small, not rare (log axes where noted).",
    ),
    "object_sizes": (
        "Object sizes",
        "Left, visible area per object (box = middle half) against the size "
        "thresholds; right, how much of each class is small, medium, large or "
        "hidden.",
    ),
    "fold_balance": (
        "Fold balance",
        "Each cell is a class's share in one fold relative to the whole set: "
        "white is fair, blue under-represented, red over; our split should be "
        "paler than the random one.",
    ),
    "fold_sizes": (
        "Fold and group sizes",
        "Images (and groups) per fold for both splits, and how many images the "
        "groups hold: one huge group limits how even folds can be.",
    ),
    "validation": (
        "Validation summary",
        "Problems per kind found by the validate stage; red kinds dropped items, "
        "blue kinds were repaired or only listed (details in validation_issues.csv).",
    ),
}

SPLITTERS = ("ours", "multilabel_stratified_kfold", "kfold")  # columns of the quality table
QUALITY_KEYS = (
    ("LD", "label distribution (lower is better)"),
    ("LPD", "label-pair distribution (lower is better)"),
    ("FLZ", "(fold, label) pairs without a positive"),
    ("group_leakage", "groups split across folds"),
)


def read_inputs(root: Path) -> ReportInputs:
    """Every file the report reads, through the contracts' checking readers."""
    return ReportInputs(
        stats=read_image_stats(root),
        instances=read_instances(root / INSTANCES_PATH),
        classes=read_classes(root / CLASSES_PATH),
        folds=read_folds(root / FOLDS_PATH),
        random_folds=read_folds(root / RANDOM_FOLDS_PATH),
        validation=read_json_object(root / VALIDATION_REPORT_PATH),
        quality=read_json_object(root / SPLIT_QUALITY_PATH),
    )


def render_readme(quality: dict[str, Any]) -> str:
    """Markdown embedding every figure, one line each on how to read it, and split quality."""
    lines = [
        "# Dataset and fold-balance report",
        "",
        "Written by `dvc repro report` (pipeline/stages/report.py); the numbers behind the "
        f"figures are in `{Path(PLOTS_DIR).name}/` and `dvc plots show` renders them as "
        "an HTML page. Pixel shares are of labelled pixels (ignore excluded).",
        "",
    ]
    lines += [
        "**[Open the gallery](gallery/index.html)**: the images themselves with their masks, "
        "per class (smallest objects zoomed), per fold, per augmented variant, and what "
        "validation dropped or repaired.",
        "",
    ]
    for name, (title, how) in FIGURES.items():
        lines += [f"## {title}", "", how, "", f"![{title}](figures/{name}.png)", ""]
    return "\n".join(lines + _quality_table(quality))


def _quality_table(quality: dict[str, Any]) -> list[str]:
    """Split quality of ours and the library baselines side by side (none: no lines)."""
    splitters = [s for s in SPLITTERS if s in quality]
    if not splitters:
        return []
    lines = [
        f"## Split quality (`{SPLIT_QUALITY_PATH}`)",
        "",
        "| metric | " + " | ".join(splitters) + " |",
        "|---|" + "---|" * len(splitters),
    ]
    for key, label in QUALITY_KEYS:
        cells = [str(quality[s].get(key, "")) for s in splitters]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    pix = [str((quality[s].get("pixel_share_deviation") or {}).get("mean", "")) for s in splitters]
    lines.append("| mean pixel-share deviation | " + " | ".join(pix) + " |")
    pinned = pinned_text(quality.get("pinned"))
    return [*lines, "", *([pinned, ""] if pinned else [])]


def plot_csv(rows: Rows) -> bytes:
    """A plot table as CSV; an empty table still gets a header so DVC can read it."""
    header = list(rows[0]) if rows else ["empty"]
    return csv_text(header, [list(r.values()) for r in rows]).encode("utf-8")


@dataclass
class Reuse:
    """The item store as the report uses it: figures and contact sheets kept by a key of
    everything that decides their bytes, with the content hashes of the files a sheet draws
    remembered by their stamps (an unchanged file is not re-read). Counts what it reused."""

    cache: ItemCache
    memo: Memo
    reused: dict[str, int] = field(default_factory=lambda: {"figures": 0, "sheets": 0})

    def get(self, kind: str, key: str | None) -> bytes | None:
        """The stored payload (None: not stored, damaged and removed, or nothing to key on)."""
        data = self.cache.get(key) if key is not None else None
        self.reused[kind] += data is not None
        return data

    def put(self, key: str | None, data: bytes) -> None:
        if key is not None:
            self.cache.put(key, data)


@functools.cache
def figures_version() -> str:
    """The code that decides a figure's bytes from its data (and the libraries' versions)."""
    return code_version([figures, report_tables, contracts])


@functools.cache
def sheets_version() -> str:
    """The code that decides a contact sheet's bytes from its files (and the libraries')."""
    return code_version([sys.modules[__name__], gallery, contracts, images, orientation])


def _plain(value: Any) -> Any:
    """A numpy value as plain data for msgpack: arrays with their dtype and shape, so two
    different arrays never encode alike."""
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return ["ndarray", data.dtype.str, list(data.shape), data.tobytes()]
    if isinstance(value, np.generic):
        return ["numpy", value.dtype.str, value.item()]
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


_ENCODER = msgspec.msgpack.Encoder(enc_hook=_plain)


def fingerprint(value: Any) -> bytes:
    """A digest of plain data (dicts, lists, str, numbers, None, numpy arrays): msgpack keeps
    types apart (1, 1.0, True and "1" differ) and floats exact."""
    return hashlib.sha256(_ENCODER.encode(value)).digest()


def draw_figures_reusing(
    tables: ReportTables, report: ReportParams, reuse: Reuse | None = None
) -> dict[str, bytes]:
    """Every figure's PNG: from the store when the data it draws (and dpi, max_classes and
    the code) are unchanged, else drawn and stored."""
    out = {}
    for name, args in figure_args(tables, report.max_classes, report.dpi).items():
        key = item_key(figures_version(), name, fingerprint(args)) if reuse else None
        data = reuse.get("figures", key) if reuse else None
        if data is None:
            data = draw_figure(name, args)
            if reuse:
                reuse.put(key, data)
        out[name] = data
    return out


def build_files(
    tables: ReportTables, quality: dict[str, Any], report: ReportParams, reuse: Reuse | None = None
) -> dict[str, bytes]:
    """Every output file (path under the root -> bytes): plot tables, figures, README."""
    plots = plot_tables(tables)
    drawn = draw_figures_reusing(tables, report, reuse)
    return {
        **{f"{PLOTS_DIR}/{name}.csv": plot_csv(rows) for name, rows in plots.items()},
        **{f"{FIGURES_DIR}/{name}.png": data for name, data in drawn.items()},
        REPORT_README_PATH: render_readme(quality).encode("utf-8"),
    }


# ---------------------------------------------------------------- the gallery


def read_gallery_inputs(root: Path, params: Params, inputs: ReportInputs) -> GalleryInputs:
    """What the gallery chooses from: the report's inputs, the variants' manifests (those
    augment-index lists; None for one not built yet) and a bounded pick of the validation
    issues (streamed)."""
    variants: dict[str, Any] = {}
    for name in read_variants_index(root / VARIANTS_INDEX_PATH):
        manifest = root / AUGMENTED_DIR / name / MANIFEST_NAME
        variants[name] = read_manifest(manifest, name) if manifest.is_file() else None
    issues = sample_issues(
        iter_validation_issues(root / VALIDATION_ISSUES_PATH), params.report.gallery_max_issues
    )
    return GalleryInputs(
        inputs.stats,
        inputs.instances,
        inputs.classes,
        inputs.folds,
        variants,
        issues,
        params.dataset.images,
        inputs.quality.get("pinned"),
    )


def load_picture(root: Path, source: Source | None, photos: dict[str, str]) -> Picture:
    """The mask of a tile and its photo when there is one; ``photos`` records per photo path
    ``ok`` or why not (a missing photo is not tried twice: json-only datasets have none)."""
    if source is None:
        return Picture()
    mask = read_mask(root / source.mask)
    photo = None
    if source.photo is not None and photos.get(source.photo, "ok") == "ok":
        try:
            photo = read_image(root / source.photo, mask.shape)
            photos[source.photo] = "ok"
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            photos[source.photo] = "missing"
        except (OSError, ValueError) as exc:
            photos[source.photo] = f"unreadable: {exc}"
    return Picture(mask, photo)


def _picture_loader(root: Path, photos: dict[str, str]) -> Callable[[Source | None], Picture]:
    """Pictures by source, at most two held: a variant row draws each of its two images twice,
    one after the other."""
    recent: dict[Source | None, Picture] = {}

    def picture(source: Source | None) -> Picture:
        if source not in recent:
            if len(recent) == 2:
                recent.pop(next(iter(recent)))
            recent[source] = load_picture(root, source, photos)
        return recent[source]

    return picture


def _file_part(path: Path, memo: Memo, missing_ok: bool) -> str | None:
    """A file's part of a sheet key: its content hash; a photo that is not there is keyed as
    missing (drawn as such); None for anything else (the sheet is drawn, not stored)."""
    try:
        return content_hash(path, memo)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        return f"missing: {type(exc).__name__}" if missing_ok else None
    except OSError:
        return None


def sheet_key(root: Path, sheet: Sheet, palette: np.ndarray, width: int, memo: Memo) -> str | None:
    """The store key of a contact sheet: the code, the sheet's specification (title, tiles,
    captions), the palette, the tile width and the content of every mask and photo it draws.
    None when a mask cannot be read (drawing it gives the error)."""
    parts = [sheets_version(), sheet_spec(sheet), palette.tobytes(), str(width)]
    sources = dict.fromkeys(t.source for row in sheet.rows for t in row if t.source is not None)
    for source in sources:
        mask = _file_part(root / source.mask, memo, missing_ok=False)
        photo = _file_part(root / source.photo, memo, True) if source.photo is not None else "-"
        if mask is None or photo is None:
            return None
        parts += [mask, photo]
    return item_key(*parts)


def _draw(
    sheet: Sheet, picture: Callable[[Source | None], Picture], palette: np.ndarray, width: int
) -> tuple[bytes, tuple[int, int]]:
    """A contact sheet drawn from its files: PNG bytes and (width, height)."""
    rows = [[draw_tile(t, picture(t.source), palette, width) for t in row] for row in sheet.rows]
    return draw_sheet(sheet.title, rows)


def build_gallery(
    root: Path, plan: GalleryPlan, palette: np.ndarray, width: int, reuse: Reuse | None = None
) -> dict[str, bytes]:
    """Every gallery file (path under GALLERY_DIR -> bytes). A sheet whose key is in the store
    is taken from it with the photo statuses it found (no image is decoded); the page is always
    rendered anew (its counts change with every dataset)."""
    photos: dict[str, str] = {}
    files: dict[str, bytes] = {}
    sizes: dict[str, tuple[int, int]] = {}
    picture = _picture_loader(root, photos)
    for sheet in plan.sheets():
        key = sheet_key(root, sheet, palette, width, reuse.memo) if reuse else None
        stored = reuse.get("sheets", key) if reuse else None
        if stored is not None:
            data, w, h, found = unpack(stored)  # type: ignore[misc]
            photos.update(found)  # what the page says of each photo: found, missing, ...
        else:
            data, (w, h) = _draw(sheet, picture, palette, width)
            drawn = {t.source.photo for row in sheet.rows for t in row if t.source}
            found = {p: photos[p] for p in sorted(drawn - {None})}
            if reuse:
                reuse.put(key, pack([data, w, h, found]))
        files[sheet.path], sizes[sheet.path] = data, (w, h)
    files[INDEX_NAME] = render_html(plan, sizes, photos).encode("utf-8")
    return files


def write_tree(folder: Path, files: dict[str, bytes]) -> None:
    """Make ``folder`` hold exactly ``files``: built beside it and swapped in when complete, so
    no sheet of an earlier run (a class since merged) survives and no half gallery is left."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    old = folder.parent / f".{folder.name}.old-{tmp.name}"
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- the stage


def run(params: Params, root: Path = Path(".")) -> str:
    """Read the stage inputs under ``root``, build every output in memory (figures and sheets
    from the item store where their keys are known), write them atomically."""
    inputs = read_inputs(root)
    tables = build_tables(inputs, params.masks.size_thresholds)
    cache = open_cache(params.cache.dir, params.cache.max_size_gb, root)
    reuse = Reuse(cache, Memo(cache, "report-file-hashes"))
    files = build_files(tables, inputs.quality, params.report, reuse)
    plan = plan_gallery(read_gallery_inputs(root, params, inputs), params.report)
    pages = build_gallery(root, plan, inputs.classes.palette, params.report.gallery_tile, reuse)
    reuse.memo.save()
    for path, data in files.items():
        atomic_write_bytes(root / path, data)
    write_tree(root / GALLERY_DIR, pages)
    cache.settle()
    return _summary(tables, files, pages, reuse)


def _summary(
    tables: ReportTables, files: dict[str, bytes], pages: dict[str, bytes], reuse: Reuse
) -> str:
    n_figures = sum(path.startswith(FIGURES_DIR) for path in files)
    n_plots = sum(path.startswith(PLOTS_DIR) for path in files)
    kept = reuse.reused
    note = (
        f" ({kept['figures']} figures and {kept['sheets']} sheets reused)"
        if kept["figures"] or kept["sheets"]
        else ""
    )
    return (
        f"{len(tables.classes)} classes in {tables.n_images} images: {n_figures} figures in "
        f"{FIGURES_DIR}/, {n_plots} plot tables in {PLOTS_DIR}/, {len(pages) - 1} contact "
        f"sheets in {GALLERY_DIR}/, summary in {REPORT_README_PATH}{note}"
    )


def main(argv: list[str] | None = None) -> None:
    stage_main("report", __doc__, argv, lambda params, root, args: run(params, root))


if __name__ == "__main__":  # dvc.yaml's command, which names this module
    from pipeline.stages import report

    command(report.main)
