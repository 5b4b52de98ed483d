"""Where a variant is made: the image+mask transforms."""
