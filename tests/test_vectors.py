"""Stage vectors: per-image class indicators from the measured pixels, written as the CSV the
split reads."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.files.classes import make_palette
from pipeline.files.contracts import (
    CLASS_MEASURES,
    CLASS_STATS_COLUMNS,
    CLASS_STATS_PATH,
    CLASSES_PATH,
    IMAGE_STATS_COLUMNS,
    IMAGE_STATS_PATH,
    VECTORS_PATH,
    ClassTable,
    ImageStats,
    read_vectors,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import atomic_write_csv, atomic_write_json, csv_text
from pipeline.files.params import Params, VectorsParams
from pipeline.stages.vectors import build_vectors, main, run, vector_rows
from tests.conftest import name_lists

CLASSES = ["paper", "glass"]


def stats_of(pixels: list[list[int]], small: list[list[int]], ignore: list[int]) -> ImageStats:
    """10x10 images with the given pixels and small objects per class."""
    n = len(pixels)
    pix, sm = np.array(pixels, np.int64), np.array(small, np.int64)
    zeros = np.zeros_like(pix)
    return ImageStats(
        image_ids=[10 + i for i in range(n)],
        file_names=[f"b/{i}.jpg" for i in range(n)],
        classes=CLASSES,
        width=np.full(n, 10),
        height=np.full(n, 10),
        background=100 - pix.sum(1) - np.array(ignore),
        ignore=np.array(ignore, np.int64),
        measures={
            "pixels": pix,
            "instances": sm,
            "small": sm,
            "medium": zeros,
            "large": zeros,
            "hidden": zeros,
        },
    )


STATS = stats_of(
    pixels=[[0, 50], [5, 0], [30, 9], [0, 0]],
    small=[[0, 0], [1, 0], [0, 2], [0, 0]],
    ignore=[0, 0, 40, 100],
)


def test_columns_per_class_in_order() -> None:
    """Per class: present, small_present, then one column per share edge."""
    names, matrix = build_vectors(STATS, VectorsParams(pixel_share_bins=(0.05, 0.5)))
    assert names == [
        "paper__present",
        "paper__small_present",
        "paper__share_ge0.05",
        "paper__share_ge0.5",
        "glass__present",
        "glass__small_present",
        "glass__share_ge0.05",
        "glass__share_ge0.5",
    ]
    assert matrix.dtype == np.uint8 and matrix.shape == (4, 8)


def test_values_come_from_pixels_over_labelled_area() -> None:
    """Shares are over labelled pixels (ignore excluded): 30 of 60 labelled is 0.5."""
    names, matrix = build_vectors(STATS, VectorsParams(pixel_share_bins=(0.1, 0.5)))
    rows = [dict(zip(names, row, strict=True)) for row in matrix.tolist()]
    assert rows[0]["glass__present"] == 1 and rows[0]["glass__share_ge0.5"] == 1
    assert rows[1]["paper__present"] == 1 and rows[1]["paper__share_ge0.1"] == 0
    assert rows[1]["paper__small_present"] == 1
    assert rows[2]["paper__share_ge0.5"] == 1  # 30 / (100 - 40)
    assert rows[2]["glass__share_ge0.1"] == 1 and rows[2]["glass__small_present"] == 1
    assert not any(rows[3].values())  # all ignore: no division by zero, nothing present


@pytest.mark.parametrize(
    ("config", "suffixes"),
    [
        (VectorsParams(small_presence=False, pixel_share_bins=()), ["present"]),
        (VectorsParams(presence=False, pixel_share_bins=()), ["small_present"]),
        (
            VectorsParams(presence=False, small_presence=False, pixel_share_bins=(1.0,)),
            ["share_ge1"],
        ),
    ],
)
def test_each_measure_can_be_chosen_alone(config: VectorsParams, suffixes: list[str]) -> None:
    """Each measure alone gives only its columns."""
    names, matrix = build_vectors(STATS, config)
    assert names == [f"{c}__{s}" for c in CLASSES for s in suffixes]
    assert matrix.shape == (4, len(names))


def test_no_class_gives_no_column() -> None:
    """Without classes the matrix has no column (uint8, one row per image)."""
    empty = ImageStats(
        [1],
        ["a.jpg"],
        [],
        np.array([4]),
        np.array([4]),
        np.array([16]),
        np.array([0]),
        {"pixels": np.zeros((1, 0), np.int64), "small": np.zeros((1, 0), np.int64)},
    )
    names, matrix = build_vectors(empty, VectorsParams())
    assert names == [] and matrix.shape == (1, 0) and matrix.dtype == np.uint8


@settings(max_examples=100, deadline=None)
@given(
    pixels=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 40)), min_size=1, max_size=20),
    bins=st.lists(st.sampled_from([0.01, 0.05, 0.1, 0.25, 0.5, 1.0]), unique=True).map(sorted),
)
def test_share_indicators_are_cumulative(pixels: list[tuple[int, int]], bins: list[float]) -> None:
    """An image with "share >= 0.5" also has every lower edge, and presence when any edge is
    met: ordinal indicators, never one-hot bins."""
    stats = stats_of([list(p) for p in pixels], [[0, 0]] * len(pixels), [0] * len(pixels))
    names, matrix = build_vectors(
        stats, VectorsParams(small_presence=False, pixel_share_bins=tuple(bins))
    )
    for j, cls in enumerate(CLASSES):
        cols = [names.index(f"{cls}__share_ge{b:g}") for b in bins]
        shares = matrix[:, cols]
        assert (np.diff(shares.astype(int), axis=1) <= 0).all()  # non-increasing with the edge
        present = matrix[:, names.index(f"{cls}__present")]
        assert (present >= shares.max(1, initial=0)).all()
        assert present.tolist() == [int(p[j] > 0) for p in pixels]


def write_stats(root: Path, stats: ImageStats) -> None:
    """The masks stage's files for ``stats``: image_stats.csv, class_stats.csv, classes.json."""
    table = ClassTable(["background", *stats.classes], {1: 1, 2: 2}, [])
    atomic_write_json(root / CLASSES_PATH, table.to_json(make_palette()))
    atomic_write_csv(
        root / IMAGE_STATS_PATH,
        IMAGE_STATS_COLUMNS,
        zip(
            stats.image_ids,
            stats.file_names,
            stats.width,
            stats.height,
            stats.background,
            stats.ignore,
            strict=True,
        ),
    )
    rows = []
    for i, image_id in enumerate(stats.image_ids):
        for j, cls in enumerate(stats.classes):
            values = [int(stats.measures[m][i, j]) for m in CLASS_MEASURES]
            if any(values):
                rows.append([image_id, j + 1, cls, *values])
    atomic_write_csv(root / CLASS_STATS_PATH, CLASS_STATS_COLUMNS, rows)


