"""The real `dvc` CLI in a temp git repo: repro, no-op repro, and params-driven re-runs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_repo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git CLI not installed")


def dvc_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.com"
    return env


def sh(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, env=dvc_env(), capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(
            f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout + done.stderr


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def output_digests(repo: Path) -> dict[str, str]:
    digests = {}
    for top in ("data", "reports"):
        for path in sorted((repo / top).rglob("*")):
            if path.is_file() and "sample" not in path.relative_to(repo).parts:
                digests[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = copy_repo(tmp_path / "repo")
    for stale in ("dvc.lock",):
        (root / stale).unlink(missing_ok=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["workers"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "copy"], root)
    return root


def test_repro_noop_and_masks_param_change(repo: Path) -> None:
    first = sh(["dvc", "repro"], repo)
    assert {"validate", "masks", "vectors", "split"} <= ran_stages(first)
    for out in (
        "data/interim/annotations.json",
        "data/classes.json",
        "data/stats/image_stats.csv",
        "data/splits/folds.csv",
        "reports/validation.json",
        "reports/split_quality.json",
    ):
        assert (repo / out).is_file(), out
    assert len(list((repo / "data/masks").rglob("*.png"))) == 60

    second = sh(["dvc", "repro"], repo)
    assert ran_stages(second) == set(), second
    assert "Data and pipelines are up to date" in sh(["dvc", "status"], repo)
    assert_environment_reaches_exactly(repo, "scipy", {"split"})
    assert_environment_reaches_exactly(repo, "stringzilla", {"augment-index", "augment@*"})

    # Determinism: forcing every stage again with 1 worker instead of 2 rewrites every output
    # with the same bytes (masks, stats, folds, augmented variants, exports, figures).
    before = output_digests(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["workers"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["dvc", "repro", "--force"], repo)
    assert output_digests(repo) == before

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["masks"]["overlap"] = "max"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = sh(["dvc", "repro"], repo)
    assert "masks" in ran_stages(third)
    assert "validate" not in ran_stages(third)

    # The number of workers never changes outputs, so it is not a dependency.
    params["workers"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(sh(["dvc", "repro"], repo)) == set()


def assert_environment_reaches_exactly(repo: Path, package: str, stages: set[str]) -> None:
    """A moved version in environment.yaml makes exactly the stages importing it stale, and
    the stage refuses to run under the installed (other) version."""
    path = repo / "environment.yaml"
    original = path.read_text()
    path.write_text(re.sub(rf"(?m)^{package}: .*$", f"{package}: '0.0'", original))
    try:
        stale = set(json.loads(sh(["dvc", "status", "--json"], repo)))
        assert {re.sub(r"@.*", "@*", name) for name in stale} == stages
        done = subprocess.run(
            ["dvc", "repro", sorted(stale)[0]],
            cwd=repo,
            env=dvc_env(),
            capture_output=True,
            text=True,
        )
        assert done.returncode != 0
        assert f"error: environment.yaml: {package} 0.0 expected" in done.stderr
    finally:
        path.write_text(original)
    # DVC removed the refused stage's outputs before its command ran (its uncached metrics
    # cannot be checked out): the right environment rebuilds them with the same bytes.
    sh(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date" in sh(["dvc", "status"], repo)


def test_error_reaches_the_user_cleanly(repo: Path) -> None:
    bad = repo / "data" / "sample" / "annotations.json"
    bad.write_text('{"images": [], "annotations": [], "categories": [')
    done = subprocess.run(
        ["dvc", "repro", "validate"], cwd=repo, env=dvc_env(), capture_output=True, text=True
    )
    assert done.returncode != 0
    text = done.stdout + done.stderr
    assert "error: data/sample/annotations.json: malformed json at line 1" in text
    assert "Traceback" not in text
