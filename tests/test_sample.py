"""``python -m pipeline sample``: the committed sample is what the defaults make, byte for byte;
the generator is deterministic and never writes over data by accident."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from pipeline.__main__ import main as pipeline_main
from pipeline.files.errors import DatasetError
from pipeline.tools.sample import (
    CATEGORY_IDS,
    CATEGORY_NAMES,
    class_probabilities,
    generate,
    main,
    uncompressed_rle,
)
from tests.conftest import ROOT

COMMITTED = ROOT / "data" / "sample"


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_defaults_reproduce_the_committed_sample_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command with only ``--out`` into an empty folder remakes data/sample exactly."""
    out = tmp_path / "sample"
    out.mkdir()
    main(["--out", str(out)])
    assert capsys.readouterr().out == f"wrote {out}\n"
    made, committed = files_of(out), files_of(COMMITTED)
    assert sorted(made) == sorted(committed)
    different = [name for name in committed if made[name] != committed[name]]
    assert not different, different[:5]


def test_out_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --out the command refuses to run (exit code 2)."""
    with pytest.raises(SystemExit) as stopped:
        main([])
    assert stopped.value.code == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_a_non_empty_folder_is_refused_without_force(tmp_path: Path) -> None:
    """A non-empty --out is refused and untouched; --force writes beside what is there."""
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"is not empty: choose a new folder, or --force"):
        main(["--out", str(tmp_path), "--images", "2", "--batches", "1"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    main(["--out", str(tmp_path), "--images", "2", "--batches", "1", "--force"])
    assert (tmp_path / "annotations.json").is_file()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_refusal_is_one_error_line_from_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through `python -m pipeline sample` the refusal is one error line, exit code 1."""
    (tmp_path / "x").write_text("")
    assert pipeline_main(["sample", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path} is not empty: choose a new folder, or --force to write into it\n"
    )


def test_a_new_folder_is_made(tmp_path: Path) -> None:
    """A missing --out folder is created; --size fixes every image's size."""
    main(
        [
            "--out",
            str(tmp_path / "a" / "b"),
            "--images",
            "3",
            "--batches",
            "3",
            "--size",
            "64",
            "48",
        ]
    )
    coco = json.loads((tmp_path / "a/b/annotations.json").read_text())
    assert [(i["width"], i["height"]) for i in coco["images"]] == [(64, 48)] * 3
    assert [i["file_name"] for i in coco["images"]] == [
        "batch_01/0001.jpg",
        "batch_02/0002.jpg",
        "batch_03/0003.jpg",
    ]


def test_same_arguments_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    """Same arguments give the same bytes; another seed other data."""
    a = generate(tmp_path / "a", n_images=6, n_batches=2, seed=3)
    b = generate(tmp_path / "b", n_images=6, n_batches=2, seed=3)
    c = generate(tmp_path / "c", n_images=6, n_batches=2, seed=4)
    assert files_of(a) == files_of(b) != files_of(c)


def test_dataset_shape_has_what_hurts_in_real_data() -> None:
    """Sparse category ids, non-contiguous image ids, every segmentation form, crowd regions,
    objects that stray outside the frame, annotation ids unique."""
    coco = json.loads((COMMITTED / "annotations.json").read_text())
    assert [c["id"] for c in coco["categories"]] == CATEGORY_IDS
    assert [c["name"] for c in coco["categories"]] == CATEGORY_NAMES
    image_ids = [i["id"] for i in coco["images"]]
    assert image_ids == [1000 + 3 * k for k in range(60)]
    anns = coco["annotations"]
    assert len({a["id"] for a in anns}) == len(anns)
    forms = {
        "polygon"
        if isinstance(a["segmentation"], list)
        else "compressed"
        if isinstance(a["segmentation"]["counts"], str)
        else "uncompressed"
        for a in anns
    }
    assert forms == {"polygon", "compressed", "uncompressed"}
    assert any(a["iscrowd"] == 1 for a in anns)
    assert any(
        min(part) < 0
        for a in anns
        if isinstance(a["segmentation"], list)
        for part in a["segmentation"]
    )


def test_class_frequencies_are_a_power_law() -> None:
    """Class probabilities sum to 1 and fall as a power law with exponent 1.3."""
    p = class_probabilities(10)
    assert np.isclose(p.sum(), 1.0) and (np.diff(p) < 0).all()
    assert np.isclose(p[0] / p[1], 2**1.3)


@settings(max_examples=80, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20)), elements=st.integers(0, 1))
)
def test_uncompressed_rle_round_trips_through_pycocotools(binary: np.ndarray) -> None:
    """The uncompressed RLE it writes decodes (pycocotools) to the same mask."""
    rle = uncompressed_rle(binary)
    assert rle["size"] == list(binary.shape) and sum(rle["counts"]) == binary.size
    decoded = mask_utils.decode(mask_utils.frPyObjects(rle, *binary.shape))
    assert np.array_equal(decoded, binary)
