"""dvc.yaml lists, for every stage, exactly the modules of ``pipeline/`` its run imports, and
exactly the byte-deciding packages it imports as params of environment.yaml.

The closure is found the way Python finds it: each stage really runs (in stage order, on the
embedded sample, one worker so every import happens in the measured process) and the test reads
``sys.modules`` afterwards, so lazy imports and ``importlib`` dispatch count. A module missing
from a stage's deps would let an edit leave stale outputs; a superfluous one would make every
edit re-run that stage.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.files.environment import BYTE_PACKAGES, ENV_FILE, PYTHON
from tests.conftest import ROOT, python_exe, run_cli

pytestmark = pytest.mark.slow

# Each command is `python -m pipeline.stages.<stage> [args]`; the probe runs that module the way
# `python -m` does (as __main__, which imports itself by name to run) and reads sys.modules.
PROBE = """
import json, runpy, sys
module, *args = json.loads(sys.argv[1])
sys.argv = [module, *args]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exc:
    if exc.code:
        raise
mods = sorted(
    m.__file__ for name, m in list(sys.modules.items())
    if (name == "pipeline" or name.startswith("pipeline.")) and getattr(m, "__file__", None)
)
print("MODULES=" + json.dumps(mods))
print("TOP=" + json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def environment_keys(stage: dict) -> list[str]:
    """The environment.yaml keys a stage lists among its params."""
    for entry in stage.get("params", []):
        if isinstance(entry, dict) and ENV_FILE in entry:
            return sorted(entry[ENV_FILE])
    return []


def stage_commands(dvc: dict, params: dict) -> list[tuple[str, list[str], list[str], list[str]]]:
    """(stage name, [module, args...] after `python -m`, code deps, environment keys)."""
    out = []
    for name, stage in dvc["stages"].items():
        if "foreach" in stage:
            for key in params["augment"]["variants"]:
                cmd = stage["do"]["cmd"].replace("${key}", key)
                out.append((f"{name}@{key}", cmd, stage["do"]))
        else:
            out.append((name, stage["cmd"], stage))
    result = []
    for name, cmd, stage in out:
        found = re.fullmatch(r"python -m (pipeline\.stages\.\w+.*)", cmd)
        assert found, f"{name}: command {cmd!r} is not `python -m pipeline.stages.<stage> ...`"
        deps = stage["deps"]
        code = sorted(d for d in deps if isinstance(d, str) and d.startswith("pipeline/"))
        result.append((name, found.group(1).split(), code, environment_keys(stage)))
    return result


def imported_packages(done_stdout: str) -> list[str]:
    """The byte-deciding distributions a stage's run imported, plus the interpreter."""
    line = next(x for x in done_stdout.splitlines() if x.startswith("TOP="))
    top = set(json.loads(line[len("TOP=") :]))
    return sorted({PYTHON} | {d for d, module in BYTE_PACKAGES.items() if module in top})


def test_stage_deps_are_exactly_the_import_closure(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copytree(ROOT / "data" / "sample", work / "data" / "sample")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["workers"] = 1
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    problems = []
    for name, argv, deps, env_keys in stage_commands(dvc, params):
        done = run_cli([python_exe(), "-c", PROBE, json.dumps(argv)], cwd=work, check=False)
        assert done.returncode == 0, f"{name} failed:\n{done.stderr[-2000:]}"
        line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES="))
        files = {
            str(Path(f).resolve().relative_to(ROOT)) for f in json.loads(line[len("MODULES=") :])
        }
        closure = sorted(files)
        missing = sorted(set(closure) - set(deps))
        extra = sorted(set(deps) - set(closure))
        if missing or extra:
            problems.append(f"{name}: missing {missing}, superfluous {extra}")
        if imported_packages(done.stdout) != env_keys:
            problems.append(
                f"{name}: imports {imported_packages(done.stdout)}, lists {env_keys} of {ENV_FILE}"
            )
    assert not problems, "\n".join(problems)
