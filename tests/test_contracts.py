"""The files between stages: readers check what they read and name the file (and the stage that
makes a missing one); paths derive from file names the same way everywhere."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.files.classes import build_class_table, make_palette
from pipeline.files.contracts import (
    CLASS_MEASURES,
    CLASS_STATS_COLUMNS,
    CLASS_STATS_PATH,
    CLASSES_PATH,
    FOLD_COLUMNS,
    FOLDS_PATH,
    IGNORE,
    IMAGE_STATS_COLUMNS,
    IMAGE_STATS_PATH,
    ISSUE_COLUMNS,
    TEST_FOLD,
    VALIDATION_ISSUES_PATH,
    FoldTable,
    csv_rows,
    fold_label,
    folds_from_bytes,
    image_path,
    iter_validation_issues,
    mask_path,
    mask_relpath,
    not_found,
    parse_folds,
    parse_json,
    read_bytes,
    read_classes,
    read_folds,
    read_image_stats,
    read_json_object,
    read_manifest,
    read_mask,
    read_rows,
    read_vectors,
    strip_suffix,
    variant_output_names,
)
from pipeline.files.errors import DatasetError
from pipeline.files.fsio import csv_text
from pipeline.files.params import ClassesParams
from tests.conftest import name_lists

# ---------------------------------------------------------------- reading files


@pytest.mark.parametrize(
    ("path", "stage"),
    [
        ("data/stats/image_stats.csv", "masks"),
        ("/abs/repo/data/masks/batch_01/0001.png", "masks"),
        ("data/vectors/vectors.csv", "vectors"),
        ("data/splits/folds.csv", "split"),
        ("reports/validation_issues.csv", "validate"),
        ("data/interim/annotations.json", "validate"),
    ],
)
def test_missing_input_names_the_stage_that_makes_it(path: str, stage: str) -> None:
    """A missing stage output names the `dvc repro` stage that writes it."""
    assert str(not_found(path)) == f"{path}: not found; run `dvc repro {stage}`"


def test_missing_input_of_no_known_stage_says_dvc_repro(tmp_path: Path) -> None:
    """An unknown missing file suggests `dvc repro`; an unreadable one says why."""
    with pytest.raises(DatasetError, match=r"other\.json: not found; run `dvc repro`$"):
        read_bytes(tmp_path / "other.json")
    with pytest.raises(DatasetError, match="cannot read"):
        read_bytes(tmp_path)  # a folder


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (b'{"a": 1,\n "b": }', "line 2 column 7"),
        (b'{"a": [1, 2}', "line 1 column 12"),
        (b"", "line 1 column 1"),
    ],
)
def test_malformed_json_names_file_line_and_column(text: bytes, where: str) -> None:
    """Malformed json is one error naming the file, line and column."""
    with pytest.raises(DatasetError, match=f"^ann.json: malformed json at {where}: "):
        parse_json(text, "ann.json")


def test_json_oddities_are_named_or_read() -> None:
    """NaN/Infinity are read (validate lists them); bad UTF-8 and deep nesting are named."""
    value = parse_json(b'{"a": NaN, "b": -Infinity}', "f.json")
    assert np.isnan(value["a"]) and value["b"] == -np.inf
    with pytest.raises(DatasetError, match=r"^f\.json: not UTF-8 text"):
        parse_json(b'{"a": "\xff\xfe"}', "f.json")
    with pytest.raises(DatasetError, match=r"^f\.json: json nested too deeply$"):
        parse_json(b"[" * 100_000 + b"]" * 100_000, "f.json")


def test_json_object_and_csv_columns_are_checked(tmp_path: Path) -> None:
    """A json that is no object, a CSV without the columns or not UTF-8 are named errors."""
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(DatasetError, match="top level must be a json object"):
        read_json_object(tmp_path / "list.json")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    assert read_rows(tmp_path / "t.csv", ["a"]) == [{"a": "1", "b": "2"}]
    with pytest.raises(DatasetError, match=r"t\.csv: missing columns \['c'\]"):
        read_rows(tmp_path / "t.csv", ["a", "c"])
    with pytest.raises(DatasetError, match="not a readable CSV table"):
        csv_rows(b"a,b\n\xff\n", "bad.csv")


def test_csv_saved_by_excel_with_a_byte_order_mark_is_read() -> None:
    """Excel writes UTF-8 CSV with a BOM (and CRLF): the first column keeps its name, so a
    pinned split edited there is not "missing columns ['image_id']"."""
    data = "image_id,file_name,group,fold\r\n1,b/1.jpg,b,0\r\n".encode("utf-8-sig")
    rows = csv_rows(data, "splits/pinned.csv", FOLD_COLUMNS)
    assert rows == [{"image_id": "1", "file_name": "b/1.jpg", "group": "b", "fold": "0"}]


# ---------------------------------------------------------------- masks and their paths


@given(st.text(alphabet="ab._/", min_size=1, max_size=12))
def test_strip_suffix_is_pathlibs_with_suffix(name: str) -> None:
    """strip_suffix agrees with pathlib's with_suffix('') on clean relative names."""
    clean = "/".join(p for p in name.split("/") if p not in ("", ".", ".."))
    if clean:
        assert strip_suffix(clean) == str(PurePosixPath(clean).with_suffix(""))


