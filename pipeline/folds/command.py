"""The trainer's command line, ``python -m pipeline.folds <command>`` (``-h`` lists them):
``get``, ``update`` (and what changed), ``versions``, ``check``, ``classes`` (distribution and
weights), ``coco-json``, ``mmseg-layout``, ``show``, ``pin`` and ``diff``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pipeline.files.contracts import EXPORTS_DIR, FOLDS_PATH
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_bytes, csv_text
from pipeline.folds.changes import describe_changes, snapshot
from pipeline.folds.coco import coco_json
from pipeline.folds.dvcfile import read_pin
from pipeline.folds.exported import metadata
from pipeline.folds.mmseg import LAYOUT_CONFIG, LAYOUT_METAINFO, check_layout, mmseg_layout
from pipeline.folds.pinned import DIFF_COLUMNS, PINNED_PATH, diff, pin
from pipeline.folds.read import classes, fold
from pipeline.folds.remote import get, update
from pipeline.folds.revision import check, used_parts
from pipeline.folds.tags import installed_from, versions
from pipeline.folds.weights import KINDS, class_distribution, class_weights, missing_in_val

__all__ = ["COMMANDS", "main"]


def _print_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[str(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    numeric = [all(r[i].isdigit() for r in cells) for i in range(len(header))]
    for row in (list(header), *cells):
        line = (
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(row, widths, numeric, strict=True)
        )
        print("  ".join(line).rstrip())


def _cmd_diff(args: argparse.Namespace) -> None:
    changes, summary = diff(args.old, args.new, args.root)
    header = ("fold", "old", "new", "kept", "moved_in", "moved_out", "added", "removed")
    _print_table(header, summary)
    shown = changes[: args.show]
    if shown:
        print()
        _print_table(DIFF_COLUMNS, shown)
    if len(changes) > len(shown):
        print(f"... {len(changes) - len(shown)} more (--csv FILE lists every change)")
    if args.csv:
        atomic_write_bytes(args.csv, csv_text(DIFF_COLUMNS, changes).encode("utf-8"))
        print(f"{len(changes)} changes written to {args.csv}")


def _cmd_show(args: argparse.Namespace) -> None:
    wanted = "all" if args.variants == ["all"] else args.variants
    f = fold(args.k, args.root, variants=wanted)
    print("part,image,mask")
    for part, pairs in (("train", f.train), ("val", f.val)):
        for image, mask in pairs:
            print(f"{part},{image},{mask}")


def _cmd_layout(args: argparse.Namespace) -> None:
    out = mmseg_layout(args.out, args.root, args.images, args.masks, args.img_suffix)
    print(f"mmseg layout in {out} (img_dir, ann_dir, splits, {LAYOUT_METAINFO}, {LAYOUT_CONFIG})")


def _cmd_get(args: argparse.Namespace) -> None:
    parts = get(args.url, args.rev, args.root, args.variants, args.images)
    _report_pinned(parts, args.rev, args.root)


def _cmd_update(args: argparse.Namespace) -> None:
    before = snapshot(args.root)
    old = read_pin(args.root, EXPORTS_DIR)
    parts = update(args.rev, args.root, args.variants, args.images)
    lines = describe_changes(before, snapshot(args.root))
    print(f"changes from {old.label if old else 'before'} to {args.rev}:")
    for line in lines or ["none"]:
        print(f"  {line}")
    _report_pinned(parts, args.rev, args.root)


def _report_pinned(parts: list[str], rev: str, root: str) -> None:
    print(f"pinned at {rev}: {', '.join(parts)} (every file checked)")
    try:
        table = classes(root)
        print(f"classes: {table.num_classes} (background included, ignore {table.ignore_index})")
    except DatasetError as exc:  # exports made before the class table was exported
        print(f"note: {exc}")
    _print_missing(root)
    _tool_note(rev, read_pin(root, EXPORTS_DIR))
    print(f'staged the .dvc files in git; commit them: git commit -m "train on {rev}"')


def _print_missing(root: str) -> None:
    """The classes some fold validates without (split_warnings.json says a class is rare;
    this says which folds)."""
    try:
        missing = missing_in_val(root)
    except DatasetError:
        return  # exports made before the class distribution: nothing to say
    for name, where in missing.items():
        folds = ", ".join(str(k) for k in where)
        print(f"note: class {name!r} has no pixel in the val part of fold(s) {folds}")


def _tool_note(rev: str, exports: Any) -> None:
    """Whether the installed tool is the pinned revision's code, and how to make it so."""
    found = installed_from()
    url = exports.url if exports is not None and exports.url else "<dataset repo>"
    url = url if "://" in url else f"file://{os.path.abspath(url)}"
    again = f'pip install "git+{url}@{rev}"'
    if found is None:
        print(f"tool: coco-folds's install says not where it came from; for {rev}'s code: {again}")
    elif found.editable:
        print(f"tool: coco-folds is an editable install of {found.url} (that checkout's code)")
    elif found.revision == rev:
        print(f"tool: coco-folds installed from {rev}, the revision the data is at")
    else:
        was = found.revision or (found.commit or "")[:10] or found.url
        print(f"tool: coco-folds was installed from {was}, the data is at {rev}: {again}")


def _cmd_versions(args: argparse.Namespace) -> None:
    pinned = read_pin(args.root, EXPORTS_DIR)
    url = args.url or (pinned.url if pinned is not None else None)
    if not url:
        raise DatasetError("which dataset repo? `python -m pipeline.folds versions URL`")
    found = versions(url)
    if not found:
        print(f"{url} has no tags")
    rows = [
        ("*" if pinned is not None and pinned.rev == v.tag else "", v.tag, v.date, v.subject,
         v.summary)
        for v in found
    ]  # fmt: skip
    if rows:
        _print_table(("", "tag", "date", "message", "summary"), rows)


