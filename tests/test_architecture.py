"""The house keeps its three floors: helpers and contracts, stages, the trainer API."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline.__main__ import STAGES
from pipeline.params import SECTIONS, Params, load_params
from tests.conftest import ROOT, python_exe, run_cli

PACKAGE = ROOT / "pipeline"
STAGE_MODULES = {m.split(".")[-1] for m in STAGES.values()}
HEAVY = ("cv2", "pycocotools", "sklearn", "scipy", "matplotlib", "dvc", "dask", "distributed")
MAX_FUNCTION_LINES = 60


def imported_modules(path: Path) -> set[str]:
    """pipeline.* modules a file imports, lazily or not (names as in ``pipeline.<name>``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "pipeline":
                found |= {a.name for a in node.names}
            elif node.module.startswith("pipeline."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("pipeline.")}
    return found


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_stages_never_import_another_stage(stage: str) -> None:
    others = imported_modules(PACKAGE / f"{stage}.py") & (STAGE_MODULES - {stage})
    assert not others, f"{stage} imports stages {sorted(others)}: stages meet through files"


def test_helpers_import_no_stage() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        name = path.stem
        if name in STAGE_MODULES or name in ("__main__", "folds", "torch_dataset"):
            continue
        stages = imported_modules(path) & STAGE_MODULES
        assert not stages, f"helper {name} imports stages {sorted(stages)}"


def test_trainer_api_is_light() -> None:
    """Reading folds, masks and the class table loads none of the pipeline's heavy libraries."""
    code = (
        "import json, sys; import pipeline.folds; "
        "print(json.dumps(sorted(m for m in sys.modules "
        f"if m.split('.')[0] in {HEAVY!r} or m.startswith('pipeline'))))"
    )
    done = run_cli([python_exe(), "-c", code], cwd=ROOT)
    loaded = json.loads(done.stdout)
    assert not [m for m in loaded if m.split(".")[0] in HEAVY], loaded
    ours = {m for m in loaded if m.startswith("pipeline.")}
    assert ours <= {"pipeline.folds", "pipeline.contracts", "pipeline.errors", "pipeline.fsio"}


def test_params_yaml_and_schema_agree() -> None:
    """Every key of params.yaml is in the schema and every schema field is documented there."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    load_params(ROOT / "params.yaml")  # parses and passes every check
    schema = {f for f in Params.__dataclass_fields__}
    assert set(raw) == schema
    for section, cls in SECTIONS.items():
        assert set(raw[section]) == set(cls.__dataclass_fields__), section


def function_lengths() -> list[tuple[int, str, bool]]:
    """(lines without the docstring, where, says why in its docstring) of every function."""
    out = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node, clean=False)
                if doc is not None:
                    first = node.body[0]
                    lines -= first.end_lineno - first.lineno + 1
                why = doc is not None and "cannot be cut" in doc
                out.append((lines, f"{path.name}:{node.lineno} {node.name}", why))
    return out


def test_functions_are_short() -> None:
    long = [(n, where, why) for n, where, why in function_lengths() if n > MAX_FUNCTION_LINES]
    assert len(long) <= 3, long
    assert all(why for _, _, why in long), f"say why each cannot be cut: {long}"


def test_the_minimal_install_is_the_trainers() -> None:
    """`pip install coco-folds` pulls numpy and Pillow only; the pipeline is an extra that the
    test extra (README's first command, .ci/run) includes; no extra forces a torch build."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]]
    assert names == ["numpy", "pillow"]
    extras = project["optional-dependencies"]
    heavy = {"pycocotools", "opencv-python-headless", "scikit-learn", "dvc", "matplotlib"}
    pipeline = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in extras["pipeline"]}
    assert heavy <= pipeline
    assert "coco-folds[pipeline]" in extras["test"]
    assert not any("torch" in d for deps in extras.values() for d in deps)
