"""The folds, and the split stage's quality numbers, are the same on every machine.

numpy leaves the order of equal keys (``argpartition``, default-kind ``argsort``) to its SIMD
kernels, its transcendental functions differ by an ulp between AVX2 and AVX-512, and BLAS sums
in an order set by its CPU kernel and thread count. Published folds must depend on none of it:

1. ``argsort``/``argpartition`` are patched to give equal keys in a seeded random (still
   correct) order; the folds and metrics must not move;
2. the same cases run in subprocesses with numpy's SIMD dispatch, OpenBLAS's kernel and the
   thread counts changed; every digest must match the ambient run.

``python -m tests.test_stratify_determinism [SAMPLE_ROOT] [--big]`` prints the digests (what
the subprocesses run).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.splitting.baselines import library_folds, random_group_folds
from pipeline.splitting.kfold import MultilabelStratifiedGroupKFold
from pipeline.splitting.quality import split_quality
from pipeline.splitting.stratify import _smallest, holdout_split
from tests.conftest import REAL_DATASETS, ROOT, SHARED_DATA, python_exe, real_dataset

TiePatch = Callable[[int], contextlib.AbstractContextManager[None]]
SEEDS = (0, 1, 2)  # tie orders tried per case

# ------------------------------------------------------------------ the tie-shuffling patch

_ARGSORT, _ARGPARTITION = np.argsort, np.argpartition


def _passes_through(a: np.ndarray, order: Any) -> bool:
    """What the patch leaves to numpy: field orders, objects, records and scalars."""
    return order is not None or a.dtype.kind in "OV" or a.ndim == 0


def _tie_shuffled_argsort(a: np.ndarray, axis: int | None, rng: np.random.Generator) -> np.ndarray:
    """A correct ascending argsort of ``a`` whose equal keys come in a random order."""
    if axis is None:
        a, axis = a.ravel(), -1
    return np.lexsort((rng.random(a.shape), a), axis=axis)


def _shuffle_parts(order: np.ndarray, kth: Any, axis: int, rng: np.random.Generator) -> np.ndarray:
    """``order`` with the runs between the ``kth`` positions shuffled (any order there is
    correct for a partition)."""
    rows = np.moveaxis(order, axis, -1).copy()
    n = rows.shape[-1]
    cuts = sorted({int(k) % n for k in np.atleast_1d(kth)})
    edges = [0, *[c for k in cuts for c in (k, k + 1)], n]
    for row in rows.reshape(-1, n):  # a view of the contiguous copy
        for lo, hi in zip(edges[::2], edges[1::2], strict=True):
            row[lo:hi] = rng.permutation(row[lo:hi])
    return np.moveaxis(rows, -1, axis)


def tie_shuffling(seed: int) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]:
    """(argsort, argpartition) stand-ins: valid answers, equal keys in a seeded random order.

    Only the default (unspecified) kinds are replaced: ``kind="stable"`` is a specified order.
    """
    rng = np.random.default_rng(seed)

    def argsort(
        a: Any, axis: int | None = -1, kind: Any = None, order: Any = None, **kw: Any
    ) -> np.ndarray:
        a = np.asarray(a)
        if kind not in (None, "quicksort") or kw.get("stable") or _passes_through(a, order):
            return _ARGSORT(a, axis=axis, kind=kind, order=order, **kw)
        return _tie_shuffled_argsort(a, axis, rng)

    def argpartition(
        a: Any, kth: Any, axis: int | None = -1, kind: Any = None, order: Any = None
    ) -> np.ndarray:
        a = np.asarray(a)
        if _passes_through(a, order):
            return _ARGPARTITION(a, kth, axis=axis, order=order)
        if axis is None:
            a, axis = a.ravel(), -1
        return _shuffle_parts(_tie_shuffled_argsort(a, axis, rng), kth, axis, rng)

    return argsort, argpartition


@pytest.fixture
def shuffled_ties() -> TiePatch:
    """``with shuffled_ties(seed):`` runs with numpy's argsort/argpartition tie-shuffled."""

    @contextlib.contextmanager
    def patched(seed: int) -> Iterator[None]:
        argsort, argpartition = tie_shuffling(seed)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(np, "argsort", argsort)
            mp.setattr(np, "argpartition", argpartition)
            yield

    return patched


