"""params.yaml against its schema: defaults, unknown keys and bad values as one line naming
params.yaml and the key, conversions, and the worker count rule."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pipeline.files.errors import DatasetError
from pipeline.files.params import (
    SECTIONS,
    Params,
    load_params,
    parse_params,
    resolve_workers,
)
from tests.conftest import ROOT


def error_of(raw: Any) -> str:
    with pytest.raises(DatasetError) as caught:
        parse_params(raw)
    return str(caught.value)


def test_missing_empty_and_null_files_mean_every_default(tmp_path: Path) -> None:
    """No file, an empty file or null give every default."""
    assert load_params(tmp_path / "absent.yaml") == Params()
    (tmp_path / "params.yaml").write_text("")
    assert load_params(tmp_path / "params.yaml") == Params()
    assert parse_params({}) == parse_params(None) == Params()


def test_a_file_names_only_what_changes() -> None:
    """Unnamed keys and sections keep their defaults; a null section is all defaults."""
    params = parse_params({"split": {"n_splits": 3}, "masks": None})
    assert params.split.n_splits == 3 and params.split.seed == 42
    assert params.masks == Params().masks and params.dataset == Params().dataset


def test_committed_params_load() -> None:
    """The committed params.yaml passes every check."""
    params = load_params(ROOT / "params.yaml")
    assert params.dataset.annotations == "data/sample/annotations.json"
    assert params.split.group_regex == "^([^/]+)/"


@pytest.mark.parametrize(
    ("section", "key"),
    [("split", "n_split"), ("masks", "overlapp"), ("vectors", "presense"), ("cache", "size")],
)
def test_unknown_key_is_one_line_naming_params_yaml_and_the_key(section: str, key: str) -> None:
    """A typo is an error, never ignored: one line, the file, the section, the key."""
    text = error_of({section: {key: 1}})
    assert text.startswith(f"params.yaml: {section}: unknown keys ['{key}']")
    assert "\n" not in text
    known = [f.name for f in dataclasses.fields(SECTIONS[section])]
    assert f"(known: {', '.join(known)})" in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"split": {"n_splits": 1}}, "split.n_splits: must be an integer >= 2, got 1"),
        ({"split": {"n_splits": True}}, "split.n_splits: must be an integer >= 2, got True"),
        ({"split": {"n_splits": 2.0}}, "split.n_splits: must be an integer >= 2, got 2.0"),
        ({"split": {"test_fraction": 1.0}}, "split.test_fraction: must be in [0, 1), got 1.0"),
        ({"split": {"group_regex": "(["}}, "split.group_regex: invalid regular expression"),
        ({"split": {"pixel_weight": -1}}, "split.pixel_weight: must be a number >= 0"),
        ({"dataset": {"check_images": "yes"}}, "dataset.check_images: must be true or false"),
        ({"dataset": {"missing_images": "skip"}}, "dataset.missing_images: 'skip' is not one of"),
        ({"dataset": {"annotations": " "}}, "dataset.annotations: must be a non-empty string"),
        ({"dataset": {"max_dropped_fraction": float("nan")}}, "must be in [0, 1], got nan"),
        ({"masks": {"size_thresholds": [10, 5]}}, "masks.size_thresholds: must be two increasing"),
        ({"vectors": {"pixel_share_bins": [0.5, 0.1]}}, "vectors.pixel_share_bins: must be incr"),
        ({"classes": {"drop": 3}}, "classes.drop: must be a list of category ids, got 3"),
        ({"report": {"gallery_tile": 10}}, "report.gallery_tile: must be an integer in [64, 640]"),
        ({"cache": {"max_size_gb": 0}}, "cache.max_size_gb: must be a positive number, got 0"),
        ({"executor": {"path_map": {"/a": ""}}}, "executor.path_map: must map local path"),
        ({"workers": "all"}, "workers: must be an integer, got 'all'"),
        ({"split": [1, 2]}, "split: must be a mapping, got [1, 2]"),
    ],
)
def test_bad_value_is_one_line_naming_params_yaml_and_the_key(raw: Any, expected: str) -> None:
    """Each bad value is one line naming params.yaml, the dotted key and the value."""
    text = error_of(raw)
    assert text.startswith("params.yaml: ") and expected in text and "\n" not in text


def test_checks_across_keys_name_the_section() -> None:
    """Checks that involve several keys name the section."""
    assert error_of({"split": {"group_regex": "(.)", "group_field": "batch"}}) == (
        "params.yaml: split: set group_regex or group_field, not both"
    )
    off = {"presence": False, "small_presence": False, "pixel_share_bins": []}
    assert error_of({"vectors": off}).startswith("params.yaml: vectors: choose at least one")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    """A YAML list at the top is one error naming params.yaml."""
    path = tmp_path / "params.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(DatasetError, match=r"^params\.yaml: top level must be a mapping$"):
        load_params(path)


def test_invalid_yaml_names_the_file_and_where(tmp_path: Path) -> None:
    """YAML syntax errors name the file and the line."""
    path = tmp_path / "params.yaml"
    path.write_text("split:\n  n_splits: [5\n")
    with pytest.raises(DatasetError, match="not valid YAML") as caught:
        load_params(path)
    assert str(caught.value).startswith(f"{path}: not valid YAML")
    assert "line 3" in str(caught.value)


def test_values_are_converted_to_their_field_types() -> None:
    """Lists become tuples, null lists empty, thresholds ints, fractions floats."""
    params = parse_params(
        {
            "masks": {"size_thresholds": [100.0, 900]},
            "vectors": {"pixel_share_bins": [0.05, 0.5]},
            "classes": {"drop": None, "ignore": [4, 5]},
            "dataset": {"max_dropped_fraction": 0},
            "executor": {"path_map": None},
        }
    )
    assert params.masks.size_thresholds == (100, 900)
    assert all(type(t) is int for t in params.masks.size_thresholds)
    assert params.vectors.pixel_share_bins == (0.05, 0.5)
    assert (params.classes.drop, params.classes.ignore) == ((), (4, 5))
    assert type(params.dataset.max_dropped_fraction) is float
    assert params.executor.path_map == {}


def test_params_are_frozen() -> None:
    """Params cannot be changed after they are read."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        Params().split.n_splits = 3  # type: ignore[misc]


