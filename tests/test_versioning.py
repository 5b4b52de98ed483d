"""Versioned folds end to end, with the real ``git`` and ``dvc`` CLIs in temp folders.

One test walks the life of a split, as a team would:

1. build the pipeline on a small generated sample, commit, tag ``v1``, ``dvc push``;
2. a fresh ``git clone`` + ``dvc pull`` gives byte-identical folds, masks and manifests, and
   ``dvc status`` / ``dvc repro`` have nothing to do;
3. a trainer repo gets the ``v1`` folds with ``dvc import`` (and ``dvc get``), reads them with
   ``pipeline.folds``, and reads ``folds.csv`` with ``dvc.api.open(rev="v1")``;
4. a new seed, re-run and tag ``v2``: a new version, while ``v1`` still yields the old folds,
   from the remote alone, and the trainer moves between them with ``dvc update --rev``;
5. a changed variant re-runs augment and export only;
6. with ``data/augmented`` imported whole, moving the exports alone is refused as a mix and
   ``pipeline.folds update`` moves every part.

It is one test, not several, so parallel runners (xdist) never build the repo twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline import folds

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc") if (BIN / "dvc").exists() else (shutil.which("dvc") or "dvc")
PROJECT_FILES = (
    "pipeline",
    "splits",
    "dvc.yaml",
    "environment.yaml",
    "pyproject.toml",
    ".gitignore",
    ".dvcignore",
)
TRACKED = (
    "data/exports",
    "data/masks",
    "data/splits",
    "data/augmented",
    "data/interim",
    "data/stats",
    "data/vectors",
    "data/classes.json",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="git CLI not installed"),
    pytest.mark.skipif(
        shutil.which(DVC) is None and not Path(DVC).exists(), reason="dvc CLI not installed"
    ),
]


def cli_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # stages run `python -m pipeline`
            "DVC_NO_ANALYTICS": "1",
            "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site-cache"),
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
    )
    env.pop("PYTHONPATH", None)  # stages import the repo's own copy of the package
    return env


class Shell:
    def __init__(self, tmp: Path) -> None:
        self.env = cli_env(tmp)
        self.log: list[str] = []

    def __call__(self, cwd: Path, *args: str) -> str:
        start = time.perf_counter()
        done = subprocess.run(list(args), cwd=cwd, env=self.env, capture_output=True, text=True)
        self.log.append(f"{time.perf_counter() - start:5.1f}s {' '.join(args)}")
        if done.returncode:
            pytest.fail(
                f"`{' '.join(args)}` failed in {cwd} ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done.stdout + done.stderr

    def dvc(self, cwd: Path, *args: str) -> str:
        return self(cwd, DVC, *args)

    def git(self, cwd: Path, *args: str) -> str:
        return self(cwd, "git", *args)


def snapshot(repo: Path, paths: tuple[str, ...] = TRACKED) -> dict[str, bytes]:
    """Bytes of every file under ``paths`` (DVC's own .gitignore files left out)."""
    out: dict[str, bytes] = {}
    for rel in paths:
        base = repo / rel
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            if path.name != ".gitignore":
                out[path.relative_to(repo).as_posix()] = path.read_bytes()
    return out


def tagging_line() -> str:
    """The documented one-line tagging sequence, the same in docs/versioning.md and
    docs/trainers.md."""
    found = {
        name: [
            line
            for line in (ROOT / "docs" / name).read_text().splitlines()
            if line.startswith("dvc repro && git add -A")
        ]
        for name in ("versioning.md", "trainers.md")
    }
    assert found["versioning.md"] and found["versioning.md"] == found["trainers.md"], found
    return found["versioning.md"][0]


def make_pipeline_repo(repo: Path, remote: Path) -> None:
    from pipeline.tools.sample import generate

    repo.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, repo / name)
    generate(repo / "data" / "sample", n_images=16, n_batches=8, seed=3)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["workers"] = 1
    params["split"].update(n_splits=3, seed=42, test_fraction=0.2)
    params["augment"]["variants"] = {
        "flip": {"seed": 1, "copies": 1, "transforms": [{"name": "hflip", "p": 0.5}]}
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    remote.mkdir()


def test_versioned_folds_end_to_end(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    repo, remote = tmp_path / "pipeline", tmp_path / "remote"
    make_pipeline_repo(repo, remote)

    # 1. build, commit, tag, push --------------------------------------------------------
    sh.git(repo, "init", "-q", "-b", "main")
    sh.dvc(repo, "init", "-q")
    sh.dvc(repo, "remote", "add", "-d", "storage", str(remote))
    built = sh.dvc(repo, "repro", "export")
    assert "Running stage 'export'" in built
    sh.git(repo, "add", "-A")
    sh.git(repo, "commit", "-q", "-m", "folds v1")
    sh.git(repo, "tag", "v1")
    sh.dvc(repo, "push")
    v1 = snapshot(repo)
    assert any(k.startswith("data/exports/fold_2/") for k in v1)
    assert any(k.endswith("manifest.csv") for k in v1)
    assert "data/exports/test.json" in v1

    # 2. fresh clone + pull: identical bytes, nothing to re-run ---------------------------
    clone = tmp_path / "clone"
    sh.git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert not (clone / "data" / "exports").exists()
    sh.dvc(clone, "pull")
    assert snapshot(clone) == v1
    assert "up to date" in sh.dvc(clone, "status", "export")
    again = sh.dvc(clone, "repro", "export")
    assert "Running stage" not in again, again
    assert snapshot(clone) == v1
    assert sh.git(clone, "status", "--porcelain").strip() == ""
    # The documented tagging line works here, where there is nothing to commit.
    sh(clone, "bash", "-c", tagging_line())
    assert "folds-v1" in sh.git(clone, "tag").split()
    sh.git(clone, "push", "-q", "origin", "folds-v1")
    assert "folds-v1" in sh.git(repo, "tag").split()

    # 3. a trainer repo pins v1 with dvc import / dvc get / dvc.api ------------------------
    trainer = tmp_path / "trainer"
    (trainer / "data").mkdir(parents=True)  # dvc import -o needs the parent folder
    sh.git(trainer, "init", "-q", "-b", "main")
    sh.dvc(trainer, "init", "-q")
    for path in ("data/exports", "data/masks", "data/augmented"):
        sh.dvc(trainer, "import", str(repo), path, "--rev", "v1", "-o", path)
    sh.dvc(
        trainer, "get", str(repo), "data/sample/images", "--rev", "v1", "-o", "data/sample/images"
    )
    sh.git(trainer, "add", "-A")
    sh.git(trainer, "commit", "-q", "-m", "train on folds v1")
    assert "rev: v1" in (trainer / "data" / "exports.dvc").read_text()
    assert snapshot(trainer, ("data/exports", "data/masks", "data/augmented")) == snapshot(
        repo, ("data/exports", "data/masks", "data/augmented")
    )
    f0 = folds.fold(0, root=trainer, variants="all")
    v1_val = [f.val_ids for f in folds.folds(trainer)]
    assert len(f0.train) > len(f0.train_ids) and f0.val
    for image, mask in [*f0.train, *f0.val, *folds.test(trainer)]:
        assert image.is_file() and mask.is_file(), (image, mask)
    assert folds.read_mask(f0.val[0].mask).ndim == 2
    layout = folds.mmseg_layout(trainer / "mmseg", root=trainer)
    assert all(p.is_file() for p in (layout / "ann_dir").rglob("*.png"))
    got = tmp_path / "got_folds.csv"
    sh.dvc(tmp_path, "get", str(repo), "data/exports/folds.csv", "--rev", "v1", "-o", str(got))
    assert got.read_bytes() == v1["data/exports/folds.csv"]

    import dvc.api

    with dvc.api.open("data/exports/folds.csv", repo=str(repo), rev="v1") as fh:
        assert fh.read().encode() == v1["data/exports/folds.csv"]

    # 4. a new seed is a new version; the old tag keeps the old folds ---------------------
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["split"]["seed"] = 7
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rebuilt = sh.dvc(repo, "repro", "export")
    for stage in ("validate", "masks", "vectors", "augment@flip"):
        assert f"Running stage '{stage}'" not in rebuilt, rebuilt
    assert "Running stage 'split'" in rebuilt and "Running stage 'export'" in rebuilt
    v2 = snapshot(repo)
    assert v2["data/exports/folds.csv"] != v1["data/exports/folds.csv"]
    assert v2["data/masks/batch_01/0001.png"] == v1["data/masks/batch_01/0001.png"]
    sh.git(repo, "commit", "-q", "-am", "folds v2 (seed 7)")
    sh.git(repo, "tag", "v2")
    sh.dvc(repo, "push")
    for rev, expected in (("v1", v1), ("v2", v2)):
        with dvc.api.open("data/splits/folds.csv", repo=str(repo), rev=rev) as fh:
            assert fh.read().encode() == expected["data/splits/folds.csv"]
    # `diff v1 v2` reads the DVC-tracked folds.csv of each tag (git alone has no copy).
    changes, summary = folds.diff("v1", "v2", root=repo)
    assert changes and all(c.change == "moved" for c in changes)
    assert summary[-1][0] == "total" and summary[-1][4] == len(changes)

    # Both versions come back from the remote alone (the clone's cache is emptied first).
    shutil.rmtree(clone / ".dvc" / "cache")
    sh.git(clone, "fetch", "-q", "--tags")
    for rev, expected in (("v2", v2), ("v1", v1)):
        sh.git(clone, "checkout", "-q", rev)
        sh.dvc(clone, "pull", "--force")
        assert snapshot(clone) == expected, rev

    # The trainer moves to v2 and back by changing the pinned rev.
    sh.dvc(trainer, "update", "--rev", "v2", "data/exports.dvc")
    assert (trainer / "data/exports/folds.csv").read_bytes() == v2["data/exports/folds.csv"]
    assert [f.val_ids for f in folds.folds(trainer)] != v1_val
    sh.dvc(trainer, "update", "--rev", "v1", "data/exports.dvc")
    assert (trainer / "data/exports/folds.csv").read_bytes() == v1["data/exports/folds.csv"]
    assert [f.val_ids for f in folds.folds(trainer)] == v1_val

    # 5. export depends on data/augmented, the parent of the augment@<variant> outputs: a
    # changed variant re-runs augment, then export, and leaves the split alone.
    params["augment"]["variants"]["flip"]["seed"] = 5
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh.dvc(repo, "repro", "export")
    assert "Running stage 'split'" not in out
    assert 0 < out.index("Running stage 'augment@flip'") < out.index("Running stage 'export'")
    assert snapshot(repo, ("data/splits",)) == {
        k: v for k, v in v2.items() if k.startswith("data/splits/")
    }
    assert snapshot(repo, ("data/augmented",)) != {
        k: v for k, v in v2.items() if k.startswith("data/augmented/")
    }

    # 6. the trainer above imported data/augmented whole (the old way). Moving the exports
    # alone to v3 (new flip variant) is a mix, told from the folder's listing in DVC's cache;
    # `pipeline.folds update` moves every part, the whole folder included.
    sh.git(repo, "commit", "-q", "-am", "folds v3 (flip seed 5)")
    sh.git(repo, "tag", "v3")
    sh.dvc(repo, "push", "-q")
    sh.dvc(trainer, "update", "--rev", "v3", "data/exports.dvc")
    with pytest.raises(folds.MixedRevisionsError, match=r"data/augmented \(pinned at v1 by"):
        folds.fold(0, root=trainer)
    assert folds.update("v3", root=trainer) == ["data/exports", "data/masks", "data/augmented"]
    assert {folds.read_pin(trainer, p).rev for p in ("data/masks", "data/augmented")} == {"v3"}
    assert folds.fold(0, root=trainer, variants="all").train
    print("\n".join(sh.log))


def test_dvc_keeps_no_symlink_inside_an_output(tmp_path: Path) -> None:
    """Why the mmseg img_dir/ann_dir layout is built on demand (``python -m pipeline.folds
    mmseg-layout``) rather than by the export stage: DVC hashes what a symlink in an output
    points to and checks the output out as regular files, so links would turn into copies."""
    sh = Shell(tmp_path)
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "a.txt").write_text("hello\n")
    (repo / "dvc.yaml").write_text(
        "stages:\n  link:\n    cmd: mkdir -p out && ln -s ../src/a.txt out/a.txt\n"
        "    deps: [src]\n    outs: [out]\n"
    )
    sh.git(repo, "init", "-q")
    sh.dvc(repo, "init", "-q")
    sh.dvc(repo, "repro")
    link = repo / "out" / "a.txt"
    assert link.read_text() == "hello\n"
    assert not link.is_symlink(), "DVC now keeps symlinks in outputs: the export stage could too"
