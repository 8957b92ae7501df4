"""Losses: DSM Dice with uniform/re-balanced pixel samplers, alpha schedules, class-balanced BCE, deep supervision.

Plain Dice baselines use MONAI's ``monai.losses.DiceLoss(sigmoid=True)`` directly.
"""

from monai_exudate.losses.class_balanced_bce import ClassBalancedBCELoss, class_balance_weights
from monai_exudate.losses.deep_supervision import DualBranchLoss, DualHEDLoss, SingleBranchLoss, split_outputs
from monai_exudate.losses.dice import SampledDiceLoss, build_sampler, weighted_dice, weighted_dice_loss
from monai_exudate.losses.dsm import DSMLoss
from monai_exudate.losses.factory import LOSS_NAMES, authors_sample_rate, build_exudate_loss
from monai_exudate.losses.hrdecoder_loss import HRDecoderLoss, crop_hr_targets
from monai_exudate.losses.samplers import INVERSE_FREQUENCY, RebalancedPixelSampler, UniformPixelSampler
from monai_exudate.losses.schedules import ConstantAlpha, CosineDecay, LinearDecay, ParabolicDecay

__all__ = [
    "authors_sample_rate",
    "INVERSE_FREQUENCY",
    "LOSS_NAMES",
    "ClassBalancedBCELoss",
    "ConstantAlpha",
    "CosineDecay",
    "DSMLoss",
    "DualBranchLoss",
    "DualHEDLoss",
    "HRDecoderLoss",
    "LinearDecay",
    "ParabolicDecay",
    "RebalancedPixelSampler",
    "SampledDiceLoss",
    "SingleBranchLoss",
    "UniformPixelSampler",
    "build_exudate_loss",
    "build_sampler",
    "class_balance_weights",
    "crop_hr_targets",
    "split_outputs",
    "weighted_dice",
    "weighted_dice_loss",
]
