"""The ``exudate_dsm`` bundle's recipe: its network, preprocessing, crops, small-branch loader and inferer from its
settings (Liu, Liu, Liang 2022, the dual-sampling modulated Dice loss; the authors' code, CV-AC/DualNet)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.data import CacheDataset, DataLoader
from monai.inferers import Inferer, SimpleInferer, SlidingWindowInferer
from monai.transforms import (
    Compose,
    MapTransform,
    NormalizeIntensityd,
    RandCropByPosNegLabeld,
    RandWeightedCropd,
    SpatialPadd,
)

from monai_exudate.data.batch_sampler import full_batch_loader
from monai_exudate.data.crop_weights import SMALL_PATCH_SAMPLINGS, ComponentBalancedWeightd
from monai_exudate.data.preprocessing import fundus_load_transforms
from monai_exudate.data.transforms import RandFlipRotate90d
from monai_exudate.inference.flip_inferer import FlipAveragedInferer
from monai_exudate.inference.postprocessing import FuseBranchLogitsd
from monai_exudate.losses.factory import build_exudate_loss
from monai_exudate.networks import build_exudate_network
from monai_exudate.utils.booleans import as_bool

__all__ = [
    "augmentation",
    "aux_weight",
    "inferer",
    "logit_postprocessing",
    "loss",
    "network",
    "patch_crops",
    "preprocessing",
    "rotate_non_square",
    "run_name",
    "small_branch_dataset",
    "small_branch_loader",
]

# the auxiliary-head weight of the authors' loss/criterion.py (L159): dual networks, single baselines
_AUX_WEIGHT = {True: 0.2, False: 0.4}


def network(settings: Mapping[str, Any], pretrained_path: str | None = None) -> torch.nn.Module:
    """The network the settings describe (``model_settings`` of ``train.json``, ``settings`` of a model package).

    ``branch_layer4_blocks`` shapes only the dual network's per-branch layer4, so a single network ignores it.
    ``pretrained_path`` loads a backbone for training; a trained model's weights replace it.
    """
    dual = as_bool(settings["dual"], "dual")
    return build_exudate_network(
        arch=settings["arch"],
        dual=dual,
        out_channels=len(settings["lesions"]),
        width=settings["net_width"],
        layers=settings["net_layers"],
        branch_layer4_blocks=settings["branch_layer4_blocks"] if dual else None,
        pretrained_path=pretrained_path,
        dropout=settings["net_dropout"],
        head_prior=settings["head_prior"],
        shared_aux_head=as_bool(settings["shared_aux_head"], "shared_aux_head"),
        pooling_norm=settings["pooling_norm"],
    )


def loss(settings: Mapping[str, Any], recipe: Mapping[str, Any]) -> torch.nn.Module:
    """The training loss of the network the settings describe, from the recipe (``training_recipe`` of
    ``train.json``): :func:`~monai_exudate.losses.factory.build_exudate_loss` with the recipe's loss, samplers and
    auxiliary rule."""
    return build_exudate_loss(
        name=recipe["loss_name"],
        dual=as_bool(settings["dual"], "dual"),
        sample_rate=recipe["sample_rate"],
        mode=recipe["dsm_mode"],
        aux_weight=recipe["aux_weight"],
        aux_loss=recipe["aux_loss"],
        loss_scale=recipe["loss_scale"],
        arch=settings["arch"],
        hed_supervision=recipe["hed_supervision"],
    )


def preprocessing(
    settings: Mapping[str, Any], labels: str, fov_pixels_key: str | None = None
) -> list[MapTransform]:
    """The photograph's preprocessing up to the network's input: load, field-of-view crop, square pad, area resize
    to ``spatial_size`` (the authors resize with OpenCV's area filter), then ImageNet normalisation.

    ``labels`` is :func:`~monai_exudate.data.preprocessing.fundus_load_transforms`'s label mode: "resize" for
    training, "original" for evaluation at the photograph's size, "none" for inference.
    """
    return [
        *fundus_load_transforms(
            lesions=settings["lesions"],
            spatial_size=settings["spatial_size"],
            labels=labels,
            resize_filter="area",
            fov_crop=as_bool(settings["fov_crop"], "fov_crop"),
            pad_below=settings["pad_below"],
            fov_pixels_key=fov_pixels_key,
        ),
        NormalizeIntensityd(
            keys="image", subtrahend=settings["image_mean"], divisor=settings["image_std"], channel_wise=True
        ),
    ]


def logit_postprocessing(settings: Mapping[str, Any]) -> list[MapTransform]:
    """Fuse a dual network's two branches into one logit per lesion (a single network's pass unchanged)."""
    dual = as_bool(settings["dual"], "dual")
    return [FuseBranchLogitsd(keys="pred", num_branches=2 if dual else 1, fusion=settings["fusion"])]


def inferer(
    settings: Mapping[str, Any], sw_batch_size: int, overlap: float, flip_axes: Sequence[int] = ()
) -> Inferer:
    """Whole-image inference for a network trained on whole images; Gaussian-weighted sliding windows of its
    ``patch_size`` for one trained on patches (it has never seen a whole photograph's context); test-time flips
    around either (none by default, as in the authors' ``test.py``)."""
    if as_bool(settings["patch_training"], "patch_training"):
        inner: Inferer = SlidingWindowInferer(
            roi_size=settings["patch_size"], sw_batch_size=sw_batch_size, overlap=overlap, mode="gaussian"
        )
    else:
        inner = SimpleInferer()
    return FlipAveragedInferer(inner, spatial_axes=flip_axes)


def aux_weight(dual: bool | str) -> float:
    """The auxiliary head's loss weight: 0.2 for dual networks, 0.4 for the single baselines (the authors'
    ``loss/criterion.py``, L159)."""
    return _AUX_WEIGHT[as_bool(dual, "dual")]


def augmentation(settings: Mapping[str, Any], recipe: Mapping[str, Any]) -> list[MapTransform]:
    """The training augmentation: one of the recipe's ``augmentation_variants`` (flips and 90-degree rotations) of
    each image and its masks, turning whole non-square photographs only when :func:`rotate_non_square` allows."""
    rotate = rotate_non_square(recipe["batch_size"], settings["patch_training"])
    variants = recipe["augmentation_variants"]
    return [RandFlipRotate90d(keys=["image", "label"], prob=1.0, variants=variants, rotate_non_square=rotate)]


def rotate_non_square(batch_size: int, patch_training: bool | str) -> bool:
    """Whether whole non-square photographs may turn by 90 degrees: only one to a batch (the authors' one image per
    GPU), since a turned photograph no longer stacks with unturned ones; patches are square and always turn."""
    return int(batch_size) == 1 and not as_bool(patch_training, "patch_training")


def run_name(arch: str, dual: bool | str, loss_name: str) -> str:
    """The MLflow run name: architecture, branches and loss (``pspnet_dual_dsm``)."""
    return f"{arch}_{'dual' if as_bool(dual, 'dual') else 'single'}_{loss_name}"


def patch_crops(settings: Mapping[str, Any], recipe: Mapping[str, Any]) -> list[MapTransform]:
    """Lesion-biased patch crops when training on patches (pad to ``patch_size``, then MONAI's pixel-balanced
    ``RandCropByPosNegLabeld`` at the recipe's ``patch_pos``:``patch_neg``, ``patch_samples`` a photograph); none
    for whole-image training."""
    if not as_bool(settings["patch_training"], "patch_training"):
        return []
    keys, patch_size = ["image", "label"], settings["patch_size"]
    crop = RandCropByPosNegLabeld(
        keys=keys, label_key="label", spatial_size=patch_size, pos=recipe["patch_pos"], neg=recipe["patch_neg"],
        num_samples=recipe["patch_samples"],
    )  # fmt: skip
    return [SpatialPadd(keys=keys, spatial_size=patch_size), crop]


def small_branch_dataset(
    shared: Any,
    datalist: Sequence[Mapping[str, Any]],
    preprocessing: Sequence[MapTransform],
    augmentation: Sequence[MapTransform],
    settings: Mapping[str, Any],
    recipe: Mapping[str, Any],
    cache_rate: float = 1.0,
    num_workers: int = 0,
) -> Any:
    """The dataset of the DSM small-exudate branch's loader, for the recipe's ``small_patch_sampling``.

    "pixels": ``shared``, the large branch's dataset (its random crops are drawn anew for each loader). "components":
    a dataset of its own whose crops are centred by :class:`~monai_exudate.data.crop_weights.ComponentBalancedWeightd`
    weights, so a 10-pixel exudate is as likely a centre as a plaque (the paper's re-balanced sampler for the small
    branch); it needs patch training.
    """
    sampling = recipe["small_patch_sampling"]
    if sampling not in SMALL_PATCH_SAMPLINGS:
        raise ValueError(f"small_patch_sampling must be one of {SMALL_PATCH_SAMPLINGS}, got {sampling!r}.")
    if sampling == "pixels":
        return shared
    if not as_bool(settings["patch_training"], "patch_training"):
        raise ValueError("small_patch_sampling 'components' chooses crop centres: it needs patch_training true.")
    keys, patch_size = ["image", "label"], settings["patch_size"]
    pos, neg, samples = recipe["patch_pos"], recipe["patch_neg"], recipe["patch_samples"]
    crops = [
        ComponentBalancedWeightd(keys="label", weight_key="crop_weight", pos=pos, neg=neg),
        SpatialPadd(keys=[*keys, "crop_weight"], spatial_size=patch_size),
        RandWeightedCropd(keys=keys, w_key="crop_weight", spatial_size=patch_size, num_samples=samples),
    ]
    transform = Compose([*preprocessing, *crops, *augmentation])
    return CacheDataset(data=list(datalist), transform=transform, cache_rate=cache_rate, num_workers=num_workers)


def small_branch_loader(
    dataset: Any, dual: bool | str, batch_size: int, seed: int, num_workers: int = 0
) -> DataLoader | None:
    """The small-exudate branch's loader: the dataset shuffled independently of the large branch's (seed + 1), or
    None for a single network (the trainer then runs as MONAI's ``SupervisedTrainer``)."""
    if not as_bool(dual, "dual"):
        return None
    return full_batch_loader(dataset, batch_size=batch_size, seed=int(seed) + 1, num_workers=num_workers)
