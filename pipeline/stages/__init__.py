"""One module per dvc.yaml stage: each reads its inputs, calls a pure ``build_*``, writes."""