def test_run_writes_the_vectors_the_split_reads(tmp_path: Path) -> None:
    """run() writes vectors.csv that read_vectors gives back as build_vectors made it."""
    write_stats(tmp_path, STATS)
    summary = run(Params(), tmp_path)
    assert summary == f"4 images x 6 columns in {VECTORS_PATH}"
    vectors = read_vectors(tmp_path / VECTORS_PATH)
    names, matrix = build_vectors(STATS, Params().vectors)
    assert vectors.image_ids == STATS.image_ids and vectors.file_names == STATS.file_names
    assert vectors.columns == names and np.array_equal(vectors.matrix, matrix)
    header = (tmp_path / VECTORS_PATH).read_text().splitlines()[0]
    assert header.startswith("image_id,file_name,paper__present,")


def test_main_prints_the_summary_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command reads params.yaml and prints 'vectors: <counts> (<s> s)'."""
    write_stats(tmp_path, STATS)
    (tmp_path / "params.yaml").write_text("vectors:\n  pixel_share_bins: [0.1, 0.5]\n")
    monkeypatch.chdir(tmp_path)
    main([])
    out = capsys.readouterr().out
    assert re.fullmatch(rf"vectors: 4 images x 8 columns in {VECTORS_PATH} \(\d+\.\d s\)\n", out)


def test_missing_stats_name_the_stage_to_run(tmp_path: Path) -> None:
    """Without the stats table the error says to run the masks stage."""
    with pytest.raises(DatasetError, match=r"image_stats\.csv: not found; run `dvc repro masks`"):
        run(Params(), tmp_path)


@settings(max_examples=60, deadline=None)
@given(
    names=name_lists(12, 0, 8),
    width=st.integers(0, 6),
    seed=st.integers(0, 2**16),
)
def test_vector_rows_are_what_the_csv_writer_writes(
    names: list[str], width: int, seed: int
) -> None:
    """The numpy layout of the 0/1 cells gives the csv writer's bytes, quoting included."""
    matrix = np.random.default_rng(seed).integers(0, 2, (len(names), width), dtype=np.uint8)
    ids = list(range(len(names)))
    rows = zip(ids, names, matrix.tolist(), strict=True)
    expected = csv_text(["h"], ([i, n, *row] for i, n, row in rows))
    assert "h\n" + vector_rows(ids, names, matrix) == expected
