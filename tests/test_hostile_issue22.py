"""Issue 22's smaller cases through the real CLI: each ends in one line naming the key, the file
or the id (exit 1, no traceback, never "a bug"), in a listed repair, or in a warning naming the
key and the count; never silently accepted."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.files import fsio
from pipeline.files.contracts import (
    CANONICAL_PATH,
    FOLDS_PATH,
    SPLIT_QUALITY_PATH,
    SPLIT_WARNINGS_PATH,
    VALIDATION_ISSUES_PATH,
    VALIDATION_REPORT_PATH,
)
from pipeline.files.params import load_params
from pipeline.files.sources import current_lock_hash, dir_md5, source_hashes, tree_size
from pipeline.stages import masks, split, validate, vectors
from tests.conftest import ROOT, python_exe
from tests.test_hostile import base_coco, run_stage, setup_repo

STAGES = ("validate", "masks", "vectors", "split", "export", "report")


def error_line(root: Path, stage: str) -> str:
    """The one line a refused run prints (exit 1, no traceback, not a bug)."""
    code, out = run_stage(root, stage)
    assert code == 1, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    assert "a bug" not in out and "Traceback" not in out, out
    return lines[0]


def set_params(root: Path, **sections: Any) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(params.get(name), dict):
            params[name].update(value)
        else:
            params[name] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def issues(root: Path) -> list[dict[str, str]]:
    text = (root / VALIDATION_ISSUES_PATH).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def problems(root: Path) -> dict[str, int]:
    return json.loads((root / VALIDATION_REPORT_PATH).read_text())["problems"]


# ---------------------------------------------------------------- 1. "a bug" where a line belongs


def test_split_seed_beyond_32_bits_is_refused_naming_the_key(tmp_path: Path) -> None:
    """The library baselines seed numpy's RandomState (32 bits): the schema bounds the seed."""
    root = setup_repo(tmp_path, base_coco())
    set_params(root, split={"seed": 2**32})
    line = error_line(root, "split")
    assert (
        line
        == "error: params.yaml: split.seed: must be an integer in [0, 4294967295], got 4294967296"
    )


def nested(depth: int, nan: bool = False, where: str = "segmentation") -> str:
    text = json.dumps({"info": "DEEP", **base_coco()})
    if nan:
        text = text.replace('"area": 1.0', '"area": NaN', 1)
    deep = "[" * depth + "[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]" + "]" * depth
    if where == "segmentation":
        return text.replace('"segmentation": [[2.0', f'"segmentation": [{deep}, [2.0', 1)
    return text.replace('"DEEP"', deep, 1)


@pytest.mark.parametrize(
    ("depth", "nan", "where"),
    [
        (100_000, False, "segmentation"),  # msgspec's recursion limit
        (100_000, True, "segmentation"),  # Python's json (a file msgspec refuses)
        (900, True, "info"),  # read, but too deep for the repairs that walk it
    ],
)
def test_json_nested_too_deeply_is_one_line(
    tmp_path: Path, depth: int, nan: bool, where: str
) -> None:
    root = setup_repo(tmp_path, nested(depth, nan, where))
    line = error_line(root, "validate")
    assert line.startswith("error: ann.json: json nested too deeply"), line


def latin1(coco: dict[str, Any], nan: bool = False) -> bytes:
    text = json.dumps(coco, ensure_ascii=False).replace('"can"', '"caf\u00e9"')
    if nan:
        text = text.replace('"area": 1.0', '"area": NaN', 1)
    return text.encode("latin-1")


@pytest.mark.parametrize("nan", [False, True], ids=["strict", "python-json"])
def test_latin1_byte_in_a_string_names_line_and_column(tmp_path: Path, nan: bool) -> None:
    """msgspec skips raw values without checking their UTF-8; the file is checked first."""
    data = latin1(base_coco(), nan)
    root = setup_repo(tmp_path, "{}")
    (root / "ann.json").write_bytes(data)
    column = data.index(b"\xe9") + 1
    line = error_line(root, "validate")
    assert line.startswith(
        f"error: ann.json: not UTF-8 text: byte 0xe9 at line 1 column {column}; a Latin-1"
    ), line


