"""Build an exudate network (PSPNet, DeepLabv3, HED or U-Net, single- or dual-branch) from the bundle's settings."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from monai_exudate.networks.blocks import POOLING_NORMS
from monai_exudate.networks.deeplabv3 import ASPPHead, DeepLabV3
from monai_exudate.networks.dual_branch import DualBranchNet, HEDBranch, ResNetBranch
from monai_exudate.networks.hed import HED, HEDHead
from monai_exudate.networks.pspnet import AuxHead, PSPHead, PSPNet
from monai_exudate.networks.resnet import DilatedResNet
from monai_exudate.networks.unet import UNet, UNetBranch, UNetEncoder, unet_features
from monai_exudate.networks.vgg import VGG16_STAGE_ENDS, VGG16Backbone

__all__ = ["ARCHITECTURES", "build_exudate_network"]

ARCHITECTURES = ("pspnet", "deeplabv3", "hed", "unet")
# HED shares VGG16 stages 1-3: `features` up to and including the last ReLU of stage 3
_HED_SHARED_END = VGG16_STAGE_ENDS[2]
# the shared auxiliary classifier of a dual PSPNet/DeepLabv3 reads layer3, the third of the shared features
_RESNET_AUX_LEVEL = 2


def _dual_resnet(
    arch: str,
    in_channels: int,
    out_channels: int,
    width: int,
    layers: Sequence[int],
    dropout: float,
    pretrained_path: str | None,
    branch_layer4_blocks: int | None,
    shared_aux_head: bool,
    pooling_norm: str,
) -> DualBranchNet:
    """Dual PSPNet/DeepLabv3: the ResNet stem and layer1..layer3 (and the leading layer4 blocks) shared.

    Each branch has its own trailing ``branch_layer4_blocks`` layer4 blocks (all of layer4 when None; the authors'
    released code duplicates only the last, ``branch_layer4_blocks=1``, which gives their ~1.5x parameter ratio)
    and its own head. The auxiliary classifier on layer3 is one module for both branches with ``shared_aux_head``
    (the authors'; PSPNet and DeepLabv3 both have it) or, without it, one per branch for PSPNet and none for
    DeepLabv3 (the bundles before 0.7.0). A pretrained backbone initialises the shared stages and both copies of the
    per-branch blocks. ``shared`` is the backbone module with its per-branch blocks moved into the branches (its
    ``out_channels`` still describe the complete backbone's features).
    """
    backbone = DilatedResNet(in_channels, layers, width, pretrained_path)
    n_blocks = backbone.layers[3]
    n_branch = n_blocks if branch_layer4_blocks is None else int(branch_layer4_blocks)
    if not 1 <= n_branch <= n_blocks:
        raise ValueError(f"branch_layer4_blocks must be in [1, {n_blocks}] (layer4 blocks), got {n_branch}.")
    # slices of a Sequential keep the block indices, so keys stay `layer4.<i>.*` in both places
    tail = backbone.layer4[n_blocks - n_branch :]
    backbone.layer4 = backbone.layer4[: n_blocks - n_branch]
    channels = backbone.out_channels  # layer1..layer4
    branches = []
    for layer4 in (tail, copy.deepcopy(tail)):
        if arch == "pspnet":
            head = PSPHead(channels[3], out_channels, dropout=dropout, pooling_norm=pooling_norm)
            aux = None if shared_aux_head else AuxHead(channels[2], out_channels, dropout=dropout)
        else:
            head, aux = ASPPHead(channels[3], out_channels, dropout=dropout, pooling_norm=pooling_norm), None
        branches.append(ResNetBranch(layer4, head, aux))
    aux_head = AuxHead(channels[2], out_channels, dropout=dropout) if shared_aux_head else None
    return DualBranchNet(backbone, *branches, aux_head=aux_head, aux_level=_RESNET_AUX_LEVEL)


def _dual_hed(in_channels: int, out_channels: int, width: int, pretrained_path: str | None) -> DualBranchNet:
    """Dual HED: VGG16 stages 1-3 shared; each branch has its own stages 4-5 and all five side convs and the fusion."""
    backbone = VGG16Backbone(in_channels, width, pretrained_path)
    tail = backbone.features[_HED_SHARED_END + 1 :]
    backbone.features = backbone.features[: _HED_SHARED_END + 1]
    large = HEDBranch(tail, HEDHead(backbone.out_channels, out_channels))
    small = HEDBranch(copy.deepcopy(tail), HEDHead(backbone.out_channels, out_channels))
    return DualBranchNet(backbone, large, small)


def _dual_unet(
    in_channels: int, out_channels: int, width: int, dropout: float, head_prior: float | None
) -> DualBranchNet:
    """Dual U-Net with the paper's partial sharing: the stem and three down-sampling stages shared, the last
    encoder stage and the whole decoder per branch."""
    features = unet_features(width)
    return DualBranchNet(
        UNetEncoder(in_channels, features, dropout),
        UNetBranch(features, out_channels, dropout, head_prior),
        UNetBranch(features, out_channels, dropout, head_prior),
    )


def build_exudate_network(
    arch: str = "pspnet",
    dual: bool = True,
    out_channels: int = 1,
    width: int = 64,
    layers: Sequence[int] = (3, 4, 6, 3),
    pretrained_path: str | None = None,
    dropout: float = 0.1,
    in_channels: int = 3,
    branch_layer4_blocks: int | None = None,
    head_prior: float | None = None,
    shared_aux_head: bool = False,
    pooling_norm: str = "batch",
) -> nn.Module:
    """Build a single-branch (``PSPNet``, ``DeepLabV3``, ``HED``, ``UNet``) or dual-branch (``DualBranchNet``)
    network.

    Parameter counts at full size (width 64, layers (3, 4, 6, 3), out_channels 1), dual / single:
    PSPNet 89.3M / 48.9M = 1.83x, DeepLabv3 70.7M / 39.6M = 1.78x, HED 27.7M / 14.7M = 1.88x (paper: about
    1.5x, 1.5x, 1.9x). Duplicating only the last layer4 block per branch (``branch_layer4_blocks=1``, as the
    authors' released code does): PSPNet 78.8M = 1.61x, DeepLabv3 60.2M = 1.52x.

    Args:
        arch: "pspnet", "deeplabv3", "hed" or "unet" (full-resolution U-Net; ``width`` is its first-level width,
            ``layers`` is ignored, no pretrained backbone).
        dual: build the dual-branch network (else the single-branch one).
        out_channels: number of output channels.
        width: ResNet stem width or, for HED, VGG16 stage-1 width (64 at full size).
        layers: bottleneck blocks per ResNet stage (ignored for HED).
        pretrained_path: optional local torchvision-format backbone checkpoint.
        dropout: dropout probability in the PSPNet/DeepLabv3 heads and in every U-Net conv block (unused by HED).
        in_channels: image channels.
        branch_layer4_blocks: dual PSPNet/DeepLabv3 only: number of trailing layer4 blocks duplicated per branch,
            the leading ones being shared; None duplicates all of layer4. HED and U-Net have no layer4 and ignore
            it, so that a dataset overlay's ResNet recipe leaves them as they are.
        head_prior: "unet" only: initial foreground probability of the classifier bias
            (:func:`~monai_exudate.networks.unet.init_prior_bias`); None keeps the default initialisation.
        shared_aux_head: dual PSPNet/DeepLabv3: one auxiliary classifier on the shared layer3 features for both
            branches (the authors'); False gives PSPNet one per branch and DeepLabv3 none. The other networks have no
            auxiliary head to share, and it changes nothing there.
        pooling_norm: PSPNet/DeepLabv3: normalisation of the heads' pooled branches, "batch" or "group" (the
            authors', which trains on one image per branch; see
            :func:`~monai_exudate.networks.blocks.pooled_projection`); HED and U-Net have no pooled branch and
            ignore it.

    Raises:
        ValueError: unknown ``arch`` or ``pooling_norm``, ``branch_layer4_blocks`` given for a single-branch
            PSPNet/DeepLabv3, ``pretrained_path`` given for "unet", or ``head_prior`` for another architecture.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got '{arch}'.")
    if pooling_norm not in POOLING_NORMS:
        raise ValueError(f"pooling_norm must be one of {POOLING_NORMS}, got {pooling_norm!r}.")
    if arch in ("hed", "unet"):  # no layer4 to split, no pooled branch to normalise
        branch_layer4_blocks, pooling_norm = None, "batch"
    if arch == "unet":
        if pretrained_path is not None:
            raise ValueError("arch 'unet' has no pretrained backbone: pretrained_path must be None.")
        if dual:
            return _dual_unet(in_channels, out_channels, width, dropout, head_prior)
        return UNet(in_channels, out_channels, width, dropout, head_prior)
    if head_prior is not None:
        raise ValueError(f"head_prior applies to arch 'unet' only, got it for {arch!r}.")
    layers = tuple(layers)
    if arch == "hed":
        if dual:
            return _dual_hed(in_channels, out_channels, width, pretrained_path)
        return HED(in_channels, out_channels, width, pretrained_path)
    if dual:
        return _dual_resnet(
            arch, in_channels, out_channels, width, layers, dropout, pretrained_path, branch_layer4_blocks,
            bool(shared_aux_head), pooling_norm,
        )  # fmt: skip
    if branch_layer4_blocks is not None:
        raise ValueError("branch_layer4_blocks applies to dual-branch networks only (dual=True).")
    if arch == "pspnet":
        return PSPNet(in_channels, out_channels, layers, width, dropout, pretrained_path, pooling_norm)
    return DeepLabV3(in_channels, out_channels, layers, width, dropout, pretrained_path, pooling_norm=pooling_norm)
