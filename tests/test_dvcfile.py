"""pipeline.folds.dvcfile: what a ``.dvc`` file of ``dvc import`` pins, read with PyYAML as
DVC's own YAML 1.2 writer means it (wrapped and quoted values, ``rev_lock``, words such as
``on`` that YAML 1.1 would make booleans)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.files.errors import DatasetError
from pipeline.folds import dvcfile
from pipeline.folds.dvcfile import Pin, load_dvc_text, read_pin
from tests.conftest import ROOT, python_exe, run_cli


def dvc_file(repo: Path, rel: str, md5: str, rev: str, url: str = "/data/repo") -> None:
    """A ``.dvc`` file shaped as ``dvc import`` writes it."""
    path = repo / f"{rel}.dvc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"md5: 0123\nfrozen: true\ndeps:\n- path: {rel}\n  repo:\n    url: {url}\n"
        f"    rev: {rev}\n    rev_lock: 89abcdef0123456789\nouts:\n- md5: {md5}\n"
        f"  size: 10\n  nfiles: 2\n  hash: md5\n  path: {Path(rel).name}\n"
    )


def test_read_pin_reads_what_dvc_import_writes(tmp_path: Path) -> None:
    dvc_file(tmp_path, "data/masks", "abc.dir", "folds-v1", url="git@host:team/repo.git")
    pin = read_pin(tmp_path, "data/masks")
    assert pin == Pin("data/masks", "abc.dir", "git@host:team/repo.git", "folds-v1", pin[4])
    assert pin.rev_lock == "89abcdef0123456789" and pin.label == "folds-v1"
    (tmp_path / "q.dvc").write_text(
        "deps:\n- path: q\n  repo:\n    url: 'https://h/x y'\n    rev: \"1.0\"\nouts:\n- md5: m\n"
    )
    quoted = read_pin(tmp_path, "q")
    assert (quoted.url, quoted.rev, quoted.md5, quoted.rev_lock) == (
        "https://h/x y",
        "1.0",
        "m",
        None,
    )
    assert read_pin(tmp_path, "absent") is None


# What `dvc import` of a repo in a long temp path wrote (DVC 3.67): the url on its own line.
WRAPPED = """md5: 18c937ed47b09b8a7a6a9a61f707e27c
frozen: true
deps:
- path: data/exports
  repo:
    url:
      /tmp/pytest-of-root-long-name/pytest-162xxxxxxxxxxxxxxxxxxxxxx/popen-gw1/test_trainer_rev0/dataset
    rev: folds-v1
    rev_lock: f0c605b967f037b91fb408a3f9ea24e919c92286
outs:
- md5: 513fbbd5055a8f8d667a5d62499a60ec.dir
  size: 52536
  nfiles: 27
  hash: md5
  path: exports
"""
WRAPPED_URL = (
    "/tmp/pytest-of-root-long-name/pytest-162xxxxxxxxxxxxxxxxxxxxxx/popen-gw1/"
    "test_trainer_rev0/dataset"
)


def test_read_pin_reads_a_wrapped_url(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "exports.dvc").write_text(WRAPPED)
    pin = read_pin(tmp_path, "data/exports")
    assert pin.url == WRAPPED_URL
    assert (pin.rev, pin.md5) == ("folds-v1", "513fbbd5055a8f8d667a5d62499a60ec.dir")
    assert pin.rev_lock == "f0c605b967f037b91fb408a3f9ea24e919c92286"


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("on", "on"),  # YAML 1.1: True; DVC (YAML 1.2) writes the branch name unquoted
        ("yes", "yes"),
        ("No", "No"),
        ("1:20", "1:20"),  # YAML 1.1: sexagesimal 80
        ("2024-01-01", "2024-01-01"),  # YAML 1.1: a date
        ("1.10", "1.10"),  # a float would drop the 0
        ("0o17", "0o17"),
        ("'null'", "null"),
        ('"tab\\there \\u00e9"', "tab\there \u00e9"),
        ("'it''s'", "it's"),
        ("a plain\n      value over lines", "a plain value over lines"),
        ("", None),
        ("~", None),
        ("null", None),
    ],
)
def test_values_stay_the_text_dvc_wrote(tmp_path: Path, written: str, value: str | None) -> None:
    (tmp_path / "p.dvc").write_text(
        f"deps:\n- path: p\n  repo:\n    url: /r\n    rev: {written}\n"
        "    rev_lock: 0123456789\nouts:\n- md5: 12345\n  path: p\n"
    )
    pin = read_pin(tmp_path, "p")
    assert pin.rev == value
    assert (pin.rev_lock, pin.md5) == ("0123456789", "12345")  # digits: text, not numbers


def test_yaml_safe_load_alone_would_misread_them() -> None:
    """Why the loader drops PyYAML's implicit types: its ``safe_load`` is YAML 1.1."""
    text = "rev: on\nlock: 1:20\n"
    assert yaml.safe_load(text) == {"rev": True, "lock": 80}
    assert load_dvc_text(text) == {"rev": "on", "lock": "1:20"}


