"""``coco-folds init --annotations PATH --images PATH [--group-regex R] [--n-splits K]``: this
pipeline in a team's own data repository, without a clone of this project (docs/init.md).

Inside an existing git repository it runs ``dvc init`` when needed and writes the stages
(dvc.yaml), every parameter at its default with the user's paths and choices (params.yaml), the
byte-deciding versions plus this package's own (environment.yaml), the empty pinned split, and
the ignore entries for the stage outputs and the item store. Everything that can be refused is
checked before anything is written: the repository, the paths, the json's header (a large json
is peeked at, never loaded), the existing files. Nothing is overwritten: an existing dvc.yaml
gains the stages it lacks (a stage of the same name that differs is an error naming it), an
existing params.yaml keeps the user's keys, values, comments and order and gains the missing
keys. A second run changes nothing.

One source for the stages. An installed package has no repository root to read dvc.yaml from,
so the templates under ``pipeline/tools/template/`` are package data *made* from this
repository's dvc.yaml and params.yaml by :func:`refresh_templates` (``coco-folds init
--refresh-template`` in a checkout); ``tests/test_init.py`` fails when either drifts, so nobody
edits a second copy by hand. The dvc.yaml template is the repository's with its
``pipeline/*.py`` source dependencies removed and ``coco-folds`` added to every stage's
environment.yaml keys: in a data repo the tool is a dependency through its released version, so
upgrading it re-runs exactly the stages it reaches and nothing else does.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.files.contracts import AUGMENTED_DIR, FOLD_COLUMNS
from pipeline.files.environment import (
    ENV_FILE,
    PACKAGE,
    PYTHON,
    installed_versions,
    package_version,
    read_environment,
    write_environment,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_text, csv_text
from pipeline.files.params import PARAMS_FILE, parse_params

__all__ = [
    "COCO_KEYS",
    "DVC_FILE",
    "DVC_TEMPLATE",
    "PARAMS_TEMPLATE",
    "Plan",
    "TEMPLATE_DIR",
    "apply",
    "cached_outputs",
    "check_coco",
    "derive_dvc_yaml",
    "fill_params",
    "git_root",
    "ignore_entries",
    "main",
    "merge_dvc_yaml",
    "merge_lines",
    "merge_params",
    "plan",
    "refresh_templates",
    "repo_path",
    "set_value",
    "top_level_keys",
]

DVC_FILE = "dvc.yaml"
# Not named dvc.yaml / params.yaml: DVC would collect a dvc.yaml anywhere in this repository
# as another pipeline.
TEMPLATE_DIR = Path(__file__).with_name("template")
DVC_TEMPLATE = TEMPLATE_DIR / "dvc.yaml.in"
PARAMS_TEMPLATE = TEMPLATE_DIR / "params.yaml.in"
COCO_KEYS = ("images", "annotations", "categories")
PEEK_BYTES = 1 << 20  # a large json: its top-level keys in the first MiB
WHOLE_BYTES = 16 << 20  # up to this size the json is parsed whole, every key checked
_SOURCE_DEP = re.compile(r"^\s*- pipeline/[\w/]+\.py\s*(#.*)?$")
_PYTHON_KEY = re.compile(rf"^(\s*)- {PYTHON}\s*$")
_DVC_HEADER = (
    "# Made by `coco-folds init` from coco-folds' own dvc.yaml: the same stages, with the tool a\n"
    "# dependency through environment.yaml (`coco-folds: <version>`, listed by every stage)\n"
    "# instead of its source files, so a new release re-runs exactly the stages it affects.\n"
)
_GROUP_COMMENT = "# group: first capture group of file_name; null = one per image"
_IGNORE_HEADERS = {
    ".gitignore": "# coco-folds init: the stage outputs (DVC tracks them) and the item store",
    ".dvcignore": "# coco-folds init: the item store and augment's temporary folders",
}


# ---------------------------------------------------------------- the templates, one source


def _without_source_deps(dvc: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed form of :func:`derive_dvc_yaml`'s change, to check the line-wise one by."""
    out = copy.deepcopy(dict(dvc))
    for stage in out.get("stages", {}).values():
        body = stage.get("do", stage)
        body["deps"] = [d for d in body.get("deps", []) if not str(d).startswith("pipeline/")]
        if not body["deps"]:
            del body["deps"]  # augment-index reads only params
        for entry in body.get("params", []):
            if isinstance(entry, dict) and ENV_FILE in entry:
                keys = entry[ENV_FILE]
                keys.insert(keys.index(PYTHON) + 1, PACKAGE)
    return out


