"""The fundus loading chain, defined once: training, evaluation and inference of both bundles build it here."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import CastToTyped, EnsureTyped, MapTransform

from monai_exudate.data.resize import AntialiasedResized, SmoothInverseResized
from monai_exudate.data.transforms import FieldOfViewCropd, LoadFundusd, PadToSquared

__all__ = ["LABEL_MODES", "RESIZE_FILTERS", "fundus_load_transforms"]

# "resize": the label follows the photograph's geometry (training); "original": the label stays at the photograph's
# own size, so predictions are scored there after inversion (evaluation); "none": no label is read (inference)
LABEL_MODES = ("resize", "original", "none")
# "area": area averaging, inverted bilinearly (exudate_dsm); "antialiased": torch's antialiased bilinear filter
# (fundus_lesion_hrdecoder, as the authors' mmseg/PIL resize)
RESIZE_FILTERS = ("area", "antialiased")


def fundus_load_transforms(
    lesions: Sequence[str],
    spatial_size: Sequence[int] | int | None,
    labels: str = "resize",
    resize_filter: str = "area",
    size_mode: str = "all",
    fov_crop: bool = True,
    pad_below: int = 0,
    fov_pixels_key: str | None = None,
    label_dtype: torch.dtype = torch.float32,
    image_dtype: torch.dtype = torch.float32,
) -> list[MapTransform]:
    """Load a photograph (and its lesion masks), crop it to the field of view, pad it square, resize it, cast it.

    Every geometric step is invertible, so evaluation and inference map predictions back to the photograph through
    the same chain (``Invertd`` / :func:`monai_exudate.inference.inversion.invert_prediction`). Normalisation and
    augmentation are not part of it: each bundle places them itself (before or after its patch crops).

    Args:
        lesions: lesion mask keys to stack into the label (ignored with ``labels="none"``).
        spatial_size: the network's input size (W, H as MONAI's PIL reader orders space), or with
            ``size_mode="longest"`` the length of the longest side; None keeps the photograph's own resolution
            (a training set cached at full resolution for a random rescale, :class:`~monai_exudate.data.resize.
            RandRescaled`).
        labels: one of :data:`LABEL_MODES`.
        resize_filter: one of :data:`RESIZE_FILTERS`.
        size_mode: ``"all"`` or ``"longest"`` (``resize_filter="antialiased"`` only).
        fov_crop: crop to the field of view's bounding box first.
        pad_below: pad to square the photographs whose short side is under this many pixels (0: never; DDR's rule).
        fov_pixels_key: store the field of view's pixel count under this key (inference quantifies lesions with it).
        label_dtype: dtype of the resized label (uint8 keeps a cached training set small).
        image_dtype: dtype of the image with ``labels="resize"`` (uint8 keeps a full-resolution cache small).
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, got {labels!r}")
    if resize_filter not in RESIZE_FILTERS:
        raise ValueError(f"resize_filter must be one of {RESIZE_FILTERS}, got {resize_filter!r}")
    if resize_filter == "area" and size_mode != "all":
        raise ValueError(f"size_mode {size_mode!r} needs resize_filter 'antialiased'; area resizing sets every side")
    if int(pad_below) < 0:
        raise ValueError(f"pad_below must be 0 (never pad) or a positive side length, got {pad_below}")
    geometry_keys = ["image", "label"] if labels == "resize" else ["image"]
    chain: list[MapTransform] = [LoadFundusd(lesions=[] if labels == "none" else list(lesions))]
    if fov_crop:
        chain.append(FieldOfViewCropd(keys=geometry_keys, fov_pixels_key=fov_pixels_key))
    if int(pad_below) > 0:
        chain.append(PadToSquared(keys=geometry_keys, below=int(pad_below)))
    if spatial_size is not None and resize_filter == "area":
        modes = ["area", "nearest"][: len(geometry_keys)]
        chain.append(SmoothInverseResized(keys=geometry_keys, spatial_size=spatial_size, mode=modes))
    elif spatial_size is not None:
        modes = ["bilinear", "nearest"][: len(geometry_keys)]
        chain.append(AntialiasedResized(keys=geometry_keys, spatial_size=spatial_size, size_mode=size_mode, mode=modes))
    if labels == "resize":
        chain.append(CastToTyped(keys=["image", "label"], dtype=[image_dtype, label_dtype]))
    else:
        chain.append(EnsureTyped(keys=["image", "label"] if labels == "original" else ["image"], dtype=torch.float32))
    return chain