def _cmd_check(args: argparse.Namespace) -> None:
    if args.layout:
        print(check_layout(args.layout))
        return
    meta = metadata(args.root)
    check(args.root, used_parts(meta, meta["variants"]))
    pinned = read_pin(args.root, EXPORTS_DIR)
    where = f"pinned at {pinned.label}" if pinned is not None else "not pinned"
    print(f"{EXPORTS_DIR} ({where}) and every part it was made from: one revision, as pinned")


def _cmd_classes(args: argparse.Namespace) -> None:
    table = classes(args.root)
    rows = {(r.fold, r.part, r.class_index): r for r in class_distribution(args.root)}
    weights = class_weights(args.fold, args.kind, args.root)
    k = str(args.fold)
    header = ("index", "class", "train_pixels", "train_images", "val_pixels", "val_images")
    out = []
    for c, name in enumerate(table.names):
        train, val = rows[(k, "train", c)], rows[(k, "val", c)]
        cells = [c, name, train.pixels, train.images, val.pixels, val.images]
        out.append([*cells, f"{weights[c]:.4f}"])
    print(f"fold {k}: class distribution and {args.kind} weights (computed on train)")
    _print_table((*header, f"{args.kind}_weight"), out)
    _print_missing(args.root)


def _cmd_coco(args: argparse.Namespace) -> None:
    path = coco_json(args.fold, args.part, args.root, args.out)
    print(f"fold {args.fold} {args.part}: {path}")


def _cmd_pin(args: argparse.Namespace) -> None:
    table = pin(args.root, args.to)
    print(
        f"pinned {len(table.rows)} images ({table.n_folds} folds) to {args.to}; "
        f"commit it: git add {args.to}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.folds", description="Pin, read and compare exported folds."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    get_ = sub.add_parser("get", help="in a trainer repo: import one revision's folds")
    get_.add_argument("url", help="the dataset (pipeline) repo: git URL or local path")
    upd = sub.add_parser("update", help="in a trainer repo: move every pinned part to --rev")
    for cmd in (get_, upd):
        cmd.add_argument("--rev", required=True, help="tag, branch or commit, e.g. folds-v1")
        cmd.add_argument("--variants", nargs="*", default=[], help="augment variants, or all")
        cmd.add_argument("--images", action="store_true", help="import the photos too")
        cmd.add_argument("--root", default=".", help="the trainer repo (default .)")
    lay = sub.add_parser("mmseg-layout", help="img_dir/ann_dir symlink layout + split lists")
    lay.add_argument("--out", required=True, help="folder to (re)build, e.g. data/mmseg")
    lay.add_argument("--root", default=".", help="repo holding data/exports (default .)")
    lay.add_argument("--images", help="image folder overriding exports.json's")
    lay.add_argument("--masks", help="mask folder overriding data/masks")
    lay.add_argument("--img-suffix", help="suffix of the image links (default: most common)")
    ver = sub.add_parser("versions", help="the tags of a dataset repo, with date and summary")
    ver.add_argument("url", nargs="?", help="dataset repo (default: the one data/exports.dvc pins)")
    ver.add_argument("--root", default=".", help="the trainer repo (default .)")
    chk = sub.add_parser("check", help="every pinned file is what the pins and exports say")
    chk.add_argument("--root", default=".", help="repo holding data/exports (default .)")
    chk.add_argument("--layout", help="check an mmseg layout (e.g. data/mmseg) instead")
    cls = sub.add_parser("classes", help="a fold's class distribution and class weights")
    cls.add_argument("--fold", type=int, default=0)
    cls.add_argument("--kind", choices=KINDS, default="inverse")
    cls.add_argument("--root", default=".")
    coco = sub.add_parser("coco-json", help="a fold's COCO json (train.json from the exports)")
    coco.add_argument("--fold", type=int, required=True)
    coco.add_argument("--part", choices=("train", "val", "test"), default="train")
    coco.add_argument("--out", help="file to write (default data/coco/fold_<k>_train.json)")
    coco.add_argument("--root", default=".")
    show = sub.add_parser("show", help="print a fold's train/val pairs as CSV")
    show.add_argument("k", type=int)
    show.add_argument("--root", default=".")
    show.add_argument("--variants", nargs="*", help="augment variants to add ('all' for all)")
    pin_ = sub.add_parser("pin", help=f"copy {FOLDS_PATH} to a committed file")
    pin_.add_argument("--to", default=PINNED_PATH, help=f"default {PINNED_PATH}")
    pin_.add_argument("--root", default=".")
    dif = sub.add_parser("diff", help="images that moved between two splits")
    dif.add_argument("old", help="folds.csv file, git revision (its folds.csv) or REV:path")
    dif.add_argument("new", help="same forms as OLD")
    dif.add_argument("--csv", help="write every change: " + ",".join(DIFF_COLUMNS))
    dif.add_argument("--show", type=int, default=20, help="changes to print (default 20)")
    dif.add_argument("--root", default=".", help="git repo for revisions (default .)")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "get": _cmd_get,
    "update": _cmd_update,
    "versions": _cmd_versions,
    "check": _cmd_check,
    "classes": _cmd_classes,
    "coco-json": _cmd_coco,
    "mmseg-layout": _cmd_layout,
    "show": _cmd_show,
    "pin": _cmd_pin,
    "diff": _cmd_diff,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (DatasetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `show 0 | head`: the reader had enough, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0
