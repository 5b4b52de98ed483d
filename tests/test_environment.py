"""The locked environment: uv.lock, requirements.lock and environment.yaml agree, and a stage
refuses to run under versions other than environment.yaml's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.files.environment import (
    BYTE_PACKAGES,
    ENV_FILE,
    PYTHON,
    check_environment,
    installed_versions,
    locked_versions,
    read_environment,
    write_environment,
)
from pipeline.files.errors import DatasetError
from tests.conftest import ROOT, python_exe, run_cli

REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)==([^ ;]+)", re.MULTILINE)


def test_committed_environment_is_the_lock() -> None:
    assert read_environment(ROOT / ENV_FILE) == locked_versions(ROOT / "uv.lock")


def test_requirements_lock_pins_every_locked_package_with_hashes() -> None:
    text = (ROOT / "requirements.lock").read_text()
    pinned = {name.lower(): version for name, version in REQUIREMENT.findall(text)}
    locked = read_environment(ROOT / ENV_FILE)
    for name in BYTE_PACKAGES:
        assert pinned.get(name) == locked[name], name
    # Every requirement carries at least one hash (pip --require-hashes needs them all).
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n", 2)[2])
    assert blocks and all("--hash=sha256:" in block for block in blocks)


def test_installed_is_the_committed_environment() -> None:
    """CI installs from requirements.lock: the tests run under the versions dvc.lock claims."""
    assert installed_versions() == read_environment(ROOT / ENV_FILE)


def test_write_and_read_round_trip(tmp_path: Path) -> None:
    versions = {PYTHON: "3.11", "numpy": "2.4.6", "scipy": "1.17.1"}
    write_environment(tmp_path / ENV_FILE, versions)
    assert read_environment(tmp_path / ENV_FILE) == versions
    assert list(yaml.safe_load((tmp_path / ENV_FILE).read_text())) == [PYTHON, "numpy", "scipy"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("numpy: [1]\n", "must map each package to its version"),
        ("numpy: '1'\ntorch: '2'\n", "unknown package 'torch'"),
        ("numpy: '1\n", "not valid YAML"),
    ],
)
def test_bad_environment_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / ENV_FILE).write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_environment(tmp_path / ENV_FILE)


def test_mismatch_names_package_versions_and_fix(tmp_path: Path) -> None:
    write_environment(tmp_path / ENV_FILE, {**installed_versions(), "numpy": "1.0.0"})
    with pytest.raises(DatasetError) as caught:
        check_environment(tmp_path)
    text = str(caught.value)
    assert f"numpy 1.0.0 expected, {installed_versions()['numpy']} installed" in text
    assert "requirements.lock" in text and "env --write" in text


def test_stage_refuses_other_versions_in_one_line(tmp_path: Path) -> None:
    write_environment(tmp_path / ENV_FILE, {**installed_versions(), "scipy": "0.1"})
    done = run_cli([python_exe(), "-m", "pipeline", "vectors"], cwd=tmp_path, check=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: environment.yaml: scipy 0.1 expected")
    assert "Traceback" not in done.stderr


def test_env_write_records_the_installed_versions(tmp_path: Path) -> None:
    done = run_cli([python_exe(), "-m", "pipeline", "env", "--write"], cwd=tmp_path)
    assert "versions recorded" in done.stdout
    assert read_environment(tmp_path / ENV_FILE) == installed_versions()
    checked = run_cli([python_exe(), "-m", "pipeline", "env"], cwd=tmp_path)
    assert "match" in checked.stdout


def test_lock_pins_one_python_for_every_platform() -> None:
    text = (ROOT / "uv.lock").read_text()
    markers = re.search(r"supported-markers = \[(.*?)\]", text, re.S)
    assert markers is not None
    platforms = re.findall(r"python_full_version == '3\.11\.\*' and ([^\"]+)\"", markers.group(1))
    assert len(platforms) == 3
    assert any("x86_64" in p and "linux" in p for p in platforms)
    assert any("aarch64" in p for p in platforms) and any("darwin" in p for p in platforms)
