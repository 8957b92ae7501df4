"""The embedded default dataset: seeded procedural colour fundus photographs with exact lesion masks.

``geometry`` (field of view, landmarks, shape primitives), ``vessels``, ``lesions``, ``render`` (one photograph),
``writer`` (a set on disk in the IDRiD or DDR layout) and ``default_set`` (generated on first use into a bundle's data
folder).
"""

from monai_exudate.data.synthetic.default_set import MARKER, ensure_synthetic_dataset, resolve_dataset_dir
from monai_exudate.data.synthetic.render import generate_fundus, imbalance_statistics
from monai_exudate.data.synthetic.writer import write_synthetic_dataset

__all__ = [
    "MARKER",
    "ensure_synthetic_dataset",
    "generate_fundus",
    "imbalance_statistics",
    "resolve_dataset_dir",
    "write_synthetic_dataset",
]
