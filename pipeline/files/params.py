"""params.yaml, read into one frozen dataclass per section: the defaults and the checks live here.

A user's file may name only what changes; a key this schema does not know is an error (a typo
would otherwise be ignored silently), and every bad value is one line naming ``params.yaml``
and the key. Checks that need the data (category ids in ``classes``, transform names in
``augment``) are made where the data is, by the stage that uses them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from pipeline.files.contracts import PINNED_PATH, VARIANT_NAME
from pipeline.files.errors import DatasetError

__all__ = [
    "AugmentParams",
    "CacheParams",
    "Check",
    "ClassesParams",
    "DatasetParams",
    "ExecutorParams",
    "ExportParams",
    "MAX_COPIES",
    "MAX_SEED",
    "MasksParams",
    "PARAMS_FILE",
    "Params",
    "ReportParams",
    "SECTIONS",
    "SplitParams",
    "VARIANT_FORMATS",
    "VARIANT_KEYS",
    "VariantParams",
    "VectorsParams",
    "boolean",
    "build_section",
    "fail",
    "fraction",
    "group_regex",
    "id_list",
    "integer",
    "integer_between",
    "load_params",
    "mapping",
    "non_negative",
    "one_of",
    "optional",
    "parse_params",
    "positive",
    "prefix_map",
    "regex",
    "resolve_workers",
    "share_bins",
    "size_thresholds",
    "spec",
    "spec_factory",
    "text",
    "variant",
]

PARAMS_FILE = "params.yaml"
MAX_SEED = 2**32 - 1  # numpy's RandomState (the baselines' scikit-learn splitters) takes 32 bits
Check = Callable[[Any], str | None]


def fail(key: str, message: str) -> DatasetError:
    return DatasetError(message, file=PARAMS_FILE, field=key)


# ---------------------------------------------------------------- value checks


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer(lo: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        if not _is_int(value) or (lo is not None and value < lo):
            bound = f" >= {lo}" if lo is not None else ""
            return f"must be an integer{bound}, got {value!r}"
        return None

    return check


def integer_between(lo: int, hi: int) -> Check:
    def check(value: Any) -> str | None:
        if not _is_int(value) or not lo <= value <= hi:
            return f"must be an integer in [{lo}, {hi}], got {value!r}"
        return None

    return check


def fraction(upper_open: bool = False) -> Check:
    def check(value: Any) -> str | None:
        ok = _is_number(value) and value >= 0 and (value < 1 if upper_open else value <= 1)
        return None if ok else f"must be in [0, 1{')' if upper_open else ']'}, got {value!r}"

    return check


def non_negative(value: Any) -> str | None:
    return None if _is_number(value) and value >= 0 else f"must be a number >= 0, got {value!r}"


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"{value!r} is not one of {choices}"

    return check


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def text(value: Any) -> str | None:
    ok = isinstance(value, str) and value.strip()
    return None if ok else f"must be a non-empty string, got {value!r}"


def optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def id_list(value: Any) -> str | None:
    if value is None or isinstance(value, list | tuple):
        return None
    return f"must be a list of category ids, got {value!r}"


def mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be a mapping, got {value!r}"


def regex(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"must be a regular expression string, got {value!r}"
    try:
        re.compile(value)
    except re.error as exc:
        return f"invalid regular expression {value!r}: {exc}"
    return None


def group_regex(value: Any) -> str | None:
    """A regular expression whose first capture group names the group."""
    problem = regex(value)
    if problem is None and value is not None and re.compile(value).groups == 0:
        return (
            f"{value!r} has no capture group: its first group (...) names an image's group, "
            "e.g. '^([^/]+)/' for the first folder"
        )
    return problem


def size_thresholds(value: Any) -> str | None:
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(_is_number(t) for t in value)
        and 0 < value[0] < value[1]
    )
    return None if ok else f"must be two increasing positive areas in px, got {value!r}"


def share_bins(value: Any) -> str | None:
    ok = (
        isinstance(value, list | tuple)
        and all(_is_number(b) and 0 < b <= 1 for b in value)
        and list(value) == sorted(set(value))
    )
    return None if ok else f"must be increasing shares in (0, 1], got {value!r}"


def prefix_map(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip()
        for k, v in value.items()
    )
    return None if ok else f"must map local path prefixes to worker prefixes, got {value!r}"


def spec(default: Any, check: Check, convert: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field with its default, its check and an optional conversion."""
    return field(default=default, metadata={"check": check, "convert": convert})


