"""pipeline.folds.tags: the versions a dataset repo offers (git alone, no data) and where the
installed tool came from."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.files.errors import DatasetError
from pipeline.folds import tags
from pipeline.folds.tags import Installed, installed_from, summary, versions
from tests.test_versioning import cli_env

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git CLI not installed")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=cli_env(repo))


def commit(repo: Path, params: dict, nfiles: int, message: str) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    lock = {
        "stages": {"masks": {"outs": [{"path": "data/masks", "md5": "x.dir", "nfiles": nfiles}]}}
    }
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def test_versions_lists_tags_with_date_and_summary(tmp_path: Path) -> None:
    repo = tmp_path / "dataset"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {"split": {"n_splits": 5, "seed": 42}}, 60, "first split")
    git(repo, "tag", "-a", "folds-v1", "-m", "folds v1: the first split")
    classes = {"map": {1: "trash", 2: "paper", 3: "paper"}, "ignore": [4]}
    params = {"split": {"n_splits": 3, "seed": 7, "test_fraction": 0.2}, "classes": classes}
    commit(repo, params | {"export": {"coco_json": True}}, 64, "merge paper classes")
    git(repo, "tag", "folds-v2")  # lightweight: the commit's message and date
    found = versions(str(repo))
    assert [v.tag for v in found] == ["folds-v1", "folds-v2"]
    assert [v.subject for v in found] == ["folds v1: the first split", "merge paper classes"]
    assert all(len(v.date) == 10 and len(v.commit) == 40 for v in found)
    assert found[0].summary == "60 images, 5 folds (seed 42)"
    assert found[1].summary == (
        "64 images, 3 folds (seed 7), test 0.2, classes.map: 2 classes, classes.ignore: 1 ids, "
        "train.json"
    )
    with pytest.raises(DatasetError, match="git clone"):
        versions(str(tmp_path / "nowhere"))


def test_summary_of_missing_files_is_the_defaults() -> None:
    assert summary({}, {}) == "5 folds (seed 42)"
    assert summary({"export": {"coco_classes": "original"}}, {}).endswith(
        "COCO categories: original"
    )


def test_installed_from_reads_pep_610(monkeypatch: pytest.MonkeyPatch) -> None:
    class Dist:
        def __init__(self, text: str | None) -> None:
            self.text = text

        def read_text(self, name: str) -> str | None:
            assert name == "direct_url.json"
            return self.text

    from importlib import metadata

    vcs = {"url": "file:///data/repo", "vcs_info": {"vcs": "git", "requested_revision":
           "folds-v1", "commit_id": "a" * 40}}  # fmt: skip
    for text, expected in (
        (json.dumps(vcs), Installed("file:///data/repo", "folds-v1", "a" * 40, False)),
        (json.dumps({"url": "file:///src", "dir_info": {"editable": True}}),
         Installed("file:///src", None, None, True)),
        (None, None),
        ("{broken", None),
    ):  # fmt: skip
        monkeypatch.setattr(metadata, "distribution", lambda name, t=text: Dist(t))
        assert installed_from() == expected

    def absent(name: str) -> None:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", absent)
    assert installed_from() is None
    assert tags.DISTRIBUTION == "coco-folds"
