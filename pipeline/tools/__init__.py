"""Commands that are not stages: the sample generator, the item store's prune, the
environment, and `coco-folds init` for a team's own data repo."""
