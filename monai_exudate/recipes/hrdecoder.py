"""The ``fundus_lesion_hrdecoder`` bundle's recipe: its network, preprocessing and inferer from its settings
(HRDecoder, Ding et al. 2024; the authors' code, CVIU-CSU/HRDecoder)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SlidingWindowInferer
from monai.transforms import (
    EnsureTyped,
    MapTransform,
    NormalizeIntensityd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotated,
    RandSpatialCropd,
    SpatialPadd,
)

from monai_exudate.data.preprocessing import fundus_load_transforms
from monai_exudate.data.resize import RandRescaled
from monai_exudate.inference.flip_inferer import FlipAveragedInferer
from monai_exudate.networks.hrdecoder import build_hrdecoder
from monai_exudate.utils.booleans import as_bool

__all__ = ["augmentation", "inferer", "network", "normalization", "preprocessing", "run_name"]


def network(
    settings: Mapping[str, Any],
    num_crops: int = 0,
    crop_jitter: Sequence[float] = (1.0, 1.0),
    pretrained_path: str | None = None,
) -> torch.nn.Module:
    """The HRDecoder the settings describe (``model_settings`` of ``train.json``, ``settings`` of a model package).

    ``num_crops`` and ``crop_jitter`` shape the high-resolution crops of training only (0 crops: evaluation and
    inference, where the high-resolution branch covers the whole image); ``pretrained_path`` loads a backbone for
    training.
    """
    return build_hrdecoder(
        width=settings["net_width"],
        num_classes=len(settings["lesions"]),
        hr_scale=settings["hr_scale"],
        downscale=settings["downscale"],
        num_crops=num_crops,
        crop_jitter=crop_jitter,
        divisor=settings["divisor"],
        head_channels=settings["head_channels"],
        head_kernel_size=settings["head_kernel_size"],
        head_num_convs=settings["head_num_convs"],
        lr_only=as_bool(settings["lr_only"], "lr_only"),
        pretrained_path=pretrained_path,
        num_blocks=settings["net_blocks"],
        num_modules=settings["net_modules"],
        stage1_channels=settings["stage1_channels"],
        stem_channels=settings["stem_channels"],
    )


def preprocessing(
    settings: Mapping[str, Any],
    labels: str,
    resize: bool = True,
    fov_pixels_key: str | None = None,
    normalize: bool = True,
) -> list[MapTransform]:
    """The photograph's preprocessing: load, field-of-view crop, square pad, antialiased resize to ``resize_size``
    (the authors' mmseg ``Resize`` with ``keep_ratio``: ``resize_size_mode``), cast, ImageNet normalisation.

    Training (``resize=False``, ``normalize=False``) keeps 8-bit photographs at their size in the cache and
    rescales, crops and normalises after its random scale; ``labels`` is
    :func:`~monai_exudate.data.preprocessing.fundus_load_transforms`'s label mode.
    """
    chain = fundus_load_transforms(
        lesions=settings["lesions"],
        spatial_size=settings["resize_size"] if resize else None,
        labels=labels,
        resize_filter="antialiased",
        size_mode=settings["resize_size_mode"],
        fov_crop=True,
        fov_pixels_key=fov_pixels_key,
        label_dtype=torch.uint8,
        image_dtype=torch.float32 if resize else torch.uint8,
    )
    if normalize:
        chain += normalization(settings)
    return chain


def normalization(settings: Mapping[str, Any]) -> list[MapTransform]:
    """Float images and labels, then ImageNet normalisation of the image (the authors' ``Normalize``)."""
    keys = ["image", "label"]
    return [
        EnsureTyped(keys=keys, dtype=torch.float32, allow_missing_keys=True),
        NormalizeIntensityd(
            keys="image", subtrahend=settings["image_mean"], divisor=settings["image_std"], channel_wise=True
        ),
    ]


def inferer(
    settings: Mapping[str, Any], sw_batch_size: int, overlap: float, flip_axes: Sequence[int] = ()
) -> Inferer:
    """Sliding windows of the training crop size with plain averaging (the authors' mmseg ``slide`` test mode:
    ``crop_size`` windows, overlapping logits averaged), test-time flips around it (none by default)."""
    windows = SlidingWindowInferer(
        roi_size=settings["crop_size"], sw_batch_size=sw_batch_size, overlap=overlap, mode="constant"
    )
    return FlipAveragedInferer(windows, spatial_axes=flip_axes)


def run_name(net_width: int, lr_only: bool | str, num_crops: int) -> str:
    """The MLflow run name: backbone width and decoder (``hrdecoder_w18_m2``, ``hrdecoder_w18_lr_only``)."""
    decoder = "_lr_only" if as_bool(lr_only, "lr_only") else f"_m{num_crops}"
    return f"hrdecoder_w{net_width}{decoder}"


def augmentation(settings: Mapping[str, Any], recipe: Mapping[str, Any]) -> list[MapTransform]:
    """The authors' training augmentation of the cached full-resolution field of view (their ``ds/idrid.py``).

    One antialiased rescale to ``resize_size`` times r in the recipe's ``scale_range`` (mmseg ``Resize`` with
    ``ratio_range``, ``resize_size_mode``), pad and crop to ``crop_size`` (uniform, or with ``lesion_biased_crops``
    MONAI's ``RandCropByPosNegLabeld`` at ``crop_pos``:``crop_neg``, which helps the small lesions when few
    photographs are trained on), a horizontal flip (``flip_prob``) and a rotation by up to ``rotate_degrees``
    (``rotate_prob``).
    """
    keys, crop_size = ["image", "label"], settings["crop_size"]
    if as_bool(recipe["lesion_biased_crops"], "lesion_biased_crops"):
        crop: MapTransform = RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=crop_size, pos=recipe["crop_pos"], neg=recipe["crop_neg"],
            num_samples=1,
        )  # fmt: skip
    else:
        crop = RandSpatialCropd(keys=keys, roi_size=crop_size, random_size=False)
    return [
        RandRescaled(
            keys=keys, spatial_size=settings["resize_size"], ratio_range=recipe["scale_range"],
            size_mode=settings["resize_size_mode"], mode=["bilinear", "nearest"],
        ),  # fmt: skip
        SpatialPadd(keys=keys, spatial_size=crop_size),
        crop,
        RandFlipd(keys=keys, prob=recipe["flip_prob"], spatial_axis=0),
        RandRotated(
            keys=keys, range_x=math.radians(recipe["rotate_degrees"]), prob=recipe["rotate_prob"],
            mode=["bilinear", "nearest"], padding_mode="zeros",
        ),  # fmt: skip
    ]
