"""pipeline.folds (paths of a fold for trainers), the mmseg symlink layout and the torch Dataset."""

from __future__ import annotations

import ast
import importlib.util
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline import folds
from pipeline.files.contracts import parse_folds
from pipeline.files.errors import DatasetError
from pipeline.stages.export import build_exports, write_tree
from tests.conftest import python_exe, run_cli
from tests.test_export import build_project, crafted

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("folds_project"))


def test_fold_pairs_match_exports(project: Path) -> None:
    assert folds.n_folds(project) == 3
    rows = folds.load_folds(project)
    assert {r.fold for r in rows} == {"0", "1", "2", "test"}
    test_ids = {r.image_id for r in rows if r.fold == "test"}
    for k in range(3):
        f = folds.fold(k, root=project)
        assert f.k == k and f.variants == ()
        assert set(f.val_ids) == {r.image_id for r in rows if r.fold == str(k)}
        assert set(f.train_ids) == {r.image_id for r in rows if r.fold not in (str(k), "test")}
        assert not set(f.train_ids) & test_ids
        assert len(f.train) == len(f.train_ids) and len(f.val) == len(f.val_ids)
        for image, mask in f.train + f.val:
            assert isinstance(image, Path) and image.is_file()
            assert mask.is_file() and mask.suffix == ".png"
        mask = folds.read_mask(f.val[0].mask)
        assert mask.dtype == np.uint8 and mask.ndim == 2
    assert len(folds.test(project)) == len(test_ids)
    assert [f.k for f in folds.folds(project)] == [0, 1, 2]


def test_variants_are_optional_and_train_only(project: Path) -> None:
    assert folds.variants(project) == ["flip"]
    plain = folds.fold(1, root=project)
    every = folds.fold(1, root=project, variants="all")
    named = folds.fold(1, root=project, variants=["flip"])
    assert every.train == named.train
    assert every.train[: len(plain.train)] == plain.train
    extra = every.train[len(plain.train) :]
    assert len(extra) == 2 * len(plain.train)  # two copies per training image
    assert all("data/augmented/flip/" in p.image.as_posix() for p in extra)
    assert all(p.image.is_file() and p.mask.is_file() for p in extra)
    assert every.val == plain.val  # never augmented
    with pytest.raises(DatasetError, match="unknown augment variants"):
        folds.fold(0, root=project, variants=["nope"])


@pytest.mark.parametrize("k", [3, -1, "0", True])
def test_missing_fold_is_a_clear_error(project: Path, k: object) -> None:
    with pytest.raises(DatasetError, match=r"does not exist: the exports have folds 0\.\.2"):
        folds.fold(k, root=project)  # type: ignore[arg-type]