def test_the_first_dependency_and_output_that_have_a_field_give_it(tmp_path: Path) -> None:
    (tmp_path / "m.dvc").write_text(
        "deps:\n- path: a\n- path: b\n  repo:\n    url: /first\n    rev: v1\n"
        "- path: c\n  repo:\n    url: /second\n    rev: v2\n    rev_lock: abc\n"
        "outs:\n- path: x\n- md5: m1\n- md5: m2\n"
    )
    assert read_pin(tmp_path, "m") == Pin("m", "m1", "/first", "v1", "abc")


@pytest.mark.parametrize("text", ["", "just text\n", "deps: 3\nouts: {md5: m}\n", "[1, 2]\n"])
def test_other_shapes_pin_nothing(tmp_path: Path, text: str) -> None:
    (tmp_path / "s.dvc").write_text(text)
    assert read_pin(tmp_path, "s") == Pin("s", None, None, None, None)


@pytest.mark.parametrize(
    "text",
    [
        "<<<<<<< HEAD\nouts:\n- md5: a\n=======\nouts:\n- md5: b\n>>>>>>> other\n",
        "outs: [md5: a\n",
        "outs: !!python/object/apply:os.system ['echo owned']\n",  # the loader is a safe one
    ],
)
def test_a_broken_dvc_file_is_a_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "b.dvc").write_text(text)
    with pytest.raises(DatasetError, match="not a readable .dvc file") as caught:
        read_pin(tmp_path, "b")
    assert caught.value.file == str(tmp_path / "b.dvc")


