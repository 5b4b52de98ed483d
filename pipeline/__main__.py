"""``python -m pipeline <stage>``: run one stage with the parameters in ./params.yaml."""

from __future__ import annotations

import importlib
import os
import sys

STAGES = {
    "validate": "pipeline.stages.validate",
    "masks": "pipeline.stages.masks",
    "vectors": "pipeline.stages.vectors",
    "split": "pipeline.stages.split",
    "export": "pipeline.stages.export",
    "augment": "pipeline.stages.augment",
    "report": "pipeline.stages.report",
}
# Commands that are not stages: the sample generator, the item cache's prune, the environment.
TOOLS = {
    "sample": "pipeline.tools.sample",
    "cache": "pipeline.tools.cache",
    "env": "pipeline.tools.env",
}
COMMANDS = STAGES | TOOLS


def main(argv: list[str] | None = None) -> int:
    from pipeline.files.errors import DatasetError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(f"usage: python -m pipeline {{{','.join(COMMANDS)}}} [args]", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        module = importlib.import_module(COMMANDS[argv[0]])
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("pipeline"):
            raise
        return fail(
            f"{exc}: the pipeline stages need the full install, pip install -e '.[pipeline]' "
            "(the minimal install is the trainer's: pipeline.folds, pipeline.folds.torch_dataset)"
        )
    try:
        module.main(argv[1:])
    except DatasetError as exc:
        return fail(str(exc))
    except FileNotFoundError as exc:
        # Usually an earlier stage's output: `dvc repro` runs the stages in order.
        return fail(
            f"{exc.filename}: not found ({exc.strerror}); run the earlier stages first, "
            f"e.g. `dvc repro {argv[0]}`"
        )
    except OSError as exc:  # unwritable output folder, full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return fail("interrupted; outputs are written atomically, nothing is half-written")
    except MemoryError:
        return fail("out of memory; lower `workers` in params.yaml or use a larger machine")
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback on request
        if os.environ.get("COCO_FOLDS_DEBUG"):
            raise
        return fail(
            f"unexpected {type(exc).__name__}: {exc} (a bug: please report it; "
            "COCO_FOLDS_DEBUG=1 shows the traceback)"
        )
    return 0


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
