"""How per-image work runs: the stage command line, local pool, Dask, item store."""
