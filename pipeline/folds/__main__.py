"""``python -m pipeline.folds <command>``: the trainer's command line (see :func:`main`)."""

from pipeline.folds.command import main

raise SystemExit(main())
