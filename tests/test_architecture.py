"""The house keeps its three floors: helpers and contracts, stages, the trainer API."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline.__main__ import STAGES
from pipeline.files.params import SECTIONS, Params, load_params
from tests.conftest import ROOT, python_exe, run_cli

PACKAGE = ROOT / "pipeline"
HEAVY = ("cv2", "pycocotools", "sklearn", "scipy", "matplotlib", "dvc", "dask", "distributed")
MAX_FUNCTION_LINES = 60
# The floors: what each folder is, and which folders its modules may import.
HELPERS = ("files", "checking", "splitting", "augmenting", "execution")
FOLDERS = {
    "files": {"files"},  # the files between stages: contracts, params, json, PNG, images, RLE
    "checking": {"files", "checking"},
    "splitting": {"files", "splitting"},
    "augmenting": {"files", "augmenting"},
    "execution": {"files", "execution"},
    "drawing": {*HELPERS, "drawing"},  # the report's parts
    "stages": {*HELPERS, "drawing"},  # one module per dvc.yaml stage
    "tools": {*HELPERS, "tools"},  # commands that are not stages
    "folds": {"folds"},  # the trainer API (plus the contracts, below)
}
TRAINER_ALLOWED = {
    "pipeline.files.contracts",
    "pipeline.files.errors",
    "pipeline.files.fsio",
    "pipeline.files.orientation",  # EXIF orientation with Pillow: photos as the annotator saw them
}
TOP_LEVEL = {"__init__.py", "__main__.py"}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``pipeline.stages.masks``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's modules a file imports, at load time or lazily, as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipeline")}
    return found & known


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, set(found)) - {name} for name, path in found.items()}


def folder(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_layout_shows_the_floors() -> None:
    top = {p.name for p in PACKAGE.iterdir() if not p.name.startswith((".", "__pycache__"))}
    assert top == TOP_LEVEL | set(FOLDERS), sorted(top)
    stages = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - {"__init__"}
    assert stages == {m.rsplit(".", 1)[1] for m in STAGES.values()}
    assert all(m.startswith("pipeline.stages.") for m in STAGES.values())
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    modules = {(s.get("do") or s)["cmd"].split()[2] for s in dvc.values()}
    assert modules == {f"pipeline.stages.{stage}" for stage in stages}


def test_each_floor_imports_only_the_floors_below() -> None:
    problems = []
    for name, imported in graph().items():
        home = folder(name)
        if home in ("", "__main__"):
            continue
        for other in imported:
            allowed = FOLDERS[home] | ({"files"} if home == "folds" else set())
            if folder(other) not in allowed or (
                home == "folds" and folder(other) == "files" and other not in TRAINER_ALLOWED
            ):
                problems.append(f"{name} imports {other}")
    assert not problems, "\n".join(sorted(problems))


def test_stages_never_import_another_stage() -> None:
    for name, imported in graph().items():
        if folder(name) == "stages":
            others = {m for m in imported if folder(m) == "stages"}
            assert not others, f"{name} imports stages {sorted(others)}: stages meet through files"


def test_no_import_cycle() -> None:
    """Not even through lazy imports: each module's whole import closure excludes itself."""
    edges = graph()
    for start in edges:
        seen, todo = set(), list(edges[start])
        while todo:
            current = todo.pop()
            assert current != start, f"import cycle through {start}"
            if current not in seen:
                seen.add(current)
                todo.extend(edges.get(current, ()))


def declares_all(path: Path) -> bool:
    return any(
        isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "__all__" for t in node.targets)
        for node in ast.parse(path.read_text()).body
    )


def real_modules() -> dict[str, Path]:
    """Modules with code: not the dispatchers (``__main__``) nor a folder's docstring-only
    ``__init__`` (the trainer API's ``pipeline.folds`` is code)."""
    return {
        name: path
        for name, path in modules().items()
        if path.name != "__main__.py" and (path.name != "__init__.py" or name == "pipeline.folds")
    }


def test_every_module_declares_all_and_has_a_test_file() -> None:
    found = real_modules()
    missing_all = [name for name, path in found.items() if not declares_all(path)]
    tests = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    missing_test = [name for name in found if f"test_{name.rsplit('.', 1)[1]}" not in tests]
    assert not missing_all, f"no __all__ in {missing_all}"
    assert not missing_test, f"no tests/test_<module>.py for {missing_test}"


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
    assert {m for m in ours if not m.startswith("pipeline.folds")} <= TRAINER_ALLOWED | {
        "pipeline.files"
    }


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
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node, clean=False)
                if doc is not None:
                    first = node.body[0]
                    lines -= first.end_lineno - first.lineno + 1
                why = doc is not None and "cannot be cut" in doc
                where = f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"
                out.append((lines, where, why))
    return out


def test_functions_are_short() -> None:
    long = [(n, where, why) for n, where, why in function_lengths() if n > MAX_FUNCTION_LINES]
    assert len(long) <= 3, long
    assert all(why for _, _, why in long), f"say why each cannot be cut: {long}"


def test_the_minimal_install_is_the_trainers() -> None:
    """`pip install coco-folds` pulls numpy, Pillow and PyYAML only; the pipeline is an extra
    that the test extra includes; no extra forces a torch build."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]]
    assert names == ["numpy", "pillow", "pyyaml"]
    extras = project["optional-dependencies"]
    heavy = {"pycocotools", "opencv-python-headless", "scikit-learn", "dvc", "matplotlib"}
    pipeline = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in extras["pipeline"]}
    assert heavy <= pipeline
    assert "coco-folds[pipeline]" in extras["test"]
    assert not any("torch" in d for deps in extras.values() for d in deps)
