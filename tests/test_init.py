"""``coco-folds init``: the pipeline in a team's own data repository (docs/init.md).

Fast tests: the shipped templates are made from this repository's dvc.yaml and params.yaml
(one source), the json is peeked at, the user's files are extended and never rewritten, and
every refusal is one line before anything is written. Slow tests (real ``git`` and ``dvc``):
init in a fresh git repository on the embedded sample and on a shared real set, ``dvc repro``
there, and every output compared with this repository's own pipeline run on the same inputs;
a second init changes nothing; a new ``coco-folds`` version in environment.yaml re-runs every
stage, a new matplotlib only the report; the trainer API reads and pins folds from it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from pipeline.files.environment import (
    ENV_FILE,
    PACKAGE,
    installed_versions,
    package_version,
    read_environment,
    write_environment,
)
from pipeline.files.errors import DatasetError
from pipeline.tools import init
from tests.conftest import ROOT, copy_repo, python_exe, real_dataset, run_cli
from tests.test_versioning import Shell

HAS_GIT = shutil.which("git") is not None
REFRESH = "python -m pipeline init --refresh-template"
SAMPLE_ARGS = ["--annotations", "data/sample/annotations.json", "--images", "data/sample/images"]
SAMPLE_REGEX = "^([^/]+)/"  # this repository's params.yaml groups the sample by batch folder
STAGES = {
    "validate",
    "masks",
    "vectors",
    "split",
    "augment-index",
    "augment@flip_clahe",
    "augment@geometric",
    "export",
    "report",
}


# ---------------------------------------------------------------- one source for the templates


def test_the_templates_are_made_from_this_repositorys_files() -> None:
    """The shipped templates are what --refresh-template makes from dvc.yaml and params.yaml:
    nobody edits a second copy of the stages by hand."""
    dvc = init.derive_dvc_yaml((ROOT / "dvc.yaml").read_text())
    assert init.DVC_TEMPLATE.read_text() == dvc, f"dvc.yaml changed: run `{REFRESH}`"
    params = (ROOT / "params.yaml").read_text()
    assert init.PARAMS_TEMPLATE.read_text() == params, f"params.yaml changed: run `{REFRESH}`"


def test_the_template_is_this_dvc_yaml_without_source_with_the_package() -> None:
    """Stage by stage: the same command, outputs and params; the deps without ``pipeline/``
    sources; ``coco-folds`` added to the environment.yaml keys (checked on the parsed files,
    independently of how the template is made)."""
    ours = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    shipped = yaml.safe_load(init.DVC_TEMPLATE.read_text())
    assert shipped.get("plots") == ours.get("plots")
    assert list(shipped["stages"]) == list(ours["stages"])
    for name, stage in ours["stages"].items():
        body, got = (
            stage.get("do", stage),
            shipped["stages"][name].get("do", shipped["stages"][name]),
        )
        deps = [d for d in body.get("deps", []) if not str(d).startswith("pipeline/")]
        assert got.get("deps", []) == deps, name
        env = next(e[ENV_FILE] for e in body["params"] if isinstance(e, dict) and ENV_FILE in e)
        got_env = next(e[ENV_FILE] for e in got["params"] if isinstance(e, dict) and ENV_FILE in e)
        assert got_env == [env[0], PACKAGE, *env[1:]], name
        rest = {k: v for k, v in body.items() if k not in ("deps", "params")}
        assert {k: v for k, v in got.items() if k not in ("deps", "params")} == rest, name
        assert [p for p in got["params"] if not isinstance(p, dict)] == [
            p for p in body["params"] if not isinstance(p, dict)
        ]


def test_the_templates_ship_as_package_data() -> None:
    """pyproject.toml ships template/*.in; they are not named dvc.yaml (DVC would collect a
    second pipeline here)."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = data["package-data"]["pipeline.tools"]
    shipped = {p for pattern in patterns for p in (ROOT / "pipeline" / "tools").glob(pattern)}
    assert {init.DVC_TEMPLATE, init.PARAMS_TEMPLATE} <= shipped
    assert not list((ROOT / "pipeline").rglob("dvc.yaml"))


def test_an_installed_wheel_reads_its_templates(tmp_path: Path) -> None:
    """Built as pip builds it (not editable), the package holds the templates and finds them
    without this repository; --refresh-template there refuses (no checkout to read)."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    source = copy_repo(tmp_path / "source")
    build = [python_exe(), "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    run_cli([*build, "-w", str(tmp_path / "wheel"), str(source)], cwd=tmp_path)
    (wheel,) = (tmp_path / "wheel").glob("coco_folds-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    code = (
        "import sys; sys.path[:] = [p for p in sys.path if 'coco' not in p and p != '']; "
        "from pipeline.tools import init; from pipeline.files.errors import DatasetError; "
        "print(init.DVC_TEMPLATE.read_text() == open(sys.argv[1]).read()); "
        "exec('try: init.refresh_templates()\\nexcept DatasetError as e: print(e)')"
    )
    done = subprocess.run(
        [python_exe(), "-c", code, str(init.DVC_TEMPLATE)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "True"
    assert "--refresh-template runs in a checkout of coco-folds" in done.stdout


def test_a_dvc_yaml_the_line_rules_miss_is_refused() -> None:
    """A source dependency written another way is refused, never half-converted."""
    text = "stages:\n  a:\n    cmd: x\n    deps: [pipeline/stages/a.py, data/x]\n"
    with pytest.raises(DatasetError, match="line-wise conversion differs"):
        init.derive_dvc_yaml(text)


def test_a_stage_reading_only_source_loses_its_deps_key() -> None:
    """augment-index read only source: DVC refuses ``deps: null``, so the key goes."""
    stages = yaml.safe_load(init.DVC_TEMPLATE.read_text())["stages"]
    assert "deps" not in stages["augment-index"]
    assert all(PACKAGE in yaml.safe_dump(s) for s in stages.values())


# ---------------------------------------------------------------- the json, peeked at


def test_top_level_keys_ignore_nesting_strings_and_the_cut() -> None:
    head = '{"info": {"images": 1, "x": "}{\\"annotations\\""}, "images": [{"id": 1}, {"id'
    assert init.top_level_keys(head) == ["info", "images"]
    assert init.top_level_keys('{"a": [1, {"b": 2}], "c": "\\u00e9"}') == ["a", "c"]


def test_a_small_json_is_checked_whole(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    init.check_coco(good, "good.json")
    cases = {
        "[1, 2]": "the file is a list, not an object",
        "": "the file is empty",
        "images: []": "the file is not JSON",
        '{"images": [], "annotations": []}': "no 'categories' list",
        '{"images": [], "annotations": [], "categories": [': "not valid JSON",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(DatasetError, match=re.escape(message)):
            init.check_coco(bad, "bad.json")


def test_a_large_json_is_peeked_not_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the whole-parse size only the first bytes are read: a COCO key there passes,
    even when the rest is not read (validate checks it); no COCO key there is refused."""
    monkeypatch.setattr(init, "WHOLE_BYTES", 100)
    monkeypatch.setattr(init, "PEEK_BYTES", 200)
    big = tmp_path / "big.json"
    big.write_text('{"info": {}, "images": [' + '{"id": 1}, ' * 100 + "BROKEN")
    init.check_coco(big, "big.json")
    other = tmp_path / "other.json"
    other.write_text('{"rows": [' + "1, " * 200 + "]}")
    with pytest.raises(DatasetError, match="none of images, annotations, categories"):
        init.check_coco(other, "other.json")


# ---------------------------------------------------------------- the user's files, extended


def filled(**values: object) -> str:
    defaults = {"dataset.annotations": "coco/ann.json", "dataset.images": "photos"}
    return init.fill_params(init.PARAMS_TEMPLATE.read_text(), {**defaults, **values})


def test_fill_params_sets_values_and_keeps_every_other_line() -> None:
    text = filled(**{"split.group_regex": None, "split.n_splits": 3})
    data = yaml.safe_load(text)
    assert data["dataset"]["annotations"] == "coco/ann.json"
    assert data["dataset"]["images"] == "photos"
    assert data["split"]["group_regex"] is None and data["split"]["n_splits"] == 3
    ours = yaml.safe_load(init.PARAMS_TEMPLATE.read_text())
    for section in ("dataset", "split"):
        ours[section].update(data[section])
    assert data == ours
    before, after = init.PARAMS_TEMPLATE.read_text().splitlines(), text.splitlines()
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 4
    assert "  images: photos" in text and "# root that file_name is relative to" in text
    assert "group_regex: '^(.*)_x'" in filled(**{"split.group_regex": "^(.*)_x"})


def test_merge_params_keeps_the_users_keys_comments_and_order() -> None:
    user = (
        "# our params\n"
        "split:\n"
        "    seed: 7        # lucky\n"
        "dataset:\n"
        "    annotations: coco/ann.json\n"
        "report:\n"
        "    dpi: 50\n"
    )
    given = {"dataset.annotations": "coco/ann.json", "dataset.images": "photos"}
    merged = init.merge_params(user, filled(**{"split.group_regex": None}), given)
    assert merged.startswith(user.split("report:")[0].split("dataset:")[0])
    assert "    seed: 7        # lucky\n    n_splits: 5\n" in merged
    data = yaml.safe_load(merged)
    assert list(data)[:3] == ["split", "dataset", "report"]
    assert data["split"]["seed"] == 7 and data["report"]["dpi"] == 50
    assert data["dataset"]["images"] == "photos"
    assert set(data) == set(yaml.safe_load(init.PARAMS_TEMPLATE.read_text()))
    assert "# figures show at most this many classes" in merged
    assert init.merge_params(merged, filled(**{"split.group_regex": None}), given) == merged


def test_merge_params_refuses_a_contradiction_and_inline_sections() -> None:
    with pytest.raises(DatasetError, match=r"dataset.images is 'pics', not 'photos' as given"):
        init.merge_params("dataset:\n  images: pics\n", filled(), {"dataset.images": "photos"})
    with pytest.raises(DatasetError, match="report is written inline"):
        init.merge_params("report: {dpi: 50}\n", filled(), {})


def test_merge_dvc_yaml_adds_our_stages_and_plots_keeps_the_users() -> None:
    template = init.DVC_TEMPLATE.read_text()
    user = (
        "# training\n"
        "stages:\n"
        "    train:   # ours\n"
        "        cmd: python train.py\n"
        "        deps:\n"
        "        - data/exports\n"
        "plots:\n"
        "- train/loss.csv\n"
    )
    merged = init.merge_dvc_yaml(user, template)
    assert merged.startswith(user.split("plots:")[0])
    data, ours = yaml.safe_load(merged), yaml.safe_load(template)
    assert list(data["stages"]) == ["train", *ours["stages"]]
    assert data["stages"]["train"]["cmd"] == "python train.py"
    assert {k: data["stages"][k] for k in ours["stages"]} == ours["stages"]
    assert data["plots"] == ["train/loss.csv", *ours["plots"]]
    assert init.merge_dvc_yaml(merged, template) == merged
    assert init.merge_dvc_yaml(None, template) == template
    assert init.merge_dvc_yaml(template, template) == template


def test_merge_dvc_yaml_names_a_conflicting_stage() -> None:
    user = "stages:\n  split:\n    cmd: python my_split.py\n"
    with pytest.raises(DatasetError, match=r"^dvc.yaml: stage 'split' already exists"):
        init.merge_dvc_yaml(user, init.DVC_TEMPLATE.read_text())


def test_ignore_entries_cover_every_cached_output_and_this_repositorys_dvcignore(
    tmp_path: Path,
) -> None:
    dvc = yaml.safe_load(init.DVC_TEMPLATE.read_text())
    outs = init.cached_outputs(dvc)
    assert "data/augmented" in outs and "data/augmented/variants.json" not in outs
    assert "data/splits/folds.csv" in outs and not any(p.startswith("reports") for p in outs)
    found = init.ignore_entries(tmp_path, dvc, ".cache/coco-folds")
    assert found[".gitignore"][-1] == "/.cache/coco-folds/"
    ours = {x for x in (ROOT / ".dvcignore").read_text().splitlines() if x and x[0] != "#"}
    assert ours - {"/.cache/"} <= set(found[".dvcignore"])
    assert init.ignore_entries(tmp_path, dvc, "/elsewhere/cache")[".dvcignore"][0][0] != "/e"
    text = init.merge_lines("*.pyc\n", found[".gitignore"], "# header")
    assert text.startswith("*.pyc\n\n# header\n")
    assert init.merge_lines(text, found[".gitignore"], "# header") == text


def test_write_environment_records_the_package_for_a_data_repo(tmp_path: Path) -> None:
    """package=True adds coco-folds; later writes keep it (``env --write`` in a data repo);
    a file without it (this repository's) does not gain it."""
    path = tmp_path / ENV_FILE
    versions = {"python": "3.11", "numpy": "2.0"}
    write_environment(path, versions)
    assert PACKAGE not in read_environment(path)
    write_environment(path, versions, package=True)
    assert read_environment(path)[PACKAGE] == package_version()
    assert list(read_environment(path))[:2] == ["python", PACKAGE]
    write_environment(path, {"python": "3.11", "numpy": "2.1"})
    assert read_environment(path)[PACKAGE] == package_version()


# ---------------------------------------------------------------- refusals: one line, no write


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    return path


def run_init(cwd: Path, *args: str, ceiling: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m pipeline init`` in ``cwd``; git looks no higher than ``ceiling``."""
    ceiling = cwd.parent if ceiling is None else ceiling
    env = {"GIT_CEILING_DIRECTORIES": str(ceiling), "DVC_NO_ANALYTICS": "1"}
    return run_cli([python_exe(), "-m", "pipeline", "init", *args], cwd=cwd, check=False, env=env)


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts)


@pytest.mark.skipif(not HAS_GIT, reason="git CLI not installed")
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_annotations", r"--annotations missing.json: no such file"),
        ("not_coco", r"bad.json: not a COCO json: no 'categories' list"),
        ("no_images", r"--images nowhere: no such folder"),
        ("not_git", r"not inside a git repository; run `git init` first"),
        ("conflict", r"dvc.yaml: stage 'split' already exists and is not coco-folds'"),
        ("no_args", r"--annotations and --images are required"),
        ("bad_int", r"argument --n-splits: invalid int value: 'x'"),
        ("bad_value", r"params.yaml: split.n_splits: must be an integer >= 2, got 1"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, case: str, message: str) -> None:
    root = tmp_path / "repo"
    if case == "not_git":
        root.mkdir()
    else:
        git_repo(root)
    (root / "ann.json").write_text('{"images": [], "annotations": [], "categories": []}')
    (root / "bad.json").write_text('{"images": [], "annotations": []}')
    (root / "photos").mkdir()
    args = {
        "no_annotations": ["--annotations", "missing.json", "--images", "photos"],
        "not_coco": ["--annotations", "bad.json", "--images", "photos"],
        "no_images": ["--annotations", "ann.json", "--images", "nowhere"],
        "no_args": [],
        "bad_int": ["--annotations", "ann.json", "--images", "photos", "--n-splits", "x"],
        "bad_value": ["--annotations", "ann.json", "--images", "photos", "--n-splits", "1"],
    }.get(case, ["--annotations", "ann.json", "--images", "photos"])
    if case == "conflict":
        (root / "dvc.yaml").write_text("stages:\n  split:\n    cmd: python my_split.py\n")
    before = listing(root)
    done = run_init(root, *args)
    assert done.returncode in (1, 2), done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in done.stderr
    assert listing(root) == before


@pytest.mark.skipif(not HAS_GIT, reason="git CLI not installed")
def test_init_in_a_subfolder_extends_the_users_files(tmp_path: Path) -> None:
    """In a subfolder of a git repository: ``dvc init --subdir``; the user's dvc.yaml,
    params.yaml and .gitignore keep their lines and gain ours; a second run changes nothing."""
    if package_version() is None:
        pytest.skip("coco-folds is not installed (pip install --no-deps -e .): init needs it")
    root = git_repo(tmp_path / "repo") / "vision"
    (root / "photos").mkdir(parents=True)
    (root / "ann.json").write_text('{"images": [], "annotations": [], "categories": []}')
    (root / "dvc.yaml").write_text("stages:\n  train:\n    cmd: python train.py\n")
    (root / "params.yaml").write_text("# ours\nsplit:\n  seed: 7  # lucky\n")
    (root / ".gitignore").write_text("/runs/\n")
    done = run_init(root, "--annotations", "ann.json", "--images", "photos", ceiling=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (root / ".dvc").is_dir() and not (root.parent / ".dvc").exists()
    assert "train:\n    cmd: python train.py\n\n  validate:" in (root / "dvc.yaml").read_text()
    params = (root / "params.yaml").read_text()
    assert params.startswith("# ours\nsplit:\n  seed: 7  # lucky\n  n_splits: 5")
    assert yaml.safe_load(params)["dataset"]["annotations"] == "ann.json"
    assert (root / ".gitignore").read_text().startswith("/runs/\n\n# coco-folds init")
    assert (root / "splits" / "pinned.csv").read_text() == "image_id,file_name,group,fold\n"
    assert "note: split.group_regex: null" in done.stdout
    before = tree(root)
    again = run_init(root, "--annotations", "ann.json", "--images", "photos", ceiling=tmp_path)
    assert "nothing to change" in again.stdout and tree(root) == before


# ---------------------------------------------------------------- end to end: real git and dvc


def lock_outputs(repo: Path) -> dict[str, str]:
    """Every output's md5 in a dvc.lock (metrics and uncached reports included)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for s in lock["stages"].values() for o in s.get("outs", [])}


def file_bytes(repo: Path, rel: str) -> dict[str, bytes]:
    base = repo / rel
    files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in files if p.name != ".gitignore"}


def tree(repo: Path) -> dict[str, bytes]:
    """Every file of a repository outside .git, by content."""
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }


def init_cli(sh: Shell, cwd: Path, *args: str) -> str:
    """``coco-folds init`` as a user runs it: the console script of this environment."""
    script = Path(sys.executable).parent / "coco-folds"
    command = [str(script)] if script.exists() else [python_exe(), "-m", "pipeline"]
    return sh(cwd, *command, "init", *args)


def data_repo(sh: Shell, repo: Path, inputs: dict[str, Path], args: list[str]) -> Path:
    """A team's data repository: git, its inputs committed, then coco-folds init, twice."""
    sh.git(git_repo(repo), "config", "commit.gpgsign", "false")
    for rel, src in inputs.items():
        shutil.copytree(src, repo / rel) if src.is_dir() else shutil.copy2(src, repo / rel)
    sh.git(repo, "add", "-A")
    sh.git(repo, "commit", "-qm", "our data")
    first = init_cli(sh, repo, *args)
    assert "coco-folds init: wrote .dvc, params.yaml, dvc.yaml" in first, first
    before = tree(repo)
    second = init_cli(sh, repo, *args)
    assert "nothing to change" in second and tree(repo) == before, second
    sh.git(repo, "add", "-A")
    sh.git(repo, "commit", "-qm", "coco-folds init")
    return repo


def reference_repo(sh: Shell, repo: Path, inputs: dict[str, Path], params: Path) -> Path:
    """This repository's own pipeline (source deps and all) on the same inputs and params."""
    copy_repo(repo)
    (repo / "dvc.lock").unlink(missing_ok=True)
    for rel, src in inputs.items():
        if not (repo / rel).exists():
            shutil.copytree(src, repo / rel) if src.is_dir() else shutil.copy2(src, repo / rel)
    shutil.copy2(params, repo / "params.yaml")
    sh.git(git_repo(repo), "add", "-A")
    sh.git(repo, "commit", "-qm", "reference")
    return repo


def assert_same_outputs(data: Path, reference: Path) -> None:
    assert lock_outputs(data) == lock_outputs(reference)
    for rel in (
        "data/splits/folds.csv",
        "data/masks",
        "data/exports",
        "reports/split_quality.json",
    ):
        assert file_bytes(data, rel) == file_bytes(reference, rel), rel


def stale_after(sh: Shell, repo: Path, package: str, version: str) -> set[str]:
    """The stages ``dvc status`` lists once environment.yaml records another version."""
    path = repo / ENV_FILE
    original = path.read_text()
    path.write_text(re.sub(rf"(?m)^{re.escape(package)}: .*$", f"{package}: '{version}'", original))
    try:
        return set(json.loads(sh.dvc(repo, "status", "--json")))
    finally:
        path.write_text(original)


def needs_the_tool() -> None:
    if not HAS_GIT or shutil.which("dvc", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("git and the dvc CLI of this environment are needed")
    if package_version() is None or None in installed_versions().values():
        pytest.skip("coco-folds is not installed (pip install --no-deps -e .): init needs it")


def assert_outputs_not_in_git(sh: Shell, repo: Path) -> None:
    """After ``dvc repro`` git sees dvc.lock, the reports and DVC's own .gitignore files,
    never a DVC-tracked output (the entries init wrote)."""
    status = sh.git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    outs = init.cached_outputs(yaml.safe_load((repo / "dvc.yaml").read_text()))
    leaked = [line for line in status if any(line[3:].startswith(o) for o in outs)]
    assert not leaked and status, status


def relative_pairs(root: Path, pairs: list) -> list[tuple[str, str]]:
    return [tuple(os.path.relpath(root / p, root) for p in pair) for pair in pairs]


def assert_trainer_api_works(sh: Shell, tmp: Path, repo: Path, reference: Path) -> None:
    """``pipeline.folds show`` reads the data repo as it reads this one; a trainer repo pins
    its folds with ``get`` (exports, masks, variants, photos) and reads the same pairs."""
    from pipeline import folds

    show = (python_exe(), "-m", "pipeline.folds", "show", "0", "--variants", "all")
    assert sh(repo, *show) == sh(reference, *show)
    sh.dvc(repo, "remote", "add", "-d", "storage", str(tmp / "remote"))
    sh.git(repo, "add", "-A")
    sh.git(repo, "commit", "-qm", "folds v1")
    sh.git(repo, "tag", "folds-v1")
    sh.dvc(repo, "push", "-q")
    trainer = git_repo(tmp / "trainer")
    sh.dvc(trainer, "init", "-q")
    get = ("get", str(repo), "--rev", "folds-v1", "--variants", "all", "--images")
    sh(trainer, python_exe(), "-m", "pipeline.folds", *get)
    want, got = (
        folds.fold(0, root=repo, variants="all"),
        folds.fold(0, root=trainer, variants="all"),
    )
    assert relative_pairs(trainer, got.train) == relative_pairs(repo, want.train)
    assert relative_pairs(trainer, got.val) == relative_pairs(repo, want.val)
    mask = Path(want.val[0].mask)
    assert (trainer / mask).read_bytes() == (repo / mask).read_bytes()


@pytest.mark.slow
def test_init_on_the_sample_gives_this_repositorys_outputs(tmp_path: Path) -> None:
    """init on data/sample with this repository's choices writes this repository's params;
    ``dvc repro`` gives every output of this repository's pipeline byte for byte; a new
    coco-folds version re-runs every stage, a new matplotlib the report alone; the trainer
    API reads and pins folds from the data repo."""
    needs_the_tool()
    sh = Shell(tmp_path)
    inputs = {"data/sample": ROOT / "data" / "sample"}
    args = [*SAMPLE_ARGS, "--group-regex", SAMPLE_REGEX]
    repo = data_repo(sh, tmp_path / "data-repo", inputs, args)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params == yaml.safe_load((ROOT / "params.yaml").read_text())
    assert read_environment(repo / ENV_FILE)[PACKAGE] == package_version()
    reference = reference_repo(sh, tmp_path / "reference", inputs, repo / "params.yaml")
    sh.dvc(repo, "repro")
    sh.dvc(reference, "repro")
    assert_same_outputs(repo, reference)
    assert_outputs_not_in_git(sh, repo)
    assert "Data and pipelines are up to date" in sh.dvc(repo, "status")
    assert stale_after(sh, repo, PACKAGE, "99.0") == STAGES
    assert stale_after(sh, repo, "matplotlib", "0.1") == {"report"}
    assert_trainer_api_works(sh, tmp_path, repo, reference)


@pytest.mark.slow
def test_init_on_a_shared_real_set_gives_this_repositorys_outputs(tmp_path: Path) -> None:
    """The same on real photos (../shared/data/nuts; skipped when absent), with the
    defaults init chooses (no group regex) and another fold count."""
    needs_the_tool()
    annotations, _ = real_dataset("nuts")
    sh = Shell(tmp_path)
    inputs = {"nuts": annotations.parent}
    args = ["--annotations", "nuts/trainval.json", "--images", "nuts/images", "--n-splits", "3"]
    repo = data_repo(sh, tmp_path / "data-repo", inputs, args)
    assert yaml.safe_load((repo / "params.yaml").read_text())["split"]["n_splits"] == 3
    reference = reference_repo(sh, tmp_path / "reference", inputs, repo / "params.yaml")
    sh.dvc(repo, "repro")
    sh.dvc(reference, "repro")
    assert_same_outputs(repo, reference)
