"""pipeline.folds.remote: ``get``/``update`` in a trainer repo. The whole round trip with the
real ``git`` and ``dvc`` CLIs is tests/test_trainer_repo.py; here the parts that need neither."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.files.errors import DatasetError
from pipeline.folds import remote
from tests.test_dvcfile import dvc_file


def test_get_outside_a_dvc_repo_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"not a DVC repository: run `git init && dvc init`"):
        remote.get("https://example.invalid/repo", "folds-v1", root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing imported, nothing written


def test_update_needs_a_pinned_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no data/exports.dvc here: pin a split first"):
        remote.update("folds-v2", root=tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "exports.dvc").write_text("outs:\n- md5: a.dir\n  path: exports\n")
    with pytest.raises(DatasetError, match="pin a split first"):  # made by `dvc add`: no url
        remote.update("folds-v2", root=tmp_path)


def test_wanted_variants() -> None:
    have = ["clahe", "flip"]
    assert remote._wanted_variants(["flip", "flip"], have, "v1") == ["flip"]
    assert remote._wanted_variants(["all"], have, "v1") == ["clahe", "flip"]
    assert remote._wanted_variants([], have, "v1") == []
    with pytest.raises(DatasetError) as caught:
        remote._wanted_variants(["flip", "gone"], have, "folds-v2")
    assert "augment variants ['gone'] are not in the exports at folds-v2" in str(caught.value)
    assert "`dvc remove data/augmented/gone.dvc`" in str(caught.value)


@pytest.mark.parametrize("images", ["/abs/photos", "../photos", "", "a/../../b"])
def test_photos_outside_the_repo_cannot_be_imported(images: str) -> None:
    with pytest.raises(DatasetError, match="outside the dataset repo"):
        remote._image_part({"images": images})


def test_photo_folder_inside_the_repo() -> None:
    assert remote._image_part({"images": "data\\sample\\images"}) == "data/sample/images"


def test_parts_keep_a_whole_import_whole(tmp_path: Path) -> None:
    meta = {"images": "photos"}
    assert remote._parts(tmp_path, meta, ["flip"], images=False) == [
        "data/exports",
        "data/masks",
        "data/augmented/flip",
    ]
    dvc_file(tmp_path, "data/augmented", "a.dir", "v1")
    dvc_file(tmp_path, "data/classes.json", "c", "v1")
    assert remote._parts(tmp_path, meta, ["flip"], images=True) == [
        "data/exports",
        "data/masks",
        "data/augmented",
        "photos",
        "data/classes.json",
    ]
    (tmp_path / "data" / "augmented" / "flip.dvc").parent.mkdir(parents=True)
    (tmp_path / "data" / "augmented" / "flip.dvc").write_text("")
    assert remote._imported_variants(tmp_path) == ["flip"]


def test_a_failing_tool_is_one_error_with_its_last_lines(tmp_path: Path) -> None:
    code = "import sys; print('\\n'.join(f'line {i}' for i in range(9)), file=sys.stderr); exit(3)"
    with pytest.raises(DatasetError) as caught:
        remote.call([sys.executable, "-c", code], tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: `{Path(sys.executable).name} -c ")
    assert message.endswith("failed: line 5 line 6 line 7 line 8")
    assert remote.call([sys.executable, "-c", "print('ok')"], tmp_path) == "ok\n"


def test_a_relative_remote_gets_a_hint(tmp_path: Path) -> None:
    fake = tmp_path / "dvc"
    fake.write_text(
        "#!/bin/sh\necho 'ERROR: ../../dvc-storage: No such file or directory' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    with pytest.raises(DatasetError, match=r"make it absolute or a URL") as caught:
        remote.call([str(fake), "import", "x"], tmp_path)
    assert "`dvc import x` failed: ERROR: ../../dvc-storage" in str(caught.value)


def test_without_dvc_the_message_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(DatasetError, match=r"pip install 'dvc>=3.30'"):
        remote.dvc_cli()
    (tmp_path / "dvc").write_text("")  # beside this Python (a venv not activated)
    assert remote.dvc_cli() == str(tmp_path / "dvc")
