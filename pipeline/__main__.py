"""``python -m pipeline <stage>``: run one stage with the parameters in ./params.yaml."""

from __future__ import annotations

import importlib
import sys

STAGES = {
    "validate": "pipeline.validate",
    "masks": "pipeline.masks",
    "vectors": "pipeline.vectors",
    "split": "pipeline.split",
    "export": "pipeline.export",
    "augment": "pipeline.augment",
    "report": "pipeline.report",
    "sample": "pipeline.sample",
}


def main(argv: list[str] | None = None) -> int:
    from pipeline.errors import DatasetError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STAGES:
        print(f"usage: python -m pipeline {{{','.join(STAGES)}}} [args]", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(STAGES[argv[0]])
    try:
        module.main(argv[1:])
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        # Usually an earlier stage's output: `dvc repro` runs the stages in order.
        print(
            f"error: {exc.filename}: not found ({exc.strerror}); run the earlier stages "
            f"first, e.g. `dvc repro {argv[0]}`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