def test_missing_exports_point_to_dvc(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dvc import"):
        folds.fold(0, root=tmp_path)


def test_images_and_masks_overrides(project: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(project / "data" / "sample" / "images", photos)
    masks = shutil.copytree(project / "data" / "masks", tmp_path / "masks")
    # Exports from one repo, photos from a trainer's own folder.
    g = folds.fold(0, root=project, images=photos, masks=masks)
    assert all(p.image.is_relative_to(photos) and p.image.is_file() for p in g.train + g.val)
    assert all(p.mask.is_relative_to(masks) and p.mask.is_file() for p in g.train + g.val)
    assert len(folds.test(project, images=photos, masks=masks)) > 0


def test_no_holdout_means_test_is_an_error(tmp_path: Path) -> None:
    coco, table, manifests = crafted()
    rows = [
        {
            "image_id": str(r[0]),
            "file_name": r[1],
            "group": r[2],
            "fold": "1" if r[3] == "test" else r[3],
        }
        for r in table.rows
    ]
    table = parse_folds(rows)
    files = build_exports(
        [im["id"] for im in coco["images"]], table, "data/sample/images", manifests
    )
    write_tree(tmp_path / "data" / "exports", files)
    assert folds.n_folds(tmp_path) == 2
    with pytest.raises(DatasetError, match="no held-out test part"):
        folds.test(tmp_path)


def test_mmseg_layout_relative_symlinks(project: Path, tmp_path: Path) -> None:
    out = folds.mmseg_layout(project / "mmseg", root=project)
    split = (out / "splits" / "fold_0_train_augmented.txt").read_text().split()
    assert split and any(s.startswith("_augmented/flip/") for s in split)
    for stem in split:
        img, ann = out / "img_dir" / f"{stem}.jpg", out / "ann_dir" / f"{stem}.png"
        assert img.is_symlink() and ann.is_symlink()
        assert not os.path.isabs(os.readlink(img)) and not os.path.isabs(os.readlink(ann))
        assert img.is_file() and ann.is_file()
    for name in ("fold_2_val.txt", "test.txt"):
        assert (out / "splits" / name).read_bytes() == (
            project / "data" / "exports" / "mmseg" / "splits" / name
        ).read_bytes()
    # Relative links survive moving the whole project.
    moved = shutil.copytree(project, tmp_path / "moved", symlinks=True)
    link = moved / "mmseg" / "ann_dir" / f"{split[0]}.png"
    assert link.is_symlink() and link.resolve().is_relative_to(moved.resolve())
    assert folds.read_mask(link).ndim == 2
    # A rerun replaces the layout; a foreign folder is refused.
    (out / "img_dir" / "stale.jpg").symlink_to("nowhere")
    folds.mmseg_layout(out, root=project)
    assert not (out / "img_dir" / "stale.jpg").is_symlink()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="not an mmseg layout"):
        folds.mmseg_layout(foreign, root=project)
    assert (foreign / "keep.txt").exists()


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
    assert len(lines) - 1 == len(folds.fold(0, root=project, variants="all").train) + len(
        folds.fold(0, root=project).val
    )
    bad = run_cli([python_exe(), "-m", "pipeline.folds", "show", "9"], cwd=project, check=False)
    assert bad.returncode == 1 and "does not exist" in bad.stderr
    head = subprocess.run(
        f"{shlex.quote(python_exe())} -m pipeline.folds show 0 --variants all | head -1",
        shell=True,
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert head.stdout == "part,image,mask\n" and head.stderr == ""  # no BrokenPipeError


NO_TORCH = "torch not installed (install a build for your platform first: docs/trainers.md)"


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_dataset_training_step(project: Path) -> None:
    import torch
    from torch.utils.data import DataLoader

    from pipeline.folds.torch_dataset import SegmentationFolds

    train = SegmentationFolds(fold=0, part="train", root=project, variants="all")
    val = SegmentationFolds(fold=0, part="val", root=project)
    assert len(train) == len(folds.fold(0, root=project, variants="all").train)
    assert len(val) == len(folds.fold(0, root=project).val)
    assert len(SegmentationFolds(part="test", root=project)) == len(folds.test(project))
    image, mask = val[0]
    assert image.dtype == torch.float32 and image.shape[0] == 3 and 0 <= image.min() <= 1
    assert mask.dtype == torch.int64 and mask.shape == image.shape[1:]
    assert torch.equal(mask, torch.from_numpy(folds.read_mask(val.paths(0)[1]).astype(np.int64)))
    assert train.num_classes == folds.num_classes(project) and train.ignore_index == 255
    model = torch.nn.Conv2d(3, train.num_classes, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=train.ignore_index)
    for step, (x, y) in enumerate(DataLoader(train, batch_size=1, shuffle=True)):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        if step == 2:
            break
    with pytest.raises(ValueError, match="part must be"):
        SegmentationFolds(part="holdout", root=project)


def test_torch_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch the core imports fine and the Dataset module says how to get it."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    monkeypatch.delitem(sys.modules, "pipeline.folds.torch_dataset", raising=False)
    importlib.reload(folds)
    with pytest.raises(ImportError, match=r"index-url https://download\.pytorch\.org/whl/cpu"):
        importlib.import_module("pipeline.folds.torch_dataset")


# ---------------------------------------------------------------- the class table travels along


def test_class_table_is_in_the_exports(project: Path) -> None:
    exported = project / "data" / "exports" / "classes.json"
    assert exported.read_bytes() == (project / "data" / "classes.json").read_bytes()
    table = folds.classes(project)
    assert table.names[0] == "background" and table.ignore_index == 255
    assert folds.num_classes(project) == len(table.names) > 1
    meta = folds.mmseg_metainfo(project)
    assert meta["classes"] == table.names
    assert meta["palette"] == [list(c) for c in table.colors]
    assert all(len(c) == 3 for c in meta["palette"])
    assert all(table.category_ids[i] for i in range(1, len(table.names)))


def test_exports_record_the_content_they_were_made_from(project: Path) -> None:
    """Without dvc.lock (stages run by hand) the hashes are computed, in DVC's format."""
    from pipeline.files.sources import dir_md5, file_md5

    sources = folds.metadata(project)["sources"]
    assert sources == {
        "data/augmented/flip": dir_md5(project / "data" / "augmented" / "flip"),
        "data/classes.json": file_md5(project / "data" / "classes.json"),
        "data/masks": dir_md5(project / "data" / "masks"),
    }  # no photos: they are recorded only from a current dvc.lock entry


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
    pin = folds.read_pin(tmp_path, "data/masks")
    assert pin == folds.Pin("data/masks", "abc.dir", "git@host:team/repo.git", "folds-v1", pin[4])
    assert pin.rev_lock == "89abcdef0123456789" and pin.label == "folds-v1"
    (tmp_path / "q.dvc").write_text(
        "deps:\n- path: q\n  repo:\n    url: 'https://h/x y'\n    rev: \"1.0\"\nouts:\n- md5: m\n"
    )
    quoted = folds.read_pin(tmp_path, "q")
    assert (quoted.url, quoted.rev, quoted.md5, quoted.rev_lock) == (
        "https://h/x y",
        "1.0",
        "m",
        None,
    )
    assert folds.read_pin(tmp_path, "absent") is None


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


def test_read_pin_reads_a_wrapped_url(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "exports.dvc").write_text(WRAPPED)
    pin = folds.read_pin(tmp_path, "data/exports")
    assert pin.url == (
        "/tmp/pytest-of-root-long-name/pytest-162xxxxxxxxxxxxxxxxxxxxxx/popen-gw1/"
        "test_trainer_rev0/dataset"
    )
    assert (pin.rev, pin.md5) == ("folds-v1", "513fbbd5055a8f8d667a5d62499a60ec.dir")


YAML_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)


@settings(max_examples=1000, deadline=None)
@given(url=YAML_TEXT, rev=YAML_TEXT, prefix=st.sampled_from(["", "/tmp/" + "x" * 70 + " ", "a: "]))
def test_read_pin_agrees_with_dvcs_yaml_writer(url: str, rev: str, prefix: str) -> None:
    """Whatever DVC's own writer makes of a url and rev (wrapped, quoted, escaped), the line
    reader gets them back as a YAML parser does."""
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
    fields = folds._dvc_fields(text)
    assert (fields["deps.url"], fields.get("deps.rev", "")) == (prefix + url, rev), text
    assert fields["outs.md5"] == "c" * 32 + ".dir"


def test_a_mix_of_revisions_is_refused(project: Path, tmp_path: Path) -> None:
    repo = shutil.copytree(project, tmp_path / "trainer")
    sources = folds.metadata(repo)["sources"]
    dvc_file(repo, "data/exports", "e.dir", "folds-v1")
    dvc_file(repo, "data/masks", sources["data/masks"], "folds-v1")
    dvc_file(repo, "data/augmented/flip", sources["data/augmented/flip"], "folds-v1")
    assert folds.fold(0, root=repo, variants="all").train  # one revision: fine
    dvc_file(repo, "data/masks", "other.dir", "folds-v2")
    for call in (
        lambda: folds.fold(0, root=repo),
        lambda: folds.test(repo),
        lambda: folds.mmseg_layout(tmp_path / "mm", root=repo),
    ):
        with pytest.raises(folds.MixedRevisionsError) as caught:
            call()
        message = str(caught.value)
        assert "data/masks (pinned at folds-v2 by data/masks.dvc)" in message
        assert "not what data/exports (pinned at folds-v1) was made from" in message
        assert "`python -m pipeline.folds update --rev folds-v1` (or --rev folds-v2)" in message
    # The caller's own masks replace data/masks: its pin no longer matters.
    assert folds.fold(0, root=repo, masks=repo / "data" / "masks").val
    shown = run_cli([python_exe(), "-m", "pipeline.folds", "show", "0"], cwd=repo, check=False)
    assert shown.returncode == 1 and "mix of revisions" in shown.stderr


def cache_listing(repo: Path, folder: Path, change: str | None = None) -> str:
    """Store ``folder``'s DVC listing in ``repo``'s cache as ``dvc import`` does; its hash.
    ``change`` names a file whose md5 the listing says differently (another revision)."""
    import hashlib
    import json

    from pipeline.files.sources import file_md5

    entries = sorted(
        (
            {"md5": "0" * 32 if p.relative_to(folder).as_posix() == change else file_md5(p),
             "relpath": p.relative_to(folder).as_posix()}
            for p in folder.rglob("*")
            if p.is_file()
        ),
        key=lambda e: e["relpath"],
    )  # fmt: skip
    text = json.dumps(entries, sort_keys=True)
    digest = hashlib.md5(text.encode()).hexdigest()
    path = repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / f"{digest[2:]}.dir"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return digest + ".dir"


def test_a_folder_imported_whole_is_checked_through_its_listing(
    project: Path, tmp_path: Path
) -> None:
    """The README's old way, ``dvc import ... data/augmented``: the hash of each variant inside
    comes from the folder's listing in the DVC cache, as DVC itself computes it."""
    from pipeline.files.sources import dir_md5

    repo = shutil.copytree(project, tmp_path / "trainer")
    augmented = repo / "data" / "augmented"
    dvc_file(repo, "data/exports", "e.dir", "folds-v1")
    dvc_file(repo, "data/augmented", cache_listing(repo, augmented), "folds-v1")
    listing = folds._dir_listing(repo, folds.read_pin(repo, "data/augmented").md5)
    assert folds._part_hash(listing, "flip") == dir_md5(augmented / "flip")
    assert folds.fold(0, root=repo, variants="all").train  # the same content: fine
    first = sorted(p for p in (augmented / "flip").rglob("*") if p.is_file())[0]
    other = cache_listing(repo, augmented, change=first.relative_to(augmented).as_posix())
    dvc_file(repo, "data/augmented", other, "folds-v2")
    with pytest.raises(folds.MixedRevisionsError, match=r"data/augmented \(pinned at folds-v2 by"):
        folds.fold(0, root=repo)
    dvc_file(repo, "data/augmented", "f" * 32 + ".dir", "folds-v2")  # listing not fetched
    assert folds.fold(0, root=repo).train  # cannot be told: not checked


def test_mmseg_layout_writes_metainfo(project: Path, tmp_path: Path) -> None:
    import json

    out = folds.mmseg_layout(tmp_path / "mm", root=project)
    info = json.loads((out / "metainfo.json").read_text())
    assert info["metainfo"] == folds.mmseg_metainfo(project)
    assert info["num_classes"] == folds.num_classes(project) and info["ignore_index"] == 255
    assert info["img_suffix"] == ".jpg" and info["seg_map_suffix"] == ".png"
    # The same values as an mmengine base config: assignments of literals, no import.
    tree = ast.parse((out / "metainfo.py").read_text())
    assert all(isinstance(node, ast.Assign) for node in tree.body)
    assert {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body} == info


# ---------------------------------------------------------------- torch: size, crop, batches


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_size_and_crop_make_batches(project: Path) -> None:
    import torch
    from torch.utils.data import DataLoader

    from pipeline.folds.torch_dataset import SegmentationFolds

    sized = SegmentationFolds(fold=0, part="val", root=project, size=(48, 64))
    for i in range(len(sized)):
        image, mask = sized[i]
        assert image.shape == (3, 48, 64) and mask.shape == (48, 64)
        original = set(np.unique(folds.read_mask(sized.paths(i)[1])).tolist())
        assert set(torch.unique(mask).tolist()) <= original  # nearest: no new value
    image, mask = next(iter(DataLoader(sized, batch_size=4)))
    assert image.shape == (4, 3, 48, 64) and mask.shape == (4, 48, 64)
    torch.manual_seed(0)
    cropped = SegmentationFolds(fold=0, part="train", root=project, variants="all", crop=32)
    image, mask = next(iter(DataLoader(cropped, batch_size=6, shuffle=True)))
    assert image.shape == (6, 3, 32, 32) and mask.dtype == torch.int64


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_crop_pads_with_ignore_and_resize_keeps_255() -> None:
    from pipeline.folds.torch_dataset import crop_pair, resize_pair

    image = np.full((4, 6, 3), 200, np.uint8)
    mask = np.array([[1, 1, 255, 255, 2, 2]] * 4, np.uint8)
    big_image, big_mask = crop_pair(image, mask, (8, 6))  # taller than the photo: padded
    assert big_mask.shape == (8, 6) and (big_mask[4:] == 255).all() and (big_image[4:] == 0).all()
    assert (big_mask[:4] == mask).all()
    small_image, small_mask = resize_pair(image, mask, (2, 3))
    assert small_image.shape == (2, 3, 3) and set(np.unique(small_mask)) <= {1, 2, 255}
    up = resize_pair(image, mask, (8, 12))[1]
    assert (up[:, 4:8] == 255).all() and set(np.unique(up)) == {1, 2, 255}


# ---------------------------------------------------------------- the docs' examples, as written

DOCS = Path(__file__).resolve().parents[1] / "docs" / "trainers.md"


def doc_example(name: str) -> str:
    """The fenced block after ``<!-- example: name -->`` in docs/trainers.md."""
    text = DOCS.read_text()
    after = text.split(f"<!-- example: {name} -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def mmseg_missing() -> str | None:
    """Why mmsegmentation cannot run here, or None."""
    try:
        import mmseg.datasets  # noqa: F401  (imports mmcv.ops: needs mmcv's compiled ops)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here"
        return f"mmsegmentation not usable here ({type(exc).__name__}: {exc}); see docs/trainers.md"
    return None


def test_docs_line_counts_are_the_examples() -> None:
    """The table in docs/trainers.md counts the non-blank lines of the two examples."""
    text = DOCS.read_text()
    for name, row in (("torch", "| PyTorch:"), ("mmseg", "| mmsegmentation:")):
        counted = sum(1 for line in doc_example(name).splitlines() if line.strip())
        line = next(x for x in text.splitlines() if x.startswith(row))
        assert int(line.split("|")[2]) == counted, (name, line)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_docs_torch_example_runs_as_written(project: Path) -> None:
    code = doc_example("torch")
    assert "Conv2d(3, 11" not in code and "ignore_index=255" not in code  # from the table
    done = run_cli([python_exe(), "-c", code], cwd=project)
    assert "epoch 1: val loss" in done.stdout


@pytest.mark.skipif(mmseg_missing() is not None, reason=str(mmseg_missing()))
def test_docs_mmseg_config_loads_the_layout(project: Path, tmp_path: Path) -> None:
    """mmsegmentation's own BaseSegDataset reads the layout with the documented config; the
    Pillow backend gives the class indices, cv2 would give palette colours."""
    from mmengine.config import Config
    from mmseg.datasets.transforms import LoadAnnotations
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    register_all_modules()
    repo = shutil.copytree(project, tmp_path / "repo", symlinks=True)
    folds.mmseg_layout(repo / "data" / "mmseg", root=repo)
    (repo / "fold0.py").write_text(doc_example("mmseg"))
    cwd = os.getcwd()
    os.chdir(repo)  # the config's paths are relative to where training runs
    try:
        cfg = Config.fromfile("fold0.py")
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        assert len(dataset) == len(folds.fold(0, root=repo).train)
        assert list(dataset.metainfo["classes"]) == folds.classes(repo).names
        assert cfg.model.decode_head.num_classes == folds.num_classes(repo)
        sample = dataset[0]["data_samples"].gt_sem_seg.data
        assert set(sample.unique().tolist()) <= set(range(folds.num_classes(repo))) | {255}
        info = dataset.get_data_info(0)
        truth = folds.read_mask(info["seg_map_path"])
        pillow = LoadAnnotations(imdecode_backend="pillow")(dict(info, seg_fields=[]))
        assert np.array_equal(pillow["gt_seg_map"], truth)
        colours = LoadAnnotations(imdecode_backend="cv2")(dict(info, seg_fields=[]))
        assert not np.array_equal(colours["gt_seg_map"], truth)  # the docs' backend note
    finally:
        os.chdir(cwd)
