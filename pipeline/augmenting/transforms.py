"""Offline augmentation of (image, mask) pairs: pure, seeded, dtype-preserving.

Every transform has the signature ``fn(image, mask, rng, **params) -> (image, mask)`` and is
registered by name in :data:`TRANSFORMS`; :func:`apply_chain` runs a list of
``{"name": ..., **params}`` steps (as written in ``params.yaml`` under
``augment.variants.<name>.transforms``) after :func:`validate_chain` has checked all of them, so
a typo fails before any image is touched. Every transform accepts ``p`` (probability, default
1.0); a step with ``p < 1`` draws one number from ``rng`` to decide, a step with ``p == 1`` draws
none. A numeric parameter is a scalar (fixed) or a ``[lo, hi]`` list sampled from ``rng`` per
call (integers inclusive of both ends).

dtype / channel rule
--------------------
* Images may be ``uint8``, ``uint16`` or ``float32`` (assumed in [0, 1]); any other dtype (int32,
  float64, bool, ...) is a ``ValueError`` naming the dtype. Layouts: grayscale ``(H, W)``,
  ``(H, W, 1)``, BGR ``(H, W, 3)`` or BGRA ``(H, W, 4)``. The output has the input's dtype and
  exact shape; photometric results are rounded (integers) and clipped to the dtype's range
  (255, 65535 or [0, 1]).
* Masks are 2-D ``uint8`` class indices of the image's height and width (0 background, 1..N
  classes, 255 ignore).
* Photometric transforms (``clahe``, ``blur``, ``gaussian_blur``, ``fog``,
  ``brightness_contrast``) change the colour channels only: the alpha channel of BGRA is
  returned untouched and the mask is returned as the same object.
* Geometric transforms (``hflip``, ``vflip``, ``rotate_scale``, ``elastic``) move image (alpha
  included) and mask together. The mask is always resampled nearest-neighbour, so it never gains
  a class that was not there; mask pixels that come from outside the image are 255 (ignore).
  ``rotate_scale`` pads the image with 0 (alpha 0 too); ``elastic`` reflects the image at its
  border (BORDER_REFLECT_101, no black seams from a few-pixel displacement) while the matching
  mask pixels are still 255, so the reflected content is never trained on. Both resample
  through cv2.remap, which limits them to sides below 32767 pixels.
* CLAHE: ``uint8`` uses OpenCV's CLAHE directly (on gray, or on L of 8-bit LAB for colour).
  ``uint16`` and ``float32`` are converted explicitly to float in [0, 1] (colour: float LAB, L
  scaled to [0, 1]) and equalised by a numpy CLAHE with OpenCV's algorithm and a 256-bin
  histogram, evaluated with linear interpolation between bins so 16-bit precision survives. Not
  OpenCV's CV_16UC1 CLAHE on purpose: with 65536 bins its clip limit rounds up to one count per
  bin for usual tile sizes, so ``clip_limit`` stops limiting and noise is amplified; the 256-bin
  version gives the same ``clip_limit`` the same meaning for every dtype.

Determinism: outputs depend only on the inputs and the generator state, bit for bit, on every
x86-64 CPU (tests/test_transforms_dispatch.py; docs/transforms.md). Use :func:`rng_for` for one
generator per (seed, variant, image id, copy), never a shared global one (PCG64: the same
stream on every platform). OpenCV, numpy and libm pick machine code by CPU, and float code
rounds differently with and without FMA or at other vector widths, so:

* Intel IPP (its own SSE4.2 / AVX2 / AVX-512 choice) is off in every transform call, per thread.
* Only OpenCV paths whose results cannot depend on the CPU: integer and fixed-point ones
  (GaussianBlur on 8/16 bits, CLAHE, 8-bit LAB, box blur, remap with fixed-point maps), single
  IEEE operations (multiply, add, convertMaps' rounding), and float sums that are exact because
  every operand is an integer or a short binary fraction (:func:`_displacement`,
  :func:`_gaussian_unit`). Not warpAffine, remap with float maps, sepFilter2D on 8 bits, nor
  GaussianBlur on float: their results change between AVX2 and SSE4.1.
* numpy only for element-wise arithmetic, rounding and integer reductions (one IEEE rounding
  per operation whatever its SIMD level), never its transcendental functions or BLAS; cos and
  sin in Python arithmetic, not libm's (:func:`_cos_sin_degrees`).

Results do not depend on OpenCV's thread count. It is set to two threads at import (one on a
one-core machine; ``COCO_FOLDS_CV_THREADS`` overrides it, which is how the stage's fork-server
workers get another setting): measured with ``benchmarks/bench_transforms.py`` section 4 on two
cores (augment.run of ``geometric``, 168 pairs), two threads make one worker process about 10%
faster than one thread or none (7.3 s vs 8.1-8.3 s) and cost nothing measurable with one worker
per core (5.3-5.4 s for 0, 1 and 2 threads, the same CPU time); OpenCV's default (a thread per
core in every worker) would oversubscribe a process pool on a many-core machine.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipeline.files.contracts import IGNORE
from pipeline.files.errors import DatasetError

THREADS_ENV = "COCO_FOLDS_CV_THREADS"  # overrides CV_THREADS (a benchmark measures choices)


def _cv_threads() -> int:
    value = os.environ.get(THREADS_ENV, "").strip()
    if value.isdigit():
        return int(value)
    return min(2, os.cpu_count() or 1)


CV_THREADS = _cv_threads()
cv2.setNumThreads(CV_THREADS)

_MAX_VALUE: dict[np.dtype, float] = {
    np.dtype(np.uint8): 255.0,
    np.dtype(np.uint16): 65535.0,
    np.dtype(np.float32): 1.0,
}
_CV_DEPTH: dict[np.dtype, int] = {np.dtype(np.uint8): cv2.CV_8U, np.dtype(np.uint16): cv2.CV_16U}
_REMAP_MAX_SIDE = 32767  # cv2.remap asserts every side < SHRT_MAX

Transform = Callable[..., tuple[np.ndarray, np.ndarray]]
TRANSFORMS: dict[str, Transform] = {}
# name -> the transform without its argument check, for apply_chain (chains are checked once)
_RUN: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator, Mapping], Any]] = {}
# name -> {param: default}, for docs and for callers that list what a transform takes.
TRANSFORM_PARAMS: dict[str, dict[str, Any]] = {}


# ---------------------------------------------------------------- parameters and validation


@dataclass(frozen=True)
class _Param:
    kind: str  # "float" | "int" | "odd" (odd integer)
    lo: float
    hi: float
    default: Any
    lo_open: bool = False  # lo itself is not allowed
    ranged: bool = True  # may be a [lo, hi] list


_P = _Param("float", 0.0, 1.0, 1.0, ranged=False)
_SPECS: dict[str, dict[str, _Param]] = {}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _scalar_problem(value: Any, spec: _Param) -> str | None:
    kind = type(value)
    if kind is not float and kind is not int:  # plain Python numbers skip the generic checks
        if not _is_number(value):
            return f"got {value!r}, expected a number"
        if spec.kind in ("int", "odd") and not isinstance(value, (int, np.integer)):
            return f"got {value!r}, expected an integer"
    elif kind is float and spec.kind != "float":
        return f"got {value!r}, expected an integer"
    if not math.isfinite(value):
        return f"got {value!r}, expected a finite number"
    below = value <= spec.lo if spec.lo_open else value < spec.lo
    if below or value > spec.hi:
        left = "(" if spec.lo_open else "["
        return f"{value!r} is out of range {left}{spec.lo:g}, {spec.hi:g}]"
    return None


def _value_problem(value: Any, spec: _Param) -> str | None:
    if value is None and spec.default is None:
        return None
    if isinstance(value, (list, tuple)):
        if not spec.ranged:
            return f"got {value!r}, expected a single number (not a range)"
        if len(value) != 2:
            return f"got {value!r}, a range must be [lo, hi]"
        for v in value:
            problem = _scalar_problem(v, spec)
            if problem:
                return problem
        lo, hi = value
        if lo > hi:
            return f"range {list(value)!r} has lo > hi"
        if spec.kind == "odd" and lo == hi and lo % 2 == 0:
            return f"range {list(value)!r} contains no odd integer"
        return None
    problem = _scalar_problem(value, spec)
    if problem is None and spec.kind == "odd" and value % 2 == 0:
        return f"got {value!r}, expected an odd integer"
    return problem


def _params_problem(name: str, params: Mapping[str, Any]) -> str | None:
    spec = _SPECS[name]
    for key, value in params.items():
        if key not in spec:
            return f"unknown parameter {key!r} (expected one of: {', '.join(spec)})"
        problem = _value_problem(value, spec[key])
        if problem:
            return f"parameter {key!r}: {problem}"
    return None


def validate_chain(chain: Sequence[Mapping[str, Any]]) -> None:
    """Check a whole chain before any image is read, so one bad step costs no work."""
    if not isinstance(chain, (list, tuple)):
        raise DatasetError(
            f"augment transforms must be a list of steps, got {type(chain).__name__}"
        )
    for i, step in enumerate(chain):
        if not isinstance(step, Mapping):
            raise DatasetError(f"augment transform #{i}: expected a mapping, got {step!r}")
        name = step.get("name")
        if not isinstance(name, str):
            raise DatasetError(f"augment transform #{i}: missing 'name' (a string)")
        if name not in TRANSFORMS:
            raise DatasetError(
                f"augment transform #{i} ({name!r}): unknown transform "
                f"(expected one of: {', '.join(sorted(TRANSFORMS))})"
            )
        problem = _params_problem(name, {k: v for k, v in step.items() if k != "name"})
        if problem:
            raise DatasetError(f"augment transform #{i} ({name!r}): {problem}")


def _draw(value: Any, kind: str, rng: np.random.Generator) -> Any:
    """A scalar is fixed and draws nothing; a [lo, hi] range draws exactly one number."""
    if not isinstance(value, (list, tuple)):
        return value
    lo, hi = value
    if kind == "float":
        # rng.uniform(lo, hi) computes lo + (hi - lo) * random() in C; its argument handling
        # costs four times the draw. Same draw, same stream position; on x86-64 the same bits.
        lo = float(lo)
        return lo + (float(hi) - lo) * rng.random()
    if kind == "int":
        return int(rng.integers(lo, hi, endpoint=True))
    first = int(lo) | 1  # smallest odd >= lo
    return first + 2 * int(rng.integers(0, (int(hi) - first) // 2, endpoint=True))


# ---------------------------------------------------------------- image helpers


def _check_pair(image: Any, mask: Any) -> None:
    if not isinstance(image, np.ndarray):
        raise DatasetError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype not in _MAX_VALUE:
        raise DatasetError(
            f"image dtype {image.dtype} is not supported; expected uint8, uint16 or float32"
        )
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
        raise DatasetError(
            f"image shape {image.shape} is not supported; expected (H, W), (H, W, 1), "
            "(H, W, 3) BGR or (H, W, 4) BGRA"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise DatasetError(f"image shape {image.shape} is empty")
    if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or mask.ndim != 2:
        got = f"{mask.dtype} {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise DatasetError(f"mask must be a 2-D uint8 array, got {got}")
    if mask.shape != image.shape[:2]:
        raise DatasetError(f"mask shape {mask.shape} does not match image shape {image.shape}")


def _split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour part as OpenCV wants it ((H, W) or (H, W, 3)) and the alpha plane, if any."""
    if image.ndim == 2:
        return image, None
    if image.shape[2] == 1:
        return np.ascontiguousarray(image[:, :, 0]), None
    if image.shape[2] == 3:
        return image, None
    return np.ascontiguousarray(image[:, :, :3]), image[:, :, 3:]