def spec_factory(
    factory: Callable[[], Any], check: Check, convert: Callable[[Any], Any] | None = None
) -> Any:
    return field(default_factory=factory, metadata={"check": check, "convert": convert})


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class DatasetParams:
    annotations: str = spec("data/sample/annotations.json", text)
    images: str | None = spec("data/sample/images", optional(text))
    check_images: bool = spec(True, boolean)  # open every image: exists, decodable, size
    missing_images: str = spec("drop", one_of("drop", "error", "keep"))
    max_pixels: int = spec(200_000_000, integer(1))  # width*height above this is an error
    max_dropped_fraction: float = spec(0.05, fraction(), float)


@dataclass(frozen=True)
class ClassesParams:
    background: str = spec("background", text)
    map: dict[Any, Any] | None = spec(None, optional(mapping))  # category id -> class name
    drop: tuple[Any, ...] = spec((), id_list, lambda v: tuple(v or ()))  # left background
    ignore: tuple[Any, ...] = spec((), id_list, lambda v: tuple(v or ()))  # painted 255


@dataclass(frozen=True)
class MasksParams:
    overlap: str = spec("area", one_of("area", "order", "max"))
    crowd: str = spec("ignore", one_of("ignore", "class", "skip"))
    size_thresholds: tuple[int, int] = spec(
        (1024, 9216), size_thresholds, lambda v: (int(v[0]), int(v[1]))
    )


@dataclass(frozen=True)
class VectorsParams:
    presence: bool = spec(True, boolean)
    small_presence: bool = spec(True, boolean)
    # 0.1: the share edge that lowers the folds' pixel-share deviation most without raising
    # LD/LPD by more than 10 % (benchmarks/bench_pixel_balance.py)
    pixel_share_bins: tuple[float, ...] = spec((0.1,), share_bins, tuple)

    def __post_init__(self) -> None:
        if not (self.presence or self.small_presence or self.pixel_share_bins):
            raise fail(
                "vectors", "choose at least one of presence, small_presence, pixel_share_bins"
            )


@dataclass(frozen=True)
class SplitParams:
    """How folds are chosen (pipeline.stages.split, pipeline.splitting.stratify).

    ``pixel_weight``: how much the splitter's search also balances each class's share of a
    fold's labelled pixels against the whole set's share (segmentation losses see pixels,
    not images). Units: at a class of typical frequency, one average image's worth of its
    pixels too many in a fold costs ``pixel_weight`` times one positive too many of a label;
    rarer classes weigh more per pixel (``stratify._pixel_block``). 0 = labels only (the
    folds before this term). Default 1.0, chosen by ``benchmarks/bench_pixel_balance.py
    --weights``: the largest weight whose LD and LPD stay within +10 % of labels only on
    the sample, facade and TACO.
    """

    n_splits: int = spec(5, integer(2))
    # The library baselines seed numpy's legacy RandomState, which takes 32 bits.
    seed: int = spec(42, integer_between(0, MAX_SEED))
    group_regex: str | None = spec(None, group_regex)
    group_field: str | None = spec(None, optional(text))
    test_fraction: float = spec(0.0, fraction(upper_open=True), float)
    stable: bool = spec(False, boolean)  # keep the pinned split's folds (pipeline.splitting.stable)
    stable_from: str = spec(PINNED_PATH, text)  # the pinned folds.csv, committed
    pixel_weight: float = spec(1.0, non_negative, float)  # pixel-share balance; 0 = off

    def __post_init__(self) -> None:
        if self.group_regex and self.group_field:
            raise fail("split", "set group_regex or group_field, not both")


VARIANT_KEYS = ("seed", "copies", "format", "jpeg_quality", "transforms")
VARIANT_FORMATS = ("png", "jpg")
MAX_COPIES = 1000


@dataclass(frozen=True)
class VariantParams:
    """One augmented variant, ``augment.variants.<name>``, typed here once. Its transform
    steps are mappings with a ``name``; what each transform accepts is checked against the
    transforms themselves by the augment stage, once per run, before any image is read."""

    name: str
    seed: int
    copies: int = 1
    transforms: tuple[dict[str, Any], ...] = ()
    format: str = "png"
    jpeg_quality: int = 95


