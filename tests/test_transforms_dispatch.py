"""The same bytes on every CPU: each transform, and the params.yaml chains, under every setting
that picks other machine code (OpenCV's dispatch level, Intel IPP's own, OpenCV's threads,
numpy's dispatch, OpenBLAS's core type, glibc's libm variants) give the bytes of a default run.

One child process per setting (the settings are read at import) computes every case and
prints their digests; the parent compares them with the default run's. A child also reports
what it ran with, so a setting that did not take effect fails instead of passing vacuously.
Run ``python -m tests.test_transforms_dispatch`` to print a child's digests.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
THREADS_ENV = (
    "COCO_FOLDS_CV_THREADS"  # pipeline.augmenting.transforms.THREADS_ENV, read at its import
)

# OpenCV's names (cv2.getCPUFeaturesLine); each level drops the previous one's and more.
_NO_AVX512 = "AVX512-SKX,AVX512-CLX"
_NO_AVX2 = _NO_AVX512 + ",AVX2,FMA3,FP16"
_NO_AVX = _NO_AVX2 + ",AVX"
_NO_SSE42 = _NO_AVX + ",SSE4.2,POPCNT"
_NO_SSE41 = _NO_SSE42 + ",SSE4.1,SSSE3"  # OpenCV's SSE3 baseline: nothing dispatched
# numpy 2.4's group names; X86_V2 is its baseline.
_NPY_V3 = "X86_V4,AVX512_ICL,AVX512_SPR"
_NPY_V2 = "X86_V3," + _NPY_V3
_GLIBC_NO_FMA = "glibc.cpu.hwcaps=-AVX512F,-AVX2,-FMA,-AVX"

FAST: dict[str, dict[str, str]] = {
    "opencv-no-avx512": {"OPENCV_CPU_DISABLE": _NO_AVX512},
    "opencv-no-avx2-fma": {"OPENCV_CPU_DISABLE": _NO_AVX2},
    "opencv-sse3-baseline": {"OPENCV_CPU_DISABLE": _NO_SSE41},
    "ipp-disabled": {"OPENCV_IPP": "disabled"},
    "ipp-sse42": {"OPENCV_IPP": "sse42"},
    "cv-threads-1": {THREADS_ENV: "1"},
}
SLOW: dict[str, dict[str, str]] = {
    "opencv-no-avx": {"OPENCV_CPU_DISABLE": _NO_AVX},
    "opencv-no-sse4.2": {"OPENCV_CPU_DISABLE": _NO_SSE42},
    "ipp-avx2": {"OPENCV_IPP": "avx2"},
    "cv-threads-8": {THREADS_ENV: "8"},
    "numpy-x86-v3": {"NPY_DISABLE_CPU_FEATURES": _NPY_V3},
    "numpy-x86-v2": {"NPY_DISABLE_CPU_FEATURES": _NPY_V2},
    "openblas-nehalem": {"OPENBLAS_CORETYPE": "Nehalem"},
    # libm's exp, sin, cos... without their FMA / AVX2 variants (glibc's own dispatch)
    "glibc-no-fma": {"GLIBC_TUNABLES": _GLIBC_NO_FMA},
    "oldest-everything": {
        "OPENCV_CPU_DISABLE": _NO_SSE41,
        "OPENCV_IPP": "sse42",
        THREADS_ENV: "1",
        "NPY_DISABLE_CPU_FEATURES": _NPY_V2,
        "OPENBLAS_CORETYPE": "Nehalem",
        "GLIBC_TUNABLES": _GLIBC_NO_FMA,
    },
}
CONTROLLED = {key for setting in (*FAST.values(), *SLOW.values()) for key in setting}

# Parameter sets per transform (each run twice, with two generators): the params.yaml ranges
# and wider ones, both of gaussian_blur's kernel rules, box sizes odd and even, both elastic
# field precisions (sigma up to 12 and above). A new transform must be added here.
DRAWS: dict[str, list[dict[str, Any]]] = {
    "hflip": [{}],
    "vflip": [{}],
    "rotate_scale": [
        {"angle": [-15, 15], "scale": [0.9, 1.1]},
        {"angle": [-180, 180], "scale": [0.4, 2.5]},
    ],
    "elastic": [
        {"alpha": [20, 40], "sigma": 5},
        {"alpha": [100, 400], "sigma": [2, 10]},
        {"alpha": [200, 600], "sigma": [13, 30]},
    ],
    "brightness_contrast": [
        {"brightness": [-0.1, 0.1], "contrast": [0.8, 1.2]},
        {"brightness": [-0.6, 0.6], "contrast": [0.0, 3.0]},
    ],
    "fog": [{"intensity": [0.1, 0.3]}, {"intensity": [0.5, 1.0]}],
    "gaussian_blur": [{"sigma": [0.5, 1.5]}, {"sigma": [2.0, 7.0]}, {"ksize": [3, 15]}],
    "clahe": [
        {"clip_limit": 2.0, "tile_grid_size": 8},
        {"clip_limit": [1.0, 6.0], "tile_grid_size": [2, 7]},
    ],
    "blur": [{"ksize": [2, 9]}, {"ksize": [10, 31]}],
}
CHAINS = ("geometric", "flip_clahe")


# ---------------------------------------------------------------- the child


def synthetic_pair(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A BGR uint8 photo stand-in (gradients, hard edges, a disc, fine texture, noise) and a
    mask of its regions: classes 0-3 and IGNORE."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w], dtype=np.float64)[:, None, None]
    stripes = ((x * 9).astype(int) % 2).astype(np.float64)
    disc = (x - 0.6) ** 2 + (y - 0.45) ** 2 < 0.06
    base = 0.2 + 0.5 * x * y + 0.2 * stripes + 0.25 * disc
    texture = 0.05 * np.sign(np.sin(x * w / 1.7) * np.sin(y * h / 2.3))
    values = base[..., None] + texture[..., None] + rng.normal(0, 0.04, (h, w, 3))
    values[..., 1] = 1.0 - values[..., 1]
    image = np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8)
    mask = (stripes + 2 * disc).astype(np.uint8)
    mask[: h // 9] = 255
    return image, mask


def layouts(image: np.ndarray, label: str) -> dict[str, np.ndarray]:
    """uint8, uint16 and float32; gray, BGR and BGRA (alpha a ramp) of one BGR uint8 image."""
    h, w = image.shape[:2]
    alpha = np.linspace(0, 255, h * w).reshape(h, w, 1).astype(np.uint8)
    out = {}
    for dtype, name in ((np.uint8, "u8"), (np.uint16, "u16"), (np.float32, "f32")):
        wide = image.astype(dtype) * dtype(257) if dtype is np.uint16 else image.astype(dtype)
        if dtype is np.float32:
            wide /= np.float32(255)
        top = np.iinfo(dtype).max if dtype is not np.float32 else 1.0
        bgra = np.concatenate([wide, (alpha / 255.0 * top).astype(dtype)], axis=2)
        out[f"{name}-bgr-{label}"] = wide
        out[f"{name}-gray-{label}"] = np.ascontiguousarray(wide[..., 1])
        out[f"{name}-bgra-{label}"] = np.ascontiguousarray(bgra)
    return out


def inputs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A mid-sized and a narrow pair (narrow rows leave SIMD tails of other lengths)."""
    pairs = {}
    for label, (h, w) in (("mid", (149, 211)), ("narrow", (37, 23))):
        image, mask = synthetic_pair(h, w, seed=h)
        pairs.update({key: (value, mask) for key, value in layouts(image, label).items()})
    return pairs


