"""The files between stages: paths and schemas (contracts), params, json, PNG, images, RLE."""