def _drop_empty_deps(lines: list[str]) -> list[str]:
    """A ``deps:`` line left without items (a stage that read only source) is removed: DVC
    refuses ``deps: null``."""
    out = []
    for i, line in enumerate(lines):
        if re.fullmatch(r"\s*deps:\s*", line):
            following = next((x for x in lines[i + 1 :] if _is_content(x)), "")
            if not following.lstrip().startswith("-"):
                continue
        out.append(line)
    return out


def derive_dvc_yaml(text: str) -> str:
    """This repository's dvc.yaml as a data repo needs it: no ``pipeline/*.py`` deps (the data
    repo has no source), ``coco-folds`` after ``python`` in each environment.yaml list. Made
    line by line so every comment stays, and checked against the same change on the parsed
    file, so a dvc.yaml the line rules do not cover is refused, never half-converted."""
    out = []
    for line in text.splitlines(keepends=True):
        if _SOURCE_DEP.match(line):
            continue
        out.append(line)
        found = _PYTHON_KEY.match(line)
        if found:
            out.append(f"{found.group(1)}- {PACKAGE}\n")
    derived = _DVC_HEADER + "".join(_drop_empty_deps(out))
    if yaml.safe_load(derived) != _without_source_deps(yaml.safe_load(text)):
        raise DatasetError(
            "the line-wise conversion differs from the parsed one: extend derive_dvc_yaml",
            file=DVC_FILE,
        )
    return derived


def _checkout() -> Path:
    """The checkout this module runs from; an installed package has none."""
    root = Path(__file__).resolve().parents[2]
    project = root / "pyproject.toml"
    if not (project.is_file() and f'name = "{PACKAGE}"' in project.read_text(encoding="utf-8")):
        raise DatasetError(
            "--refresh-template runs in a checkout of coco-folds (it reads its dvc.yaml and "
            f"params.yaml); {root} is not one"
        )
    return root


def refresh_templates(root: Path | None = None) -> list[Path]:
    """Write the shipped templates from the checkout's dvc.yaml and params.yaml (after either
    changes; tests/test_init.py says when)."""
    root = _checkout() if root is None else root
    made = {
        DVC_TEMPLATE: derive_dvc_yaml((root / DVC_FILE).read_text(encoding="utf-8")),
        PARAMS_TEMPLATE: (root / PARAMS_FILE).read_text(encoding="utf-8"),
    }
    for path, text in made.items():
        atomic_write_text(path, text)
    return list(made)


# ---------------------------------------------------------------- checks, before any write