def _join_alpha(colour: np.ndarray, alpha: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    if alpha is not None:
        return np.concatenate([colour, alpha], axis=2)
    return colour.reshape(like.shape)


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip float results into ``dtype``'s native range."""
    top = _MAX_VALUE[dtype]
    if dtype == np.float32:
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    return np.clip(np.rint(values), 0, top).astype(dtype)


def _restore_shape(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    # OpenCV drops a trailing channel axis of size 1.
    return out.reshape(like.shape)


_SCRATCH = threading.local()
_SCRATCH_BYTES = 64 << 20  # kept per thread at most: a 1 Mpx photo's maps and float blur


def _scratch(key: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A work array that this thread's next call reuses; never returned to a caller.

    Fresh arrays of megabytes cost a page fault per 4 KiB, here about 0.3 ms per MB: more than
    the remap or filter done in them. Beyond 64 MB kept per thread, arrays are fresh.
    """
    size = math.prod(shape) * np.dtype(dtype).itemsize
    kept: dict[str, np.ndarray] = _SCRATCH.__dict__.setdefault("arrays", {})
    buffer = kept.get(key)
    if buffer is None or buffer.size < size:
        kept.pop(key, None)
        buffer = np.empty(size, np.uint8)
        if size + sum(b.size for b in kept.values()) <= _SCRATCH_BYTES:
            kept[key] = buffer
    return buffer[:size].view(dtype).reshape(shape)


# ---------------------------------------------------------------- registry


@contextlib.contextmanager
def _without_ipp() -> Iterator[None]:
    """OpenCV without Intel IPP in this thread for the duration, then as it was.

    IPP picks its own SSE4.2 / AVX2 / AVX-512 code whatever OpenCV's dispatch says
    (``OPENCV_IPP=sse42`` changes warpAffine and resize results), so no transform may run it.
    ``cv2.ipp.setUseIPP`` is per thread: set here, on every call, not once at import.
    """
    previous = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        yield
    finally:
        cv2.ipp.setUseIPP(previous)


def _register(
    name: str, *, moves_only: bool = False, **params: _Param
) -> Callable[[Transform], Transform]:
    """Wrap a core transform with validation, the ``p`` coin, defaults and no IPP.

    ``moves_only``: the transform only moves bytes (a flip), which every IPP code does alike,
    so it keeps IPP where the caller has it (IPP's flip is several times faster).
    """

    def decorate(core: Transform) -> Transform:
        _SPECS[name] = {**params, "p": _P}
        TRANSFORM_PARAMS[name] = {k: s.default for k, s in _SPECS[name].items()}

        def run(
            image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, kwargs: Mapping
        ) -> tuple[np.ndarray, np.ndarray]:
            p = kwargs.get("p", 1.0)
            if p < 1.0 and rng.random() >= p:
                return image, mask
            values = {k: kwargs.get(k, s.default) for k, s in params.items()}
            with contextlib.nullcontext() if moves_only else _without_ipp():
                return core(np.ascontiguousarray(image), mask, rng, **values)

        @functools.wraps(core)
        def transform(
            image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, **kwargs: Any
        ) -> tuple[np.ndarray, np.ndarray]:
            problem = _params_problem(name, kwargs)
            if problem:
                raise DatasetError(f"transform {name!r}: {problem}")
            _check_pair(image, mask)
            return run(image, mask, rng, kwargs)

        _RUN[name] = run
        TRANSFORMS[name] = transform
        return transform

    return decorate


def apply_chain(
    image: np.ndarray,
    mask: np.ndarray,
    chain: Sequence[Mapping[str, Any]],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the steps in order; inputs are never modified in place.

    The chain must have passed :func:`validate_chain` (the augment stage checks each variant's
    chain once per run, before any image is read): it is not checked again per image and copy.
    """
    _check_pair(image, mask)
    for step in chain:
        image, mask = _RUN[step["name"]](image, mask, rng, step)
    return image, mask


def rng_for(seed: int, variant: str, image_id: int | str, copy: int = 0) -> np.random.Generator:
    """One independent generator per item, stable across runs, processes and item order.

    sha256 (not ``hash()``, which is salted per process) of the whole key feeds a SeedSequence.
    ``image_id`` is keyed by its text, so 7 and "7" give the same generator.
    """
    for label, value in (("seed", seed), ("copy", copy)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{label} must be a non-negative integer, got {value!r}")
    key = json.dumps([int(seed), str(variant), str(image_id), int(copy)])
    entropy = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest(), "little")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


# ---------------------------------------------------------------- photometric


def _clahe_unit(values: np.ndarray, clip_limit: float, tiles: int) -> np.ndarray:
    """CLAHE of a float image in [0, 1]: OpenCV's algorithm, 256 bins, interpolated LUTs."""
    bins = 256
    h, w = values.shape
    pos = np.clip(values, 0.0, 1.0).astype(np.float32) * np.float32(bins - 1)
    idx = np.rint(pos).astype(np.intp)
    pad_y, pad_x = (-h) % tiles, (-w) % tiles
    padded = np.pad(idx, ((0, pad_y), (0, pad_x)), mode="reflect") if pad_y or pad_x else idx
    th, tw = padded.shape[0] // tiles, padded.shape[1] // tiles
    area = th * tw
    n = tiles * tiles
    per_tile = padded.reshape(tiles, th, tiles, tw).transpose(0, 2, 1, 3).reshape(n, area)
    flat = (per_tile + (np.arange(n, dtype=np.intp) * bins)[:, None]).ravel()
    hist = np.bincount(flat, minlength=n * bins).reshape(n, bins)
    if clip_limit > 0:
        limit = max(int(clip_limit * area / bins), 1)
        excess = np.maximum(hist - limit, 0).sum(axis=1)
        hist = np.minimum(hist, limit)
        batch, residual = np.divmod(excess, bins)
        hist += batch[:, None]
        step = np.maximum(bins // np.maximum(residual, 1), 1)[:, None]
        j = np.arange(bins)[None, :]
        hist += ((j % step == 0) & (j // step < residual[:, None])).astype(hist.dtype)
    lut = (np.cumsum(hist, axis=1) * ((bins - 1) / area)).astype(np.float32).ravel()

    def axis(size: int, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = np.arange(size) / tile - 0.5
        first = np.floor(f).astype(np.intp)
        weight = (f - first).astype(np.float32)
        return np.maximum(first, 0), np.minimum(first + 1, tiles - 1), weight

    ty1, ty2, ya = axis(h, th)
    tx1, tx2, xa = axis(w, tw)
    out = np.empty((h, w), np.float32)
    chunk = max(1, (1 << 20) // w)
    for r0 in range(0, h, chunk):
        rows = slice(r0, r0 + chunk)
        p = pos[rows]
        lo = np.minimum(np.floor(p).astype(np.intp), bins - 2)
        frac = p - lo

        def at(ty: np.ndarray, tx: np.ndarray, lo: np.ndarray = lo, frac: np.ndarray = frac):
            base = (ty[:, None] * tiles + tx[None, :]) * bins + lo
            return lut[base] * (1 - frac) + lut[base + 1] * frac

        top = at(ty1[rows], tx1) * (1 - xa) + at(ty1[rows], tx2) * xa
        bottom = at(ty2[rows], tx1) * (1 - xa) + at(ty2[rows], tx2) * xa
        wy = ya[rows, None]
        out[rows] = (top * (1 - wy) + bottom * wy) / np.float32(bins - 1)
    return np.clip(out, 0.0, 1.0)


def _clahe_u8(colour: np.ndarray, clip: float, tiles: int) -> np.ndarray:
    """OpenCV's CLAHE on gray, or on L of 8-bit LAB; the LAB buffer is reused in place."""
    op = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles))
    if colour.ndim == 2:
        return op.apply(colour)
    lab = cv2.cvtColor(colour, cv2.COLOR_BGR2LAB)
    light = cv2.extractChannel(lab, 0)
    cv2.insertChannel(op.apply(light, dst=light), lab, 0)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR, dst=lab)


@_register(
    "clahe",
    clip_limit=_Param("float", 0.0, 1000.0, 2.0),
    tile_grid_size=_Param("int", 1, 256, 8),
)
def clahe(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    clip_limit: Any,
    tile_grid_size: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Local contrast equalisation; ``tile_grid_size`` n means an n x n grid of tiles."""
    clip = _draw(clip_limit, "float", rng)
    tiles = _draw(tile_grid_size, "int", rng)
    colour, alpha = _split_alpha(image)
    if colour.dtype == np.uint8:
        out = _clahe_u8(colour, clip, tiles)
    else:
        unit = colour.astype(np.float32) / np.float32(_MAX_VALUE[colour.dtype])
        unit = np.clip(unit, 0.0, 1.0)
        if unit.ndim == 2:
            result = _clahe_unit(unit, clip, tiles)
        else:
            lab = cv2.cvtColor(unit, cv2.COLOR_BGR2Lab)
            lab[:, :, 0] = _clahe_unit(lab[:, :, 0] / np.float32(100), clip, tiles) * 100
            result = cv2.cvtColor(lab, cv2.COLOR_Lab2BGR)
        out = _to_dtype(result * np.float32(_MAX_VALUE[colour.dtype]), colour.dtype)
    return _join_alpha(out, alpha, image), mask


@_register("blur", ksize=_Param("int", 1, 255, 3))
def blur(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, ksize: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Box blur with a square ``ksize`` kernel (any size >= 1; 1 is a no-op)."""
    k = _draw(ksize, "int", rng)
    colour, alpha = _split_alpha(image)
    out = cv2.blur(colour, (k, k), borderType=cv2.BORDER_REFLECT_101)
    return _join_alpha(out, alpha, image), mask


@_register(
    "gaussian_blur",
    ksize=_Param("odd", 1, 255, None),
    sigma=_Param("float", 0.0, 100.0, None, lo_open=True),
)
def gaussian_blur(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, ksize: Any, sigma: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blur; a missing ksize follows from sigma and vice versa (OpenCV's rules).

    With neither given, sigma is 1.0. uint8 and uint16 take cv2.GaussianBlur's bit-exact
    fixed-point path; float32 is blurred exactly on a fixed grid (:func:`_gaussian_unit`).
    """
    if ksize is None and sigma is None:
        sigma = 1.0
    k = 0 if ksize is None else _draw(ksize, "odd", rng)
    s = 0.0 if sigma is None else _draw(sigma, "float", rng)
    colour, alpha = _split_alpha(image)
    if colour.dtype == np.float32:
        out = _gaussian_unit(colour, k, s)
    else:
        out = cv2.GaussianBlur(
            colour, (k, k), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT_101
        )
    return _join_alpha(out, alpha, image), mask


def _integer_gaussian(ksize: int, sigma: float, bits: int) -> np.ndarray:
    """OpenCV's Gaussian for float images (``ksize <= 0``: round(8 sigma + 1), odd; ``sigma
    <= 0``: from ksize) as integers summing to exactly ``2**bits``, zero end taps dropped.

    The centre tap absorbs the rounding. Integer taps are what makes the sums exact (see
    :func:`_gaussian_unit` and :func:`_displacement`). getGaussianKernel calls libm's exp, which
    may differ in the last bit between CPUs; rounding to integers hides that unless a tap lies
    within 1e-11 of a half-integer (odds about 1e-12 per kernel).
    """
    if ksize <= 0:
        ksize = int(round(sigma * 8 + 1)) | 1
    total = float(1 << bits)
    taps = np.rint(cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F).ravel() * total)
    taps[ksize // 2] += total - taps.sum()
    kept = np.flatnonzero(taps)
    return taps[kept[0] : kept[-1] + 1]


_UNIT_BITS = 20  # float32 images are blurred on a grid of 2**-20
_UNIT_TAP_BITS = 16  # 20 + 2 * 16 = 52 bits: every partial sum fits float64's 53


def _gaussian_unit(colour: np.ndarray, ksize: int, sigma: float) -> np.ndarray:
    """Gaussian blur of a float32 image, the same bytes on every CPU.

    cv2.GaussianBlur on float32 sums in float SIMD code (FMA under AVX2, not under SSE4.1), so
    its last bits change with the CPU. Here values are clipped to [0, 1] and rounded to
    integers on a 2**-20 grid, the taps are integers (:func:`_integer_gaussian`) scaled by
    powers of two, and cv2.sepFilter2D sums in float64, where every product and partial sum is
    then a multiple of 2**-52 below 1, exact in any order, with or without FMA; one rounding
    to float32 at the end. Against cv2.GaussianBlur on facade photos (sigma 0.3 to 20, ksize 3
    to 15): PSNR >= 96 dB, no value off by more than 1e-4. About 3x its time.
    """
    grid = np.clip(colour, 0.0, 1.0, out=_scratch("grid", colour.shape, np.float32))
    grid *= np.float32(1 << _UNIT_BITS)
    np.rint(grid, out=grid)  # integers up to 2**20, exact in float32
    scale = 2.0 ** -(_UNIT_TAP_BITS + _UNIT_BITS // 2)  # both passes: 2**-52, exact
    taps = _integer_gaussian(ksize, sigma, _UNIT_TAP_BITS) * scale
    exact = _scratch("exact", colour.shape, np.float64)
    exact = cv2.sepFilter2D(
        grid, cv2.CV_64F, taps, taps, dst=exact, borderType=cv2.BORDER_REFLECT_101
    )
    return exact.astype(np.float32)


def _haze_weight(shape: tuple[int, int], amount: float, rng: np.random.Generator) -> np.ndarray:
    """Blend weight per pixel, between amount/2 and amount, smooth over a 4x4-cell grid."""
    h, w = shape
    cell = max(h, w) / 4.0
    coarse = rng.random((math.ceil(h / cell) + 1, math.ceil(w / cell) + 1), dtype=np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    np.clip(field, 0.0, 1.0, out=field)
    field *= np.float32(0.5)  # in place, same float32 steps as amount * (0.5 + 0.5 * field)
    field += np.float32(0.5)
    field *= np.float32(amount)
    return field


def _blend_planes(
    colour: np.ndarray, keep: np.ndarray, haze: np.ndarray, depth: int
) -> list[np.ndarray]:
    """``plane * keep + haze`` per colour plane, rounded and saturated into ``depth``.

    Plane by plane so the float32 temporary is one plane, reused, and OpenCV needs no
    broadcasting (a 3-channel float copy of the weights costs more than the blend itself).
    """
    planes = list(cv2.split(colour)) if colour.ndim == 3 else [colour.copy()]
    kept = np.empty(keep.shape, np.float32)
    for plane in planes:
        cv2.multiply(plane, keep, dst=kept, dtype=cv2.CV_32F)
        cv2.add(kept, haze, dst=plane, dtype=depth)
    return planes


@_register("fog", intensity=_Param("float", 0.0, 1.0, 0.3))
def fog(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, intensity: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Blend towards a light haze whose density varies smoothly over the image.

    Local blend weight is between intensity/2 and intensity; the haze is 90% of full scale.
    ``x * (1 - weight) + haze * weight`` in float32; integer results are rounded half to even
    and saturated by OpenCV's conversion, as np.rint and np.clip did.
    """
    amount = _draw(intensity, "float", rng)
    colour, alpha = _split_alpha(image)
    weight = _haze_weight(colour.shape[:2], amount, rng)
    haze = np.float32(0.9 * _MAX_VALUE[colour.dtype]) * weight
    keep = np.subtract(1, weight, out=weight)
    depth = _CV_DEPTH.get(colour.dtype, cv2.CV_32F)
    planes = _blend_planes(colour, keep, haze, depth)
    out = cv2.merge(planes) if len(planes) > 1 else planes[0]
    if colour.dtype == np.float32:
        np.clip(out, 0.0, 1.0, out=out)
    return _join_alpha(out.reshape(colour.shape), alpha, image), mask


# The contrast pivot of images this tall or taller is the mean of every 8th row (see _mean).
_MEAN_FULL_ROWS = 256
_MEAN_ROW_STEP = 8


def _mean(colour: np.ndarray) -> np.float32:
    """The contrast pivot: the mean over every sample of rows 0, 8, 16, ... (of every row in
    images below 256 rows), as float32; OpenCV's integer sums are exact, and faster than numpy's.

    Sampling rows makes the pass over the image an eighth of one (albumentations makes none:
    its contrast pivots on 0). Tolerance, measured on the 84 facade photos against the mean of
    every pixel: the pivot moves by at most 1 grey level at 1024x1024 and 2.2 at 512x512, the
    output by ``|1 - contrast|`` times that, so no pixel by more than 1 level at contrast
    [0.5, 1.8]; PSNR per photo >= 55 dB at contrast [0.8, 1.2], >= 49 dB at [0.5, 1.8].
    """
    if colour.shape[0] >= _MEAN_FULL_ROWS:
        colour = colour[::_MEAN_ROW_STEP]
    if colour.dtype == np.float32:
        return np.float32(colour.mean(dtype=np.float64))
    channels = 1 if colour.ndim == 2 else colour.shape[2]
    return np.float32(sum(cv2.sumElems(colour)[:channels]) / colour.size)


_LEVELS = np.arange(256, dtype=np.float32)


def _contrast_lut(mean: np.float32, c: float, shift: np.float32) -> np.ndarray:
    """The float32 formula evaluated once per uint8 value: the same bytes as per pixel.

    In place on one 256-value array: the same float32 steps as ``(x - mean) * c + mean + shift``
    then round half to even and clip, in a third of the time of np.clip and fresh temporaries.
    """
    x = np.subtract(_LEVELS, mean)
    x *= np.float32(c)
    x += mean
    x += shift
    np.rint(x, out=x)
    np.maximum(x, 0.0, out=x)  # np.clip's argument handling costs more than these two
    np.minimum(x, 255.0, out=x)
    return x.astype(np.uint8)


def _affine_gives(lut: np.ndarray, c: float, gamma: float) -> bool:
    """Whether ``x * c + gamma`` done by OpenCV on uint8 equals ``lut`` for every value.

    addWeighted and convertScaleAbs compute it in float32: an error of a few float32 ulps, far
    below the margin used here. Where no exact value is that close to a .5 tie, they round to
    the exact value's nearest integer; if the LUT holds those for all 256 inputs, all agree.
    """
    c32, g32 = float(np.float32(c)), float(np.float32(gamma))
    exact = np.arange(256.0) * c32 + g32
    margin = max(255.0 * abs(c32), abs(g32), float(np.abs(exact).max())) * 2.0**-21
    tie_gap = np.abs(exact - np.floor(exact) - 0.5)
    return bool(tie_gap.min() > margin) and np.array_equal(np.clip(np.rint(exact), 0, 255), lut)


def _byte_translate() -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """StringZilla's byte translation into a new array, if an installed version has ``out=``.

    It maps every byte through a 256-entry table with SIMD shuffles: measured on 1024x1024
    BGR, 0.11 ms where cv2.LUT (a scalar loop) takes 0.78 ms and convertScaleAbs 0.28 ms.
    """
    try:
        import stringzilla
    except ImportError:  # pragma: no cover - a dependency; the OpenCV path gives the same bytes
        return None

    def translate(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
        out = np.empty_like(values)
        stringzilla.translate(memoryview(values), memoryview(lut), out=memoryview(out))
        return out

    try:  # ``out=`` arrived in stringzilla 5.3.1
        probe = translate(np.arange(2, dtype=np.uint8), np.arange(256, dtype=np.uint8)[::-1].copy())
    except (TypeError, ValueError):  # pragma: no cover
        return None
    return translate if probe.tolist() == [255, 254] else None


_TRANSLATE = _byte_translate()


def _contrast_u8(colour: np.ndarray, mean: np.float32, c: float, shift: np.float32) -> np.ndarray:
    """One pass over the pixels through the LUT (StringZilla), else an affine OpenCV op where it
    provably gives the LUT, else cv2.LUT: the same bytes on every path.

    cv2.LUT is a scalar loop; the affine ops are vectorised (2-3x faster). convertScaleAbs is
    the faster of the two but takes |x|, harmless only when no value is negative (gamma >= 0).
    """
    lut = _contrast_lut(mean, c, shift)
    if _TRANSLATE is not None:
        return _TRANSLATE(colour, lut)
    gamma = float(mean) * (1.0 - c) + float(shift)
    if not _affine_gives(lut, c, gamma):
        return cv2.LUT(colour, lut)
    if gamma >= 0.0:
        return cv2.convertScaleAbs(colour, alpha=c, beta=gamma)
    return cv2.addWeighted(colour, c, colour, 0.0, gamma)


@_register(
    "brightness_contrast",
    brightness=_Param("float", -1.0, 1.0, 0.0),
    contrast=_Param("float", 0.0, 10.0, 1.0),
)
def brightness_contrast(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    brightness: Any,
    contrast: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """``(x - mean) * contrast + mean + brightness * full_scale``.

    Contrast pivots on the image mean (sampled rows in tall images, see :func:`_mean`) so it
    does not also shift brightness; brightness is a fraction of the dtype's full scale so one
    setting means the same for uint8, uint16 and float. uint8 goes through a 256-entry LUT.
    """
    b = _draw(brightness, "float", rng)
    c = _draw(contrast, "float", rng)
    colour, alpha = _split_alpha(image)
    mean = _mean(colour)
    shift = np.float32(b * _MAX_VALUE[colour.dtype])
    if colour.dtype == np.uint8:
        return _join_alpha(_contrast_u8(colour, mean, c, shift), alpha, image), mask
    x = colour.astype(np.float32)
    x -= mean  # in place, the same float32 steps as (x - mean) * c + mean + shift
    x *= np.float32(c)
    x += mean
    x += shift
    return _join_alpha(_to_dtype(x, colour.dtype), alpha, image), mask


# ---------------------------------------------------------------- geometric


@_register("hflip", moves_only=True)
def hflip(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right (cv2.flip: one vectorised pass, unlike a strided numpy copy)."""
    return cv2.flip(image, 1).reshape(image.shape), cv2.flip(mask, 1)


@_register("vflip", moves_only=True)
def vflip(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror top-bottom."""
    return cv2.flip(image, 0).reshape(image.shape), cv2.flip(mask, 0)


@_register(
    "rotate_scale",
    angle=_Param("float", -360.0, 360.0, 0.0),
    scale=_Param("float", 0.0, 10.0, 1.0, lo_open=True),
)
def rotate_scale(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, angle: Any, scale: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (degrees, counter-clockwise as displayed) and scale about the image centre.

    Output keeps the input size: corners may be cut, uncovered image is 0, uncovered mask 255.
    Sides must be below 32767 pixels (cv2.remap).
    """
    a = _draw(angle, "float", rng)
    s = _draw(scale, "float", rng)
    h, w = mask.shape
    _check_remap_size("rotate_scale", h, w)
    return _remap_pair(image, mask, _rotation_maps(h, w, a, s), cv2.BORDER_CONSTANT)


FixedMaps = tuple[np.ndarray, np.ndarray, np.ndarray]  # bilinear (x, y), its 1/32 px, nearest


def _rotation_maps(h: int, w: int, angle: float, scale: float) -> FixedMaps:
    """Where each output pixel samples the input: the inverse of cv2.getRotationMatrix2D.

    Not cv2.warpAffine: it computes coordinates in float SIMD code whose results change with
    the CPU (AVX2's FMA against SSE4.1), for the mask's nearest neighbour too. Here each float
    map value is one float32 addition of a per-column and a per-row term (numpy: one IEEE
    rounding per operation on every CPU), then :func:`_fixed_maps`.
    """
    cos, sin = _cos_sin_degrees(angle)
    cos, sin = cos / scale, sin / scale
    dx = np.arange(w, dtype=np.float64) - (w - 1) / 2.0
    dy = np.arange(h, dtype=np.float64) - (h - 1) / 2.0
    column_x, row_x = (cos * dx + (w - 1) / 2.0).astype(np.float32), (-sin * dy).astype(np.float32)
    column_y, row_y = (sin * dx).astype(np.float32), (cos * dy + (h - 1) / 2.0).astype(np.float32)
    map_x = np.add(column_x, row_x[:, None], out=_scratch("map_x", (h, w), np.float32))
    map_y = np.add(column_y, row_y[:, None], out=_scratch("map_y", (h, w), np.float32))
    return _fixed_maps(map_x, map_y)


_TAYLOR = [1.0 / math.factorial(k) for k in range(26)]


def _cos_sin_degrees(angle: float) -> tuple[float, float]:
    """cos and sin of ``angle`` degrees from a fixed sequence of float operations.

    libm's cos and sin pick FMA or SSE2 code by CPU (glibc's ifuncs) and then differ in the
    last bit for about 1 value in 1500; each Python float operation rounds once on any CPU.
    Taylor series on [0, 90) degrees (error below 1e-16), then whole quarter turns, exact.
    """
    quarter, rest = divmod(float(angle), 90.0)
    x = math.radians(rest)
    minus_x2 = -x * x
    cos = sin = 0.0
    for k in range(24, -1, -2):  # Horner in -x**2: cos from the even terms, sin from the odd
        cos = cos * minus_x2 + _TAYLOR[k]
        sin = sin * minus_x2 + _TAYLOR[k + 1]
    sin *= x
    return [(cos, sin), (-sin, cos), (-cos, -sin), (sin, -cos)][int(quarter) % 4]


def _check_remap_size(name: str, h: int, w: int) -> None:
    if max(h, w) >= _REMAP_MAX_SIDE:
        raise DatasetError(
            f"{name}: image {h}x{w} is too large for cv2.remap (sides must be < "
            f"{_REMAP_MAX_SIDE}); tile or downscale it first"
        )


def _fixed_maps(map_x: np.ndarray, map_y: np.ndarray) -> FixedMaps:
    """OpenCV's fixed-point maps of float maps.

    cv2.remap with float maps interpolates in float SIMD code that changes with the CPU; with
    fixed-point maps (CV_16SC2 + 1/32 px fractions, its own INTER_BITS) it takes integer
    coordinates and a table of weights, the same bytes on every CPU. convertMaps only rounds
    ``x * 32`` (exact) to nearest, the same in SIMD and scalar code.
    """
    h, w = map_x.shape
    xy, fraction = cv2.convertMaps(
        map_x,
        map_y,
        cv2.CV_16SC2,
        dstmap1=_scratch("xy", (h, w, 2), np.int16),
        dstmap2=_scratch("fraction", (h, w), np.uint16),
    )
    nearest, _ = cv2.convertMaps(
        map_x,
        map_y,
        cv2.CV_16SC2,
        dstmap1=_scratch("nearest", (h, w, 2), np.int16),
        nninterpolation=True,
    )
    return xy, fraction, nearest


def _remap_pair(
    image: np.ndarray, mask: np.ndarray, maps: FixedMaps, border: int
) -> tuple[np.ndarray, np.ndarray]:
    """Image bilinear (``border``; constant is 0), mask nearest (outside: IGNORE)."""
    xy, fraction, nearest = maps
    out = cv2.remap(image, xy, fraction, cv2.INTER_LINEAR, borderMode=border, borderValue=0)
    out_mask = cv2.remap(
        mask, nearest, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE
    )
    return _restore_shape(out, image), out_mask


_NOISE_BITS = 4  # U(-1, 1) as 16 equally likely bin centres, (k - 7.5) / 8 for k in 0..15
_NOISE_LEVELS = 1 << _NOISE_BITS
_FIELD_F32_MAX_SIGMA = 12.0  # above: taps of 2**-10 get coarse (centre < 34), so float64
_FIELD_BITS = {cv2.CV_32F: 10, cv2.CV_64F: 20}  # 15 * 2**20 < 2**24; 15 * 2**40 < 2**53


def _displacement(levels: np.ndarray, sigma: float, alpha: float, out: np.ndarray) -> np.ndarray:
    """One displacement field into ``out``: alpha x Gaussian_sigma(noise) px, float32, exact.

    ``levels`` (uint8, 0..15) are the noise ``(k - 7.5) / 8``. cv2.GaussianBlur on float noise
    sums in float SIMD code whose last bits change with the CPU, and remap's rounding to 1/32
    px turns that into different pixels. Here the taps are integers summing to 2**bits, so
    every sum cv2.sepFilter2D forms is an integer below 2**24 (float32, sigma up to 12) or
    2**53 (float64): exact in any order, with or without FMA. Then one float32 rounding.
    """
    depth = cv2.CV_32F if sigma <= _FIELD_F32_MAX_SIGMA else cv2.CV_64F
    bits = _FIELD_BITS[depth]
    taps = _integer_gaussian(0, sigma, bits)
    total = float(1 << (2 * bits))
    field = cv2.sepFilter2D(
        levels,
        depth,
        taps,
        taps,
        dst=out if depth == cv2.CV_32F else None,
        delta=-(_NOISE_LEVELS - 1) / 2 * total,
        borderType=cv2.BORDER_REFLECT_101,
    )
    scale = alpha / (_NOISE_LEVELS / 2 * total)
    if depth == cv2.CV_64F:  # float64 product, then one float32 rounding
        return np.multiply(field, scale, out=out, casting="same_kind")
    return np.multiply(field, np.float32(scale), out=field)


@_register(
    "elastic",
    alpha=_Param("float", 0.0, 10000.0, 30.0),
    sigma=_Param("float", 0.0, 1000.0, 5.0, lo_open=True),
)
def elastic(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, alpha: Any, sigma: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Elastic deformation as in Simard et al. (2003).

    Per-pixel displacements ~ U(-1, 1) (16 levels, one byte gives both axes), smoothed by a
    Gaussian of std ``sigma`` px, times ``alpha``; the RMS displacement is roughly
    0.16 * alpha / sigma px for sigma >= 2.
    """
    a = _draw(alpha, "float", rng)
    s = _draw(sigma, "float", rng)
    h, w = mask.shape
    _check_remap_size("elastic", h, w)
    levels = rng.integers(0, 256, (h, w), dtype=np.uint8)  # low bits: x noise, high bits: y
    map_x = _displacement(levels & (_NOISE_LEVELS - 1), s, a, _scratch("map_x", (h, w), np.float32))
    map_y = _displacement(levels >> _NOISE_BITS, s, a, _scratch("map_y", (h, w), np.float32))
    map_x += np.arange(w, dtype=np.float32)[None, :]  # grid + field, without a meshgrid
    map_y += np.arange(h, dtype=np.float32)[:, None]
    return _remap_pair(image, mask, _fixed_maps(map_x, map_y), cv2.BORDER_REFLECT_101)


__all__ = [
    "CV_THREADS",
    "IGNORE",
    "THREADS_ENV",
    "TRANSFORMS",
    "TRANSFORM_PARAMS",
    "apply_chain",
    "rng_for",
    "validate_chain",
]
