"""The third-party versions that decide output bytes: one list, one committed file, one check.

The same json and params give other bytes under another OpenCV (its warps and codecs), numpy,
pycocotools (the rasteriser), Pillow, msgspec, StringZilla, scikit-learn, scipy,
iterative-stratification (the baselines) or matplotlib (the figures). ``environment.yaml``
records the versions the committed ``dvc.lock`` was built with. Each stage lists the keys it
imports as DVC params of that file (``tests/test_dvc_deps.py`` checks the lists), so a lock
refresh that moves numpy re-runs exactly the stages numpy reaches, and each stage refuses to
start under other versions: ``dvc.lock`` never claims bytes the environment did not make. The
item cache key and the Dask workers' version check read :data:`BYTE_PACKAGES` too.

``python -m pipeline env`` (:mod:`pipeline.tools.env`) checks the installed versions against
the file; ``--write`` records the installed ones, ``--from-lock uv.lock`` the locked ones, and
``--refresh-lock`` upgrades uv.lock, exports requirements.lock (what README command 1
installs) and records the new versions.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_text

__all__ = [
    "BYTE_PACKAGES",
    "ENV_FILE",
    "INSTALL_HINT",
    "LOCK_FILE",
    "OPENCV_WHEELS",
    "PACKAGE",
    "PYTHON",
    "REQUIREMENTS",
    "check_environment",
    "installed_versions",
    "locked_versions",
    "package_version",
    "refresh_lock",
    "read_environment",
    "write_environment",
]

ENV_FILE = "environment.yaml"
LOCK_FILE = "uv.lock"
REQUIREMENTS = "requirements.lock"
INSTALL_HINT = f"pip install --no-deps --require-hashes -r {REQUIREMENTS}"
EXPORT = ["export", "--frozen", "--extra", "test", "--no-emit-project", "--format"]
EXPORT += ["requirements.txt", "--quiet", "-o", REQUIREMENTS]
# Distribution -> the top-level module it provides (what a stage's sys.modules shows).
BYTE_PACKAGES: dict[str, str] = {
    "iterative-stratification": "iterstrat",
    "matplotlib": "matplotlib",
    "msgspec": "msgspec",
    "numpy": "numpy",
    "opencv-python-headless": "cv2",
    "pillow": "PIL",
    "pycocotools": "pycocotools",
    "scikit-learn": "sklearn",
    "scipy": "scipy",
    "stringzilla": "stringzilla",
}
PYTHON = "python"  # the interpreter's minor version: json, zlib and hashing come with it
# This package. A data repo made by `coco-folds init` has no copy of the stages' source, so its
# stages list this key instead (pipeline.tools.init): a new release re-runs what it affects.
PACKAGE = "coco-folds"
# Any OpenCV wheel provides cv2; the same version gives the same bytes whichever it is.
OPENCV_WHEELS = (
    "opencv-python-headless",
    "opencv-python",
    "opencv-contrib-python-headless",
    "opencv-contrib-python",
)
_HEADER = (
    "# The versions that decide output bytes; dvc.yaml lists each stage's keys as params, and\n"
    "# every stage refuses to run under other versions. Written by `python -m pipeline env\n"
    "# --refresh-lock` (from uv.lock) or `python -m pipeline env --write` (the installed ones).\n"
)


def _distribution_version(name: str) -> str | None:
    names = OPENCV_WHEELS if name == "opencv-python-headless" else (name,)
    for candidate in names:
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def package_version() -> str | None:
    """This package's installed version (None: not installed, e.g. a bare checkout on the path)."""
    return _distribution_version(PACKAGE)


@functools.cache
def installed_versions() -> dict[str, str | None]:
    """This interpreter's byte-deciding versions (None: not installed)."""
    found: dict[str, str | None] = {PYTHON: f"{sys.version_info[0]}.{sys.version_info[1]}"}
    found.update({name: _distribution_version(name) for name in BYTE_PACKAGES})
    return found


