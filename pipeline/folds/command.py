"""The trainer's command line, ``python -m pipeline.folds <command>`` (``-h`` lists them):
``get``, ``update``, ``mmseg-layout``, ``show``, ``pin`` and ``diff``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pipeline.files.contracts import FOLDS_PATH
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_bytes, csv_text
from pipeline.folds.mmseg import LAYOUT_CONFIG, LAYOUT_METAINFO, mmseg_layout
from pipeline.folds.pinned import DIFF_COLUMNS, PINNED_PATH, diff, pin
from pipeline.folds.read import fold
from pipeline.folds.remote import get, update

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
    _report_pinned(parts, args.rev)


def _cmd_update(args: argparse.Namespace) -> None:
    parts = update(args.rev, args.root, args.variants, args.images)
    _report_pinned(parts, args.rev)


def _report_pinned(parts: list[str], rev: str) -> None:
    print(f"pinned at {rev}: {', '.join(parts)}")
    print(f'staged the .dvc files in git; commit them: git commit -m "train on {rev}"')


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
