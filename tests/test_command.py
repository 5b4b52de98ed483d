"""pipeline.folds.command: ``python -m pipeline.folds`` (get, update, versions, check, classes,
coco-json, mmseg-layout, show, pin, diff); get/update/versions against a real dataset repo run in
tests/test_trainer_repo.py."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from pipeline.folds import command
from pipeline.folds.read import fold
from tests.conftest import ROOT, python_exe, run_cli
from tests.test_export import build_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("command_project"))


def test_cli(project: Path, tmp_path: Path) -> None:
    done = run_cli(
        [
            python_exe(),
            "-m",
            "pipeline.folds",
            "mmseg-layout",
            "--out",
            str(tmp_path / "mm"),
            "--root",
            str(project),
        ],
        cwd=tmp_path,
    )
    assert "mmseg layout" in done.stdout
    assert (tmp_path / "mm" / "img_dir").is_dir()
    shown = run_cli(
        [python_exe(), "-m", "pipeline.folds", "show", "0", "--variants", "all"], cwd=project
    )
    lines = shown.stdout.splitlines()
    assert lines[0] == "part,image,mask"
    assert len(lines) - 1 == len(fold(0, root=project, variants="all").train) + len(
        fold(0, root=project).val
    )
    bad = run_cli([python_exe(), "-m", "pipeline.folds", "show", "9"], cwd=project, check=False)
    assert bad.returncode == 1 and "does not exist" in bad.stderr
    head = subprocess.run(
        f"{shlex.quote(python_exe())} -m pipeline.folds show 0 --variants all | head -1",
        shell=True,
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert head.stdout == "part,image,mask\n" and head.stderr == ""  # no BrokenPipeError


def test_main_in_process(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["show", "1", "--root", str(project)]) == 0
    out = capsys.readouterr().out.splitlines()
    f = fold(1, root=project)
    assert out[0] == "part,image,mask" and len(out) == 1 + len(f.train) + len(f.val)
    assert out[1] == f"train,{f.train[0].image},{f.train[0].mask}"
    assert out[-1] == f"val,{f.val[-1].image},{f.val[-1].mask}"


def test_errors_are_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["show", "0", "--root", str(tmp_path)]) == 1  # FileNotFoundError
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'data' / 'exports'} holds no")
    assert command.main(["update", "--rev", "v2", "--root", str(tmp_path)]) == 1  # DatasetError
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no data/exports.dvc here" in err
    assert len(err.strip().splitlines()) == 1


def test_every_command_has_a_handler() -> None:
    parser = command._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(command.COMMANDS)
    with pytest.raises(SystemExit) as caught:
        parser.parse_args([])
    assert caught.value.code == 2  # a command is required
    args = parser.parse_args(["pin"])
    assert (args.to, args.root) == ("splits/pinned.csv", ".")
    diff = parser.parse_args(["diff", "a", "b"])
    assert (diff.show, diff.csv) == (20, None)


def test_check_classes_and_coco_json(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command.main(["check", "--root", str(project)]) == 0
    assert "every part it was made from: one revision, as pinned" in capsys.readouterr().out
    assert command.main(["classes", "--fold", "1", "--kind", "median", "--root", str(project)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "fold 1: class distribution and median weights (computed on train)"
    header = out[1].split()
    assert header == [
        "index", "class", "train_pixels", "train_images", "val_pixels", "val_images",
        "median_weight",
    ]  # fmt: skip
    assert out[2].split()[:2] == ["0", "background"]
    out_json = tmp_path / "train.json"
    code = command.main(
        ["coco-json", "--fold", "0", "--out", str(out_json), "--root", str(project)]
    )
    assert code == 0 and out_json.is_file()
    assert capsys.readouterr().out == f"fold 0 train: {out_json}\n"
    layout = tmp_path / "mm"
    assert command.main(["mmseg-layout", "--out", str(layout), "--root", str(project)]) == 0
    capsys.readouterr()
    assert command.main(["check", "--layout", str(layout)]) == 0
    assert "mmseg layout" in capsys.readouterr().out


def test_versions_needs_a_repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert command.main(["versions", "--root", str(tmp_path)]) == 1
    assert "which dataset repo?" in capsys.readouterr().err


def test_the_tool_note_says_how_to_match_the_data(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.folds.dvcfile import Pin
    from pipeline.folds.tags import Installed

    pin = Pin("data/exports", "x.dir", "/data/repo", "folds-v2", "abc")
    for found, said in (
        (Installed("file:///data/repo", "folds-v1", "a" * 40, False),
         'was installed from folds-v1, the data is at folds-v2: pip install '
         '"git+file:///data/repo@folds-v2"'),
        (Installed("file:///data/repo", "folds-v2", "b" * 40, False), "installed from folds-v2,"),
        (Installed("file:///src", None, None, True), "editable install of file:///src"),
        (None, 'for folds-v2\'s code: pip install "git+file:///data/repo@folds-v2"'),
    ):  # fmt: skip
        monkeypatch.setattr(command, "installed_from", lambda f=found: f)
        command._tool_note("folds-v2", pin)
        assert said in capsys.readouterr().out
