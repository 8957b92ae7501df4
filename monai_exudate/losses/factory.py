"""Build the training loss of an exudate network by name, so a bundle switches the ablation rows by override."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss

from monai_exudate.losses.class_balanced_bce import ClassBalancedBCELoss
from monai_exudate.losses.deep_supervision import DualBranchLoss, DualHEDLoss, SingleBranchLoss
from monai_exudate.losses.dsm import DSMLoss

LOSS_NAMES = ("dsm", "dice", "cbce")
# how a dual network's auxiliary output is supervised: "plain" Dice on each branch's own image (the authors'
# combiner), or "dsm", the same alpha-weighted, re-sampled pair as the main output (bundles before 0.7.0)
AUX_LOSS_RULES = ("plain", "dsm")
# how a dual HED's outputs are supervised: "authors" (sides 4-5 and the fusion, DualHEDLoss) or "all_sides" (the DSM
# pair on the fusion and on each of the five sides at side_weight, bundles before 0.7.0)
HED_SUPERVISION_RULES = ("authors", "all_sides")
# the rate p of the small branch's re-balanced sampler per architecture, from the authors' train.sh
# (--dual-p 0.5 for PSPNet, 0.25 for DeepLabv3 and HED); the U-Net, which they did not train, takes the paper's 0.5
AUTHORS_SAMPLE_RATES = {"pspnet": 0.5, "deeplabv3": 0.25, "hed": 0.25, "unet": 0.5}


def authors_sample_rate(arch: str) -> float:
    """The small branch's sample rate the authors use for ``arch`` (see :data:`AUTHORS_SAMPLE_RATES`)."""
    if arch not in AUTHORS_SAMPLE_RATES:
        raise ValueError(f"arch must be one of {tuple(AUTHORS_SAMPLE_RATES)}, got {arch!r}")
    return AUTHORS_SAMPLE_RATES[arch]


def build_exudate_loss(
    name: str = "dsm",
    dual: bool = True,
    sample_rate: float | str = 0.5,
    mode: str = "sampled",
    smooth: float = 1.0,
    aux_weight: float = 0.2,
    side_weight: float = 1.0,
    aux_loss: str = "plain",
    loss_scale: float = 1.0,
    arch: str | None = None,
    hed_supervision: str = "authors",
) -> torch.nn.Module:
    """Return the loss for ``name`` (dsm | dice | cbce) and the network's branches (``dual`` or single).

    - dual + dsm: the DSM loss, uniform-sampled Dice on the large branch, re-balanced sampled Dice on the small
      branch, weighted by alpha (set each epoch by ``AlphaScheduleHandler``).
    - dual + dice: both branches trained with plain Dice (uniform samplers); alpha still weights the two.
    - single + dice / single + cbce: the paper's baselines (MONAI ``DiceLoss`` / class-balanced BCE).
    Side (HED) outputs are supervised with the same loss at ``side_weight``; auxiliary (PSPNet, DeepLabv3) outputs at
    ``aux_weight`` with the same loss for single networks and, for dual ones, by ``aux_loss`` (one of
    :data:`AUX_LOSS_RULES`; "plain" is MONAI ``DiceLoss`` on each branch's own image, see :class:`DualBranchLoss`).
    The authors weigh the auxiliary term 0.2 for dual networks and 0.4 for the single baselines
    (``loss/criterion.py`` L159 of their code); the bundle's ``aux_weight`` setting does the same. ``loss_scale``
    multiplies the whole loss (0.5 gives a dual network the authors' two-GPU step, see :class:`DualBranchLoss`).
    A dual HED (``arch="hed"``) follows ``hed_supervision`` (one of :data:`HED_SUPERVISION_RULES`).
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; expected one of {LOSS_NAMES}")
    if aux_loss not in AUX_LOSS_RULES:
        raise ValueError(f"aux_loss must be one of {AUX_LOSS_RULES}, got {aux_loss!r}")
    if hed_supervision not in HED_SUPERVISION_RULES:
        raise ValueError(f"hed_supervision must be one of {HED_SUPERVISION_RULES}, got {hed_supervision!r}")
    if dual:
        if name == "cbce":
            raise ValueError("loss 'cbce' is a single-branch baseline; use dual false or loss 'dsm'/'dice'")
        small_sampler = "rebalanced" if name == "dsm" else "uniform"
        dsm = DSMLoss(sample_rate=sample_rate, mode=mode, small_sampler=small_sampler, smooth=smooth)
        if arch == "hed" and hed_supervision == "authors":
            return DualHEDLoss(dsm, DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth), scale=loss_scale)
        plain = DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth) if aux_loss == "plain" else None
        return DualBranchLoss(dsm, aux_weight=aux_weight, side_weight=side_weight, aux_loss=plain, scale=loss_scale)
    if name == "dsm":
        raise ValueError("loss 'dsm' needs the dual-branch network; use dual true or loss 'dice'/'cbce'")
    base = DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth) if name == "dice" else ClassBalancedBCELoss()
    return SingleBranchLoss(base, aux_weight=aux_weight, side_weight=side_weight, scale=loss_scale)
