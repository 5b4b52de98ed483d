"""``python -m pipeline env``: check, record (installed or locked) and the refresh's failure
without uv; the file itself is pipeline.files.environment's (tests/test_environment.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.files.environment import (
    BYTE_PACKAGES,
    ENV_FILE,
    PYTHON,
    installed_versions,
    read_environment,
    write_environment,
)
from pipeline.files.errors import DatasetError
from pipeline.tools.env import main
from tests.conftest import ROOT


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_without_a_file_says_absent(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without environment.yaml the check says so and writes nothing."""
    main([])
    assert capsys.readouterr().out == f"{ENV_FILE}: absent\n"
    assert not (in_tmp / ENV_FILE).exists()


def test_write_records_the_installed_versions_then_check_passes(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--write records the installed versions (python first); the check then passes."""
    main(["--write"])
    assert capsys.readouterr().out == f"{ENV_FILE}: {len(installed_versions())} versions recorded\n"
    assert read_environment(in_tmp / ENV_FILE) == installed_versions()
    text = (in_tmp / ENV_FILE).read_text()
    assert text.startswith("# The versions that decide output bytes")
    assert list(yaml.safe_load(text))[0] == PYTHON
    main([])
    assert capsys.readouterr().out == f"{ENV_FILE}: the installed versions match\n"


def test_from_lock_records_the_locked_versions(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The committed environment.yaml is exactly what ``--from-lock uv.lock`` writes."""
    main(["--from-lock", str(ROOT / "uv.lock")])
    assert capsys.readouterr().out == f"{ENV_FILE}: {len(BYTE_PACKAGES) + 1} versions recorded\n"
    assert (in_tmp / ENV_FILE).read_bytes() == (ROOT / ENV_FILE).read_bytes()


def test_check_stops_on_another_version(in_tmp: Path) -> None:
    """A recorded version that differs stops the check with one line naming it."""
    write_environment(in_tmp / ENV_FILE, {**installed_versions(), "matplotlib": "1.0"})
    with pytest.raises(DatasetError, match=r"^environment\.yaml: matplotlib 1\.0 expected, "):
        main([])


def test_a_malformed_file_is_refused_not_overwritten_by_a_check(in_tmp: Path) -> None:
    """A malformed file is a named error and is left as it is."""
    (in_tmp / ENV_FILE).write_text("numpy: [1]\n")
    with pytest.raises(DatasetError, match="must map each package to its version"):
        main([])
    assert (in_tmp / ENV_FILE).read_text() == "numpy: [1]\n"


def test_refresh_without_uv_is_one_error_and_changes_nothing(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--refresh-lock without uv on PATH is one error and leaves the file alone."""
    write_environment(in_tmp / ENV_FILE, installed_versions())
    before = (in_tmp / ENV_FILE).read_bytes()
    monkeypatch.setenv("PATH", str(in_tmp / "no-bin"))  # no uv on PATH
    with pytest.raises(DatasetError, match=r"^uv not found: pip install uv"):
        main(["--refresh-lock"])
    assert (in_tmp / ENV_FILE).read_bytes() == before


@pytest.mark.parametrize(
    "argv",
    [["--write", "--from-lock", "uv.lock"], ["--write", "--refresh-lock"], ["--frozen"]],
)
def test_one_action_at_a_time(
    in_tmp: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The actions exclude each other; unknown options are refused."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert "usage: python -m pipeline env" in capsys.readouterr().err
    assert not (in_tmp / ENV_FILE).exists()