def test_mask_paths_keep_folders_and_swap_the_suffix() -> None:
    """Masks and augmented copies keep the image's folders; only the last suffix changes."""
    assert mask_relpath("batch_01/0001.jpg") == "batch_01/0001.png"
    assert mask_relpath("a/b.tar.jpg") == "a/b.tar.png"
    assert mask_relpath("a/.hidden") == "a/.hidden.png"
    assert mask_relpath("noext") == "noext.png"
    assert mask_path("x/y.jpeg") == "data/masks/x/y.png"
    assert variant_output_names("b/1.jpg", 2) == ("images/b/1__c2.png", "masks/b/1__c2.png")
    assert variant_output_names("b/1.jpg", 0, "jpg")[0] == "images/b/1__c0.jpg"


def test_image_path_is_posix_under_the_image_root() -> None:
    """Image paths are POSIX, joined under the root (backslashes and trailing slashes cleaned)."""
    assert image_path("data/sample/images/", "b/1.jpg") == "data/sample/images/b/1.jpg"
    assert image_path("C:\\photos", "1.jpg") == "C:/photos/1.jpg"
    assert image_path("", "1.jpg") == "1.jpg"


def test_read_mask_gives_indices_of_p_and_l_masks(tmp_path: Path) -> None:
    """Indexed and gray masks read back as their indices (255 included)."""
    mask = np.array([[0, 1], [IGNORE, 7]], np.uint8)
    im = Image.fromarray(mask, "L").convert("P")
    im.putpalette(make_palette().ravel().tolist())
    im.save(tmp_path / "p.png")
    Image.fromarray(mask, "L").save(tmp_path / "l.png")
    for name in ("p.png", "l.png"):
        out = read_mask(tmp_path / name)
        assert out.dtype == np.uint8 and np.array_equal(out, mask)


def test_read_mask_refuses_colour_and_garbage(tmp_path: Path) -> None:
    """A colour PNG, garbage, or a missing mask are named errors."""
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DatasetError, match=r"rgb\.png: not a readable mask: .*mode RGB"):
        read_mask(tmp_path / "rgb.png")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="not a readable mask"):
        read_mask(tmp_path / "bad.png")
    with pytest.raises(DatasetError, match=r"mask not found; run `dvc repro masks`"):
        read_mask(tmp_path / "data/masks/absent.png")


# ---------------------------------------------------------------- the class table


