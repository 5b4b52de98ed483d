"""pipeline.folds, the package: the trainer API as one namespace (``from pipeline import folds;
folds.fold(0)``), made of modules that import each other, never the package; and the examples of
docs/trainers.md, run as written there. Each module has its own tests/test_<module>.py."""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import folds
from pipeline.files import contracts
from pipeline.files.errors import DatasetError
from pipeline.folds import (
    changes,
    coco,
    command,
    dvcfile,
    exported,
    mmseg,
    pinned,
    read,
    remote,
    revision,
    tags,
    verify,
    weights,
)
from tests.conftest import ROOT, python_exe, run_cli
from tests.test_export import build_project

HAS_TORCH = importlib.util.find_spec("torch") is not None
NO_TORCH = "torch not installed (install a build for your platform first: docs/trainers.md)"
PACKAGE = ROOT / "pipeline" / "folds"

# Every public name of pipeline.folds and its home module.
PUBLIC = {
    exported: "class_table exports_dir load_folds metadata n_folds variants",
    read: "Fold Pair classes fold folds mmseg_metainfo num_classes read_mask test",
    dvcfile: "Pin read_pin",
    revision: "ContentMismatchError MixedRevisionsError check check_revisions",
    weights: "class_distribution class_weights missing_in_val",
    coco: "coco_json",
    tags: "versions",
    mmseg: "LAYOUT_CONFIG LAYOUT_MARKER LAYOUT_METAINFO StaleLayoutError check_layout mmseg_layout",
    remote: "get update",
    pinned: "Change DIFF_COLUMNS PINNED_PATH diff diff_summary diff_tables pin read_split",
    command: "COMMANDS main",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("folds_project"))


def test_the_package_names_what_the_modules_hold() -> None:
    for module, names in PUBLIC.items():
        for name in names.split():
            assert getattr(folds, name) is getattr(module, name), (module.__name__, name)
            assert name in module.__all__, (module.__name__, name)
    assert (folds.Classes, folds.FoldRow) == (contracts.Classes, contracts.FoldRow)
    assert folds.__all__ == [
        "Change", "Classes", "ContentMismatchError", "Fold", "FoldRow", "MixedRevisionsError",
        "Pair", "Pin", "StaleLayoutError", "check", "check_layout", "check_revisions",
        "class_distribution", "class_weights", "classes", "coco_json", "diff", "fold", "folds",
        "get", "load_folds", "missing_in_val", "mmseg_layout", "mmseg_metainfo", "n_folds",
        "num_classes", "pin", "read_mask", "read_pin", "test", "update", "variants", "versions",
    ]  # fmt: skip
    assert {changes, verify} and issubclass(folds.ContentMismatchError, folds.MixedRevisionsError)
    assert all(hasattr(folds, name) for name in folds.__all__)
    assert issubclass(folds.MixedRevisionsError, DatasetError)


def test_modules_import_their_siblings_never_the_package() -> None:
    """``pipeline.folds`` re-exports the modules, so a module importing it would be a cycle."""
    problems, sizes = [], {}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        sizes[path.name] = len(path.read_text().splitlines())
        if path.name == "__init__.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "pipeline":
                problems += [f"{path.name}: from pipeline import {a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "pipeline.folds":
                problems.append(f"{path.name}: from pipeline.folds import ...")
            elif isinstance(node, ast.Import):
                problems += [
                    f"{path.name}: import {a.name}"
                    for a in node.names
                    if a.name == "pipeline.folds"
                ]
    assert not problems, problems
    assert max(sizes.values()) <= 500, sizes


def test_python_dash_m_runs_the_command_line(tmp_path: Path) -> None:
    done = run_cli([python_exe(), "-m", "pipeline.folds", "-h"], cwd=tmp_path)
    assert done.stdout.startswith("usage: python -m pipeline.folds")
    assert all(name in done.stdout for name in command.COMMANDS)
    bad = run_cli([python_exe(), "-m", "pipeline.folds", "show", "0"], cwd=tmp_path, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: data/exports holds no exports")
    assert "python -m pipeline.folds get" in bad.stderr


# ---------------------------------------------------------------- the docs' examples, as written

DOCS = Path(__file__).resolve().parents[1] / "docs" / "trainers.md"


def doc_example(name: str) -> str:
    """The fenced block after ``<!-- example: name -->`` in docs/trainers.md."""
    text = DOCS.read_text()
    after = text.split(f"<!-- example: {name} -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def mmseg_missing() -> str | None:
    """Why mmsegmentation cannot run here, or None."""
    try:
        import mmseg.datasets  # noqa: F401  (imports mmcv.ops: needs mmcv's compiled ops)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here"
        return f"mmsegmentation not usable here ({type(exc).__name__}: {exc}); see docs/trainers.md"
    return None


def test_docs_line_counts_are_the_examples() -> None:
    """The table in docs/trainers.md counts the non-blank lines of the two examples."""
    text = DOCS.read_text()
    for name, row in (("torch", "| PyTorch:"), ("mmseg", "| mmsegmentation:")):
        counted = sum(1 for line in doc_example(name).splitlines() if line.strip())
        line = next(x for x in text.splitlines() if x.startswith(row))
        assert int(line.split("|")[2]) == counted, (name, line)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_docs_torch_example_runs_as_written(project: Path) -> None:
    code = doc_example("torch")
    assert "Conv2d(3, 11" not in code and "ignore_index=255" not in code  # from the table
    done = run_cli([python_exe(), "-c", code], cwd=project)
    assert "epoch 1: val loss" in done.stdout


@pytest.mark.skipif(mmseg_missing() is not None, reason=str(mmseg_missing()))
def test_docs_mmseg_config_loads_the_layout(project: Path, tmp_path: Path) -> None:
    """mmsegmentation's own BaseSegDataset reads the layout with the documented config; the
    Pillow backend gives the class indices, cv2 would give palette colours."""
    from mmengine.config import Config
    from mmseg.datasets.transforms import LoadAnnotations
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    register_all_modules()
    repo = shutil.copytree(project, tmp_path / "repo", symlinks=True)
    folds.mmseg_layout(repo / "data" / "mmseg", root=repo)
    (repo / "fold0.py").write_text(doc_example("mmseg"))
    cwd = os.getcwd()
    os.chdir(repo)  # the config's paths are relative to where training runs
    try:
        cfg = Config.fromfile("fold0.py")
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        assert len(dataset) == len(folds.fold(0, root=repo).train)
        assert list(dataset.metainfo["classes"]) == folds.classes(repo).names
        assert cfg.model.decode_head.num_classes == folds.num_classes(repo)
        sample = dataset[0]["data_samples"].gt_sem_seg.data
        assert set(sample.unique().tolist()) <= set(range(folds.num_classes(repo))) | {255}
        info = dataset.get_data_info(0)
        truth = folds.read_mask(info["seg_map_path"])
        pillow = LoadAnnotations(imdecode_backend="pillow")(dict(info, seg_fields=[]))
        assert np.array_equal(pillow["gt_seg_map"], truth)
        colours = LoadAnnotations(imdecode_backend="cv2")(dict(info, seg_fields=[]))
        assert not np.array_equal(colours["gt_seg_map"], truth)  # the docs' backend note
    finally:
        os.chdir(cwd)