def git_root(cwd: Path) -> Path:
    """The work tree's top: init adds DVC and the stages to an existing git repository and
    never makes one (where the history lives is the team's choice)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True
        )
    except FileNotFoundError:
        raise DatasetError("git not found: coco-folds init works in a git repository") from None
    if done.returncode:
        said = done.stderr.strip().splitlines()[-1:] if "not a git" not in done.stderr else []
        raise DatasetError(
            f"{cwd}: not inside a git repository{''.join(f' ({x})' for x in said)}; run "
            "`git init` first (coco-folds init adds DVC and the pipeline to an existing one)"
        )
    return Path(done.stdout.strip()).resolve()


def repo_path(root: Path, given: str, option: str, folder: bool) -> str:
    """``given`` as params.yaml will name it: relative to the repository (POSIX) when inside,
    else absolute (DVC then tracks an external dependency, which trainers cannot import)."""
    full = Path(os.path.abspath(root / given))
    kind = "folder" if folder else "file"
    if not full.exists():
        raise DatasetError(f"{option} {given}: no such {kind}")
    if full.is_dir() != folder:
        raise DatasetError(f"{option} {given}: not a {kind}")
    try:
        return full.relative_to(Path(os.path.abspath(root))).as_posix()
    except ValueError:
        return str(full)


_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|([{}\[\],])', re.S)


def _unescape(string: str) -> str:
    """A json string's content; a malformed escape is kept as written (validate names it)."""
    try:
        return json.loads(f'"{string}"', strict=False)
    except ValueError:
        return string


def top_level_keys(text: str) -> list[str]:
    """The keys of the top-level object seen in ``text``, a json's beginning (cut anywhere):
    strings are consumed whole, so brackets inside them do not count."""
    keys: list[str] = []
    depth, expect_key = 0, False
    for match in _TOKEN.finditer(text):
        string, symbol = match.groups()
        if string is not None:
            if depth == 1 and expect_key:
                keys.append(_unescape(string))
            expect_key = False
        elif symbol in "{[":
            depth += 1
            expect_key = depth == 1 and symbol == "{"
        elif symbol in "}]":
            depth -= 1
        else:
            expect_key = depth == 1
    return keys


def _check_whole(text: str, shown: str) -> None:
    """A json small enough to parse: the three COCO lists, each present."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", file=shown
        ) from None
    for key in COCO_KEYS:
        if not isinstance(data.get(key), list):
            raise DatasetError(
                f"not a COCO json: no {key!r} list (a COCO json has {', '.join(COCO_KEYS)})",
                file=shown,
            )


def check_coco(path: Path, shown: str) -> None:
    """The annotations are a COCO json, judged without loading a large one: a json of up to
    16 MiB is parsed whole (images, annotations and categories lists); a larger one must open
    a top-level object naming one of them in its first MiB (validate checks the rest)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(WHOLE_BYTES if size <= WHOLE_BYTES else PEEK_BYTES)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if not text.startswith("{"):
        what = "a list" if text.startswith("[") else "empty" if not text else "not JSON"
        raise DatasetError(f"not a COCO json: the file is {what}, not an object", file=shown)
    if size <= WHOLE_BYTES:
        _check_whole(text, shown)
        return
    if not set(top_level_keys(text)) & set(COCO_KEYS):
        raise DatasetError(
            f"not a COCO json: none of {', '.join(COCO_KEYS)} in its first MiB", file=shown
        )


# ---------------------------------------------------------------- YAML edited as the user wrote it
# The user's files are extended line by line, never re-dumped: their comments, order and style
# stay. Each edit is verified by parsing the result (:func:`_verify`).


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _is_entry(line: str, indent: int) -> bool:
    """A mapping key or a ``- `` item starting at exactly ``indent``; at the top level only
    keys count (the items of a top-level key may sit at column 0)."""
    top_item = indent == 0 and line.startswith("-")
    return _is_content(line) and _indent(line) == indent and not top_item


_KEY = re.compile(r"""\s*('(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|[^\s'"#:-][^:#]*?)\s*:(\s|$)""")


def _entry_key(line: str) -> Any:
    """The key of an entry line, as YAML reads it; None for a list item."""
    found = _KEY.match(line)
    return yaml.safe_load(found.group(1)) if found else None


Entry = tuple[Any, list[str]]