def test_the_patch_reorders_ties_and_stays_correct(shuffled_ties: TiePatch) -> None:
    a = np.repeat([2.0, 1.0, 3.0], 20)
    kept, orders = set(), set()
    for seed in range(4):
        with shuffled_ties(seed):
            order = np.argsort(a)
            part = np.argpartition(a, 25)
            stable = np.argsort(a, kind="stable")
        assert (a[order] == np.sort(a)).all() and sorted(part.tolist()) == list(range(60))
        assert a[part[25]] == np.sort(a)[25]
        assert (a[part[:25]] <= a[part[25]]).all() and (a[part[26:]] >= a[part[25]]).all()
        assert (stable == _ARGSORT(a, kind="stable")).all()  # a specified order is left alone
        orders.add(tuple(order.tolist()))
        kept.add(frozenset(part[:25].tolist()))
    assert len(orders) == 4 and len(kept) > 1  # ties really move, and so does what is kept
    assert not any(o == tuple(_ARGSORT(a, kind="stable").tolist()) for o in orders)


def test_smallest_keeps_ties_by_position() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = rng.integers(0, 6, rng.integers(1, 80)).astype(np.float64)
        n = int(rng.integers(1, 60))
        expected = np.lexsort((np.arange(values.shape[0]), values))[:n]
        assert sorted(_smallest(values, n).tolist()) == sorted(expected.tolist())


# ------------------------------------------------------------------ the code, read


SCOPE = (
    "splitting/stratify",
    "stages/split",
    "splitting/stable",
    "splitting/baselines",
    "splitting/quality",
    "stages/vectors",
)
UNSPECIFIED = {"argsort", "argpartition", "sort"}  # method forms the patch cannot reach
CPU_DEPENDENT = {"einsum", "dot", "vdot", "inner", "matmul", "power", "float_power", "exp"}
CPU_DEPENDENT |= {"expm1", "log", "log1p", "log2", "log10", "sin", "cos", "tan", "tanh"}


def _cpu_dependent_calls(path: Path) -> list[str]:
    """Calls that leave an order or rounding to the CPU, and ``**`` with an array exponent."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            is_np = isinstance(node.func.value, ast.Name) and node.func.value.id == "np"
            if node.func.attr in UNSPECIFIED and not is_np:
                found.append(f"{where} .{node.func.attr}() method form")
            if node.func.attr in CPU_DEPENDENT and is_np:
                found.append(f"{where} np.{node.func.attr}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            constant = isinstance(node.left, ast.Constant) and isinstance(node.right, ast.Constant)
            square = isinstance(node.right, ast.Constant) and node.right.value == 2
            if not (constant or square):
                found.append(f"{where} ** (np.power)")
    return found


def test_the_split_code_uses_no_cpu_dependent_numpy() -> None:
    """Sorting goes through ``np.argsort``/``np.argpartition`` (which the tie patch reaches)
    and nothing calls numpy's SIMD transcendental or BLAS entry points by name."""
    found = [
        hit for name in SCOPE for hit in _cpu_dependent_calls(ROOT / "pipeline" / f"{name}.py")
    ]
    assert not found, found


# ------------------------------------------------------------------ the cases


def powerlaw(n: int, q: int, seed: int) -> np.ndarray:
    """Power-law multilabel 0/1 matrix; probabilities from Python's libm pow, not numpy's
    SIMD one, so the input is the same under every dispatch."""
    rng = np.random.default_rng(seed)
    p = np.array([0.5 * (i + 1.0) ** -1.2 for i in range(q)])
    y = rng.random((n, q)) < p
    y[:, 1:] |= y[:, :-1] & (rng.random((n, q - 1)) < 0.2)
    return y.astype(np.int64)


