"""Training-set selection: the authors' rule that drops training photographs without any lesion pixel."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from monai_exudate.utils.booleans import as_bool

__all__ = ["has_lesion_pixels", "training_items"]

logger = logging.getLogger(__name__)


def has_lesion_pixels(item: Mapping[str, Any], lesions: Sequence[str]) -> bool:
    """Whether any of the item's lesion masks holds a non-zero pixel (a missing mask holds none)."""
    for lesion in lesions:
        path = item.get(lesion)
        if path is None:
            continue
        with Image.open(path) as mask:
            if mask.convert("L").getbbox() is not None:
                return True
    return False


def training_items(
    items: Sequence[Mapping[str, Any]], lesions: Sequence[str], drop_lesion_free: Any = False
) -> list[Mapping[str, Any]]:
    """The training photographs, without those whose masks hold no lesion pixel when ``drop_lesion_free`` is on.

    The authors' data preparation keeps a training image only if its label has a positive pixel
    (``scripts/prepare_dataset.py``: ``if split == 'train' and np.sum(label) <= 0: continue``), which removes about
    half of DDR's training set for exudates; evaluation sections are never filtered.

    Raises:
        ValueError: naming the setting, when no photograph is left.
    """
    items = list(items)
    if not as_bool(drop_lesion_free, "drop_lesion_free"):
        return items
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        keep = list(pool.map(lambda item: has_lesion_pixels(item, lesions), items))
    kept = [item for item, k in zip(items, keep, strict=True) if k]
    if not kept:
        raise ValueError(f"drop_lesion_free: none of the {len(items)} training photographs has a {list(lesions)} pixel")
    logger.info(
        "drop_lesion_free: %d of %d training photographs have no %s pixel and are left out",
        len(items) - len(kept),
        len(items),
        "/".join(lesions),
    )
    return kept