def test_class_table_round_trips_through_classes_json(tmp_path: Path) -> None:
    """What masks writes, trainers read: names, colours, category ids, palette, ignore."""
    categories = [{"id": i, "name": n} for i, n in [(3, "glass"), (1, "paper"), (2, "card")]]
    table = build_class_table(categories, ClassesParams(map={1: "paper", 2: "paper"}, ignore=(3,)))
    path = tmp_path / CLASSES_PATH
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(table.to_json(make_palette())))
    classes = read_classes(path)
    assert classes.names == ["background", "paper"] and classes.num_classes == 2
    assert classes.colors == [(0, 0, 0), (128, 0, 0)]
    assert classes.category_ids == [[], [1, 2]]
    assert classes.ignore_index == IGNORE and np.array_equal(classes.palette, make_palette())


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("palette"),
        lambda d: d.update(palette=[[0, 0, 0]] * 3),
        lambda d: d["classes"][1].update(index=5),
        lambda d: d["classes"][0].pop("color"),
    ],
)
def test_malformed_class_table_is_refused(tmp_path: Path, change) -> None:
    """A classes.json without palette, with bad indices or fields is refused."""
    table = build_class_table([{"id": 1, "name": "a"}], ClassesParams())
    doc = table.to_json(make_palette())
    change(doc)
    (tmp_path / "classes.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"classes\.json: (not a class table|class indices)"):
        read_classes(tmp_path / "classes.json")


# ---------------------------------------------------------------- folds

FOLDS = (
    "image_id,file_name,group,fold\n1,a/1.jpg,a,0\n2,a/2.jpg,a,0\n3,b/3.jpg,b,1\n4,c/4.jpg,c,test\n"
)


def test_folds_parse_and_train_ids_leave_out_test(tmp_path: Path) -> None:
    """Folds parse; a fold's training ids are the other folds, never the test part."""
    table = folds_from_bytes(FOLDS.encode())
    assert isinstance(table, FoldTable) and table.n_folds == 2
    assert table.ids("0") == [1, 2] and table.ids(TEST_FOLD) == [4]
    assert table.train_ids(0) == [3] and table.train_ids(1) == [1, 2]
    (tmp_path / "folds.csv").write_text(FOLDS)
    assert read_folds(tmp_path / "folds.csv") == table


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image_id,file_name,group,fold\n", "no image in the folds table"),
        ("image_id,file_name,fold\n1,a.jpg,0\n", r"missing columns \['group'\]"),
        (
            FOLDS.replace("3,b/3.jpg,b,1", "3,b/3.jpg,b,2"),
            r"fold labels must be 0\.\.k-1, got \['0', '2'\]",
        ),
        (FOLDS.replace(",1\n", ",0\n"), "need at least 2 folds, got 1"),
        (FOLDS.replace("3,b/3.jpg", "2,b/3.jpg"), "image 2: image_id: image listed twice"),
        (
            FOLDS.replace("b,1", "b,01"),
            r"image 3: fold: fold must be an integer or 'test', got '01'",
        ),
        (FOLDS.replace("b/3.jpg", "../3.jpg"), "image 3: file_name: '../3.jpg' climbs out"),
        (FOLDS.replace("\n3,", "\nx,"), "line 4: image_id: not an integer: 'x'"),
    ],
)
def test_bad_folds_are_one_error_naming_the_file(text: str, message: str) -> None:
    """Each malformed folds table is one error naming the file, and the row when known."""
    with pytest.raises(DatasetError, match=message) as caught:
        folds_from_bytes(text.encode(), "my/folds.csv")
    assert str(caught.value).startswith("my/folds.csv: ")


def test_fold_labels() -> None:
    """Negative folds are 'test'; parse_folds takes DictReader rows; folds.csv is split's."""
    assert [fold_label(f) for f in (-1, 0, 3)] == [TEST_FOLD, "0", "3"]
    assert parse_folds(list(csv.DictReader(io.StringIO(FOLDS)))).n_folds == 2
    assert str(not_found(FOLDS_PATH)).endswith("run `dvc repro split`")


# ---------------------------------------------------------------- other tables


def test_vectors_read_ids_columns_and_matrix(tmp_path: Path) -> None:
    """vectors.csv reads to ids, names, columns and a uint8 matrix; bad cells are named."""
    path = tmp_path / "vectors.csv"
    path.write_text("image_id,file_name,a__present,b__present\n5,x.jpg,1,0\n7,y.jpg,0,1\n")
    vectors = read_vectors(path)
    assert vectors.image_ids == [5, 7] and vectors.file_names == ["x.jpg", "y.jpg"]
    assert vectors.columns == ["a__present", "b__present"]
    assert vectors.matrix.dtype == np.uint8 and vectors.matrix.tolist() == [[1, 0], [0, 1]]
    path.write_text("image_id,file_name,a\n5,x.jpg,yes\n")
    with pytest.raises(DatasetError, match=r"line 2: a: not an integer: 'yes'"):
        read_vectors(path)
    path.write_text("image_id,file_name,a\n")
    with pytest.raises(DatasetError, match="no image to split"):
        read_vectors(path)


def test_manifest_rows_are_checked_and_defaulted(tmp_path: Path) -> None:
    """Manifest rows default variant/seed/copy and refuse paths that leave the folder."""
    path = tmp_path / "manifest.csv"
    path.write_text("source_image_id,image,mask\n3,images/a__c0.png,masks/a__c0.png\n")
    [row] = read_manifest(path, "flip")
    assert (row.source_image_id, row.variant, row.seed, row.copy) == (3, "flip", 0, 0)
    path.write_text("source_image_id,image,mask\n3,/etc/x.png,masks/a.png\n")
    with pytest.raises(DatasetError, match=r"line 2: image: absolute path"):
        read_manifest(path, "flip")