def _variant_field(name: str, key: str | None = None) -> str:
    return f"augment.variants.{name}" + (f".{key}" if key else "")


def _variant_number(name: str, key: str, value: Any, lo: int, hi: int | None) -> int:
    if not _is_int(value) or value < lo or (hi is not None and value > hi):
        expected = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}" if lo else "non-negative"
        what = "a non-negative integer" if hi is None else f"an integer {expected}"
        raise fail(_variant_field(name, key), f"must be {what}, got {value!r}")
    return int(value)


def _variant_mapping(name: Any, cfg: Any) -> Mapping[str, Any]:
    """The raw settings of one variant: a safe name, a mapping of known keys."""
    if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
        raise fail(
            _variant_field(str(name)),
            f"variant name {name!r} is not a safe folder name (letters, digits, '_' and '-', "
            "not starting with '_' or '-')",
        )
    if not isinstance(cfg, Mapping):
        raise fail(_variant_field(name), "must be a mapping with seed, copies and transforms")
    unknown = sorted(set(map(str, cfg)) - set(VARIANT_KEYS))
    if unknown:
        raise fail(
            _variant_field(name), f"unknown keys {unknown} (expected: {', '.join(VARIANT_KEYS)})"
        )
    return cfg


def _variant_steps(name: str, chain: Any) -> tuple[dict[str, Any], ...]:
    field_name = _variant_field(name, "transforms")
    if chain is None:
        raise fail(field_name, "missing (a list of {name: ..., ...} steps; [] copies the images)")
    if not isinstance(chain, list | tuple):
        raise fail(field_name, f"augment transforms must be a list of steps, got {chain!r}")
    for i, step in enumerate(chain):
        if not isinstance(step, Mapping):
            raise fail(field_name, f"augment transform #{i}: expected a mapping, got {step!r}")
    return tuple(dict(step) for step in chain)


def variant(name: Any, cfg: Any) -> VariantParams:
    """``augment.variants.<name>`` checked and typed; one line naming the key otherwise."""
    cfg = _variant_mapping(name, cfg)
    fmt = cfg.get("format", "png")
    if fmt not in VARIANT_FORMATS:
        raise fail(_variant_field(name, "format"), f"{fmt!r} is not one of {VARIANT_FORMATS}")
    return VariantParams(
        name=name,
        seed=_variant_number(name, "seed", cfg.get("seed"), 0, None),
        copies=_variant_number(name, "copies", cfg.get("copies", 1), 1, MAX_COPIES),
        transforms=_variant_steps(name, cfg.get("transforms")),
        format=fmt,
        jpeg_quality=_variant_number(name, "jpeg_quality", cfg.get("jpeg_quality", 95), 1, 100),
    )


def _variants(raw: Mapping[Any, Any]) -> dict[str, VariantParams]:
    return {name: variant(name, cfg) for name, cfg in raw.items()}


@dataclass(frozen=True)
class AugmentParams:
    on_error: str = spec("fail", one_of("fail", "skip"))
    variants: dict[str, VariantParams] = spec_factory(dict, mapping, _variants)  # params order


@dataclass(frozen=True)
class ExportParams:
    # Also write fold_<k>/train.json (instance-segmentation trainers: mmdetection, detectron2).
    coco_json: bool = spec(False, boolean)
    # categories of the COCO json: "mapped" (the class table's) or "original" (the json's)
    coco_classes: str = spec("mapped", one_of("mapped", "original"))


@dataclass(frozen=True)
class ReportParams:
    max_classes: int = spec(60, integer(1))  # figures show at most this many classes
    dpi: int = spec(100, integer(1))
    # The gallery (reports/gallery/index.html): its size is bounded by these, never by the
    # dataset's. 0 leaves a part out.
    gallery_per_class: int = spec(4, integer_between(0, 50))  # images + smallest objects zoomed
    gallery_per_fold: int = spec(8, integer_between(0, 100))
    gallery_per_variant: int = spec(3, integer_between(0, 50))  # original next to the variant
    gallery_max_issues: int = spec(12, integer_between(0, 500))  # images validate dropped/repaired
    gallery_tile: int = spec(160, integer_between(64, 640))  # px, width of one picture
    gallery_seed: int = spec(0, integer(0))  # which examples are drawn


