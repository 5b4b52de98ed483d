"""Shared fixtures: paths to the real datasets in ../shared/data and a generated sample."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st

# Property tests draw the same examples on every run (CI included), so a red run is one anyone
# can reproduce; HYPOTHESIS_PROFILE=explore draws new ones to hunt for bugs.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))

# name -> (annotations json, image folder or None when the images are not shipped)
REAL_DATASETS = {
    "nuts": ("nuts/trainval.json", "nuts/images"),
    "panoptic_rle": (
        "panoptic_rle/panoptic_coco_detection_format.json",
        "panoptic_rle/input_images",
    ),
    "facade_valid": ("facade/valid/_annotations.coco.json", "facade/valid"),
    "facade_test": ("facade/test/_annotations.coco.json", "facade/test"),
    "taco": ("taco/annotations.json", None),
}


def real_dataset(name: str) -> tuple[Path, Path | None]:
    """Paths of a shared dataset, or skip the test with the reason."""
    ann, images = REAL_DATASETS[name]
    ann_path = SHARED_DATA / ann
    if not ann_path.exists():
        pytest.skip(f"{ann_path} not present (real datasets live in ../shared/data)")
    return ann_path, (SHARED_DATA / images if images else None)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly generated small sample (same generator as data/sample)."""
    from pipeline.tools.sample import generate

    return generate(tmp_path_factory.mktemp("sample"), n_images=24, n_batches=4, seed=7)


def run_cli(
    args: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command with this checkout importable; ``env`` adds or overrides variables."""
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(args, cwd=cwd, env=env, check=check, capture_output=True, text=True)


def python_exe() -> str:
    return sys.executable


def copy_repo(dest: Path) -> Path:
    """Copy the project (tracked files only, no outputs) into ``dest`` as a fresh git repo."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header promises width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_of_zeros(width: int, height: int) -> bytes:
    """A real, valid 8-bit gray PNG of zeros: tiny on disk, width*height bytes once decoded."""
    out = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    data = b"".join(out.compress(row) for _ in range(height)) + out.flush()
    header = png_header_only(width, height)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF
    head = header[:8] + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", crc)
    idat = struct.pack(">I", len(data)) + b"IDAT" + data
    idat += struct.pack(">I", zlib.crc32(b"IDAT" + data) & 0xFFFFFFFF)
    return head + idat + header[-12:]


def name_lists(max_len: int, min_size: int, max_size: int) -> st.SearchStrategy[list[str]]:
    """Lists of names a json could give (no control character, no lone surrogate): quotes,
    commas and any script included, for readers and writers that must quote them."""
    letters = st.characters(blacklist_categories=("Cs", "Cc"))
    names = st.text(letters, min_size=1, max_size=max_len)
    return st.lists(names, min_size=min_size, max_size=max_size)