def _entries(lines: Sequence[str], indent: int) -> list[Entry]:
    """The entries of a block at ``indent``: (key or None for an item, its lines). Each takes
    the comment and blank lines just above it (its description) and every line below until
    the next; the first takes none, so a file's own header is nobody's."""
    starts = [i for i, line in enumerate(lines) if _is_entry(line, indent)]
    leads = []
    for n, start in enumerate(starts):
        lead = start
        while n and lead - 1 > starts[n - 1] and not _is_content(lines[lead - 1]):
            if lines[lead - 1].strip() and _indent(lines[lead - 1]) != indent:
                break  # a deeper comment belongs to the entry above
            lead -= 1
        leads.append(lead)
    bounds = [*leads, len(lines)]
    return [
        (_entry_key(lines[s]), list(lines[bounds[n] : bounds[n + 1]])) for n, s in enumerate(starts)
    ]


def _children(block: list[str]) -> list[Entry]:
    """The entries inside one top-level entry of a template (written at indent 2)."""
    head = next(i for i, line in enumerate(block) if _is_entry(line, 0))
    return _entries(block[head + 1 :], 2)


def _lines(text: str) -> list[str]:
    return (text if not text or text.endswith("\n") else text + "\n").splitlines(keepends=True)


def _strip_blank(block: list[str]) -> list[str]:
    while block and not block[0].strip():
        block = block[1:]
    return block


def _reindent(lines: Sequence[str], old: int, new: int) -> list[str]:
    """Lines of a block moved from indentation ``old`` to ``new``, relative depth kept."""
    return [
        line if not line.strip() else " " * new + line[min(old, _indent(line)) :] for line in lines
    ]


def _block(lines: list[str], key: str, what: str) -> tuple[int, int, int]:
    """(the line of top-level ``key``, the line after its last content line, its body's
    indentation); the key must be written as a block to take more lines."""
    entries = _entries(lines, 0)
    offset = len(lines) - sum(len(block) for _, block in entries)  # after the file's header
    for name, block in entries:
        start = offset + next(i for i, line in enumerate(block) if _is_entry(line, 0))
        offset += len(block)
        if name != key:
            continue
        if not re.fullmatch(r"[^:]*:\s*(#.*)?", lines[start].strip()):
            raise DatasetError(
                f"{key} is written inline; write it as a block (one entry a line) so init can "
                "add to it",
                file=what,
            )
        body = [i for i in range(start + 1, offset) if _is_content(lines[i])]
        indent = min((_indent(lines[i]) for i in body), default=2)
        return start, (body[-1] if body else start) + 1, indent
    raise KeyError(key)


def _insert(text: str, key: str, entries: list[list[str]], what: str, gap: bool = False) -> str:
    """Template entries (indent 2) added at the end of the top-level ``key``, at its indent;
    ``gap``: a blank line before each (dvc.yaml's stages)."""
    lines = _lines(text)
    _, end, indent = _block(lines, key, what)
    blank = ["\n"] if gap else []
    new = [line for entry in entries for line in blank + _strip_blank(entry)]
    return "".join(lines[:end] + _reindent(new, 2, indent) + lines[end:])


def _append(text: str, block: list[str]) -> str:
    """A top-level template entry added at the end of a file, after a blank line."""
    out = "".join(_lines(text))
    return out + ("\n" if out.strip() else "") + "".join(_strip_blank(block))


def _load(text: str, what: str) -> dict[Any, Any]:
    """A YAML mapping, or one line naming the file."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DatasetError(f"not valid YAML: {' '.join(str(exc).split())}", file=what) from None
    if data is not None and not isinstance(data, dict):
        raise DatasetError("the top level must be a mapping", file=what)
    return data or {}


def _verify(text: str, expected: Mapping[Any, Any], what: str, template: Path) -> None:
    """The edited file means exactly what it should, or nothing is written."""
    if _load(text, what) != expected:
        raise DatasetError(
            f"could not add the missing entries line by line; add them by hand from {template}",
            file=what,
        )


# ---------------------------------------------------------------- params.yaml


_REGEX_CHARS = "^$()[]{}*+?|\\"


def _scalar(value: Any) -> str:
    """One YAML flow scalar: a regular expression single-quoted, as params.yaml writes them
    (plain YAML would do, but reads worse); other values quoted only when they must be."""
    style = "'" if isinstance(value, str) and set(value) & set(_REGEX_CHARS) else None
    text = yaml.safe_dump(
        value, default_flow_style=True, default_style=style, allow_unicode=True, width=1 << 30
    )
    return text.strip().removesuffix("...").strip()


_VALUE = r"""'(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|[^#\s](?:[^#]*[^#\s])?"""


