"""The ``.dvc`` files of ``dvc import``: what each pins (the output's hash, the source repo,
the revision asked for and the exact commit), read with PyYAML.

DVC writes YAML 1.2 (ruamel.yaml), where ``on``, ``yes``, ``no`` or ``1:20`` are text and so
stay unquoted; a YAML 1.1 reader (PyYAML's ``safe_load``) would make a branch named ``on``
``True`` and a tag ``1:20`` the number 80. The loader here is PyYAML's safe one (the C one when
built) without the implicit types: every plain value stays the text DVC wrote, an empty one
(or ``null``, ``~``) is None. PyYAML is imported on the first ``.dvc`` file read, not with the
package.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.files.errors import DatasetError

__all__ = ["Pin", "load_dvc_text", "read_pin"]

_NULL = "tag:yaml.org,2002:null"


class Pin(NamedTuple):
    """What a ``.dvc`` file of ``dvc import`` says: the hash of the output and its source."""

    path: str  # the output, relative to the repo root
    md5: str | None
    url: str | None
    rev: str | None
    rev_lock: str | None

    @property
    def label(self) -> str:
        return self.rev or (self.rev_lock or "")[:10] or "an unknown revision"


@functools.cache
def _loader() -> type:
    """PyYAML's safe loader (``CSafeLoader`` when libyaml is built in) that resolves plain
    scalars to text or None only: no bool, int, float, timestamp, merge or value tags."""
    import yaml  # here, not at the top: only a trainer repo with .dvc files needs it

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    resolvers = {
        first: [(tag, regexp) for tag, regexp in found if tag == _NULL]
        for first, found in base.yaml_implicit_resolvers.items()
    }
    return type("DvcFileLoader", (base,), {"yaml_implicit_resolvers": resolvers})


def load_dvc_text(text: str, where: str = "<.dvc text>") -> dict[str, Any]:
    """A ``.dvc`` file's YAML as a dict (empty when the text holds no mapping); a
    :class:`DatasetError` naming ``where`` when it is not YAML (a merge conflict, say)."""
    import yaml

    try:
        data = yaml.load(text, Loader=_loader())  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        raise DatasetError(f"not a readable .dvc file: {exc}", file=where) from exc
    return data if isinstance(data, dict) else {}


def _first(items: Any, *keys: str) -> str | None:
    """``item[key][key]...`` of the first item of the list ``items`` that holds it as text."""
    for item in items if isinstance(items, list) else ():
        value = item
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str):
            return value
    return None


def read_pin(root: str | os.PathLike, rel: str) -> Pin | None:
    """The ``<rel>.dvc`` file under ``root``, or None when there is none.

    DVC writes these files in one shape (``deps: - path, repo: {url, rev, rev_lock}``,
    ``outs: - md5``); the first dependency and output that have the field give it.
    """
    path = Path(root) / f"{rel}.dvc"
    if not path.is_file():
        return None
    data = load_dvc_text(path.read_text(encoding="utf-8"), str(path))
    deps, outs = data.get("deps"), data.get("outs")
    return Pin(
        rel,
        _first(outs, "md5"),
        _first(deps, "repo", "url"),
        _first(deps, "repo", "rev"),
        _first(deps, "repo", "rev_lock"),
    )
