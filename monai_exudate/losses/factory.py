"""Build the training loss of an exudate network by name, so a bundle switches the ablation rows by override."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss

from monai_exudate.losses.class_balanced_bce import ClassBalancedBCELoss
from monai_exudate.losses.deep_supervision import DualBranchLoss, SingleBranchLoss
from monai_exudate.losses.dsm import DSMLoss

LOSS_NAMES = ("dsm", "dice", "cbce")


def build_exudate_loss(
    name: str = "dsm",
    dual: bool = True,
    sample_rate: float | str = 0.5,
    mode: str = "sampled",
    smooth: float = 1.0,
    aux_weight: float = 0.2,
    side_weight: float = 1.0,
) -> torch.nn.Module:
    """Return the loss for ``name`` (dsm | dice | cbce) and the network's branches (``dual`` or single).

    - dual + dsm: the DSM loss, uniform-sampled Dice on the large branch, re-balanced sampled Dice on the small
      branch, weighted by alpha (set each epoch by ``AlphaScheduleHandler``).
    - dual + dice: both branches trained with plain Dice (uniform samplers); alpha still weights the two.
    - single + dice / single + cbce: the paper's baselines (MONAI ``DiceLoss`` / class-balanced BCE).
    Auxiliary (PSPNet) and side (HED) outputs are supervised with the same loss at ``aux_weight`` / ``side_weight``.
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; expected one of {LOSS_NAMES}")
    if dual:
        if name == "cbce":
            raise ValueError("loss 'cbce' is a single-branch baseline; use branches 'single' or loss 'dsm'/'dice'")
        small_sampler = "rebalanced" if name == "dsm" else "uniform"
        dsm = DSMLoss(sample_rate=sample_rate, mode=mode, small_sampler=small_sampler, smooth=smooth)
        return DualBranchLoss(dsm, aux_weight=aux_weight, side_weight=side_weight)
    if name == "dsm":
        raise ValueError("loss 'dsm' needs the dual-branch network; use branches 'dual' or loss 'dice'/'cbce'")
    base = DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth) if name == "dice" else ClassBalancedBCELoss()
    return SingleBranchLoss(base, aux_weight=aux_weight, side_weight=side_weight)
