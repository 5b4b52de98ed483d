"""A trainer repo, end to end with the real ``git`` and ``dvc`` CLIs (docs/trainers.md).

The dataset repo tracks its photos with ``dvc add`` and tags two splits whose masks really
differ (``folds-v2`` paints one category as ignore and uses another seed). A fresh trainer repo
then:

1. pins ``folds-v1`` with one command (``python -m pipeline.folds get URL --rev folds-v1
   --variants flip --images``): exports, masks, the variant and the photos, one revision;
2. a fresh clone of the trainer repo gets every part back with ``dvc pull`` and loads fold 0
   with ``size=`` in batches (torch where installed);
3. moves to ``folds-v2`` with ``python -m pipeline.folds update --rev folds-v2``;
4. detects a real mix: DVC's own ``dvc update`` moves only the masks back to ``folds-v1``, and
   ``folds.fold`` / the torch dataset / the CLI refuse it, naming the stale part and the fix.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from pipeline import folds
from tests.conftest import ROOT, python_exe
from tests.test_versioning import Shell, make_pipeline_repo
from tests.test_versioning import pytestmark as versioning_marks

pytestmark = versioning_marks
HAS_TORCH = importlib.util.find_spec("torch") is not None
PARTS = ("data/exports", "data/masks", "data/augmented/flip", "photos")


def dataset_repo(sh: Shell, repo: Path, remote: Path) -> dict[str, dict]:
    """The pipeline repo with photos under DVC and two tags; exports.json of each tag."""
    make_pipeline_repo(repo, remote)
    # The photos tracked by DVC, as docs/trainers.md says, outside the git-ignored data/.
    shutil.move(repo / "data/sample/images", repo / "photos")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["dataset"]["images"] = "photos"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh.git(repo, "init", "-q", "-b", "main")
    sh.dvc(repo, "init", "-q")
    sh.dvc(repo, "remote", "add", "-d", "storage", str(remote))
    sh.dvc(repo, "add", "-q", "photos")
    meta = {}
    for tag in ("folds-v1", "folds-v2"):
        if tag == "folds-v2":
            ann = json.loads((repo / "data/sample/annotations.json").read_text())
            params["classes"]["ignore"] = [ann["annotations"][0]["category_id"]]
            params["split"]["seed"] = 7
            (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        sh.dvc(repo, "repro", "export")
        sh.git(repo, "add", "-A")
        sh.git(repo, "commit", "-q", "-m", tag)
        sh.git(repo, "tag", tag)
        sh.dvc(repo, "push", "-q")
        meta[tag] = json.loads((repo / "data/exports/exports.json").read_text())
    return meta


def folds_cli(sh: Shell, cwd: Path, *args: str, check: bool = True) -> str:
    """``python -m pipeline.folds ...`` with this checkout's package, as a trainer runs it."""
    env = {**sh.env, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(
        [python_exe(), "-m", "pipeline.folds", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - start
    sh.log.append(f"{took:5.1f}s python -m pipeline.folds {' '.join(args)} -> {done.returncode}")
    if check and done.returncode:
        log = "\n".join(sh.log)
        pytest.fail(f"folds {args} failed:\n{done.stdout}\n{done.stderr}\n{log}")
    return done.stdout + done.stderr


def pinned_revs(repo: Path) -> dict[str, str | None]:
    return {p: folds.read_pin(repo, p).rev for p in PARTS}


def load_fold0(repo: Path) -> int:
    """Fold 0 in batches of 4 at one size; the number of training pairs."""
    if not HAS_TORCH:
        f = folds.fold(0, root=repo, variants="all")
        assert all(p.image.is_file() and p.mask.is_file() for p in f.train + f.val)
        return len(f.train)
    from torch.utils.data import DataLoader

    from pipeline.folds.torch_dataset import SegmentationFolds

    train = SegmentationFolds(fold=0, part="train", root=repo, variants="all", size=(40, 56))
    image, mask = next(iter(DataLoader(train, batch_size=4, shuffle=True)))
    assert image.shape == (4, 3, 40, 56) and mask.shape == (4, 40, 56)
    assert int(mask[mask != 255].max()) < train.num_classes
    return len(train)


def test_trainer_repo_pins_one_revision_and_refuses_a_mix(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    repo = tmp_path / "dataset"
    meta = dataset_repo(sh, repo, tmp_path / "remote")
    v1, v2 = meta["folds-v1"]["sources"], meta["folds-v2"]["sources"]
    assert v1["data/masks"] != v2["data/masks"]  # the two tags really differ
    assert v1["photos"] == v2["photos"]  # recorded from dvc.lock, the same photos

    # 1. one command pins folds-v1 in a fresh trainer repo ---------------------------------
    trainer = tmp_path / "trainer"
    trainer.mkdir()
    refused = folds_cli(sh, trainer, "get", str(repo), "--rev", "folds-v1", check=False)
    assert "not a DVC repository: run `git init && dvc init`" in refused
    sh.git(trainer, "init", "-q", "-b", "main")
    sh.dvc(trainer, "init", "-q")
    out = folds_cli(
        sh, trainer, "get", str(repo), "--rev", "folds-v1", "--variants", "flip", "--images"
    )
    assert "pinned at folds-v1: data/exports, data/masks, data/augmented/flip" in out
    assert pinned_revs(trainer) == dict.fromkeys(PARTS, "folds-v1")
    staged = sh.git(trainer, "diff", "--cached", "--name-only").split()
    assert {f"{p}.dvc" for p in PARTS} <= set(staged)
    sh.git(trainer, "commit", "-q", "-m", "train on folds-v1")
    assert folds.num_classes(trainer) == folds.num_classes(repo) + 1  # v2 ignores one class
    assert folds.metadata(trainer)["sources"] == v1

    # 2. a fresh clone of the trainer repo trains after `dvc pull` ---------------------------
    clone = tmp_path / "trainer-clone"
    sh.git(tmp_path, "clone", "-q", str(trainer), str(clone))
    pulled = sh.dvc(clone, "pull")
    assert "No remote provided and no default remote set." in pulled  # harmless, documented
    n_train = load_fold0(clone)
    assert n_train == len(folds.fold(0, root=clone, variants="all").train) > 0

    # 3. one command moves every part to folds-v2 --------------------------------------------
    folds_cli(sh, trainer, "update", "--rev", "folds-v2")
    assert pinned_revs(trainer) == dict.fromkeys(PARTS, "folds-v2")
    assert folds.metadata(trainer)["sources"] == v2
    assert folds.classes(trainer).names == folds.classes(repo).names
    assert folds.read_mask(folds.fold(0, root=trainer).val[0].mask).ndim == 2
    load_fold0(trainer)
    wrong = folds_cli(sh, trainer, "update", "--rev", "folds-v1", "--variants", "nope", check=False)
    assert "augment variants ['nope'] are not in the exports at folds-v1" in wrong
    assert pinned_revs(trainer) == dict.fromkeys(PARTS, "folds-v2")  # the exports went back

    # 4. DVC's own update moves one part only: a real mix, refused ----------------------------
    sh.dvc(trainer, "update", "--rev", "folds-v1", "data/masks.dvc")
    assert folds.read_pin(trainer, "data/masks").md5 == v1["data/masks"]
    with pytest.raises(folds.MixedRevisionsError) as caught:
        folds.fold(0, root=trainer)
    message = str(caught.value)
    assert "data/masks (pinned at folds-v1 by data/masks.dvc) is not what data/exports" in message
    assert "`python -m pipeline.folds update --rev folds-v2` (or --rev folds-v1)" in message
    if HAS_TORCH:
        from pipeline.folds.torch_dataset import SegmentationFolds

        with pytest.raises(folds.MixedRevisionsError, match="data/masks"):
            SegmentationFolds(fold=0, part="val", root=trainer, size=32)
    shown = folds_cli(sh, trainer, "show", "0", check=False)
    assert "mix of revisions" in shown and "update --rev folds-v2" in shown
    folds_cli(sh, trainer, "update", "--rev", "folds-v2")  # the fix the message names
    assert pinned_revs(trainer) == dict.fromkeys(PARTS, "folds-v2")
    load_fold0(trainer)
    print("\n".join(sh.log))