def locked_versions(lock: Path) -> dict[str, str]:
    """The byte-deciding versions a uv.lock resolved (one version each: the lock's markers
    pin one Python minor for every platform)."""
    import tomllib  # Python 3.11+: only the lock's maintainers need it

    data = tomllib.loads(lock.read_text(encoding="utf-8"))
    versions: dict[str, set[str]] = {}
    for package in data.get("package", []):
        versions.setdefault(package["name"], set()).add(str(package.get("version")))
    out = {PYTHON: _locked_python(data)}
    for name in BYTE_PACKAGES:
        found = versions.get(name, set())
        if len(found) != 1:
            raise DatasetError(f"{name}: {len(found)} versions locked, not one", file=str(lock))
        out[name] = found.pop()
    return out


def _locked_python(data: Mapping) -> str:
    """The one Python minor the lock's markers name (``python_full_version == '3.11.*'``)."""
    minors = {
        match.group(1)
        for marker in data.get("supported-markers", [])
        for match in re.finditer(r"python_full_version == '(\d+\.\d+)\.\*'", marker)
    }
    if len(minors) != 1:
        raise DatasetError(
            "the lock must pin one Python minor ([tool.uv] environments in pyproject.toml)",
            file="uv.lock",
        )
    return minors.pop()


def read_environment(path: Path) -> dict[str, str]:
    """environment.yaml as ``{key: version}``; one line naming the file when it is not."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"not valid YAML: {exc}", file=str(path)) from None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise DatasetError("must map each package to its version, as a string", file=str(path))
    unknown = sorted(set(raw) - set(BYTE_PACKAGES) - {PYTHON, PACKAGE})
    if unknown:
        raise DatasetError(f"unknown package {unknown[0]!r}", file=str(path))
    return raw


def write_environment(
    path: Path, versions: Mapping[str, str | None], package: bool | None = None
) -> None:
    """Record ``versions`` (sorted keys, python first) for DVC and the stages' check.

    ``package``: also record this package's own version (:data:`PACKAGE`), which the stages of
    a data repo made by ``coco-folds init`` depend on; None keeps it when the file records it,
    so ``python -m pipeline env --write`` there records the installed release too."""
    keep = PACKAGE in _recorded(path) if package is None else package
    if keep:
        versions = {**versions, PACKAGE: versions.get(PACKAGE) or package_version()}
    missing = sorted(name for name, version in versions.items() if version is None)
    if missing:
        raise DatasetError(f"{missing[0]} is not installed: nothing to record", file=str(path))
    order = [PYTHON, *sorted(k for k in versions if k != PYTHON)]
    body = "".join(f"{key}: '{versions[key]}'\n" for key in order if key in versions)
    atomic_write_text(path, _HEADER + body)


def _recorded(path: Path) -> dict[str, str]:
    """The file's versions, or nothing when it is absent or malformed (it is rewritten)."""
    try:
        return read_environment(path) if path.is_file() else {}
    except DatasetError:
        return {}


def check_environment(root: Path = Path(".")) -> None:
    """Stop with one line when an installed version differs from ``environment.yaml``.

    Without the file (a stage run by hand in a bare folder) there is nothing to compare with;
    ``dvc repro`` always has it, since dvc.yaml reads its keys."""
    path = root / ENV_FILE
    if not path.is_file():
        return
    expected = read_environment(path)
    found = {**installed_versions(), PACKAGE: package_version()}
    for name, version in expected.items():
        if found.get(name) != version:
            raise DatasetError(
                f"{name} {version} expected, {found.get(name) or 'not installed'} installed: the "
                f"outputs would differ from dvc.lock. Install the locked environment "
                f"({INSTALL_HINT}), or record this one with `python -m pipeline env --write` "
                "(dvc repro then re-runs the stages it affects)",
                file=str(path),
            )


def refresh_lock(root: Path) -> dict[str, tuple[str | None, str]]:
    """uv lock --upgrade, the exported requirements.lock and environment.yaml, in one step;
    returns the byte-deciding versions that moved."""
    uv = shutil.which("uv")
    if uv is None:
        raise DatasetError("uv not found: pip install uv (it resolves for every platform at once)")
    env_path = root / ENV_FILE
    before = read_environment(env_path) if env_path.is_file() else {}
    for args in (["lock", "--upgrade", "--quiet"], EXPORT):
        done = subprocess.run([uv, *args], cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            raise DatasetError(f"uv {args[0]} failed: {done.stderr.strip()}")
    after = locked_versions(root / LOCK_FILE)
    write_environment(env_path, after)
    return {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