def digest(*parts: Any) -> str:
    """sha256 of arrays (as little-endian int64) and JSON-able values, in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.asarray(part, dtype="<i8").tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()[:16]


def grouped_set(n: int, q: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y, groups of ~2 samples (geometric sizes), integer pixels per class, labelled pixels)."""
    rng = np.random.default_rng(seed + 100)
    y = powerlaw(n, q, seed)
    groups = np.cumsum(rng.random(n) < 0.45)
    pixels = (rng.integers(1, 5000, (n, q)) * y).astype(np.float64)
    return y, groups, pixels, pixels.sum(axis=1) + rng.integers(0, 20000, n)


def _folds_and_quality(
    y: np.ndarray, groups: Any, pixels: tuple[np.ndarray, np.ndarray], k: int, seed: int
) -> str:
    """Our folds (pixel term on), then their full-precision metrics, as one digest."""
    cv = MultilabelStratifiedGroupKFold(k, random_state=seed)
    folds = cv.fold_assignment(y, groups, pixels=pixels[0], labelled=pixels[1])
    quality = split_quality(y, folds, groups, pixel_share=pixels[0], n_folds=k)
    return digest(folds, quality)


def synthetic_cases(big: bool = False) -> dict[str, Callable[[], str]]:
    """Name -> digest of one split: grouped and not, holdout, pinned groups, pixels, baselines."""
    cv = MultilabelStratifiedGroupKFold
    y3, g3, px3, lab3 = grouped_set(3000, 11, 4)
    fixed = np.where(g3 % 3 == 0, g3 % 5, -1)
    cases = {
        "300x6": lambda: digest(cv(5, random_state=1).fold_assignment(powerlaw(300, 6, 0))),
        "3000x11": lambda: digest(cv(5, random_state=0).fold_assignment(powerlaw(3000, 11, 1))),
        "3000x11 grouped, pixels, metrics": lambda: _folds_and_quality(y3, g3, (px3, lab3), 5, 0),
        "3000x11 pinned groups": lambda: digest(
            cv(5, random_state=2).fold_assignment(y3, g3, fixed)
        ),
        "3000x11 no shuffle": lambda: digest(
            cv(4, shuffle=False, random_state=3).fold_assignment(powerlaw(3000, 11, 5))
        ),
        "holdout 2000": lambda: digest(holdout_split(powerlaw(2000, 8, 2), None, 0.2, 3)),
        "holdout 2000 grouped, pixels": lambda: digest(
            holdout_split(y3[:2000], g3[:2000], 0.2, 5, pixels=px3[:2000], labelled=lab3[:2000])
        ),
        "baselines 3000x11": lambda: _baselines(y3, g3),
    }
    if big:
        big_y = powerlaw(100_000, 80, 0)
        cases["100000x80"] = lambda: digest(cv(5, random_state=0).fold_assignment(big_y))
    return cases


def _baselines(y: np.ndarray, groups: np.ndarray) -> str:
    """The report's baselines and their metrics (iterstrat, KFold, random groups)."""
    base = library_folds(y, 5, 0, np.ones(y.shape[0], dtype=bool))
    folds = [fold for fold, _ in base.values()] + [random_group_folds(groups.astype(str), 5, 0)]
    return digest(*folds, [split_quality(y, f, groups, n_folds=5) for f in folds])


def coco_arrays(name: str) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """(presence per category, group per image, (annotated area per category, image area))."""
    ann_path, _ = real_dataset(name)
    data = json.loads(ann_path.read_text(encoding="utf-8"))
    col = {c: j for j, c in enumerate(sorted(int(c["id"]) for c in data["categories"]))}
    row = {int(im["id"]): i for i, im in enumerate(data["images"])}
    area = np.zeros((len(row), len(col)))
    for a in data["annotations"]:
        r, c = row.get(int(a["image_id"])), col.get(int(a["category_id"]))
        if r is not None and c is not None:
            area[r, c] += float(a.get("area") or 0.0)
    names = [im["file_name"] for im in data["images"]]
    groups = np.array([_group_of(name, file_name) for file_name in names])
    size = np.array([float(im["width"]) * float(im["height"]) for im in data["images"]])
    return (area > 0).astype(np.int64), groups, (area, np.maximum(size, area.sum(axis=1)))