def test_every_default_passes_its_own_check() -> None:
    """Every field's default passes its own check."""
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            assert f.metadata["check"](default) is None, f"{name}.{f.name}"


def plain(value: Any) -> Any:
    """A dataclass value as YAML can write it (tuples as lists)."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@given(
    n_splits=st.integers(2, 20),
    seed=st.integers(0, 2**31),
    fraction=st.floats(0, 0.99),
    bins=st.lists(st.floats(0.01, 1.0), max_size=4, unique=True).map(sorted),
    overlap=st.sampled_from(["area", "order", "max"]),
    workers=st.integers(-8, 64),
)
def test_written_back_as_yaml_params_read_the_same(
    n_splits: int, seed: int, fraction: float, bins: list[float], overlap: str, workers: int
) -> None:
    """Params dumped as YAML (every key spelled out) load back equal: the schema round-trips."""
    params = parse_params(
        {
            "workers": workers,
            "split": {"n_splits": n_splits, "seed": seed, "test_fraction": fraction},
            "vectors": {"pixel_share_bins": bins},
            "masks": {"overlap": overlap},
        }
    )
    text = yaml.safe_dump(plain(dataclasses.asdict(params)), sort_keys=False)
    assert parse_params(yaml.safe_load(text)) == params


@pytest.mark.parametrize(
    ("value", "cores", "expected"),
    [(0, 8, 8), (None, 8, 8), (3, 8, 3), (16, 8, 16), (-1, 8, 7), (-7, 8, 1), (-100, 8, 1)],
)
def test_worker_count(
    monkeypatch: pytest.MonkeyPatch, value: int | None, cores: int, expected: int
) -> None:
    """0 or null: every core; negative: all but that many (at least one); else as given."""
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert resolve_workers(value) == expected
    if value is not None:
        assert Params(workers=value).n_workers == expected


def test_unknown_top_level_key_is_refused_like_a_key_in_a_section() -> None:
    """``datset:`` would leave the dataset section at its defaults, silently: refused."""
    assert error_of({"datset": {"annotations": "x.json"}, "workers": 1}) == (
        "params.yaml: unknown top-level keys ['datset'] (known: "
        + ", ".join(f.name for f in dataclasses.fields(Params))
        + ")"
    )
    known = {"workers": 2, "cache": {"dir": None}, "executor": {"kind": "local"}}
    assert parse_params(known).n_workers == 2


def test_split_seed_is_bounded_by_what_the_baselines_take() -> None:
    """numpy's RandomState (the library baselines) takes 32 bits: the schema says so."""
    assert parse_params({"split": {"seed": 2**32 - 1}}).split.seed == 2**32 - 1
    assert error_of({"split": {"seed": 2**32}}) == (
        "params.yaml: split.seed: must be an integer in [0, 4294967295], got 4294967296"
    )


@pytest.mark.parametrize("pattern", ["^[^/]+/", "^(?:[^/]+)/", r"\d+"])
def test_group_regex_needs_a_capture_group(pattern: str) -> None:
    """The first capture group names the group: a pattern without one is refused."""
    text = error_of({"split": {"group_regex": pattern}})
    assert text.startswith(f"params.yaml: split.group_regex: {pattern!r} has no capture group")
    assert parse_params({"split": {"group_regex": "^(.*)_scaled_"}}).split.group_regex
