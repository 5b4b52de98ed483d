"""Where a fold is chosen: the splitter, stable folds, baselines, quality measures."""