def _group_of(dataset: str, file_name: str) -> str:
    """Batch folder (TACO), photo of the crops (facade), else the image itself."""
    if dataset == "taco":
        return file_name.split("/", 1)[0]
    if dataset.startswith("facade"):
        return Path(file_name).name.split("_scaled_", 1)[0]
    return file_name


def real_case(name: str) -> str:
    """Digest of a shared dataset's folds (groups, area as pixels) and their metrics."""
    y, groups, pixels = coco_arrays(name)
    k = min(5, np.unique(groups).shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rare classes
        return _folds_and_quality(y, groups, pixels, k, 0)


def build_sample_vectors(root: Path) -> Path:
    """validate, masks, vectors on the committed data/sample under ``root`` (params.yaml's
    settings, absolute data paths, no item cache)."""
    import yaml

    from pipeline.files.params import parse_params
    from pipeline.stages import masks, validate, vectors

    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["dataset"].update(
        annotations=str(ROOT / "data/sample/annotations.json"),
        images=str(ROOT / "data/sample/images"),
    )
    raw.update(workers=1, cache={**raw.get("cache", {}), "dir": None})
    params = parse_params(raw)
    for stage in (validate, masks, vectors):
        stage.run(params, root)
    (root / "params.json").write_text(json.dumps(raw), encoding="utf-8")
    return root


def sample_case(root: Path) -> str:
    """Digest of everything the split stage writes for the sample (folds, quality, warnings,
    pixel shares), from the vectors under ``root``."""
    from pipeline.files.contracts import (
        VECTORS_PATH,
        read_image_stats,
        read_vectors,
    )
    from pipeline.files.params import parse_params
    from pipeline.stages.split import build_split

    params = parse_params(json.loads((root / "params.json").read_text(encoding="utf-8")))
    vecs, stats = read_vectors(root / VECTORS_PATH), read_image_stats(root)
    out = build_split(vecs, stats, params.split)
    return digest(out.folds, out.quality, out.warnings, out.pixel_share)


def all_digests(sample_root: Path | None, big: bool = False) -> dict[str, str]:
    """Every case's digest: synthetic, the sample's stage outputs, the shared datasets."""
    out = {name: case() for name, case in synthetic_cases(big).items()}
    if sample_root is not None:
        out["data/sample split stage"] = sample_case(sample_root)
    for name, (ann, _) in REAL_DATASETS.items():
        if (SHARED_DATA / ann).is_file():
            out[name] = real_case(name)
    return out


# ------------------------------------------------------------------ 1. tie order


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sample_vectors(tmp_path_factory.mktemp("sample_vectors"))


def assert_tie_free(case: Callable[[], str], shuffled_ties: TiePatch) -> None:
    """The case's digest with numpy's tie order and with SEEDS shuffled ones is one digest."""
    expected = case()
    for seed in SEEDS:
        with shuffled_ties(seed):
            assert case() == expected, f"tie order {seed} changed the result"


@pytest.mark.parametrize("name", list(synthetic_cases()))
def test_synthetic_folds_ignore_tie_order(name: str, shuffled_ties: TiePatch) -> None:
    assert_tie_free(synthetic_cases()[name], shuffled_ties)


def test_sample_split_stage_ignores_tie_order(sample_root: Path, shuffled_ties: TiePatch) -> None:
    assert_tie_free(lambda: sample_case(sample_root), shuffled_ties)


@pytest.mark.parametrize("name", list(REAL_DATASETS))
def test_shared_datasets_ignore_tie_order(name: str, shuffled_ties: TiePatch) -> None:
    real_dataset(name)  # skips with the reason when ../shared/data lacks it
    assert_tie_free(lambda: real_case(name), shuffled_ties)


@pytest.mark.slow
def test_100k_x_80_ignores_tie_order(shuffled_ties: TiePatch) -> None:
    assert_tie_free(synthetic_cases(big=True)["100000x80"], shuffled_ties)


# ------------------------------------------------------------------ 2. dispatch and threads


def _cpu_targets() -> list[str]:
    """numpy's SIMD dispatch targets this CPU runs (the ones NPY_DISABLE_CPU_FEATURES can
    drop; the baseline cannot be), lowest first."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import _multiarray_umath as umath
    features = getattr(umath, "__cpu_features__", {})
    return [t for t in getattr(umath, "__cpu_dispatch__", []) if features.get(t)]


def _blas_cores() -> list[str]:
    """OpenBLAS kernels this CPU can run (forcing one it lacks would crash); x86-64 only."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    from numpy._core._multiarray_umath import __cpu_features__ as has

    cores = ["Prescott"]
    if has.get("AVX2") and has.get("FMA3"):
        cores.append("Haswell")
    if has.get("AVX512_SKX"):
        cores.append("SkylakeX")
    return cores


def variants() -> list[pytest.param]:
    """Environments to run the splitter in, each changing what numpy or BLAS leave open."""
    targets, cores = _cpu_targets(), _blas_cores()
    out = []
    for i, target in enumerate(targets):  # this level and those above it off
        env = {"NPY_DISABLE_CPU_FEATURES": " ".join(targets[i:])}
        out.append(pytest.param(env, id=f"npy-below-{target}"))
    for i, core in enumerate(cores):
        threads = str(1 + i % 2)
        env = {"OPENBLAS_CORETYPE": core, "OPENBLAS_NUM_THREADS": threads}
        out.append(pytest.param(env, id=f"blas-{core}-{threads}t"))
    for n in ("1", "2"):
        env = {"OPENBLAS_NUM_THREADS": n, "OMP_NUM_THREADS": n}
        out.append(pytest.param(env, id=f"threads-{n}"))
    return out


def run_digests(env: dict[str, str], sample: Path | None, big: bool = False) -> dict[str, str]:
    """``all_digests`` in a fresh interpreter with ``env`` on top of this one's."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full.pop("NPY_ENABLE_CPU_FEATURES", None)
    args = [python_exe(), "-m", "tests.test_stratify_determinism"]
    args += [str(sample)] if sample is not None else []
    args += ["--big"] if big else []
    done = subprocess.run(args, cwd=ROOT, env=full, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ambient(sample_root: Path) -> dict[str, str]:
    """The digests in this machine's own environment (whatever OPENBLAS_CORETYPE it sets)."""
    return run_digests({}, sample_root)


@pytest.mark.parametrize("env", variants())
def test_digests_ignore_dispatch_and_threads(
    env: dict[str, str], ambient: dict[str, str], sample_root: Path
) -> None:
    assert "data/sample split stage" in ambient and "holdout 2000" in ambient
    assert run_digests(env, sample_root) == ambient


@pytest.mark.slow
def test_100k_x_80_ignores_dispatch_and_threads() -> None:
    """The large set once with everything numpy and BLAS offer at their lowest."""
    lowest = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    if _cpu_targets():
        lowest["NPY_DISABLE_CPU_FEATURES"] = " ".join(_cpu_targets())
    if _blas_cores():
        lowest["OPENBLAS_CORETYPE"] = "Prescott"
    first = run_digests({"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}, None, big=True)
    assert run_digests(lowest, None, big=True) == first


def main(argv: list[str]) -> None:
    """Print the digests as one JSON line (the subprocess side of the dispatch tests)."""
    sample = next((Path(a) for a in argv if not a.startswith("--")), None)
    print(json.dumps(all_digests(sample, big="--big" in argv), sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