def positive(value: Any) -> str | None:
    return None if _is_number(value) and value > 0 else f"must be a positive number, got {value!r}"


@dataclass(frozen=True)
class CacheParams:
    """The per-image result store (pipeline.execution.itemcache); never changes outputs."""

    dir: str | None = spec(".cache/coco-folds", optional(text))  # null: no caching
    max_size_gb: float = spec(20.0, positive, float)


@dataclass(frozen=True)
class ExecutorParams:
    """Where per-image work runs. Never changes outputs, so it is no DVC dependency."""

    kind: str = spec("local", one_of("local", "dask"))
    # dask: the scheduler (tcp://host:8786, tls://... with dask's TLS config); null starts a
    # LocalCluster of `workers` processes on this machine.
    address: str | None = spec(None, optional(text))
    # dask: {local prefix: worker prefix} for workers that mount the data elsewhere.
    path_map: dict[str, str] = spec_factory(dict, optional(prefix_map), lambda v: dict(v or {}))


def resolve_workers(value: Any) -> int:
    """0 or null means every core; negative means all but that many."""
    cores = os.cpu_count() or 1
    if value in (None, 0):
        return cores
    n = int(value)
    return max(1, cores + n) if n < 0 else n


@dataclass(frozen=True)
class Params:
    """Every section of params.yaml, checked."""

    workers: int = spec(0, integer())  # processes for per-image work; never changes outputs
    dataset: DatasetParams = spec_factory(DatasetParams, mapping)
    classes: ClassesParams = spec_factory(ClassesParams, mapping)
    masks: MasksParams = spec_factory(MasksParams, mapping)
    vectors: VectorsParams = spec_factory(VectorsParams, mapping)
    split: SplitParams = spec_factory(SplitParams, mapping)
    augment: AugmentParams = spec_factory(AugmentParams, mapping)
    export: ExportParams = spec_factory(ExportParams, mapping)
    report: ReportParams = spec_factory(ReportParams, mapping)
    cache: CacheParams = spec_factory(CacheParams, mapping)
    executor: ExecutorParams = spec_factory(ExecutorParams, mapping)

    @property
    def n_workers(self) -> int:
        return resolve_workers(self.workers)


SECTIONS: dict[str, type] = {
    "dataset": DatasetParams,
    "classes": ClassesParams,
    "masks": MasksParams,
    "vectors": VectorsParams,
    "split": SplitParams,
    "augment": AugmentParams,
    "export": ExportParams,
    "report": ReportParams,
    "cache": CacheParams,
    "executor": ExecutorParams,
}


def build_section(cls: type, raw: Any, name: str) -> Any:
    """One section from its raw mapping: unknown keys refused, defaults filled, values checked."""
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise fail(name, f"must be a mapping, got {raw!r}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        what = "unknown keys" if name else "unknown top-level keys"
        raise fail(name, f"{what} {unknown} (known: {', '.join(known)})")
    values = {}
    for f in fields(cls):
        key = f"{name}.{f.name}" if name else f.name
        if f.name in SECTIONS and not name:
            values[f.name] = build_section(SECTIONS[f.name], raw.get(f.name), f.name)
            continue
        value = raw[f.name] if f.name in raw else _default(f)
        problem = f.metadata["check"](value)
        if problem:
            raise fail(key, problem)
        convert = f.metadata["convert"]
        values[f.name] = convert(value) if convert else value
    return cls(**values)


def _default(f: Any) -> Any:
    return f.default_factory() if callable(f.default_factory) else f.default


def parse_params(raw: Any) -> Params:
    """Every key checked, the top level's too: a misspelt section (``datset:``) is an error,
    never a section silently left at its defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise DatasetError("top level must be a mapping", file=PARAMS_FILE)
    return build_section(Params, raw, "")


def load_params(path: str | os.PathLike = PARAMS_FILE) -> Params:
    """params.yaml checked against the schema; a missing file means every default."""
    path = Path(path)
    if not path.exists():
        return Params()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"not valid YAML: {exc}", file=str(path)) from None
    return parse_params(raw)
