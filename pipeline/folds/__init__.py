"""Python API for trainers: the image and mask paths of a fold and the class table, as the
export stage wrote them, and the commands that pin them in a trainer repo.

Reads only ``data/exports`` (plus the images, masks and augmented files it points at), so it
works the same in the pipeline repo and in a trainer repo that pinned the folders with
``python -m pipeline.folds get URL --rev TAG`` (``dvc import`` underneath): pass that repo's
folder as ``root``.

>>> from pipeline import folds
>>> f = folds.fold(0, root=".", variants="all")      # doctest: +SKIP
>>> for image_path, mask_path in f.train: ...        # doctest: +SKIP
>>> mask = folds.read_mask(f.val[0].mask)            # doctest: +SKIP
>>> folds.num_classes(), folds.classes().names       # doctest: +SKIP

A trainer repo can hold parts of different revisions (``dvc update`` of one ``.dvc`` file) or
files changed by hand; ``fold``, ``folds``, ``test``, ``classes``, ``num_classes``,
``mmseg_metainfo``, ``class_weights``, the torch dataset and ``mmseg_layout`` check first
(:func:`check`): the pins against the content hashes the exports recorded (``exports.json``
``sources``), and every file they read against its pin or record (hashed once, then memoised
by size, mtime and inode), and refuse a mismatch naming the part and the command that fixes
it. An mmseg layout checks itself when mmengine loads its ``metainfo.py``.

CLI (``python -m pipeline.folds -h``):

- ``get URL --rev TAG [--variants NAME ...] [--images]``: in a trainer's git+DVC repo, import
  the exports, masks, chosen variants and (``--images``) photos of one revision;
- ``update --rev TAG``: move every imported part to another revision at once, and print what
  changed (classes, folds, variants);
- ``versions [URL]``: the tags of a dataset repo, each with its date and a one-line summary;
- ``check [--layout DIR]``: every pinned file (or an mmseg layout) is what is pinned;
- ``classes [--fold K] [--kind inverse|median]``: a fold's class distribution and weights;
- ``coco-json --fold K``: fold K's training COCO json, written from the exports;
- ``mmseg-layout --out DIR``: the mmsegmentation ``img_dir``/``ann_dir`` layout as relative
  symlinks plus the split lists, ``metainfo.py`` (an mmengine base config) and
  ``metainfo.json`` (DVC cannot keep symlinks inside an output, so the layout is made on
  demand, in seconds, where it is used);
- ``show K``: a fold's pairs as CSV;
- ``pin [--to splits/pinned.csv]`` and ``diff OLD NEW``: in the pipeline repo, keep the current
  split as a committed file, and see which images moved between two splits.

Imports numpy, Pillow and the standard library only (PyYAML too, once a ``.dvc`` file is
read); ``get``/``update``/``diff`` call the ``dvc`` and ``git`` CLIs.

The modules, each importing its siblings, never this package: ``exported`` (exports.json,
folds.csv, the class table as on disk), ``read`` (``fold``, ``folds``, ``test``, ``classes``),
``dvcfile`` (what a ``.dvc`` file pins), ``verify`` (hashing with a memo), ``revision`` (the
checks), ``weights`` (class distribution and weights), ``coco`` (a fold's COCO json),
``changes`` (what moved between two revisions), ``tags`` (a repo's versions, the tool's
origin), ``mmseg`` (the layout), ``remote`` (``get``/``update``), ``pinned``
(``pin``/``diff``), ``command`` (the CLI) and the optional ``torch_dataset``.
"""

from __future__ import annotations

from pipeline.files.contracts import Classes, FoldRow
from pipeline.folds.coco import coco_json
from pipeline.folds.command import COMMANDS as COMMANDS
from pipeline.folds.command import main as main
from pipeline.folds.dvcfile import Pin, read_pin
from pipeline.folds.exported import class_table as class_table
from pipeline.folds.exported import exports_dir as exports_dir
from pipeline.folds.exported import load_folds, n_folds, variants
from pipeline.folds.exported import metadata as metadata
from pipeline.folds.mmseg import LAYOUT_CONFIG as LAYOUT_CONFIG
from pipeline.folds.mmseg import LAYOUT_MARKER as LAYOUT_MARKER
from pipeline.folds.mmseg import LAYOUT_METAINFO as LAYOUT_METAINFO
from pipeline.folds.mmseg import StaleLayoutError, check_layout, mmseg_layout
from pipeline.folds.pinned import DIFF_COLUMNS as DIFF_COLUMNS
from pipeline.folds.pinned import PINNED_PATH as PINNED_PATH
from pipeline.folds.pinned import Change, diff, pin
from pipeline.folds.pinned import diff_summary as diff_summary
from pipeline.folds.pinned import diff_tables as diff_tables
from pipeline.folds.pinned import read_split as read_split
from pipeline.folds.read import (
    Fold,
    Pair,
    classes,
    fold,
    folds,
    mmseg_metainfo,
    num_classes,
    read_mask,
    test,
)
from pipeline.folds.remote import get, update
from pipeline.folds.revision import (
    ContentMismatchError,
    MixedRevisionsError,
    check,
    check_revisions,
)
from pipeline.folds.tags import versions
from pipeline.folds.weights import class_distribution, class_weights, missing_in_val

# ``from pipeline.folds import *`` names the trainer's API; the ``X as X`` imports above are
# public too (``folds.metadata``, ``folds.main``, ...).
__all__ = [
    "Change",
    "Classes",
    "ContentMismatchError",
    "Fold",
    "FoldRow",
    "MixedRevisionsError",
    "Pair",
    "Pin",
    "StaleLayoutError",
    "check",
    "check_layout",
    "check_revisions",
    "class_distribution",
    "class_weights",
    "classes",
    "coco_json",
    "diff",
    "fold",
    "folds",
    "get",
    "load_folds",
    "missing_in_val",
    "mmseg_layout",
    "mmseg_metainfo",
    "n_folds",
    "num_classes",
    "pin",
    "read_mask",
    "read_pin",
    "test",
    "update",
    "variants",
    "versions",
]