def set_value(text: str, dotted: str, value: Any, comment: str | None = None) -> str:
    """``section.key`` of a params template set to ``value``, its comment kept in its column
    (or replaced by ``comment``)."""
    section, key = dotted.split(".")
    lines = _lines(text)
    start, end, indent = _block(lines, section, PARAMS_FILE)
    pattern = re.compile(rf"( {{{indent}}}){re.escape(key)}:\s+(?:{_VALUE})(\s*)(#.*)?")
    for i in range(start + 1, end):
        found = pattern.fullmatch(lines[i].rstrip("\n"))
        if found is None:
            continue
        new = f"{found.group(1)}{key}: {_scalar(value)}"
        note = comment or found.group(3)
        if note:
            column = found.start(3) if found.group(3) else len(new) + 1
            new += " " * max(1, column - len(new)) + note
        lines[i] = new + "\n"
        return "".join(lines)
    raise DatasetError(f"the template has no {dotted} line", file=str(PARAMS_TEMPLATE))


def fill_params(template: str, values: Mapping[str, Any]) -> str:
    """The params template with ``values`` (``section.key``: value) filled in."""
    for dotted, value in values.items():
        comment = _GROUP_COMMENT if dotted == "split.group_regex" else None
        template = set_value(template, dotted, value, comment)
    return template


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return os.path.normpath(a) == os.path.normpath(b)
    return a == b


def _check_given(user: Mapping[Any, Any], given: Mapping[str, Any]) -> None:
    """A value the user's params.yaml holds that the command line contradicts is an error:
    init never changes a value the user chose."""
    for dotted, value in given.items():
        section, key = dotted.split(".")
        body = user.get(section)
        if isinstance(body, dict) and key in body and not _same(body[key], value):
            raise DatasetError(
                f"{dotted} is {body[key]!r}, not {value!r} as given; change one of them",
                file=PARAMS_FILE,
            )


def merge_params(existing: str | None, filled: str, given: Mapping[str, Any]) -> str:
    """The user's params.yaml plus the sections and keys it lacks, taken with their comments
    from ``filled``; the user's own keys, values, comments and order are kept."""
    if existing is None or not existing.strip():
        return filled
    user = _load(existing, PARAMS_FILE)
    _check_given(user, given)
    wanted = yaml.safe_load(filled)
    text, expected = existing, copy.deepcopy(user)
    for section, block in _entries(_lines(filled), 0):
        if section not in user:
            text, expected[section] = _append(text, block), wanted[section]
        elif isinstance(wanted[section], dict) and isinstance(user[section], dict | None):
            have = user[section] or {}
            missing = [(key, lines) for key, lines in _children(block) if key not in have]
            if missing:
                text = _insert(text, section, [lines for _, lines in missing], PARAMS_FILE)
                expected[section] = {**have, **{k: wanted[section][k] for k, _ in missing}}
    _verify(text, expected, PARAMS_FILE, PARAMS_TEMPLATE)
    return text


# ---------------------------------------------------------------- dvc.yaml


def _check_stages(have: Mapping[Any, Any], ours: Mapping[str, Any]) -> None:
    """A user's stage named like one of ours must be ours, unchanged: the pipeline's stages
    meet through their files, so a different stage of that name would break it."""
    clash = [name for name, stage in ours.items() if name in have and have[name] != stage]
    if clash:
        names = ", ".join(repr(n) for n in clash)
        raise DatasetError(
            f"stage {names} already exists and is not coco-folds' stage of that name: rename "
            "yours (or remove it to take coco-folds'), then run coco-folds init again",
            file=DVC_FILE,
        )


