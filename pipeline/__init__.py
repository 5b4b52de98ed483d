"""COCO segmentation datasets -> semantic masks, class vectors, fair k-fold splits, exports.

Each stage is a module runnable as ``python -m pipeline <stage>``; ``dvc.yaml`` wires them.
"""

__version__ = "0.1.0"