def test_validation_issues_stream_row_by_row(tmp_path: Path) -> None:
    """Issues are yielded one at a time; bad headers and a missing file are named."""
    path = tmp_path / "issues.csv"
    rows = "".join(f"image_missing,dropped,{i},,,file_name,gone\n" for i in range(3))
    path.write_text(",".join(ISSUE_COLUMNS) + "\n" + rows)
    stream = iter_validation_issues(path)
    assert next(stream)["image_id"] == "0"
    assert [r["image_id"] for r in stream] == ["1", "2"]
    path.write_text("kind,action\n")
    with pytest.raises(DatasetError, match="missing columns"):
        list(iter_validation_issues(path))
    with pytest.raises(DatasetError, match="run `dvc repro validate`"):
        list(iter_validation_issues(tmp_path / VALIDATION_ISSUES_PATH))


@given(
    names=name_lists(10, 1, 6),
    width=st.integers(1, 5),
    top=st.sampled_from([1, 9, 12]),
)
def test_read_vectors_reads_any_table_as_the_csv_reader_does(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], width: int, top: int
) -> None:
    """The numpy path (plain names, one-digit cells) and the csv path agree on every table:
    quoted names and multi-digit cells take the csv path."""
    matrix = np.arange(len(names) * width).reshape(len(names), width) % (top + 1)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image_id", "file_name", *(f"c{j}" for j in range(width))])
    for i, (name, row) in enumerate(zip(names, matrix.tolist(), strict=True)):
        writer.writerow([i + 7, name, *row])
    path = tmp_path_factory.mktemp("v") / "vectors.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    got = read_vectors(path)
    assert got.image_ids == [i + 7 for i in range(len(names))]
    assert got.file_names == names
    assert got.columns == [f"c{j}" for j in range(width)]
    assert got.matrix.dtype == np.uint8 and (got.matrix == matrix).all()


@pytest.mark.parametrize("name", ["a.jpg", "b/c d.jpg", "e,f.jpg", 'g"h.jpg'])
@pytest.mark.parametrize("cell", ["7", "-1", "", "1-2", "x", "1.5"])
def test_stats_read_by_numpy_or_csv_agree(tmp_path: Path, name: str, cell: str) -> None:
    """The numpy path reads plain tables; a quoted name or a cell that is not a plain integer
    goes to the csv reader, which reads it alike or names the cell."""
    import pipeline.files.contracts as contracts

    table = build_class_table([{"id": 1, "name": "x,y"}, {"id": 2, "name": "z"}], ClassesParams())
    (tmp_path / "data").mkdir()
    atomic_json = json.dumps(table.to_json(make_palette()))
    (tmp_path / CLASSES_PATH).write_text(atomic_json)
    (tmp_path / "data/stats").mkdir()
    image_rows = [[1, name, 4, 5, 10, 0], [2, "plain.jpg", 2, 2, cell, 0]]
    class_rows = [[1, 1, "x,y", 10, 1, 1, 0, 0, 0], [2, 2, "z", 4, 1, 1, 0, 0, 0]]
    (tmp_path / IMAGE_STATS_PATH).write_text(csv_text(IMAGE_STATS_COLUMNS, image_rows))
    (tmp_path / CLASS_STATS_PATH).write_text(csv_text(CLASS_STATS_COLUMNS, class_rows))

    def read(fast: bool) -> Any:
        real = contracts._plain_table
        if not fast:
            contracts._plain_table = lambda *args, **kwargs: None  # type: ignore[assignment]
        try:
            stats = read_image_stats(tmp_path)
        except DatasetError as exc:
            return str(exc)
        finally:
            contracts._plain_table = real
        return (
            stats.image_ids,
            stats.file_names,
            stats.background.tolist(),
            {m: stats.measures[m].tolist() for m in CLASS_MEASURES},
        )

    assert read(True) == read(False)


@pytest.mark.parametrize("name", ["cat", "cat,dog", 'say "hi"'])
@pytest.mark.parametrize("cell", ["12", "", "1.5", "-3"])
def test_instances_read_by_numpy_or_csv_agree(tmp_path: Path, name: str, cell: str) -> None:
    import pipeline.files.contracts as contracts

    rows = [[1, 10, 3, 1, name, 0, 40, 38, 40.5], [2, 11, 3, 1, "b", 1, 9, cell, ""]]
    path = tmp_path / "instances.csv"
    path.write_text(csv_text(contracts.INSTANCE_COLUMNS, rows))

    def read(fast: bool) -> Any:
        real = contracts._plain_table
        if not fast:
            contracts._plain_table = lambda *args, **kwargs: None  # type: ignore[assignment]
        try:
            found = contracts.read_instances(path)
        except DatasetError as exc:
            return str(exc)
        finally:
            contracts._plain_table = real
        return [column.tolist() for column in vars(found).values()]

    assert read(True) == read(False)


