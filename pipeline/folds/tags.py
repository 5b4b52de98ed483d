"""The versions a dataset repo offers: its tags, each with its date and a one-line summary, and
where the installed tool came from.

The tags come from a bare clone of the repo's git history (no data: DVC keeps that), so
listing them costs a ``git clone --bare`` and reads only committed files of each tag:
``params.yaml`` (folds, seed, test part, class map, COCO options) and ``dvc.lock`` (the number
of masks, so of images).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.files.errors import DatasetError
from pipeline.folds.dvcfile import load_dvc_text

__all__ = ["Installed", "Version", "installed_from", "summary", "versions"]

DISTRIBUTION = "coco-folds"
MASKS = "data/masks"  # its dvc.lock entry counts the masks: one per image


class Version(NamedTuple):
    tag: str
    date: str  # YYYY-MM-DD of the tag (annotated) or its commit (lightweight)
    commit: str
    subject: str  # the tag's message, or the commit's, first line
    summary: str  # from params.yaml and dvc.lock at the tag


def _git(args: list[str], cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise DatasetError(f"`git {' '.join(args)}` failed: {tail}")
    return done.stdout


def _show(repo: Path, tag: str, path: str) -> dict[str, Any]:
    done = subprocess.run(
        ["git", "show", f"{tag}:{path}"], cwd=repo, capture_output=True, text=True, check=False
    )
    if done.returncode:
        return {}
    try:
        return load_dvc_text(done.stdout, f"{tag}:{path}")
    except DatasetError:
        return {}


def _number(value: Any) -> Any:
    """A YAML scalar read as text (:func:`load_dvc_text`) back as a number where it is one."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


def summary(params: dict[str, Any], lock: dict[str, Any]) -> str:
    """``60 images, 5 folds (seed 42), test 0.2, classes.map: 8 classes, train.json``."""
    split = params.get("split") or {}
    said = []
    masks = ((lock.get("stages") or {}).get("masks") or {}).get("outs") or []
    nfiles = [
        o.get("nfiles") for o in masks if isinstance(o, dict) and o.get("path") == "data/masks"
    ]
    if nfiles and nfiles[0]:
        said.append(f"{nfiles[0]} images")
    said.append(f"{split.get('n_splits', 5)} folds (seed {split.get('seed', 42)})")
    if _number(split.get("test_fraction")) not in (None, 0, 0.0):
        said.append(f"test {split['test_fraction']}")
    classes = params.get("classes") or {}
    mapping = classes.get("map") if isinstance(classes.get("map"), dict) else None
    if mapping:
        said.append(f"classes.map: {len(set(mapping.values()))} classes")
    for key in ("ignore", "drop"):
        if classes.get(key):
            said.append(f"classes.{key}: {len(classes[key])} ids")
    export = params.get("export") or {}
    if _number(str(export.get("coco_json")).lower()) is True:
        said.append("train.json")
    if export.get("coco_classes") == "original":
        said.append("COCO categories: original")
    return ", ".join(said)


def versions(url: str) -> list[Version]:
    """Every tag of the dataset repo ``url`` (a git URL or a local path), oldest first."""
    with tempfile.TemporaryDirectory(prefix="folds-versions.") as tmp:
        repo = Path(tmp) / "repo.git"
        _git(["clone", "--bare", "--quiet", "--filter=blob:none", url, str(repo)], Path(tmp))
        fmt = "%(refname:short)%09%(creatordate:short)%09%(*objectname)%(objectname)%09%(subject)"
        listed = _git(["for-each-ref", "--sort=creatordate", f"--format={fmt}", "refs/tags"], repo)
        out = []
        for line in listed.splitlines():
            tag, date, objects, subject = (line.split("\t", 3) + ["", "", "", ""])[:4]
            commit = objects[:40]
            params, lock = _show(repo, tag, "params.yaml"), _show(repo, tag, "dvc.lock")
            out.append(Version(tag, date, commit, subject, summary(params, lock)))
        return out


class Installed(NamedTuple):
    """Where pip installed this package from (``direct_url.json``), when it says."""

    url: str
    revision: str | None  # the tag or branch asked for (pip install "git+URL@folds-v1")
    commit: str | None
    editable: bool


def installed_from() -> Installed | None:
    """The installed ``coco-folds``'s origin (PEP 610), or None (an index, or not installed)."""
    from importlib import metadata

    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    vcs = doc.get("vcs_info") or {}
    editable = bool((doc.get("dir_info") or {}).get("editable"))
    return Installed(
        str(doc.get("url", "")), vcs.get("requested_revision"), vcs.get("commit_id"), editable
    )
