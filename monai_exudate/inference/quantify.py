"""Lesion quantification of binary masks: area, share of the field of view, connected components, largest one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage as ndi

from monai_exudate.data.transforms import FieldOfViewSelector

MEASUREMENT_FIELDS = ("image", "lesion", "area_px", "area_pct_fov", "num_lesions", "largest_lesion_px")
# summary.csv: the measurements, then what made them (threshold, model, its origin) and when (UTC)
RUN_FIELDS = ("threshold", "model", "model_origin", "segmented_at")
SUMMARY_FIELDS = MEASUREMENT_FIELDS + RUN_FIELDS
# 8-connectivity: diagonal neighbours belong to the same lesion.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def field_of_view_pixels(image: torch.Tensor | np.ndarray, selector: FieldOfViewSelector | None = None) -> int:
    """Pixel count of the field of view of a channel-first photograph, found by ``FieldOfViewSelector``."""
    return int((selector or FieldOfViewSelector())(image).sum())


def lesion_statistics(mask: np.ndarray) -> dict[str, int]:
    """Area, number of 8-connected components and size of the largest one of a binary (H, W) mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    area = int(np.count_nonzero(mask))
    if area == 0:
        return {"area_px": 0, "num_lesions": 0, "largest_lesion_px": 0}
    # no lesion crosses an empty row, so each band of consecutive non-empty rows is labelled on its own, cropped
    # to its columns: on a 12-megapixel photograph with sparse lesions this is far cheaper than one full label
    rows = np.flatnonzero(mask.any(axis=1))
    gaps = np.flatnonzero(np.diff(rows) > 1)
    starts, ends = np.r_[rows[0], rows[gaps + 1]], np.r_[rows[gaps], rows[-1]] + 1
    count, largest = 0, 0
    for start, end in zip(starts, ends):
        band = mask[start:end]
        cols = np.flatnonzero(band.any(axis=0))
        labels, found = ndi.label(band[:, cols[0] : cols[-1] + 1], structure=_EIGHT_CONNECTED)
        count += found
        largest = max(largest, int(np.bincount(labels.ravel())[1:].max()))
    return {"area_px": area, "num_lesions": int(count), "largest_lesion_px": largest}


def summary_rows(
    image: str, masks: np.ndarray, lesion_names: Sequence[str], fov_pixels: int
) -> list[dict[str, object]]:
    """One ``MEASUREMENT_FIELDS`` row per lesion channel of ``masks`` (C, H, W); the percentage is of ``fov_pixels``."""
    if len(masks) != len(lesion_names):
        raise ValueError(f"masks has {len(masks)} channels but {len(lesion_names)} lesion names were given")
    if fov_pixels <= 0:
        raise ValueError(f"fov_pixels must be positive, got {fov_pixels}")
    rows = []
    for lesion, mask in zip(lesion_names, masks):
        stats = lesion_statistics(mask)
        rows.append(
            {
                "image": image,
                "lesion": lesion,
                "area_px": stats["area_px"],
                "area_pct_fov": round(100.0 * stats["area_px"] / fov_pixels, 6),
                "num_lesions": stats["num_lesions"],
                "largest_lesion_px": stats["largest_lesion_px"],
            }
        )
    return rows
