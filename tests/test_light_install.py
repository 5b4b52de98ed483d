"""The trainer's install, for real: a wheel built as docs/trainers.md builds it, installed into
a fresh venv, pulls numpy, Pillow and PyYAML only, and that venv reads (and checks) folds,
masks, the class table and its weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_dvcfile import dvc_file
from tests.test_export import build_project
from tests.test_trainer_repo import bash_lines

pytestmark = pytest.mark.slow

READ = """
import json, sys
from pipeline import folds
root = sys.argv[1]
yaml_before = "yaml" in sys.modules
f = folds.fold(0, root=root, variants="all")  # reads the pin below: PyYAML from here on
mask = folds.read_mask(f.val[0].mask)
out = folds.mmseg_layout(root + "/mm", root=root)
heavy = ("cv2", "pycocotools", "sklearn", "scipy", "matplotlib", "dvc", "torch")
print(json.dumps({
    "train": len(f.train), "mask": mask.ndim, "num_classes": folds.num_classes(root),
    "names": folds.classes(root).names, "palette": len(folds.mmseg_metainfo(root)["palette"]),
    "layout": (out / "metainfo.json").is_file(),
    "weights": len(folds.class_weights(0, "median", root)),
    "pin": folds.read_pin(root, "data/masks").rev, "yaml": [yaml_before, "yaml" in sys.modules],
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in heavy),
}))
"""


def test_the_trainer_install_is_numpy_pillow_and_pyyaml(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "pipeline", src / "pipeline", ignore=shutil.ignore_patterns("__py*"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
    python = str(bin_dir / "python")
    # docs/trainers.md's wheel line, as written but for the path of the clone.
    line = next(x for x in bash_lines() if x.startswith("pip wheel --no-deps -w dist"))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", line.replace("/path/to/coco-folds", str(src))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode and "Could not find a version" in done.stderr:
        pytest.skip(f"no package index reachable: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)} - {"pip", "setuptools"}
    assert names == {"coco-folds", "numpy", "pillow", "pyyaml"}

    project = build_project(tmp_path / "project")  # made with the full install, read with this
    masks = json.loads((project / "data/exports/exports.json").read_text())["sources"]["data/masks"]
    dvc_file(project, "data/masks", masks, "on")  # as `dvc import` pins it; a YAML 1.1 word
    read = subprocess.run(
        [python, "-c", READ, str(project)], cwd=tmp_path, capture_output=True, text=True
    )
    assert read.returncode == 0, read.stderr
    got = json.loads(read.stdout)
    assert got["heavy"] == [] and got["layout"] and got["mask"] == 2
    assert got["pin"] == "on" and got["yaml"] == [False, True]
    assert got["train"] > 0 and got["num_classes"] == len(got["names"]) == got["palette"]
    assert got["weights"] == got["num_classes"]
    assert got["names"][0] == "background"
    stage = subprocess.run(
        [python, "-m", "pipeline", "masks"], cwd=project, capture_output=True, text=True
    )
    assert stage.returncode == 1 and "pip install -e '.[pipeline]'" in stage.stderr
