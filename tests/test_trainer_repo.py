"""docs/trainers.md, every command as written, in a fresh trainer repo (real git, dvc, pip).

A dataset repo (the shipped ``.dvc/config``, photos under DVC) tags ``folds-v1`` and
``folds-v2``, as the issue's data team did: v2 merges two pairs of classes in ``classes.map``
(11 classes with background -> 9) and sets ``export.coco_json: true``. A fresh venv installs the
tool from a ``git+file://`` URL at the tag (the light install), torch (a local CPU wheel),
DVC and mmengine; a fresh trainer repo then runs the docs' commands, and the test checks:

1. every pinned file is verified: v1's ``classes.json`` copied over v2's is refused by
   ``num_classes()``, ``fold()``, the torch dataset, ``mmseg-layout`` and ``check``, with the
   one line that fixes it;
2. the mmseg layout checks itself: after ``dvc update --rev folds-v1 data/masks.dvc`` (and after
   a consistent move to v1), mmengine refuses to load the config built at v2;
3. the COCO json of the tag with merged classes loads in pycocotools with the merged
   categories, and ``coco-json`` writes fold 0's train.json at v1 from the exports;
4. ``update`` prints the class and fold changes, and where the installed tool came from;
5. the class weights equal a count made from the masks;
6. every line of every bash block of docs/trainers.md ran, or is listed here with the reason.

It is one test: xdist never builds the repos twice. Without a reachable package index (pip
cannot build the package or install DVC) it skips, saying so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import folds
from tests.conftest import ROOT
from tests.test_folds import doc_example
from tests.test_versioning import Shell, make_pipeline_repo
from tests.test_versioning import pytestmark as versioning_marks

pytestmark = versioning_marks
DOCS = ROOT / "docs" / "trainers.md"
URL = "https://github.com/<team>/coco-folds"
PARTS = ("data/exports", "data/masks", "data/augmented/flip", "images")
V2_MAP = {  # the sample's categories; paper pack -> paper, plastic bag -> plastic
    1: "general trash", 2: "paper", 3: "paper", 5: "metal", 8: "glass", 13: "plastic",
    21: "styrofoam", 34: "plastic", 55: "battery", 89: "clothing",
}  # fmt: skip
# Lines of the docs no test here runs, and why.
NOT_RUN = {
    'MMCV_WITH_OPS=1 pip install "mmcv==2.1.0"': "mmcv compiles from source: tens of minutes",
    "pip wheel --no-deps -w dist": "tests/test_light_install.py runs it (a fresh venv)",
}


def bash_lines() -> list[str]:
    """Every command line of every ```bash block of docs/trainers.md (comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", DOCS.read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()
            and not line.lstrip().startswith("#")]  # fmt: skip


class Docs:
    """Runs the docs' lines in a shell with the local stand-ins, and remembers which ran."""

    def __init__(self, sh: Shell, subs: dict[str, str], trainer_env: dict[str, str]) -> None:
        self.sh, self.subs, self.trainer_env = sh, subs, trainer_env
        self.ran: set[str] = set()

    def line(self, start: str) -> str:
        found = [line for line in bash_lines() if line.startswith(start)]
        assert len(found) == 1, (start, found)
        return found[0]

    def run(self, start: str, cwd: Path, *, trainer: bool = True, check: bool = True,
            replace: dict[str, str] | None = None) -> str:  # fmt: skip
        """Run the docs' line that starts with ``start`` in ``cwd``; the output."""
        written = self.line(start)
        self.ran.add(written)
        text = written
        for old, new in {**self.subs, **(replace or {})}.items():
            text = text.replace(old, new)
        env = self.trainer_env if trainer else self.sh.env
        began = time.perf_counter()
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", text], cwd=cwd, env=env, capture_output=True,
            text=True,
        )  # fmt: skip
        self.sh.log.append(f"{time.perf_counter() - began:5.1f}s {text[:110]}")
        out = done.stdout + done.stderr
        if check and done.returncode:
            pytest.fail(f"docs line failed ({done.returncode}) in {cwd}:\n{text}\n{out}")
        return out


def trainer_venv(path: Path, tmp: Path) -> dict[str, str]:
    """A fresh venv as the trainer's environment: its bin first on PATH, not ours."""
    venv.EnvBuilder(with_pip=True).create(path)
    env = Shell(tmp).env
    ours = str(Path(sys.executable).parent)
    rest = [p for p in env["PATH"].split(os.pathsep) if p and p != ours]
    env["PATH"] = os.pathsep.join([str(path / "bin"), *rest])
    env["VIRTUAL_ENV"] = str(path)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def dataset_repo(sh: Shell, docs: Docs, repo: Path, origin: Path) -> dict[str, dict]:
    """The data team's side of the docs: remote, photos under DVC, two tags pushed."""
    make_pipeline_repo(repo, Path(docs.subs["/shared/dvc-storage"]))
    shutil.copy(ROOT / "README.md", repo / "README.md")  # pyproject's readme: pip builds it
    sh.git(repo, "init", "-q", "-b", "main")
    sh.dvc(repo, "init", "-q")
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # the shipped config
    sh.git(repo.parent, "init", "-q", "--bare", str(origin))
    sh.git(repo, "remote", "add", "origin", str(origin))
    docs.run("dvc remote modify local url", repo, trainer=False)
    sh.git(repo, "push", "-q", "-u", "origin", "main")
    docs.run("mv /path/to/photos images", repo, trainer=False)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["dataset"]["images"] = "images"  # the docs' comment line
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    docs.run("git add images.dvc .gitignore params.yaml", repo, trainer=False)
    meta = {}
    for tag in ("folds-v1", "folds-v2"):
        if tag == "folds-v2":
            params["classes"]["map"] = V2_MAP
            params["export"] = {"coco_json": True}
            (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        v = {"folds-v1": tag, "folds v1": tag.replace("-", " ")}
        docs.run("dvc repro && git add -A", repo, trainer=False, replace=v)
        assert sh.git(repo, "status", "--porcelain", "--untracked-files=no").strip() == ""
        docs.run("git push && git push origin folds-v1", repo, trainer=False, replace=v)
        meta[tag] = json.loads((repo / "data/exports/exports.json").read_text())
    assert "folds-v2" in sh.git(origin, "tag")
    return meta


def mask_weights(masks: list[Path], n: int, kind: str) -> list[float]:
    """Class weights counted from the mask PNGs themselves (see pipeline.folds.weights)."""
    pixels, image_pixels = np.zeros(n), np.zeros(n)
    for path in masks:
        mask = folds.read_mask(path)
        counts = np.bincount(mask.ravel(), minlength=256)[:n]
        pixels += counts
        image_pixels += (counts > 0) * (mask != 255).sum()
    present = pixels > 0
    if kind == "inverse":
        return [pixels.sum() / (present.sum() * p) if p else 0.0 for p in pixels]
    freq = {c: pixels[c] / image_pixels[c] for c in range(n) if present[c]}
    middle = statistics.median(freq.values())
    return [middle / freq[c] if c in freq else 0.0 for c in range(n)]


def trainer_python(env: dict[str, str], cwd: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["python", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def trainer_folds(sh: Shell, env: dict[str, str], cwd: Path, *args: str, check: bool = True) -> str:
    """``python -m pipeline.folds ...`` with the trainer venv's install (not a docs line)."""
    began = time.perf_counter()
    done = subprocess.run(
        ["python", "-m", "pipeline.folds", *args], cwd=cwd, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    sh.log.append(f"{time.perf_counter() - began:5.1f}s folds {' '.join(args)}")
    if check and done.returncode:
        pytest.fail(f"folds {args} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def install(docs: Docs, home: Path) -> None:
    """Section 1 in the fresh venv (torch: the local CPU wheel stands in for the CUDA index)."""
    done = subprocess.run(
        ["pip", "download", "--no-deps", "-q", "-d", str(home / "probe"), "setuptools>=77"],
        env=docs.trainer_env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        pytest.skip(f"no package index reachable: {done.stderr.strip().splitlines()[-1:]}")
    docs.run(
        "pip install torch --index-url",
        home,
        replace={"torch --index-url https://download.pytorch.org/whl/cpu": "torch==2.13.0"},
    )
    docs.run('pip install "git+https://github.com/<team>/coco-folds@folds-v1"', home)
    docs.run('pip install "dvc>=3.30"', home)
    docs.run("pip install mmengine", home)  # fmt: skip


def test_the_trainer_docs_as_written(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    home, dataset = tmp_path, tmp_path / "dataset"
    env = trainer_venv(tmp_path / "venv", tmp_path)
    subs = {
        URL: f"file://{dataset}",
        "flip_clahe": "flip",
        "/path/to/photos": str(dataset / "data" / "sample" / "images"),
        "/shared/dvc-storage": str(tmp_path / "remote"),
    }
    docs = Docs(sh, subs, env)
    meta = dataset_repo(sh, docs, dataset, tmp_path / "origin.git")
    assert meta["folds-v1"]["sources"]["images"] == meta["folds-v2"]["sources"]["images"]
    install(docs, home)
    trainer = home / "my-trainer"
    trainer.mkdir()

    # ---- section 3: versions, get, commit ---------------------------------------------------
    docs.run("cd my-trainer && git init && dvc init", home)
    listed = docs.run("python -m pipeline.folds versions", trainer)
    assert re.search(r"folds-v1\s+\d{4}-\d\d-\d\d\s+folds v1\s+16 images, 3 folds \(seed 42\)",
                     listed), listed  # fmt: skip
    assert "classes.map: 8 classes" in listed and "train.json" in listed
    got = docs.run("python -m pipeline.folds get", trainer)
    assert "pinned at folds-v1: data/exports, data/masks, data/augmented/flip, images" in got
    assert "classes: 11 (background included" in got
    assert "tool: coco-folds installed from folds-v1, the revision the data is at" in got
    docs.run('git commit -m "train on folds-v1"', trainer)
    v1_table = (trainer / "data/exports/classes.json").read_bytes()

    # ---- sections 5 and 6: the class table, weights, the torch loop ---------------------------
    shown = trainer_python(env, trainer, doc_example("classes"))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "11"
    table = docs.run("python -m pipeline.folds classes --fold 0 --kind median", trainer)
    assert "median_weight" in table
    n = folds.num_classes(trainer)
    for kind in ("inverse", "median"):
        masks = [p.mask for p in folds.fold(0, root=trainer).train]
        assert folds.class_weights(0, kind, trainer) == pytest.approx(
            mask_weights(masks, n, kind), rel=1e-12
        )
    torch_run = trainer_python(env, trainer, doc_example("torch"))
    assert torch_run.returncode == 0 and "epoch 1: val loss" in torch_run.stdout, torch_run.stderr

    # ---- section 8 at v1: no train.json in the exports, the trainer writes one ----------------
    written = docs.run("python -m pipeline.folds coco-json --fold 0", trainer)
    assert "data/coco/fold_0_train.json" in written
    from pycocotools.coco import COCO

    v1_coco = COCO(str(trainer / "data/coco/fold_0_train.json"))
    assert [c["name"] for c in v1_coco.loadCats(v1_coco.getCatIds())] == folds.classes(
        trainer
    ).names[1:]

    # ---- section 7: the layout, loaded by mmengine --------------------------------------------
    docs.run("python -m pipeline.folds mmseg-layout --out data/mmseg", trainer)
    (trainer / "fold0.py").write_text(doc_example("mmseg"))
    load = "from mmengine.config import Config; print(Config.fromfile('fold0.py').model)"
    loaded = trainer_python(env, trainer, load)
    assert loaded.returncode == 0 and "'num_classes': 11" in loaded.stdout, loaded.stderr
    status = sh.git(trainer, "status", "--porcelain")
    assert "data/mmseg" not in status and "data/coco" not in status, status
    assert "one revision, as pinned" in docs.run("python -m pipeline.folds check", trainer)

    # ---- section 3: update to v2 prints what changed; the tool at v2 --------------------------
    updated = docs.run("python -m pipeline.folds update --rev folds-v2", trainer)
    for said in (
        "changes from folds-v1 to folds-v2:",
        "classes: merged: paper (2) + paper pack (3) -> paper (2), "
        "plastic (6) + plastic bag (8) -> plastic (5)",
        "renumbered: metal 4 -> 3, glass 5 -> 4, styrofoam 7 -> 6, battery 9 -> 7, "
        "clothing 10 -> 8",
        "num_classes: 11 -> 9 (background included)",
        "images: ",
        "COCO json: files: +fold_0/train.json",
        f"tool: coco-folds was installed from folds-v1, the data is at folds-v2: pip install "
        f'"git+file://{dataset}@folds-v2"',
    ):
        assert said in updated, (said, updated)
    docs.run('pip install "git+https://github.com/<team>/coco-folds@folds-v2"', home)
    assert folds.num_classes(trainer) == 9
    sh.log.append(updated)
    assert {p: folds.read_pin(trainer, p).rev for p in PARTS} == dict.fromkeys(PARTS, "folds-v2")
    wrong = trainer_folds(sh, env, trainer, "update", "--rev", "folds-v1", "--variants", "nope",
                          check=False)  # fmt: skip
    assert "augment variants ['nope'] are not in the exports at folds-v1" in wrong
    assert {p: folds.read_pin(trainer, p).rev for p in PARTS} == dict.fromkeys(PARTS, "folds-v2")

    # The COCO json of the tag with merged classes, in pycocotools.
    v2_coco = COCO(str(trainer / "data/exports/fold_0/train.json"))
    cats = v2_coco.loadCats(v2_coco.getCatIds())
    assert [c["name"] for c in cats] == folds.classes(trainer).names[1:]
    merged = {c["name"]: c["original_category_ids"] for c in cats}
    assert merged["paper"] == [2, 3] and merged["plastic"] == [13, 34]
    anns = v2_coco.loadAnns(v2_coco.getAnnIds())
    assert {a["category_id"] for a in anns} <= set(range(1, 9))
    for k in range(3):
        masks = [p.mask for p in folds.fold(k, root=trainer).train]
        assert folds.class_weights(k, "median", trainer) == pytest.approx(
            mask_weights(masks, 9, "median"), rel=1e-12
        )

    # ---- 1: v1's class table copied over v2's is refused everywhere -------------------------
    (trainer / "data/exports/classes.json").write_bytes(v1_table)
    refused = docs.run("python -m pipeline.folds check", trainer, check=False)
    fix = "Restore it: `python -m pipeline.folds update --rev folds-v2`"
    assert "data/exports/classes.json is not the class table data/exports" in refused
    assert fix in refused
    for code in (
        "from pipeline import folds; folds.num_classes()",
        "from pipeline import folds; folds.mmseg_metainfo()",
        "from pipeline import folds; folds.fold(0)",
        "from pipeline.folds.torch_dataset import SegmentationFolds as S; S(0, size=32)",
    ):
        done = trainer_python(env, trainer, code)
        assert done.returncode == 1 and "ContentMismatchError" in done.stderr, (code, done)
    layout = docs.run("python -m pipeline.folds mmseg-layout --out data/mmseg", trainer,
                      check=False)  # fmt: skip
    assert fix in layout
    trainer_folds(sh, env, trainer, "update", "--rev", "folds-v2")  # the fix named
    assert folds.num_classes(trainer) == 9

    # ---- 2: a layout built at v2 is refused once the repo holds anything else ---------------
    docs.run("python -m pipeline.folds mmseg-layout --out data/mmseg", trainer)
    loaded = trainer_python(env, trainer, load)
    assert loaded.returncode == 0 and "'num_classes': 9" in loaded.stdout, loaded.stderr
    sh(trainer, str(home / "venv/bin/dvc"), "update", "--rev", "folds-v1", "data/masks.dvc")
    drifted = trainer_python(env, trainer, load)
    assert drifted.returncode == 1 and "MixedRevisionsError" in drifted.stderr
    assert "data/masks (pinned at folds-v1 by data/masks.dvc)" in drifted.stderr
    trainer_folds(sh, env, trainer, "update", "--rev", "folds-v2")
    assert trainer_python(env, trainer, load).returncode == 0  # one revision again: it loads
    trainer_folds(sh, env, trainer, "update", "--rev", "folds-v1")  # all of it, to v1
    stale = trainer_python(env, trainer, load)
    assert stale.returncode == 1 and "StaleLayoutError" in stale.stderr
    assert "`python -m pipeline.folds mmseg-layout --out data/mmseg`" in stale.stderr
    trainer_folds(sh, env, trainer, "update", "--rev", "folds-v2")

    # ---- a teammate's clone -------------------------------------------------------------------
    cloned = docs.run("git clone my-trainer my-trainer-clone", home)
    assert "No remote provided and no default remote set." in cloned
    checked = docs.run("python -m pipeline.folds check", home / "my-trainer-clone")
    assert "one revision, as pinned" in checked

    # ---- 6: every line of the docs ran, or says why not ---------------------------------------
    left = [
        line for line in bash_lines()
        if line not in docs.ran and not any(line.startswith(k) for k in NOT_RUN)
    ]  # fmt: skip
    assert not left, f"docs/trainers.md lines no test runs: {left}"
    print("\n".join(sh.log))
