"""Invariants of the offline augmentations: masks never gain classes, layouts and dtypes survive,
the same seed gives the same bytes, and bad chains fail up front with a useful message."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.augmenting import transforms
from pipeline.augmenting.transforms import (
    CV_THREADS,
    IGNORE,
    TRANSFORM_PARAMS,
    TRANSFORMS,
    apply_chain,
    rng_for,
    validate_chain,
)

PHOTOMETRIC = ["clahe", "blur", "gaussian_blur", "fog", "brightness_contrast"]
GEOMETRIC = ["hflip", "vflip", "rotate_scale", "elastic"]
DTYPES = [np.uint8, np.uint16, np.float32]
LAYOUTS = [(), (1,), (3,), (4,)]

# Parameters that make every transform visibly random (ranges) where it has any.
RANDOM_PARAMS: dict[str, dict] = {
    "clahe": {"clip_limit": [1.0, 4.0], "tile_grid_size": [2, 8]},
    "elastic": {"alpha": [20.0, 40.0], "sigma": [3.0, 5.0]},
    "blur": {"ksize": [3, 7]},
    "gaussian_blur": {"sigma": [0.5, 2.0]},
    "fog": {"intensity": [0.2, 0.6]},
    "hflip": {},
    "vflip": {},
    "rotate_scale": {"angle": [-30.0, 30.0], "scale": [0.8, 1.2]},
    "brightness_contrast": {"brightness": [-0.2, 0.2], "contrast": [0.7, 1.3]},
}
STOCHASTIC = ["elastic", "gaussian_blur", "fog", "rotate_scale", "brightness_contrast"]


def make_pair(
    dtype: type, layout: tuple[int, ...], h: int = 33, w: int = 47, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    top = 1.0 if dtype is np.float32 else float(np.iinfo(dtype).max)
    y, x = np.mgrid[0:h, 0:w]
    smooth = 0.3 + 0.2 * np.sin(x / 5.0) * np.cos(y / 7.0)
    values = np.clip(smooth[..., None] + rng.normal(0, 0.05, (h, w, 4)), 0, 1)
    image = (values * top if dtype is np.float32 else np.rint(values * top)).astype(dtype)
    image = image[..., 0] if layout == () else image[..., : layout[0]]
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : h // 2, w // 4 : w // 2] = 1
    mask[h // 2 :, w // 2 :] = 3
    mask[:2, :] = IGNORE
    return np.ascontiguousarray(image), mask


def test_registry_has_every_transform() -> None:
    assert set(TRANSFORMS) == set(PHOTOMETRIC + GEOMETRIC)
    assert set(TRANSFORM_PARAMS) == set(TRANSFORMS)
    assert all("p" in params for params in TRANSFORM_PARAMS.values())


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda s: f"c{s[0] if s else 0}")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_shape_dtype_and_mask_values(name: str, dtype: type, layout: tuple[int, ...]) -> None:
    image, mask = make_pair(dtype, layout)
    before_image, before_mask = image.copy(), mask.copy()
    out, out_mask = TRANSFORMS[name](image, mask, rng_for(1, "v", 7), **RANDOM_PARAMS[name])
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out_mask.shape == mask.shape and out_mask.dtype == np.uint8
    assert set(np.unique(out_mask)) <= set(np.unique(mask)) | {IGNORE}
    if dtype is np.float32:
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    if name in PHOTOMETRIC:
        assert out_mask is mask
        if layout == (4,):
            np.testing.assert_array_equal(out[..., 3], image[..., 3])  # alpha untouched
    np.testing.assert_array_equal(image, before_image)  # inputs are never modified in place
    np.testing.assert_array_equal(mask, before_mask)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_same_seed_same_bytes(name: str) -> None:
    image, mask = make_pair(np.uint16, (4,))
    a = TRANSFORMS[name](image, mask, rng_for(3, "x", "img.png"), **RANDOM_PARAMS[name])
    b = TRANSFORMS[name](image, mask, rng_for(3, "x", "img.png"), **RANDOM_PARAMS[name])
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


@pytest.mark.parametrize("name", STOCHASTIC)
def test_different_seed_different_output(name: str) -> None:
    image, mask = make_pair(np.uint8, (3,))
    a, _ = TRANSFORMS[name](image, mask, rng_for(1, "x", 5), **RANDOM_PARAMS[name])
    b, _ = TRANSFORMS[name](image, mask, rng_for(2, "x", 5), **RANDOM_PARAMS[name])
    assert a.tobytes() != b.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_flips_twice_and_zero_rotation_are_identity(dtype: type, layout: tuple[int, ...]) -> None:
    image, mask = make_pair(dtype, layout)
    rng = np.random.default_rng(0)
    for name in ("hflip", "vflip"):
        once = TRANSFORMS[name](image, mask, rng)
        assert not np.array_equal(once[1], mask)
        twice = TRANSFORMS[name](*once, rng)
        np.testing.assert_array_equal(twice[0], image)
        np.testing.assert_array_equal(twice[1], mask)
    out, out_mask = TRANSFORMS["rotate_scale"](image, mask, rng, angle=0, scale=1)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out_mask, mask)
    out, out_mask = TRANSFORMS["elastic"](image, mask, rng, alpha=0, sigma=3)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out_mask, mask)


def test_hflip_matches_numpy() -> None:
    image, mask = make_pair(np.uint8, (3,))
    out, out_mask = TRANSFORMS["hflip"](image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(out, image[:, ::-1])
    np.testing.assert_array_equal(out_mask, mask[:, ::-1])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_quarter_turns_move_image_and_mask_together_exactly(dtype: type) -> None:
    """Quarter turns are exact (cos and sin exactly 0 and +-1): pure pixel moves."""
    image, mask = make_pair(dtype, (3,), h=31, w=31)
    for angle, turns in ((90, 1), (-90, -1), (180, 2), (270, 3), (-360, 0)):
        out, out_mask = TRANSFORMS["rotate_scale"](
            image, mask, np.random.default_rng(0), angle=angle
        )
        np.testing.assert_array_equal(out_mask, np.rot90(mask, turns))  # counter-clockwise
        np.testing.assert_array_equal(out, np.rot90(image, turns))


def test_cos_sin_degrees_is_accurate() -> None:
    """The libm-free cos and sin behind rotate_scale: within a few ulps of math's."""
    rng = np.random.default_rng(0)
    for angle in [*rng.uniform(-360, 360, 2000), 0.0, 45.0, -15.0, 89.999999, 359.9999]:
        cos, sin = transforms._cos_sin_degrees(float(angle))
        assert abs(cos - math.cos(math.radians(angle))) <= 1e-15
        assert abs(sin - math.sin(math.radians(angle))) <= 1e-15


