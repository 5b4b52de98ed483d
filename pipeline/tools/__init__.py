"""Commands that are not stages: the sample generator, the item store's prune, the environment."""