def test_the_pure_python_loader_reads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml (a PyYAML built without it) the pure-Python SafeLoader takes over."""
    text = WRAPPED.replace("rev: folds-v1", "rev: off")
    with_c = load_dvc_text(text)
    monkeypatch.delattr(yaml, "CSafeLoader")
    dvcfile._loader.cache_clear()
    try:
        assert dvcfile._loader().__mro__[1] is yaml.SafeLoader
        assert load_dvc_text(text) == with_c
        assert with_c["deps"][0]["repo"] == {
            "url": WRAPPED_URL,
            "rev": "off",
            "rev_lock": "f0c605b967f037b91fb408a3f9ea24e919c92286",
        }
    finally:
        dvcfile._loader.cache_clear()


def test_pyyaml_is_imported_on_the_first_dvc_file_only(tmp_path: Path) -> None:
    dvc_file(tmp_path, "data/masks", "abc.dir", "on")
    code = (
        "import sys; from pipeline import folds; before = 'yaml' in sys.modules; "
        f"pin = folds.read_pin({str(tmp_path)!r}, 'data/masks'); "
        "print(before, 'yaml' in sys.modules, pin.rev)"
    )
    done = run_cli([python_exe(), "-c", code], cwd=ROOT)
    assert done.stdout.split() == ["False", "True", "on"]


YAML_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)
YAML_11_WORDS = st.sampled_from(["on", "Off", "yes", "NO", "1:20", "1_0", "0x1F", "=", "<<", ""])


@settings(max_examples=1000, deadline=None)
@given(
    url=YAML_TEXT | YAML_11_WORDS,
    rev=YAML_TEXT | YAML_11_WORDS,
    prefix=st.sampled_from(["", "/tmp/" + "x" * 70 + " ", "a: "]),
)
def test_read_pin_agrees_with_dvcs_yaml_writer(
    tmp_path_factory: pytest.TempPathFactory, url: str, rev: str, prefix: str
) -> None:
    """Whatever DVC's own writer makes of a url and rev (wrapped, quoted, escaped, a YAML 1.1
    word left plain), read_pin gets them back as DVC's reader does."""
    serialize = pytest.importorskip("dvc.utils.serialize")
    data = {
        "md5": "0" * 32,
        "frozen": True,
        "deps": [
            {"path": "data/masks", "repo": {"url": prefix + url, "rev": rev, "rev_lock": "ab" * 20}}
        ],
        "outs": [{"md5": "c" * 32 + ".dir", "size": 1, "nfiles": 1, "hash": "md5", "path": "m"}],
    }
    text = serialize.dumps_yaml(data)
    assume(serialize.loads_yaml(text) == data)  # values DVC itself cannot read back: moot
    folder = tmp_path_factory.mktemp("pins", numbered=True)
    (folder / "data").mkdir()
    (folder / "data" / "masks.dvc").write_text(text, encoding="utf-8")
    pin = read_pin(folder, "data/masks")
    assert (pin.url, pin.rev) == (prefix + url, rev), text
    assert (pin.md5, pin.rev_lock) == ("c" * 32 + ".dir", "ab" * 20)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git CLI not installed")
def test_a_real_dvc_import(tmp_path: Path) -> None:
    """``dvc import`` of a repo at a long path (DVC wraps the url) and at a tag named ``on``."""
    from tests.test_versioning import DVC, Shell

    if shutil.which(DVC) is None and not Path(DVC).exists():
        pytest.skip("dvc CLI not installed")
    from dvc.utils.serialize import load_yaml

    from pipeline.files.sources import file_md5

    sh = Shell(tmp_path)
    source = tmp_path / ("a-dataset-repo-under-a-long-folder-name-" + "x" * 40) / "dataset"
    (source / "data").mkdir(parents=True)
    (source / "data" / "table.csv").write_text("a,b\n1,2\n")
    sh.git(source, "init", "-q", "-b", "main")
    sh.dvc(source, "init", "-q")
    sh.dvc(source, "remote", "add", "-d", "storage", str(tmp_path / "remote"))
    sh.dvc(source, "add", "-q", "data/table.csv")
    sh.git(source, "add", "-A")
    sh.git(source, "commit", "-q", "-m", "table")
    sh.git(source, "tag", "on")
    sh.dvc(source, "push", "-q")
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True
    ).stdout.strip()

    trainer = tmp_path / "trainer"
    (trainer / "data").mkdir(parents=True)
    sh.git(trainer, "init", "-q", "-b", "main")
    sh.dvc(trainer, "init", "-q")
    sh.dvc(trainer, "import", str(source), "data/table.csv", "--rev", "on", "-o", "data/table.csv")
    text = (trainer / "data" / "table.csv.dvc").read_text()
    # DVC wraps the url onto the next line (after "url: ", trailing space and all) and
    # leaves the tag plain.
    assert re.search(r"\n    url: ?\n {6}/", text) and "\n    rev: on\n" in text, text
    pin = read_pin(trainer, "data/table.csv")
    assert pin == Pin(
        "data/table.csv", file_md5(source / "data" / "table.csv"), str(source), "on", commit
    )
    dvc_own = load_yaml(trainer / "data" / "table.csv.dvc")
    assert pin.url == dvc_own["deps"][0]["repo"]["url"] and pin.md5 == dvc_own["outs"][0]["md5"]