def _extend(text: str, key: str, template: str, expected: dict[Any, Any], new: list) -> str:
    """Top-level ``key`` of the template (stages or plots) merged into the user's file:
    appended whole when absent, else its ``new`` children added at its end."""
    block = dict(_entries(_lines(template), 0))[key]
    ours = yaml.safe_load(template)[key]
    if key not in expected:
        expected[key] = ours
        return _append(text, block)
    children = _children(block)
    if key == "stages":
        expected[key] = {**(expected[key] or {}), **{k: ours[k] for k in new}}
        chosen = [lines for name, lines in children if name in new]
    else:
        expected[key] = [*(expected[key] or []), *new]
        chosen = [lines for item, (_, lines) in zip(ours, children, strict=True) if item in new]
    return _insert(text, key, chosen, DVC_FILE, gap=key == "stages") if chosen else text


def merge_dvc_yaml(existing: str | None, template: str) -> str:
    """The user's dvc.yaml plus the stages (and plots) of ours it lacks; a stage of the same
    name that differs is an error naming it."""
    if existing is None or not existing.strip():
        return template
    user = _load(existing, DVC_FILE)
    ours = yaml.safe_load(template)
    have = user.get("stages") or {}
    _check_stages(have, ours["stages"])
    text, expected = existing, copy.deepcopy(user)
    stages = [name for name in ours["stages"] if name not in have]
    if stages:
        text = _extend(text, "stages", template, expected, stages)
    plots = [p for p in ours.get("plots", []) if p not in (user.get("plots") or [])]
    if plots:
        text = _extend(text, "plots", template, expected, plots)
    _verify(text, expected, DVC_FILE, DVC_TEMPLATE)
    return text


# ---------------------------------------------------------------- ignore files


def cached_outputs(dvc: Mapping[str, Any]) -> list[str]:
    """The paths of the DVC-cached outputs of a dvc.yaml (a ``${...}`` output: its folder),
    none below another: what git must ignore before the first ``dvc repro`` writes them."""
    found = set()
    for stage in dvc.get("stages", {}).values():
        for out in stage.get("do", stage).get("outs", []):
            path, options = (out, {}) if isinstance(out, str) else next(iter(out.items()))
            if (options or {}).get("cache", True):
                found.add(path.split("${")[0].rstrip("/"))
    return sorted(p for p in found if not any(p.startswith(f"{q}/") for q in found))


def _store_entry(root: Path, store: str | None) -> list[str]:
    """The item store's ignore entry when it lies inside the repository."""
    if not store:
        return []
    full = Path(os.path.abspath(root / store))
    try:
        return [f"/{full.relative_to(Path(os.path.abspath(root))).as_posix()}/"]
    except ValueError:
        return []


def ignore_entries(root: Path, dvc: Mapping[str, Any], store: str | None) -> dict[str, list[str]]:
    """The .gitignore and .dvcignore lines: outputs and item store for git; for DVC the item
    store and the augment stage's temporary folders (it builds a variant beside its output)."""
    store_lines = _store_entry(root, store)
    temporary = [f"/{AUGMENTED_DIR}/.*.tmp-*", f"/{AUGMENTED_DIR}/.*.old-*"]
    return {
        ".gitignore": [*(f"/{p}" for p in cached_outputs(dvc)), *store_lines],
        ".dvcignore": [*store_lines, *temporary],
    }


def merge_lines(existing: str, lines: Sequence[str], header: str) -> str:
    """An ignore file plus the lines it lacks, under ``header``; unchanged when none."""
    have = {line.strip() for line in existing.splitlines()}
    missing = [line for line in lines if line not in have]
    if not missing:
        return existing
    out = "".join(_lines(existing))
    return out + ("\n" if out.strip() else "") + "\n".join([header, *missing]) + "\n"