def test_opencv_runs_without_ipp_in_any_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """IPP picks its own code by CPU, and cv2.ipp.setUseIPP is per thread: every transform
    call turns it off in its own thread while OpenCV works, and back as it was afterwards."""
    image, mask = make_pair(np.uint8, (3,))
    remap = cv2.remap
    during: list[bool] = []

    def spy(*args: object, **kwargs: object) -> np.ndarray:
        during.append(cv2.ipp.useIPP())
        return remap(*args, **kwargs)

    monkeypatch.setattr(cv2, "remap", spy)
    after: list[bool] = []

    def work() -> None:
        cv2.ipp.setUseIPP(True)  # a fresh thread's default where IPP is built in
        before = cv2.ipp.useIPP()
        TRANSFORMS["rotate_scale"](image, mask, rng_for(0, "t", 0), angle=[-9, 9])
        TRANSFORMS["elastic"](image, mask, rng_for(0, "t", 1))
        after.append(cv2.ipp.useIPP() == before)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert during == [False] * 4  # image and mask, two transforms
    assert after == [True]  # as it was


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_outputs_never_share_reused_work_arrays(dtype: type) -> None:
    """Maps and float blurs reuse per-thread work arrays: an earlier result stays intact."""
    first_pair, second_pair = photo(dtype, (3,), seed=1), photo(dtype, (3,), seed=2)
    for name in ("rotate_scale", "elastic", "gaussian_blur"):
        params = RANDOM_PARAMS[name]
        first = TRANSFORMS[name](*first_pair, rng_for(0, "s", name), **params)
        kept = [first[0].copy(), first[1].copy()]
        TRANSFORMS[name](*second_pair, rng_for(1, "s", name), **params)
        np.testing.assert_array_equal(first[0], kept[0])
        np.testing.assert_array_equal(first[1], kept[1])
        again = TRANSFORMS[name](*first_pair, rng_for(0, "s", name), **params)
        assert again[0].tobytes() == kept[0].tobytes() and again[1].tobytes() == kept[1].tobytes()


@pytest.mark.parametrize("name", ["rotate_scale", "elastic"])
def test_remap_size_limit_is_a_clear_error(name: str) -> None:
    image = np.zeros((2, 32767), np.uint8)
    with pytest.raises(ValueError, match=f"{name}: image 2x32767 is too large"):
        TRANSFORMS[name](image, image.copy(), np.random.default_rng(0))


def test_rotate_pads_mask_with_ignore_and_image_with_zero() -> None:
    image = np.full((40, 40, 4), 200, np.uint8)
    mask = np.ones((40, 40), np.uint8)
    out, out_mask = TRANSFORMS["rotate_scale"](image, mask, np.random.default_rng(0), scale=0.5)
    assert out_mask[0, 0] == IGNORE and out_mask[20, 20] == 1
    assert (out[0, 0] == 0).all() and (out[20, 20] == 200).all()
    assert set(np.unique(out_mask)) == {1, IGNORE}