def digest(image: np.ndarray, mask: np.ndarray) -> str:
    image_hash = hashlib.sha256(f"{image.dtype}{image.shape}".encode() + image.tobytes())
    return f"image {image_hash.hexdigest()[:16]} mask {hashlib.sha256(mask).hexdigest()[:16]}"


def transform_digests() -> dict[str, str]:
    from pipeline.augmenting.transforms import TRANSFORMS, rng_for

    missing = sorted(set(TRANSFORMS) - set(DRAWS))
    if missing:
        raise SystemExit(f"add parameter draws for {missing} to DRAWS")
    out = {}
    for case, (image, mask) in inputs().items():
        for name, draws in DRAWS.items():
            for i, params in enumerate(draws):
                for copy in range(2):
                    rng = rng_for(i, name, case, copy)
                    out[f"{name} {params} {case} #{copy}"] = digest(
                        *TRANSFORMS[name](image, mask, rng, **params)
                    )
    out.update(without_stringzilla())
    return out


def without_stringzilla() -> dict[str, str]:
    """brightness_contrast's OpenCV fallbacks for uint8 (affine ops or cv2.LUT)."""
    from pipeline.augmenting import transforms

    out, translate = {}, transforms._TRANSLATE
    transforms._TRANSLATE = None
    try:
        for case, (image, mask) in inputs().items():
            for i, params in enumerate(DRAWS["brightness_contrast"]):
                rng = transforms.rng_for(i, "no-stringzilla", case)
                result = transforms.TRANSFORMS["brightness_contrast"](image, mask, rng, **params)
                out[f"brightness_contrast {params} {case} without stringzilla"] = digest(*result)
    finally:
        transforms._TRANSLATE = translate
    return out