def test_gzip_json_says_so(tmp_path: Path) -> None:
    import gzip

    root = setup_repo(tmp_path, "{}")
    (root / "ann.json").write_bytes(gzip.compress(json.dumps(base_coco()).encode()))
    line = error_line(root, "validate")
    assert line.startswith("error: ann.json: not UTF-8 text: byte 0x8b") and "gunzip" in line


# ---------------------------------------------------------------- 2. accepted silently


def test_unknown_top_level_key_is_refused_by_every_stage_alike(tmp_path: Path) -> None:
    root = setup_repo(tmp_path, base_coco())
    set_params(root, datset={"annotations": "other.json"})
    commands = [[stage] for stage in STAGES] + [["augment", "--index"], ["augment", "x"]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = [
        subprocess.Popen(
            [python_exe(), "-m", "pipeline", *command],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    expected = (
        "error: params.yaml: unknown top-level keys ['datset'] (known: workers, dataset, "
        "classes, masks, vectors, split, augment, export, report, cache, executor)\n"
    )
    for command, process in zip(commands, running, strict=True):
        out, err = process.communicate(timeout=120)
        assert (process.returncode, out, err) == (1, "", expected), command


def run_in_process_until_vectors(root: Path) -> None:
    params = load_params(root / "params.yaml")
    for stage in (validate, masks, vectors):
        stage.run(params, root)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"group_regex": "^(batch_9)/"}, "split.group_regex: 24 of 24 images do not match"),
        (
            {"group_regex": None, "group_field": "capture"},
            "split.group_field: 24 of 24 images have no 'capture' field",
        ),
        ({"group_regex": "^(batch_0[12])/"}, "split.group_regex: 12 of 24 images do not match"),
    ],
)
def test_group_rule_that_misses_warns_naming_key_and_count(
    tmp_path: Path, sample_dir: Path, rule: dict[str, Any], expected: str
) -> None:
    """Warn loudly (not an error: COCO's own names have no folder, and images outside every
    group are a legitimate choice): a stderr line naming the key and the count, and the same
    note in split_warnings.json."""
    root = tmp_path / "repo"
    root.mkdir()
    params = {
        "workers": 1,
        "dataset": {
            "annotations": str(sample_dir / "annotations.json"),
            "images": str(sample_dir / "images"),
        },
        "split": {"n_splits": 3, **rule},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run_in_process_until_vectors(root)
    code, out = run_stage(root, "split")
    assert code == 0, out
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {expected}"), out
    assert warnings[0].endswith(f"listed in {SPLIT_WARNINGS_PATH}"), out
    notes = json.loads((root / SPLIT_WARNINGS_PATH).read_text())["warnings"]
    assert any(note.startswith(expected) for note in notes), notes


def test_group_regex_without_capture_group_is_refused(tmp_path: Path) -> None:
    root = setup_repo(tmp_path, base_coco())
    set_params(root, split={"group_regex": "^[^/]+/"})
    line = error_line(root, "split")
    assert line.startswith("error: params.yaml: split.group_regex: '^[^/]+/' has no capture")


@pytest.mark.parametrize("nan", [False, True], ids=["strict", "python-json"])
def test_second_top_level_annotations_key_is_refused(tmp_path: Path, nan: bool) -> None:
    """Every json reader keeps the last of two members: 0 annotations, silently."""
    text = json.dumps(base_coco())[:-1] + ', "annotations": []}'
    if nan:
        text = text.replace('"area": 1.0', '"area": NaN', 1)
    root = setup_repo(tmp_path, text)
    line = error_line(root, "validate")
    assert line.startswith(
        "error: ann.json: annotations: top-level key 'annotations' is written more than once"
    ), line


def test_backslashes_in_file_name_are_a_listed_repair(tmp_path: Path) -> None:
    coco = base_coco()
    coco["images"][1]["file_name"] = "b\\2.jpg"
    root = setup_repo(tmp_path, coco)
    code, out = run_stage(root, "validate")
    assert code == 0, out
    rows = [r for r in issues(root) if r["kind"] == "file_name_normalised"]
    assert [(r["action"], r["image_id"], r["field"]) for r in rows] == [
        ("repaired", "2", "file_name")
    ]
    assert "'b\\\\2.jpg' is read and written as 'b/2.jpg' (backslashes" in rows[0]["message"]
    assert problems(root)["file_name_normalised"] == 1
    canonical = json.loads((root / CANONICAL_PATH).read_text())
    assert [im["file_name"] for im in canonical["images"]] == ["b/1.jpg", "b/2.jpg"]


# ---------------------------------------------------------------- 3. photo orientation


def photo_with_orientation(path: Path, height: int, width: int, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2] = 200  # top half bright: a turned view differs
    Image.fromarray(pixels).save(path, "JPEG", exif=exif.tobytes())


def test_exif_orientation_ignored_for_the_raw_pixels_is_listed(tmp_path: Path) -> None:
    """Orientation 3 (same size turned) and a square photo with 6: raw pixels used, listed."""
    coco = base_coco()
    coco["images"][1].update(width=24, height=24)
    root = setup_repo(tmp_path, coco)
    photo_with_orientation(root / "images/b/1.jpg", 24, 32, 3)
    photo_with_orientation(root / "images/b/2.jpg", 24, 24, 6)
    code, out = run_stage(root, "validate")
    assert code == 0, out
    rows = [r for r in issues(root) if r["kind"] == "image_exif_orientation_ambiguous"]
    assert [(r["image_id"], r["action"]) for r in rows] == [("1", "kept"), ("2", "kept")]
    assert "EXIF orientation 3: viewers show it turned 180 degrees" in rows[0]["message"]
    assert "EXIF orientation 6: viewers show it turned 90 degrees clockwise" in rows[1]["message"]
    assert problems(root)["image_exif_orientation_ambiguous"] == 2
    assert run_stage(root, "masks")[0] == 0


def test_exif_orientation_one_or_used_is_not_ambiguous(tmp_path: Path) -> None:
    """Orientation 1 lists nothing; a turned photo whose oriented pixels are used stays
    ``image_exif_orientation``."""
    coco = base_coco()
    coco["images"][1].update(width=24, height=32)
    root = setup_repo(tmp_path, coco)
    photo_with_orientation(root / "images/b/1.jpg", 24, 32, 1)
    photo_with_orientation(root / "images/b/2.jpg", 24, 32, 6)
    code, out = run_stage(root, "validate")
    assert code == 0, out
    kinds = [(r["kind"], r["image_id"]) for r in issues(root) if "exif" in r["kind"]]
    assert kinds == [("image_exif_orientation", "2")]


# ---------------------------------------------------------------- 4. symlink loop


def test_symlink_loop_in_the_image_folder_is_not_followed(tmp_path: Path) -> None:
    """The stages run, and the export's hash of the image folder is DVC's (which does not
    enter linked folders): a lock entry is matched, no 40-level walk."""
    root = setup_repo(tmp_path, base_coco())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"not ours")
    os.symlink("..", root / "images/b/loop")
    os.symlink(outside, root / "images/out")
    for stage in ("validate", "masks"):
        code, out = run_stage(root, stage)
        assert code == 0, out
    files = sorted((root / "images/b").glob("*.jpg"))
    size = sum(p.stat().st_size for p in files)
    assert tree_size(root / "images") == (2, size)
    entry = {"path": "images", "md5": dir_md5(root / "images"), "nfiles": 2, "size": size}
    assert current_lock_hash(root / "images", [entry]) == entry["md5"]
    lock = {"schema": "2.0", "stages": {"validate": {"cmd": "x", "deps": [entry]}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert source_hashes(root, [], optional=["images"]) == {"images": entry["md5"]}


# ---------------------------------------------------------------- 5. messages that mislead


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_cache_dir_that_cannot_be_created_names_the_key_not_earlier_stages(
    tmp_path: Path,
) -> None:
    root = setup_repo(tmp_path, base_coco())
    set_params(root, cache={"dir": "/proc/coco-folds-cache"})
    line = error_line(root, "validate")
    assert line.startswith("error: params.yaml: cache.dir: /proc/coco-folds-cache: cannot"), line
    assert "earlier stages" not in line


def test_cache_dir_below_a_file_names_the_file_in_the_way(tmp_path: Path) -> None:
    root = setup_repo(tmp_path, base_coco())
    (root / "afile").write_text("x")
    set_params(root, cache={"dir": "afile/sub"})
    line = error_line(root, "validate")
    assert "cache.dir" in line and "afile" in line and "not a folder" in line, line


def test_pinned_csv_written_by_excel_with_a_bom_is_read(tmp_path: Path, sample_dir: Path) -> None:
    """Excel saves UTF-8 CSV with a byte-order mark (and CRLF): the columns are still found."""
    root = tmp_path / "repo"
    root.mkdir()
    params = {
        "workers": 1,
        "dataset": {
            "annotations": str(sample_dir / "annotations.json"),
            "images": str(sample_dir / "images"),
        },
        "split": {"n_splits": 3, "group_regex": "^([^/]+)/"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run_in_process_until_vectors(root)
    split.run(load_params(root / "params.yaml"), root)
    folds = (root / FOLDS_PATH).read_text(encoding="utf-8")
    (root / "splits").mkdir()
    (root / "splits/pinned.csv").write_bytes(folds.replace("\n", "\r\n").encode("utf-8-sig"))
    params["split"]["stable"] = True
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    code, out = run_stage(root, "split")
    assert code == 0, out
    assert json.loads((root / SPLIT_QUALITY_PATH).read_text())["pinned"]["moved"] == 0
    assert (root / FOLDS_PATH).read_text(encoding="utf-8") == folds


def test_file_too_large_names_the_file(tmp_path: Path) -> None:
    """``ulimit -f``: the write fails with EFBIG, which names no file; the writer does."""
    resource = pytest.importorskip("resource")
    coco = {"info": {"note": "x" * 40_000}, **base_coco()}
    root = setup_repo(tmp_path, coco)
    limit = 20_000

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [python_exe(), "-m", "pipeline", "validate"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=small_files,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"error: {CANONICAL_PATH}: cannot write (File too large)\n"
    assert not list((root / "data/interim").glob(".*.tmp"))


# ---------------------------------------------------------------- 6. temp files of killed runs

WRITER = """
import sys, time
from pipeline.files.fsio import atomic_writer
with atomic_writer(sys.argv[1]) as out:
    out.write("half a table")
    out.flush()
    print("writing", flush=True)
    time.sleep(120)
"""


def start_writer(root: Path, target: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [python_exe(), "-c", WRITER, target],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "writing\n"
    return process


def temps(folder: Path) -> set[str]:
    return {p.name for p in folder.glob(".*.tmp")}


def test_temp_files_of_a_killed_run_are_removed_by_the_next(tmp_path: Path) -> None:
    """kill -9 mid write leaves the temp file; the next run writing in that folder removes it,
    but never the temp file of a run still writing (its PID is alive)."""
    root = setup_repo(tmp_path, base_coco())
    assert run_stage(root, "validate")[0] == 0
    stats = root / "data/stats"
    killed = start_writer(root, "data/stats/image_stats.csv")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = temps(stats)
    assert len(left) == 1 and f".{killed.pid}-" in next(iter(left))
    running = start_writer(root, "data/stats/class_stats.csv")
    try:
        alive = temps(stats) - left
        code, out = run_stage(root, "masks")
        assert code == 0, out
        assert temps(stats) == alive  # the killed run's removed, the running one's kept
    finally:
        running.kill()
        running.wait()


def test_other_hosts_temp_files_are_removed_only_when_old(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "t.csv").write_text("old\n")
    names = {
        "fresh": ".t.csv.123-00000000.abcdefgh.tmp",  # another host, being written
        "old": ".t.csv.123-00000001.abcdefgh.tmp",  # another host, a day old
        "legacy": ".t.csv.abcdefgh.tmp",  # an earlier version's name, a day old
        "user": ".notes.abcdefgh.tmp",  # not a temp file of a file here
    }
    for name in names.values():
        (folder / name).write_text("x")
    day_ago = os.stat(folder / names["old"]).st_mtime - fsio.STALE_TEMP_SECONDS - 60
    for key in ("old", "legacy", "user"):
        os.utime(folder / names[key], (day_ago, day_ago))
    fsio._SWEPT.discard(os.path.abspath(folder))
    fsio.atomic_write_text(folder / "t.csv", "new\n")
    assert temps(folder) == {names["fresh"], names["user"]}
    assert (folder / "t.csv").read_text() == "new\n"


def test_temp_name_fits_in_a_path_component(tmp_path: Path) -> None:
    """A 239-byte name (the longest validate accepts, plus what outputs append) still gets a
    temp file beside it: the temp name is cut to 255 bytes."""
    name = "\u00e9" * 120 + ".png"  # 244 bytes
    fsio.atomic_write_bytes(tmp_path / name, b"x")
    assert (tmp_path / name).read_bytes() == b"x"
    assert len(fsio._temp_prefix(name).encode()) + len("12345678.tmp") <= 255


# ---------------------------------------------------------------- the command line's OSErrors


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            FileNotFoundError(2, "No such file or directory", "data/stats/image_stats.csv"),
            "data/stats/image_stats.csv: not found (No such file or directory); run the "
            "earlier stages first, e.g. `dvc repro split`",
        ),
        (
            FileNotFoundError(2, "No such file or directory", "/proc/x/y"),
            "/proc/x/y: not found (No such file or directory)",
        ),
        (
            PermissionError(13, "Permission denied", "reports/validation.json"),
            "reports/validation.json: cannot write (Permission denied)",
        ),
        (OSError(27, "File too large", "data/x.csv"), "data/x.csv: cannot write (File too large)"),
        (OSError(28, "No space left on device"), "No space left on device"),
    ],
)
def test_os_errors_tell_a_missing_input_from_an_unwritable_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: OSError, expected: str
) -> None:
    from pipeline.execution.cli import os_error_line

    monkeypatch.chdir(tmp_path)
    assert os_error_line(exc, "split") == expected


def test_os_error_line_names_the_params_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.execution.cli import os_error_line

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"cache": {"dir": "/ro/store"}}))
    (tmp_path / "in_the_way").write_text("x")
    os.symlink(tmp_path / "gone", tmp_path / "data")  # a DVC link whose cache was removed
    cases = [
        (
            FileNotFoundError(2, "No such file or directory", "/ro/store/ab"),
            "params.yaml: cache.dir: /ro/store/ab: cannot create (No such file or directory)",
        ),
        (
            OSError(30, "Read-only file system", "/ro/store"),
            "params.yaml: cache.dir: /ro/store: cannot write (Read-only file system)",
        ),
        (
            FileExistsError(17, "File exists", "in_the_way"),
            "in_the_way: exists and is not a folder",
        ),
        (
            NotADirectoryError(20, "Not a directory", "in_the_way/sub"),
            "in_the_way/sub: cannot create: in_the_way is a file, not a folder",
        ),
        (
            FileNotFoundError(2, "No such file or directory", "data/stats/x.csv"),
            "data/stats/x.csv: cannot create or read: data is a link to nothing",
        ),
    ]
    for exc, expected in cases:
        assert os_error_line(exc, "masks") == expected