_INTS = st.integers(-(10**19), 10**19).map(str)
_CELLS = st.one_of(
    _INTS,
    _INTS,
    _INTS,
    st.sampled_from(["+5", " 5", "5 ", "007", "-0", "1_0", "\u0663", "", "-", "--1", "1-2", "1.5"]),
    st.text(alphabet="0123456789-+ ._x\u00e9", max_size=6),
)


@given(
    rows=st.lists(st.tuples(_CELLS, st.text(max_size=8), _CELLS, _CELLS), min_size=1, max_size=6)
)
def test_plain_table_reads_what_the_csv_reader_reads(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str, str, str]]
) -> None:
    """Whenever the byte-level reader answers, it says what ``int`` and the csv reader say
    (any cell: signs, spaces, other digits, overflow, quotes, commas, newlines in text)."""
    import pipeline.files.contracts as contracts

    header = ("a", "name", "b", "c")
    path = tmp_path_factory.mktemp("t") / "t.csv"
    path.write_bytes(csv_text(header, [list(r) for r in rows]).encode("utf-8"))
    fast = contracts._plain_table(path.read_bytes(), header, (0, 2, 3), (1,))
    if fast is None:
        return
    parsed = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))[1:]
    assert fast[1] == [[r[1] for r in parsed]]
    assert fast[0].tolist() == [[int(r[0]), int(r[2]), int(r[3])] for r in parsed]


def test_plain_table_answers_for_what_the_stages_write(tmp_path: Path) -> None:
    import pipeline.files.contracts as contracts

    header = ("a", "name", "b")
    rows = [[-(10**17) + 1, "caf\u00e9/x.jpg", 0], [10**18 - 1, "b", -7], [0, "", 12]]
    path = tmp_path / "t.csv"
    path.write_text(csv_text(header, rows), encoding="utf-8")
    fast = contracts._plain_table(path.read_bytes(), header, (0, 2), (1,))
    assert fast is not None
    assert fast[0].tolist() == [[r[0], r[2]] for r in rows]
    assert fast[1] == [[r[1] for r in rows]]
    # a name is not an integer
    assert contracts._plain_table(path.read_bytes(), header, (0, 1)) is None


_FOLD_CELLS = st.one_of(
    st.integers(0, 4).map(str),
    st.sampled_from(["test", " 1", "01", "\u00b2", "\u0663", "x", "", "-1"]),
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.integers(1, 6).map(str), st.sampled_from(["+2", "", "x", "1.0"])),
            st.one_of(
                st.sampled_from(["a.jpg", "b/c.jpg", "../x.jpg", "/abs.jpg", "a\\b.jpg"]),
                st.text(max_size=6),
            ),
            st.text(alphabet="ab,", max_size=3),
            _FOLD_CELLS,
        ),
        min_size=1,
        max_size=7,
    )
)
def test_folds_read_by_numpy_or_csv_agree(rows: list[tuple[str, str, str, str]]) -> None:
    """The byte-level folds reader gives the csv path's table, or the csv path's error."""
    import pipeline.files.contracts as contracts

    data = csv_text(FOLD_COLUMNS, [list(r) for r in rows]).encode("utf-8")

    def read(fast: bool) -> Any:
        real = contracts.plain_folds
        if not fast:
            contracts.plain_folds = lambda *args: None  # type: ignore[assignment]
        try:
            return folds_from_bytes(data, "folds.csv")
        except DatasetError as exc:
            return str(exc)
        finally:
            contracts.plain_folds = real

    assert read(True) == read(False)


def test_a_superscript_fold_label_is_refused_not_a_crash() -> None:
    data = csv_text(FOLD_COLUMNS, [[1, "a.jpg", "a", "\u00b2"], [2, "b.jpg", "b", "0"]])
    with pytest.raises(DatasetError, match="fold must be an integer"):
        folds_from_bytes(data.encode("utf-8"), "folds.csv")


def test_plain_folds_answer_for_what_the_split_stage_writes() -> None:
    import pipeline.files.contracts as contracts

    rows = [[i, f"b{i % 2}/{i}.jpg", f"b{i % 2}", ["0", "1", "test"][i % 3]] for i in range(1, 8)]
    data = csv_text(FOLD_COLUMNS, rows).encode("utf-8")
    fast = contracts.plain_folds(data, "folds.csv")
    assert fast is not None
    assert fast == parse_folds(csv_rows(data, "folds.csv"), "folds.csv")
    assert fast.n_folds == 2 and fast.rows[1] == (2, "b0/2.jpg", "b0", "test")
