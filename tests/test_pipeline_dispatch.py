"""Every output is the same bytes on every CPU: the whole pipeline on the sample (masks, stats,
folds, variants, exports, figures and gallery), run under each setting that picks other machine
code (OpenCV's and IPP's dispatch, numpy's, OpenBLAS's core type, thread counts), gives the
default run's bytes. Each stage's own tests perturb more settings on more data."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, python_exe, run_cli
from tests.test_transforms_dispatch import FAST, SLOW

pytestmark = pytest.mark.slow

SETTINGS = {
    "default": {},
    **{name: FAST[name] for name in ("opencv-sse3-baseline", "ipp-disabled", "ipp-sse42")},
    **{name: SLOW[name] for name in ("numpy-x86-v2", "openblas-nehalem", "oldest-everything")},
}


STAGES = [
    ["validate"],
    ["masks"],
    ["vectors"],
    ["split"],
    ["augment", "--index"],
    ["augment", "flip_clahe"],
    ["augment", "geometric"],
    ["export"],
    ["report"],
]


def tree_digest(root: Path) -> str:
    """One digest of every output file's name and bytes."""
    digest = hashlib.sha256()
    for file in sorted([*(root / "data").rglob("*"), *(root / "reports").rglob("*")]):
        if file.is_file() and "sample" not in file.relative_to(root).parts:
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def build(tmp: Path, env: dict[str, str], workers: int) -> str:
    work = tmp / "repo"
    shutil.copytree(ROOT / "data" / "sample", work / "data" / "sample")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["workers"] = workers
    params["cache"]["dir"] = None  # every mask painted, none read from a store
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in STAGES:
        done = run_cli([python_exe(), "-m", "pipeline", *stage], cwd=work, check=False, env=env)
        assert done.returncode == 0, f"{stage} under {env}: {done.stderr[-1500:]}"
    return tree_digest(work)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build(tmp_path_factory.mktemp("reference"), {}, 2)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_outputs_are_the_same_bytes_under(name: str, reference: str, tmp_path: Path) -> None:
    assert build(tmp_path, SETTINGS[name], 1 if name == "default" else 2) == reference
