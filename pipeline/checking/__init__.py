"""Validation rules for COCO json: what validate repairs, drops or refuses."""
