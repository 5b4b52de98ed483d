"""``python -m pipeline <stage>``: run one stage with the parameters in ./params.yaml."""

from __future__ import annotations

import importlib
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
    "init": "pipeline.tools.init",
}
COMMANDS = STAGES | TOOLS


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(f"usage: python -m pipeline {{{','.join(COMMANDS)}}} [args]", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        module = importlib.import_module(COMMANDS[argv[0]])
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("pipeline"):
            raise
        return _light_install(exc)
    from pipeline.execution.cli import run_command

    return run_command(argv[0], module.main, argv[1:])


def _light_install(exc: ModuleNotFoundError) -> int:
    print(
        f"error: {exc}: the pipeline stages need the full install, pip install -e "
        "'.[pipeline]' (the minimal install is the trainer's: pipeline.folds, "
        "pipeline.folds.torch_dataset)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