def test_elastic_keeps_image_and_mask_aligned() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[8:40, 10:50] = 1
    mask[40:, :30] = 2
    image = (mask * 100).astype(np.uint8)
    out, out_mask = TRANSFORMS["elastic"](image, mask, rng_for(0, "e", 1), alpha=300.0, sigma=6.0)
    assert not np.array_equal(out_mask, mask)
    valid = out_mask != IGNORE
    agree = np.rint(out[valid] / 100.0) == out_mask[valid]
    assert agree.mean() > 0.97


def test_p_zero_and_p_half() -> None:
    image, mask = make_pair(np.uint8, ())
    out, out_mask = TRANSFORMS["hflip"](image, mask, np.random.default_rng(0), p=0.0)
    assert out is image and out_mask is mask
    flipped = [
        not np.array_equal(TRANSFORMS["hflip"](image, mask, rng_for(0, "p", i), p=0.5)[1], mask)
        for i in range(200)
    ]
    assert 60 < sum(flipped) < 140


def test_apply_chain_runs_steps_in_order_and_deterministically() -> None:
    image, mask = make_pair(np.uint16, (3,))
    chain = [
        {"name": "hflip", "p": 0.5},
        {"name": "rotate_scale", "angle": [-10, 10], "scale": [0.9, 1.1]},
        {"name": "clahe", "clip_limit": 2.0, "tile_grid_size": 4},
        {"name": "fog", "intensity": [0.1, 0.3], "p": 0.5},
    ]
    a = apply_chain(image, mask, chain, rng_for(42, "aug", 3, copy=1))
    b = apply_chain(image, mask, chain, rng_for(42, "aug", 3, copy=1))
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].dtype == np.uint16 and a[0].shape == image.shape
    out, out_mask = apply_chain(image, mask, [], np.random.default_rng(0))
    assert out is image and out_mask is mask


