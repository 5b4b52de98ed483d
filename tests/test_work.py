"""What every executor shares: the chunk size rule, the progress bar, the item protocols."""

from __future__ import annotations

import fcntl
import math
import os
import struct
import sys
import termios
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.execution.work import Described, HasPaths, chunk_size, progress

MAX_CHUNK = 32  # the module's promise: at most 32 items per unit of work


@given(total=st.integers(0, 100_000), workers=st.integers(1, 64))
def test_chunks_keep_every_worker_busy_and_stay_small(total: int, workers: int) -> None:
    """Without an explicit chunk: 1..32 items a unit, and ~8..16 units per worker when there
    are enough items (every item its own unit when there are few)."""
    size = chunk_size(total, workers, None)
    assert 1 <= size <= MAX_CHUNK
    if total:
        units = math.ceil(total / size)
        assert units >= min(total, 8 * workers)
        assert size == MAX_CHUNK or units <= 16 * workers


@given(total=st.integers(0, 10_000), workers=st.integers(1, 16), chunk=st.integers(1, 500))
def test_an_explicit_chunk_wins(total: int, workers: int, chunk: int) -> None:
    """Work already batched by the stage (``chunk=1``) is never re-chunked, nor capped at 32."""
    assert chunk_size(total, workers, chunk) == chunk


def test_chunk_size_examples() -> None:
    """A few sizes worked out by hand: small sets go one item at a time, big ones 32."""
    assert chunk_size(0, 4, None) == 1
    assert chunk_size(10, 4, None) == 1
    assert chunk_size(64, 1, None) == 8
    assert chunk_size(1_000_000, 2, None) == 32


def test_progress_bar_is_hidden_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    """Logs and CI (stderr not a terminal) get no bar at all, only the count is kept."""
    with progress(12, "masks") as bar:
        bar.update(12)
        assert bar.disable and bar.total == 12
    assert capsys.readouterr().err == ""


def test_progress_bar_look_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the bar shows the description, the count and the unit per second."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    with os.fdopen(slave, "w") as terminal, monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", terminal)
        with progress(5, "masks", unit="file") as bar:
            bar.update(5)
            assert not bar.disable
            assert (bar.total, bar.desc, bar.unit) == (5, "masks", "file")
    shown = b""
    while True:  # the terminal is closed: read what it got until the end
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    text = shown.decode()
    assert "masks" in text and "5/5" in text and "file/s" in text


class _Paths:
    def __init__(self, path: str) -> None:
        self.path = path

    def with_paths(self, convert: Callable[[str], str]) -> Any:
        return _Paths(convert(self.path))


class _Named:
    def describe(self) -> str:
        return "image id 7 (batch_01/0001.jpg)"


def test_protocols_are_checked_at_run_time() -> None:
    """An item opts in by having the method; plain values implement neither protocol."""
    assert isinstance(_Paths("a.jpg"), HasPaths) and not isinstance(_Paths("a"), Described)
    assert isinstance(_Named(), Described) and not isinstance(_Named(), HasPaths)
    for plain in (1, "a.jpg", ("a", 1), None):
        assert not isinstance(plain, HasPaths | Described)
    assert _Paths("a.jpg").with_paths(lambda p: "/mnt/" + p).path == "/mnt/a.jpg"
