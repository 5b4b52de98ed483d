"""``python -m pipeline env [--write | --from-lock uv.lock | --refresh-lock]``: check the
installed byte-deciding versions against environment.yaml, record them, or refresh the lock
(see :mod:`pipeline.files.environment`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.files.environment import (
    ENV_FILE,
    INSTALL_HINT,
    LOCK_FILE,
    REQUIREMENTS,
    check_environment,
    installed_versions,
    locked_versions,
    refresh_lock,
    write_environment,
)

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """``python -m pipeline env [--write | --from-lock uv.lock | --refresh-lock]``."""
    parser = argparse.ArgumentParser(prog="python -m pipeline env", description=main.__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="record the installed versions")
    group.add_argument("--from-lock", type=Path, help="record the versions of this uv.lock")
    group.add_argument(
        "--refresh-lock", action="store_true", help="upgrade uv.lock, requirements.lock and this"
    )
    args = parser.parse_args(argv)
    path = Path(ENV_FILE)
    if args.refresh_lock:
        moved = refresh_lock(Path("."))
        for name, (old, new) in moved.items():
            print(f"{name}: {old} -> {new}")
        print(
            f"{LOCK_FILE}, {REQUIREMENTS} and {ENV_FILE} refreshed ({len(moved)} byte-deciding "
            f"versions moved); now `{INSTALL_HINT}`, `dvc repro`, and a CHANGELOG.md line for "
            "every output that changed (`dvc status` names the stages)"
        )
    elif args.write or args.from_lock:
        versions = locked_versions(args.from_lock) if args.from_lock else installed_versions()
        write_environment(path, versions)
        print(f"{path}: {len(versions)} versions recorded")
    else:
        check_environment(Path("."))
        print(f"{path}: the installed versions match" if path.is_file() else f"{path}: absent")