@pytest.mark.parametrize(
    ("chain", "fragments"),
    [
        ([{"name": "hflip"}, {"name": "sharpen"}], ["#1", "'sharpen'", "unknown transform"]),
        ([{"name": "elastic", "sigmaa": 3}], ["#0", "'elastic'", "'sigmaa'", "unknown param"]),
        ([{"name": "hflip", "angle": 3}], ["#0", "'hflip'", "'angle'"]),
        ([{"name": "rotate_scale", "angle": [10, -10]}], ["'rotate_scale'", "'angle'", "lo > hi"]),
        ([{"name": "fog", "intensity": [0.1, 1.5]}], ["'fog'", "'intensity'", "out of range"]),
        ([{"name": "blur", "ksize": 0}], ["'blur'", "'ksize'", "out of range"]),
        ([{"name": "blur", "ksize": 2.5}], ["'ksize'", "integer"]),
        ([{"name": "gaussian_blur", "ksize": 4}], ["'gaussian_blur'", "'ksize'", "odd"]),
        ([{"name": "gaussian_blur", "sigma": 0}], ["'sigma'", "out of range"]),
        ([{"name": "clahe", "clip_limit": "high"}], ["'clahe'", "'clip_limit'", "number"]),
        ([{"name": "clahe", "tile_grid_size": [2, 4, 8]}], ["'tile_grid_size'", "[lo, hi]"]),
        ([{"name": "vflip", "p": [0.1, 0.2]}], ["'vflip'", "'p'", "single number"]),
        ([{"name": "vflip", "p": 2}], ["'p'", "out of range"]),
        ([{"name": "vflip", "p": True}], ["'p'", "number"]),
        ([{"name": "elastic", "alpha": float("nan")}], ["'alpha'", "finite"]),
        ([{"hflip": None}], ["#0", "'name'"]),
        (["hflip"], ["#0", "mapping"]),
        ({"name": "hflip"}, ["list"]),
    ],
)
def test_validate_chain_errors(chain: object, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        validate_chain(chain)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in str(info.value)


def test_validate_chain_accepts_documented_forms() -> None:
    validate_chain(
        [{"name": name, **params, "p": 0.5} for name, params in RANDOM_PARAMS.items()]
        + [{"name": "gaussian_blur", "ksize": [3, 7]}, {"name": "gaussian_blur", "ksize": None}]
    )


def test_direct_call_rejects_unknown_parameter_before_work() -> None:
    image, mask = make_pair(np.uint8, ())
    with pytest.raises(ValueError, match="'clahe'.*'cliplimit'"):
        TRANSFORMS["clahe"](image, mask, np.random.default_rng(0), cliplimit=2.0)


@pytest.mark.parametrize("dtype", [np.int32, np.float64, np.bool_, np.int16])
def test_unsupported_dtype_is_named(dtype: type) -> None:
    image = np.zeros((8, 8, 3), dtype)
    mask = np.zeros((8, 8), np.uint8)
    for name in TRANSFORMS:
        with pytest.raises(ValueError, match=np.dtype(dtype).name):
            TRANSFORMS[name](image, mask, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("image", "mask", "match"),
    [
        (np.zeros((8, 8, 2), np.uint8), np.zeros((8, 8), np.uint8), "shape"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8), "does not match"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.int32), "mask must be"),
        (np.zeros((0, 8), np.uint8), np.zeros((0, 8), np.uint8), "empty"),
    ],
)
def test_bad_layouts_are_clear_errors(image: np.ndarray, mask: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        apply_chain(image, mask, [{"name": "blur"}], np.random.default_rng(0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_clahe_increases_local_contrast_for_every_dtype(
    dtype: type, layout: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(0)
    top = 1.0 if dtype is np.float32 else float(np.iinfo(dtype).max)
    base = 0.45 + 0.05 * rng.random((64, 64))  # low contrast
    image = np.repeat(base[..., None], 4, axis=2) * top
    image = (image if dtype is np.float32 else np.rint(image)).astype(dtype)
    image = image[..., 0] if layout == () else np.ascontiguousarray(image[..., : layout[0]])
    mask = np.zeros((64, 64), np.uint8)
    out, out_mask = TRANSFORMS["clahe"](image, mask, rng, clip_limit=3.0, tile_grid_size=4)
    assert out.dtype == image.dtype and out.shape == image.shape and out_mask is mask
    colour = slice(0, 1) if layout in ((), (1,)) else slice(0, 3)
    spread_in = np.std(image.reshape(64, 64, -1)[..., colour] / top)
    spread_out = np.std(out.reshape(64, 64, -1)[..., colour] / top)
    assert spread_out > 2 * spread_in


def test_clahe_uint16_matches_opencv_uint8_on_8bit_content() -> None:
    rng = np.random.default_rng(1)
    img8 = cv2.GaussianBlur((rng.random((96, 128)) * 120 + 40).astype(np.uint8), (0, 0), 2)
    ref = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(img8).astype(float)
    img16 = img8.astype(np.uint16) * 257
    out16, _ = TRANSFORMS["clahe"](img16, np.zeros(img8.shape, np.uint8), rng, tile_grid_size=4)
    diff = np.abs(out16 / 257.0 - ref)
    assert diff.max() <= 1.5 and diff.mean() < 0.5
    f32 = img8.astype(np.float32) / 255
    outf, _ = TRANSFORMS["clahe"](f32, np.zeros(img8.shape, np.uint8), rng, tile_grid_size=4)
    assert np.abs(outf * 255.0 - ref).max() <= 1.5


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (3, 2, 4), (2, 3, 1)])
def test_tiny_images_do_not_crash(shape: tuple[int, ...]) -> None:
    mask = np.zeros(shape[:2], np.uint8)
    for dtype in DTYPES:
        image = np.full(shape, 0.5 if dtype is np.float32 else 100, dtype)
        for name, params in RANDOM_PARAMS.items():
            out, out_mask = TRANSFORMS[name](image, mask, rng_for(0, "t", name), **params)
            assert out.shape == image.shape and out.dtype == image.dtype
            assert set(np.unique(out_mask)) <= {0, IGNORE}


def test_rng_for_is_stable_and_keyed_on_everything() -> None:
    def first(*args: object, **kwargs: object) -> int:
        return int(rng_for(*args, **kwargs).integers(1 << 62))  # type: ignore[arg-type]

    base = first(42, "elastic_v1", 7)
    assert base == first(42, "elastic_v1", 7) == first(42, "elastic_v1", "7")
    others = {
        first(43, "elastic_v1", 7),
        first(42, "elastic_v2", 7),
        first(42, "elastic_v1", 8),
        first(42, "elastic_v1", 7, copy=1),
    }
    assert base not in others and len(others) == 4
    # Pinned: a change here silently changes every augmented dataset.
    assert base == PINNED_RNG_FOR
    with pytest.raises(ValueError, match="seed"):
        rng_for(-1, "v", 1)
    with pytest.raises(ValueError, match="copy"):
        rng_for(1, "v", 1, copy=-2)


PINNED_RNG_FOR = 3350059634025886231


# ---------------------------------------------------------------- plain references
# The fast paths (cv2.flip, addWeighted or one LUT, fog plane by plane, elastic maps built in
# place) against straightforward numpy formulas: masks identical, images within MIN_PSNR.
# References re-draw from a generator with the same key, so they also pin the draw order.

MIN_PSNR = 45.0


def psnr(a: np.ndarray, b: np.ndarray, top: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(top * top / mse)


def full_scale(dtype: type) -> float:
    return 1.0 if dtype is np.float32 else float(np.iinfo(dtype).max)


def photo(
    dtype: type, layout: tuple[int, ...], h: int = 72, w: int = 96, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A textured image (gradients, hard edges, noise) and a mask of its regions."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    base = 0.15 + 0.6 * x * y + 0.2 * ((x * 7).astype(int) % 2)
    values = np.clip(base[..., None] + rng.normal(0, 0.04, (h, w, 4)), 0, 1)
    values[..., 1] = 1 - values[..., 1]
    top = full_scale(dtype)
    image = (values * top if dtype is np.float32 else np.rint(values * top)).astype(dtype)
    image = image[..., 0] if layout == () else np.ascontiguousarray(image[..., : layout[0]])
    mask = (base * 4).astype(np.uint8)
    mask[: h // 8] = IGNORE
    return image, mask


def to_dtype(values: np.ndarray, dtype: type) -> np.ndarray:
    top = full_scale(dtype)
    if dtype is np.float32:
        return np.clip(values, 0, top)
    return np.clip(np.rint(values), 0, top)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda s: f"c{s[0] if s else 0}")
def test_flips_are_array_slicing(dtype: type, layout: tuple[int, ...]) -> None:
    image, mask = photo(dtype, layout)
    for name, cut in (("hflip", np.s_[:, ::-1]), ("vflip", np.s_[::-1])):
        out, out_mask = TRANSFORMS[name](image, mask, np.random.default_rng(0))
        np.testing.assert_array_equal(out, image[cut])
        np.testing.assert_array_equal(out_mask, mask[cut])
        assert out.shape == image.shape and out.flags.c_contiguous and out_mask.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", [(), (3,), (4,)], ids=lambda s: f"c{s[0] if s else 0}")
def test_brightness_contrast_matches_float64_formula(dtype: type, layout: tuple[int, ...]) -> None:
    params = {"brightness": [-0.3, 0.3], "contrast": [0.5, 1.8]}
    top = full_scale(dtype)
    for seed in range(6):
        image, mask = photo(dtype, layout, seed=seed)
        draws = rng_for(seed, "bc", 0)
        b, c = draws.uniform(-0.3, 0.3), draws.uniform(0.5, 1.8)
        out, out_mask = TRANSFORMS["brightness_contrast"](
            image, mask, rng_for(seed, "bc", 0), **params
        )
        colour = image[..., :3] if layout == (4,) else image
        x = colour.astype(np.float64)
        ref = to_dtype((x - x.mean()) * c + x.mean() + b * top, dtype)
        assert out_mask is mask
        assert psnr(out[..., :3] if layout == (4,) else out, ref, top) >= MIN_PSNR


def test_brightness_contrast_uint8_gives_the_float32_formula_bytes() -> None:
    """Whichever uint8 path runs (one affine pass or a LUT), the bytes are the formula's."""
    rng = np.random.default_rng(0)
    ramp = np.tile(np.arange(256, dtype=np.uint8), 3)
    for _ in range(400):
        fill = np.full(3 * int(rng.integers(1, 300)), rng.integers(0, 256), np.uint8)
        image = np.concatenate([ramp, fill]).reshape(1, -1, 3)  # odd lengths: SIMD tails too
        mask = np.zeros(image.shape[:2], np.uint8)
        b, c = float(rng.uniform(-0.5, 0.5)), float(rng.uniform(0.0, 3.0))
        out, _ = TRANSFORMS["brightness_contrast"](image, mask, rng, brightness=b, contrast=c)
        x = image.astype(np.float32)
        mean = np.float32(x.mean(dtype=np.float64))
        ref = np.rint((x - mean) * np.float32(c) + mean + np.float32(b * 255.0))
        np.testing.assert_array_equal(out, np.clip(ref, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_brightness_contrast_pivot_from_sampled_rows_stays_within_tolerance(dtype: type) -> None:
    """Tall images take the contrast pivot from every 8th row: the result stays within the
    stated tolerance of the full-mean formula (PSNR >= 45 dB) and the mask is untouched."""
    image, mask = photo(dtype, (3,), h=512, w=384, seed=3)
    top = full_scale(dtype)
    x = image.astype(np.float64)
    for seed in range(4):
        draws = rng_for(seed, "tall", 0)
        b, c = draws.uniform(-0.2, 0.2), draws.uniform(0.5, 1.8)
        out, out_mask = TRANSFORMS["brightness_contrast"](
            image, mask, rng_for(seed, "tall", 0), brightness=[-0.2, 0.2], contrast=[0.5, 1.8]
        )
        ref = to_dtype((x - x.mean()) * c + x.mean() + b * top, dtype)
        assert out_mask is mask
        assert psnr(out, ref, top) >= MIN_PSNR


def test_brightness_contrast_uint8_same_bytes_without_stringzilla(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The LUT through StringZilla and the OpenCV fallbacks give the same bytes."""
    image, mask = photo(np.uint8, (3,), h=300, w=200)
    runs = []
    for translate in (transforms._TRANSLATE, None):
        monkeypatch.setattr(transforms, "_TRANSLATE", translate)
        for seed in range(8):
            out, _ = TRANSFORMS["brightness_contrast"](
                image, mask, rng_for(seed, "sz", 0), brightness=[-0.5, 0.5], contrast=[0.0, 3.0]
            )
            runs.append(out.tobytes())
    assert runs[:8] == runs[8:]


def test_float_draws_are_numpy_uniform_draws() -> None:
    """A [lo, hi] float parameter draws what rng.uniform(lo, hi) would, from the same stream."""
    ours, numpy_ = rng_for(0, "draw", 0), rng_for(0, "draw", 0)
    for lo, hi in [(-0.1, 0.1), (0.8, 1.2), (-15, 15), (20, 40), (0.5, 1.5)] * 200:
        got, want = transforms._draw([lo, hi], "float", ours), numpy_.uniform(lo, hi)
        assert lo <= got <= hi and abs(got - want) <= 2 * math.ulp(want)
    assert ours.random() == numpy_.random()


BLUR_PARAMS = [{"sigma": 0.5}, {"sigma": 1.3}, {"sigma": 3.0}, {"ksize": 7}, {"sigma": 6.0}]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", [(), (3,), (4,)], ids=lambda s: f"c{s[0] if s else 0}")
def test_gaussian_blur_integers_are_opencv_bit_exact_path(
    dtype: type, layout: tuple[int, ...]
) -> None:
    """uint8 and uint16 are cv2.GaussianBlur itself (its fixed-point path, bit-exact on every
    CPU), colour channels only; flat stays flat."""
    image, mask = photo(dtype, layout, h=120, w=160)
    colour = np.ascontiguousarray(image[..., :3]) if layout == (4,) else image
    for params in BLUR_PARAMS:
        out, out_mask = TRANSFORMS["gaussian_blur"](image, mask, rng_for(0, "g", 0), **params)
        k, s = params.get("ksize", 0), params.get("sigma", 0.0)
        ref = cv2.GaussianBlur(colour, (k, k), s, s, borderType=cv2.BORDER_REFLECT_101)
        got = out[..., :3] if layout == (4,) else out
        np.testing.assert_array_equal(got, ref.reshape(got.shape))
        assert out_mask is mask
        if layout == (4,):
            np.testing.assert_array_equal(out[..., 3], image[..., 3])
    top = np.iinfo(dtype).max
    flat = np.full((40, 50, 3), top, dtype)
    out, _ = TRANSFORMS["gaussian_blur"](flat, mask[:40, :50], rng_for(0, "g", 1), sigma=[0.1, 3])
    assert (out == top).all()


@pytest.mark.parametrize("layout", [(), (3,), (4,)], ids=lambda s: f"c{s[0] if s else 0}")
def test_gaussian_blur_float32_is_within_tolerance_of_opencv(layout: tuple[int, ...]) -> None:
    """float32 is blurred in exact fixed point: within the stated tolerance of cv2.GaussianBlur
    (no value off by more than 1e-4), clipped to [0, 1], flat stays flat, alpha untouched."""
    image, mask = photo(np.float32, layout, h=120, w=160)
    colour = np.ascontiguousarray(image[..., :3]) if layout == (4,) else image
    for params in [*BLUR_PARAMS, {"ksize": 15}, {"sigma": 20.0}, {"ksize": 1}]:
        out, out_mask = TRANSFORMS["gaussian_blur"](image, mask, rng_for(0, "g", 0), **params)
        k, s = params.get("ksize", 0), params.get("sigma", 0.0)
        ref = cv2.GaussianBlur(colour, (k, k), s, s, borderType=cv2.BORDER_REFLECT_101)
        got = out[..., :3] if layout == (4,) else out
        assert np.abs(got - ref.reshape(got.shape)).max() <= 1e-4, params
        assert psnr(got, ref.reshape(got.shape), 1.0) >= 90.0 and out_mask is mask
        if layout == (4,):
            np.testing.assert_array_equal(out[..., 3], image[..., 3])
    flat = np.full((40, 50), 0.7, np.float32)
    out, _ = TRANSFORMS["gaussian_blur"](flat, mask[:40, :50], rng_for(0, "g", 1), sigma=[0.1, 3])
    assert np.abs(out - 0.7).max() <= 2.0**-20  # the taps sum to exactly 1; the grid is 2**-20


def test_opencv_threads_follow_the_environment() -> None:
    """COCO_FOLDS_CV_THREADS sets OpenCV's threads at import (benchmarks measure settings)."""
    code = (
        "import cv2, pipeline.augmenting.transforms as t; print(t.CV_THREADS, cv2.getNumThreads())"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, transforms.THREADS_ENV: "1", "PYTHONPATH": root}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["1", "1"], done.stderr


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", [(), (3,), (4,)], ids=lambda s: f"c{s[0] if s else 0}")
def test_fog_matches_float64_formula(dtype: type, layout: tuple[int, ...]) -> None:
    image, mask = photo(dtype, layout)
    h, w = mask.shape
    out, out_mask = TRANSFORMS["fog"](image, mask, rng_for(5, "fog", 1), intensity=[0.1, 0.6])
    draws = rng_for(5, "fog", 1)
    amount = draws.uniform(0.1, 0.6)
    cell = max(h, w) / 4.0
    coarse = draws.random((math.ceil(h / cell) + 1, math.ceil(w / cell) + 1), dtype=np.float32)
    field = np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    weight = amount * (0.5 + 0.5 * field.astype(np.float64))
    top = full_scale(dtype)
    colour = image[..., :3] if layout == (4,) else image
    weight = weight if layout == () else weight[..., None]
    ref = to_dtype(colour * (1 - weight) + 0.9 * top * weight, dtype)
    assert out_mask is mask
    assert psnr(out[..., :3] if layout == (4,) else out, ref, top) >= MIN_PSNR
    if layout == (4,):
        np.testing.assert_array_equal(out[..., 3], image[..., 3])


def reflect101(index: np.ndarray, size: int) -> np.ndarray:
    if size == 1:
        return np.zeros_like(index)
    period = 2 * size - 2
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


def remap_reference(
    image: np.ndarray, mask: np.ndarray, map_x: np.ndarray, map_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear (image, reflect-101 border) and nearest (mask, IGNORE outside), in float64."""
    h, w = mask.shape
    mx, my = map_x.astype(np.float64), map_y.astype(np.float64)
    x0, y0 = np.floor(mx).astype(int), np.floor(my).astype(int)
    fx, fy = mx - x0, my - y0
    values = image.reshape(h, w, -1).astype(np.float64)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return values[reflect101(yy, h), reflect101(xx, w)]

    wx, wy = fx[..., None], fy[..., None]
    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    out = (top * (1 - wy) + bottom * wy).reshape(image.shape)
    xi, yi = np.rint(mx).astype(int), np.rint(my).astype(int)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    out_mask = np.where(inside, mask[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], IGNORE)
    return out, out_mask.astype(np.uint8)


def integer_gaussian(sigma: float, bits: int) -> np.ndarray:
    """OpenCV's float Gaussian (8 sigma + 1 taps) as integers summing to 2**bits."""
    ksize = int(round(sigma * 8 + 1)) | 1
    taps = np.rint(cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F).ravel() * 2.0**bits)
    taps[ksize // 2] += 2.0**bits - taps.sum()
    return taps


def smooth_reflect101(values: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable convolution with a reflect-101 border, in float64 (exact for integers)."""
    h, w = values.shape
    r = len(taps) // 2
    rows = values[:, reflect101(np.arange(-r, w + r), w)]
    across = sum(t * rows[:, k : k + w] for k, t in enumerate(taps))
    cols = across[reflect101(np.arange(-r, h + r), h)]
    return sum(t * cols[k : k + h] for k, t in enumerate(taps))


def elastic_maps(
    draws: np.random.Generator, h: int, w: int, alpha: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """The documented field: one byte per pixel, low 4 bits x noise and high 4 bits y noise,
    (k - 7.5) / 8; integer taps (2**-10 steps, float32 sums, up to sigma 12; else 2**-20 and
    float64); alpha times that, rounded once to float32, plus the pixel grid."""
    levels = draws.integers(0, 256, (h, w), dtype=np.uint8)
    precise = sigma > transforms._FIELD_F32_MAX_SIGMA
    bits = 20 if precise else 10
    taps = integer_gaussian(sigma, bits)
    scale = alpha / (8.0 * 2.0 ** (2 * bits))
    maps = []
    for noise, grid in ((levels & 15, np.arange(w)[None, :]), (levels >> 4, np.arange(h)[:, None])):
        total = smooth_reflect101(noise.astype(np.float64) - 7.5, taps)  # exact
        if precise:
            field = (total * scale).astype(np.float32)
        else:
            field = total.astype(np.float32) * np.float32(scale)
        maps.append(field + grid.astype(np.float32))
    return maps[0], maps[1]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", [(), (3,), (4,)], ids=lambda s: f"c{s[0] if s else 0}")
@pytest.mark.parametrize("sigma", [[3.0, 5.0], [13.0, 20.0]], ids=["float32", "float64"])
def test_elastic_matches_numpy_remap(
    dtype: type, layout: tuple[int, ...], sigma: list[float]
) -> None:
    """The field as documented (exact integer sums), remapped in float64: the mask identical,
    the image within MIN_PSNR (OpenCV quantises coordinates to 1/32 px)."""
    image, mask = photo(dtype, layout)
    h, w = mask.shape
    params = {"alpha": [20.0, 40.0], "sigma": sigma}
    out, out_mask = TRANSFORMS["elastic"](image, mask, rng_for(2, "el", 3), **params)
    draws = rng_for(2, "el", 3)
    alpha, s = draws.uniform(20.0, 40.0), draws.uniform(*sigma)
    map_x, map_y = elastic_maps(draws, h, w, alpha, s)
    ref, ref_mask = remap_reference(image, mask, map_x, map_y)
    np.testing.assert_array_equal(out_mask, ref_mask)
    assert psnr(out, to_dtype(ref, dtype), full_scale(dtype)) >= MIN_PSNR


def test_elastic_displacement_size_is_as_documented() -> None:
    """RMS displacement about 0.16 * alpha / sigma px (sigma >= 2), as with continuous noise."""
    draws = np.random.default_rng(0)
    for sigma in (3.0, 5.0, 8.0, 20.0):
        map_x, map_y = elastic_maps(draws, 256, 256, 30.0, sigma)
        rms = float(np.sqrt(np.mean((map_x - np.arange(256)) ** 2)))
        assert 0.8 < rms / (0.16 * 30.0 / sigma) < 1.25, (sigma, rms)


@pytest.mark.parametrize("layout", [(), (3,), (4,)], ids=lambda s: f"c{s[0] if s else 0}")
def test_clahe_uint8_is_opencv_clahe_on_lab_lightness(layout: tuple[int, ...]) -> None:
    image, mask = photo(np.uint8, layout)
    out, out_mask = TRANSFORMS["clahe"](image, mask, rng_for(0, "c", 0), tile_grid_size=4)
    op = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))
    if layout == ():
        ref = op.apply(image)
    else:
        lab = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_BGR2LAB)
        lab[..., 0] = op.apply(lab[..., 0].copy())
        ref = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    np.testing.assert_array_equal(out[..., :3] if layout == (4,) else out, ref)
    assert out_mask is mask


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_same_bytes_whatever_opencv_thread_count(name: str) -> None:
    image, mask = photo(np.uint8, (3,), h=480, w=640)  # large enough for OpenCV to split work
    results = []
    for threads in (1, 2, 0):
        cv2.setNumThreads(threads)
        try:
            out = TRANSFORMS[name](image, mask, rng_for(4, "t", name), **RANDOM_PARAMS[name])
        finally:
            cv2.setNumThreads(CV_THREADS)
        results.append(out[0].tobytes() + out[1].tobytes())
    assert results[0] == results[1] == results[2]


# ---------------------------------------------------------------- property-based

_STEP = st.one_of(
    st.builds(
        lambda c, t: {"name": "clahe", "clip_limit": c, "tile_grid_size": t},
        st.floats(0.0, 8.0),
        st.integers(1, 8),
    ),
    st.builds(
        lambda a, s: {"name": "elastic", "alpha": a, "sigma": s},
        st.floats(0.0, 100.0),
        st.floats(0.5, 8.0),
    ),
    st.builds(lambda k: {"name": "blur", "ksize": k}, st.integers(1, 9)),
    st.builds(lambda s: {"name": "gaussian_blur", "sigma": [s, s + 1]}, st.floats(0.1, 3.0)),
    st.builds(lambda i: {"name": "fog", "intensity": i}, st.floats(0.0, 1.0)),
    st.just({"name": "hflip"}),
    st.just({"name": "vflip", "p": 0.5}),
    st.builds(
        lambda a, s: {"name": "rotate_scale", "angle": [-a, a], "scale": s},
        st.floats(0.0, 180.0),
        st.floats(0.25, 3.0),
    ),
    st.builds(
        lambda b, c: {"name": "brightness_contrast", "brightness": b, "contrast": c},
        st.floats(-1.0, 1.0),
        st.floats(0.0, 3.0),
    ),
)


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    dtype = draw(st.sampled_from(DTYPES))
    layout = draw(st.sampled_from(LAYOUTS))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = (h, w, *layout)
    if dtype is np.float32:
        image = rng.random(shape, dtype=np.float32)
    else:
        image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    classes = np.array(draw(st.lists(st.sampled_from([0, 1, 2, 5, 9, IGNORE]), min_size=1)))
    mask = classes[rng.integers(0, len(classes), (h, w))].astype(np.uint8)
    return image, mask


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(pair=_pairs(), chain=st.lists(_STEP, min_size=1, max_size=4), seed=st.integers(0, 99))
def test_random_chains_keep_invariants(
    pair: tuple[np.ndarray, np.ndarray], chain: list[dict], seed: int
) -> None:
    image, mask = pair
    out, out_mask = apply_chain(image, mask, chain, rng_for(seed, "hyp", 0))
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out_mask.shape == mask.shape and out_mask.dtype == np.uint8
    assert set(np.unique(out_mask)) <= set(np.unique(mask)) | {IGNORE}
    if image.dtype == np.float32:
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    again, again_mask = apply_chain(image, mask, chain, rng_for(seed, "hyp", 0))
    assert again.tobytes() == out.tobytes() and again_mask.tobytes() == out_mask.tobytes()
    if all(step["name"] in PHOTOMETRIC for step in chain):
        assert out_mask is mask