# ---------------------------------------------------------------- plan, then write


@dataclass
class Plan:
    """Everything init will write, decided before the first write. ``files``: repository
    path -> new text, only the files that change."""

    root: Path
    dvc_init: list[str] | None = None
    files: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] | None = None
    store: str | None = None
    notes: list[str] = field(default_factory=list)


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _dvc_init(root: Path, top: Path) -> list[str] | None:
    """The ``dvc init`` to run (``--subdir`` below the git top), or None in a DVC repo."""
    if any(
        (folder / ".dvc").is_dir()
        for folder in (root, *root.parents)
        if top in (folder, *folder.parents)
    ):
        return None
    return [sys.executable, "-m", "dvc", "init", "-q", *(["--subdir"] if root != top else [])]


def _environment(path: Path) -> tuple[dict[str, str] | None, list[str]]:
    """(versions to record, None when the file holds every key; notes). The installed
    versions are recorded: ``dvc repro`` makes the outputs with them."""
    found = {**installed_versions(), PACKAGE: package_version()}
    absent = [name for name, version in found.items() if version is None]
    if absent:
        raise DatasetError(
            f"{absent[0]} is not installed: pip install 'coco-folds[pipeline]' (docs/init.md: "
            "with the exact versions of the lock)"
        )
    recorded = read_environment(path) if path.is_file() else {}
    missing = {name: str(version) for name, version in found.items() if name not in recorded}
    return ({**missing, **recorded} if missing else None), _moved(recorded, found)


def _moved(recorded: Mapping[str, str], found: Mapping[str, str | None]) -> list[str]:
    """A note when the file records other versions than the installed ones: every stage
    would refuse to run, so say it now rather than at ``dvc repro``."""
    moved = [
        f"{k} {v} recorded, {found.get(k)} installed"
        for k, v in recorded.items()
        if found.get(k) != v
    ]
    if not moved:
        return []
    return [
        f"{ENV_FILE}: {moved[0]} ({len(moved)} differ): the stages will refuse to run; install "
        "those versions or record these (`coco-folds env --write`)"
    ]


def _params_text(root: Path, ann: str, images: str, regex: str | None, n: int | None) -> str:
    """params.yaml: the template filled with the user's choices, merged into theirs."""
    given: dict[str, Any] = {"dataset.annotations": ann, "dataset.images": images}
    if n is not None:
        given["split.n_splits"] = n
    if regex is not None:
        given["split.group_regex"] = regex
    template = PARAMS_TEMPLATE.read_text(encoding="utf-8")
    filled = fill_params(template, {**given, "split.group_regex": regex})
    return merge_params(_read(root / PARAMS_FILE), filled, given)


def plan(
    root: Path, annotations: str, images: str, group_regex: str | None, n_splits: int | None
) -> Plan:
    """Every check and every new text; nothing is written here, so a refusal leaves the
    repository as it was."""
    top = git_root(root)
    ann = repo_path(root, annotations, "--annotations", folder=False)
    img = repo_path(root, images, "--images", folder=True)
    check_coco(Path(os.path.abspath(root / ann)), annotations)
    todo = Plan(root=root, dvc_init=_dvc_init(root, top))
    params_text = _params_text(root, ann, img, group_regex, n_splits)
    params = parse_params(_load(params_text, PARAMS_FILE))  # every value checked, one line
    dvc_text = merge_dvc_yaml(_read(root / DVC_FILE), DVC_TEMPLATE.read_text(encoding="utf-8"))
    pinned = root / params.split.stable_from
    new = {PARAMS_FILE: params_text, DVC_FILE: dvc_text}
    if not pinned.exists():  # a dependency of split: the header until `folds pin`
        new[params.split.stable_from] = csv_text(FOLD_COLUMNS, [])
    todo.files = {rel: text for rel, text in new.items() if _read(root / rel) != text}
    todo.environment, todo.notes = _environment(root / ENV_FILE)
    todo.store = params.cache.dir
    todo.notes += _notes(params, ann, img, PARAMS_FILE in todo.files)
    return todo


