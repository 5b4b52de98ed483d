"""The CI-sized scale check: no stage holds more than ``json.load`` of the same file.

``benchmarks/bench_scale.py`` measures COCO scale (118k images); here the same generator makes
5,000 images, where the interpreter and its imports dominate a process's memory. So what each
stage *holds* is compared: its peak (summed PSS of the process tree, workers included) minus the
peak of the same stage on a 400-image set (the same imports, the same worker processes: 400
images make more than one batch of annotations, so validate starts its pool too), against
``json.load``'s peak minus a bare interpreter's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.scale import generate_coco, measure
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

STAGES = ("validate", "masks", "vectors", "split", "export", "report")


def make_repo(root: Path, annotations: Path) -> Path:
    (root / "images").mkdir(parents=True)
    params = {
        "workers": 2,
        "dataset": {
            "annotations": str(annotations),
            "images": "images",
            "check_images": False,
            "missing_images": "keep",
        },
        "augment": {"variants": {}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def peaks(root: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = {}
    for stage in STAGES:
        if stage == "export":  # the variant list export and report read (no variant here)
            index = measure([sys.executable, "-m", "pipeline", "augment", "--index"], root, env)
            assert index.returncode == 0, index.output
        done = measure([sys.executable, "-m", "pipeline", stage], root, env)
        assert done.returncode == 0, done.output
        out[stage] = done.peak_mb
    return out


def test_every_stage_holds_less_than_json_load(tmp_path: Path) -> None:
    data = generate_coco(tmp_path / "coco_5000.json", 5000)
    tiny = generate_coco(tmp_path / "coco_400.json", 400)
    load = measure([sys.executable, "-c", f"import json; json.load(open({str(data)!r}))"], ROOT, {})
    bare = measure([sys.executable, "-c", "pass"], ROOT, {})
    json_held = load.peak_mb - bare.peak_mb
    big = peaks(make_repo(tmp_path / "big", data))
    idle = peaks(make_repo(tmp_path / "tiny", tiny))
    held = {stage: big[stage] - idle[stage] for stage in STAGES}
    report = ", ".join(f"{s} {held[s]:.0f} MB" for s in STAGES)
    print(f"json.load holds {json_held:.0f} MB; stages hold: {report}")
    assert json_held > 0
    over = {s: round(h) for s, h in held.items() if h > json_held}
    assert not over, f"stages holding more than json.load's {json_held:.0f} MB: {over}"
    assert_gallery_bounded_by_params(tmp_path / "big")


def assert_gallery_bounded_by_params(root: Path) -> None:
    """The gallery's size follows report.gallery_*, not the 5,000 images: at most one sheet
    per shown class, per fold and for the issues, each of at most the params' pictures."""
    from pipeline.files.params import Params

    config, n_splits = Params().report, Params().split.n_splits
    files = [p for p in (root / "reports/gallery").rglob("*") if p.is_file()]
    assert len(files) <= config.max_classes + n_splits + 1 + 1  # classes, folds, issues, page
    tiles = (
        config.max_classes * 2 * config.gallery_per_class
        + n_splits * config.gallery_per_fold
        + config.gallery_max_issues
    )
    tile_bytes = config.gallery_tile * (config.gallery_tile * 0.75 + 40) * 3  # raw BGR + caption
    assert sum(p.stat().st_size for p in files) < tiles * tile_bytes + 1_000_000
