"""The command line every stage shares: stage_main (arguments, params, environment, summary) and
run_command / command (a stage module run as dvc.yaml runs it, errors in one line)."""

from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

import pytest

from pipeline.execution.cli import stage_main
from pipeline.files.environment import ENV_FILE, installed_versions, write_environment
from pipeline.files.errors import DatasetError
from pipeline.files.params import Params
from tests.conftest import python_exe, run_cli

DOC = """Stage ``demo``: counts things.

More text that the help leaves out.
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder: no params.yaml (every default), no environment.yaml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_prints_stage_summary_and_seconds(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One line ``<stage>: <summary> (<s> s)``, the seconds with one decimal."""

    def work(params: Params, root: Path, args: argparse.Namespace) -> str:
        time.sleep(0.06)
        return "3 images x 4 columns"

    stage_main("demo", DOC, [], work)
    out = capsys.readouterr().out
    match = re.fullmatch(r"demo: 3 images x 4 columns \((\d+\.\d) s\)\n", out)
    assert match, out
    assert 0.0 < float(match.group(1)) < 60


def test_work_gets_params_yaml_the_root_and_its_arguments(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """params.yaml of the working folder, root ``.`` and the stage's own options reach work."""
    (in_tmp / "params.yaml").write_text("split:\n  n_splits: 3\nworkers: 2\n")
    seen: list[tuple[Params, Path, argparse.Namespace]] = []

    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--only", default="all")
        parser.add_argument("--limit", type=int, default=0)

    def work(params: Params, root: Path, args: argparse.Namespace) -> str:
        seen.append((params, root, args))
        return "done"

    stage_main("demo", DOC, ["--only", "masks", "--limit", "5"], work, add)
    [(params, root, args)] = seen
    assert (params.split.n_splits, params.workers, params.split.seed) == (3, 2, 42)
    assert root == Path(".")
    assert (args.only, args.limit) == ("masks", 5)
    assert capsys.readouterr().out.startswith("demo: done (")


def test_help_names_the_command_and_the_docs_first_line(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--help`` shows ``python -m pipeline <stage>`` and the module doc's first line only."""
    with pytest.raises(SystemExit) as stopped:
        stage_main("demo", DOC, ["--help"], lambda p, r, a: "never")
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m pipeline demo")
    assert "Stage ``demo``: counts things." in out and "More text" not in out


@pytest.mark.parametrize("doc", [None, ""])
def test_no_doc_is_fine(in_tmp: Path, doc: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    """A stage without a docstring still runs and prints its summary."""
    stage_main("demo", doc, [], lambda p, r, a: "ok")
    assert capsys.readouterr().out.startswith("demo: ok (")


def test_unknown_argument_stops_before_any_work(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stage without options refuses one, with argparse's usage error (exit code 2)."""
    ran: list[bool] = []
    with pytest.raises(SystemExit) as stopped:
        stage_main("demo", DOC, ["--fast"], lambda p, r, a: str(ran.append(True)))
    assert stopped.value.code == 2 and not ran
    assert "unrecognized arguments: --fast" in capsys.readouterr().err


def test_bad_params_stop_before_any_work(in_tmp: Path) -> None:
    """A params.yaml the schema refuses is one error naming the file and the key; no work."""
    (in_tmp / "params.yaml").write_text("split:\n  n_splits: 1\n")
    ran: list[bool] = []
    with pytest.raises(DatasetError, match=r"^params\.yaml: split\.n_splits: must be"):
        stage_main("demo", DOC, [], lambda p, r, a: str(ran.append(True)))
    assert not ran


def test_other_library_versions_stop_before_any_work(in_tmp: Path) -> None:
    """environment.yaml is checked first: outputs never come from other versions."""
    write_environment(in_tmp / ENV_FILE, {**installed_versions(), "numpy": "0.0.1"})
    ran: list[bool] = []
    with pytest.raises(DatasetError, match="numpy 0.0.1 expected"):
        stage_main("demo", DOC, [], lambda p, r, a: str(ran.append(True)))
    assert not ran


def test_matching_environment_lets_the_work_run(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With environment.yaml matching the installed versions the work runs."""
    write_environment(in_tmp / ENV_FILE, installed_versions())
    stage_main("demo", DOC, [], lambda p, r, a: "ran")
    assert capsys.readouterr().out.startswith("demo: ran (")


def _stage_repo(root: Path, sample: Path) -> Path:
    """A folder with the sample and a params.yaml of two workers and its own store."""
    import yaml

    shutil.copytree(sample, root / "data" / "sample")
    params = {
        "workers": 2,
        "dataset": {"annotations": "data/sample/annotations.json", "images": "data/sample/images"},
        "cache": {"dir": ".store"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def test_a_stage_module_run_as_dvc_runs_it_matches_the_dispatcher(
    tmp_path: Path, sample_dir: Path
) -> None:
    """`python -m pipeline.stages.<stage>` (dvc.yaml's commands) and `python -m pipeline
    <stage>` write the same bytes; with a pool of workers the module run as __main__ is not
    imported again under its name in each worker, so stderr stays free of Python's warning."""
    outputs = {}
    for form, argv in (
        ("module", ["-m", "pipeline.stages.{}"]),
        ("dispatcher", ["-m", "pipeline", "{}"]),
    ):
        root = _stage_repo(tmp_path / form, sample_dir)
        for stage in ("validate", "masks"):
            args = [python_exe(), *(a.format(stage) for a in argv)]
            done = run_cli(args, cwd=root)
            assert done.stdout.startswith(f"{stage}: "), done.stdout
            assert "Warning" not in done.stderr, done.stderr
        masks = sorted((root / "data" / "masks").rglob("*.png"))
        assert len(masks) == 24
        outputs[form] = {p.relative_to(root).as_posix(): p.read_bytes() for p in masks}
    assert outputs["module"] == outputs["dispatcher"]


def test_a_stage_module_says_a_missing_input_in_one_line(tmp_path: Path) -> None:
    """Errors of a stage run as a module are the dispatcher's one line, not a traceback."""
    done = run_cli([python_exe(), "-m", "pipeline.stages.vectors"], cwd=tmp_path, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    assert done.stderr == "error: data/stats/image_stats.csv: not found; run `dvc repro masks`\n"