def _notes(params: Any, ann: str, img: str, params_changed: bool) -> list[str]:
    """What the user should know before the first ``dvc repro``."""
    notes = [
        f"{key}: {path} is outside the repository: DVC tracks it as an external dependency "
        "(trainers cannot import it)"
        for key, path in (("dataset.annotations", ann), ("dataset.images", img))
        if Path(path).is_absolute()
    ]
    if params_changed and not (params.split.group_regex or params.split.group_field):
        notes.append(
            "split.group_regex: null, each image its own group; if images come in groups "
            "(batch folders, crops of one photo) set it first, e.g. --group-regex '^([^/]+)/'"
        )
    return notes


def apply(todo: Plan) -> list[str]:
    """Write the plan: ``dvc init`` first (it makes .dvcignore), then the files; returns
    the paths written, none on a second run."""
    changed = []
    if todo.dvc_init is not None:
        done = subprocess.run(todo.dvc_init, cwd=todo.root, capture_output=True, text=True)
        if done.returncode:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
            raise DatasetError(f"`dvc init` failed: {tail}", file=str(todo.root))
        changed.append(".dvc")
    for rel, text in todo.files.items():
        atomic_write_text(todo.root / rel, text)
        changed.append(rel)
    if todo.environment is not None:
        write_environment(todo.root / ENV_FILE, todo.environment, package=True)
        changed.append(ENV_FILE)
    ours = yaml.safe_load(DVC_TEMPLATE.read_text(encoding="utf-8"))  # not the user's stages
    for name, lines in ignore_entries(todo.root, ours, todo.store).items():
        old = _read(todo.root / name) or ""
        new = merge_lines(old, lines, _IGNORE_HEADERS[name])
        if new != old:
            atomic_write_text(todo.root / name, new)
            changed.append(name)
    return changed


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line (``error: ...``, exit 1) like every other refusal."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise DatasetError(f"{message} (coco-folds init -h)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="coco-folds init",
        description="Add the coco-folds pipeline (dvc.yaml, params.yaml, environment.yaml, "
        "ignore entries; dvc init if needed) to this git repository. Everything is checked "
        "first and nothing is overwritten; a second run changes nothing (docs/init.md).",
    )
    parser.add_argument("--annotations", metavar="PATH", help="the COCO json")
    parser.add_argument("--images", metavar="PATH", help="the folder file_name is relative to")
    parser.add_argument(
        "--group-regex", metavar="R", help="group key: first capture group of file_name"
    )
    parser.add_argument("--n-splits", metavar="K", type=int, help="folds (default 5)")
    parser.add_argument(
        "--refresh-template",
        action="store_true",
        help="maintainers: rewrite the shipped templates from this checkout's dvc.yaml and "
        "params.yaml",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """``coco-folds init --annotations PATH --images PATH [--group-regex R] [--n-splits K]``."""
    args = _parser().parse_args(argv)
    if args.refresh_template:
        for path in refresh_templates():
            print(f"{path}: written")
        return
    if not (args.annotations and args.images):
        raise DatasetError("--annotations and --images are required (coco-folds init -h)")
    root = Path.cwd()
    todo = plan(root, args.annotations, args.images, args.group_regex, args.n_splits)
    changed = apply(todo)
    for note in todo.notes:
        print(f"note: {note}")
    if not changed:
        print(
            "coco-folds init: nothing to change (dvc.yaml, params.yaml, environment.yaml, "
            "ignore files up to date)"
        )
        return
    print(f"coco-folds init: wrote {', '.join(changed)}")
    print(f"next: git add {' '.join(changed)} && git commit -m 'coco-folds pipeline' && dvc repro")