def chain_digests() -> dict[str, str]:
    """The params.yaml variants as the augment stage makes them: encoded image and mask files."""
    from pipeline.files.params import load_params
    from pipeline.stages import augment

    params = load_params(ROOT / "params.yaml")
    palette = np.arange(256 * 3, dtype=np.uint8).reshape(256, 3)
    out = {}
    for image_id in range(4):
        image, mask = synthetic_pair(180, 260, seed=100 + image_id)
        for dtype in (np.uint8, np.uint16):
            wide = image.astype(np.uint16) * np.uint16(257) if dtype is np.uint16 else image
            for name in CHAINS:
                variant = augment.check_variant(params, name)
                files = augment.make_variant(wide, mask, variant, palette, (image_id, "x.png"))
                for rel, data in files:
                    key = f"{name} {np.dtype(dtype).name} id {image_id} {rel}"
                    out[key] = hashlib.sha256(data).hexdigest()[:16]
    return out


def runtime() -> dict[str, Any]:
    """What this process runs with, to check that a setting took effect."""
    import cv2
    from numpy._core._multiarray_umath import __cpu_features__

    import pipeline.augmenting.transforms  # noqa: F401 - sets OpenCV's threads at import

    libm = [math.sin(i * 1e-3).hex() for i in range(30000)]  # ~20 differ without FMA
    info: dict[str, Any] = {
        "opencv_features": cv2.getCPUFeaturesLine(),
        "ipp": [cv2.ipp.useIPP(), cv2.ipp.getIppVersion()],
        "cv_threads": cv2.getNumThreads(),
        "numpy_features": {k: bool(v) for k, v in __cpu_features__.items()},
        "libm": hashlib.sha256(" ".join(libm).encode()).hexdigest(),
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas_cores"] = sorted({str(lib.get("architecture")) for lib in threadpool_info()})
    except ImportError:  # pragma: no cover - threadpoolctl comes with the test tools
        info["blas_cores"] = None
    return info


def child_main() -> int:
    print(
        json.dumps(
            {"runtime": runtime(), "transforms": transform_digests(), "chains": chain_digests()}
        )
    )
    return 0


# ---------------------------------------------------------------- the parent


@functools.cache
def run_child(setting: tuple[tuple[str, str], ...], attempt: int = 0) -> dict[str, Any]:
    """Digests of one child process run with ``setting`` (cached per test process and
    ``attempt``)."""
    env = {key: value for key, value in os.environ.items() if key not in CONTROLLED}
    env.update(dict(setting))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "tests.test_transforms_dispatch"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def default_run() -> dict[str, Any]:
    return run_child(())


def feature_state(line: str) -> dict[str, bool]:
    """cv2.getCPUFeaturesLine as {feature: enabled}: ``*`` marks dispatched, ``?`` disabled."""
    return {token.strip("*?"): not token.endswith("?") for token in line.split()}


def setting_problem(setting: dict[str, str], child: dict[str, Any]) -> str | None:
    """Why the child did not run with ``setting`` (None if it did), or skip if this CPU has
    none of the features the setting turns off."""
    base, got = default_run()["runtime"], child["runtime"]
    if "OPENCV_CPU_DISABLE" in setting:
        names = setting["OPENCV_CPU_DISABLE"].split(",")
        had = [n for n in names if feature_state(base["opencv_features"]).get(n)]
        if not had:
            pytest.skip(f"this CPU has none of {names} to turn off")
        still = [n for n in had if feature_state(got["opencv_features"]).get(n)]
        if still:
            return f"OpenCV still uses {still}: {got['opencv_features']}"
    if "NPY_DISABLE_CPU_FEATURES" in setting:
        names = setting["NPY_DISABLE_CPU_FEATURES"].split(",")
        had = [n for n in names if base["numpy_features"].get(n)]
        if not had:
            pytest.skip(f"this CPU has none of {names} to turn off")
        still = [n for n in had if got["numpy_features"].get(n)]
        if still:
            return f"numpy still uses {still}"
    ipp = setting.get("OPENCV_IPP")
    if ipp == "disabled" and got["ipp"][0]:
        return "IPP still enabled"
    level = {"sse42": "SSE4.2", "avx2": "AVX2"}.get(str(ipp))
    if level and level not in got["ipp"][1]:
        return f"IPP did not switch to {level}: {got['ipp'][1]}"
    if THREADS_ENV in setting and got["cv_threads"] != int(setting[THREADS_ENV]):
        return f"OpenCV runs {got['cv_threads']} threads, not {setting[THREADS_ENV]}"
    if "GLIBC_TUNABLES" in setting and got["libm"] == base["libm"]:
        pytest.skip("libm computes the same here without FMA and AVX2 (no such variants?)")
    core = setting.get("OPENBLAS_CORETYPE")
    if core and got["blas_cores"] is not None and core not in got["blas_cores"]:
        return f"OpenBLAS core types {got['blas_cores']}, not {core}"
    return None


def differences(section: str, child: dict[str, Any]) -> list[str]:
    expected = default_run()[section]
    assert child[section].keys() == expected.keys()
    assert len(expected) > 10
    return [
        f"{key}: {child[section][key]} != default {value}"
        for key, value in expected.items()
        if child[section][key] != value
    ]


def check_setting(setting: dict[str, str], section: str) -> None:
    child = run_child(tuple(sorted(setting.items())))
    problem = setting_problem(setting, child)
    assert problem is None, problem
    diff = differences(section, child)
    total = len(child[section])
    assert not diff, f"{len(diff)} of {total} differ:\n" + "\n".join(diff[:40])


def _params(settings: dict[str, dict[str, str]], slow: bool) -> list[Any]:
    marks = [pytest.mark.slow] if slow else []
    return [pytest.param(value, id=key, marks=marks) for key, value in settings.items()]


SETTINGS = _params(FAST, slow=False) + _params(SLOW, slow=True)


@pytest.mark.parametrize("setting", SETTINGS)
def test_every_transform_same_bytes(setting: dict[str, str]) -> None:
    """Every registered transform: uint8, uint16 and float32; gray, BGR and BGRA; two sizes."""
    check_setting(setting, "transforms")


@pytest.mark.parametrize("setting", SETTINGS)
def test_params_yaml_chains_same_files(setting: dict[str, str]) -> None:
    """The ``geometric`` and ``flip_clahe`` variants of params.yaml, as encoded files."""
    check_setting(setting, "chains")


def test_default_runs_agree_and_cover_every_transform() -> None:
    """Two default runs agree (the digests are not noise), and every transform and chain is
    in them."""
    from pipeline.augmenting.transforms import TRANSFORMS

    first = default_run()
    second = run_child((), attempt=1)
    assert first["transforms"] == second["transforms"] and first["chains"] == second["chains"]
    names = {key.split()[0] for key in first["transforms"]}
    assert names == set(TRANSFORMS)
    assert {key.split()[0] for key in first["chains"]} == set(CHAINS)
    # Not all alike: the cases really exercise the transforms.
    assert len(set(first["transforms"].values())) > 0.8 * len(first["transforms"])


if __name__ == "__main__":
    sys.exit(child_main())
