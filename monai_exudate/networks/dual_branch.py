"""Dual-branch networks (large- and small-exudate branches with shared early stages) and the network factory."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_exudate.networks.blocks import POOLING_NORMS
from monai_exudate.networks.deeplabv3 import ASPPHead, DeepLabV3
from monai_exudate.networks.hed import HED, HEDHead
from monai_exudate.networks.pspnet import AuxHead, PSPHead, PSPNet
from monai_exudate.networks.resnet import DilatedResNet
from monai_exudate.networks.unet import DualUNet, UNet, check_dual_inputs, check_image_batch
from monai_exudate.networks.vgg import VGG16_STAGE_ENDS, VGG16Backbone, run_vgg_stages

__all__ = ["DualBranchNet", "build_exudate_network", "ARCHITECTURES"]

ARCHITECTURES = ("pspnet", "deeplabv3", "hed", "unet")
# architectures built on a classification backbone (DualBranchNet); "unet" is built by DualUNet / UNet
_BACKBONE_ARCHITECTURES = ("pspnet", "deeplabv3", "hed")
# HED shares VGG16 stages 1-3: `features` up to and including the last ReLU of stage 3
_HED_SHARED_END = VGG16_STAGE_ENDS[2]


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class _ResNetBranch(nn.Module):
    """Per-branch part of a ResNet network: the unshared layer4 blocks, the head and (PSPNet) the aux classifier."""

    def __init__(self, layer4: nn.Sequential, head: nn.Module, aux_head: nn.Module | None) -> None:
        super().__init__()
        self.layer4 = layer4
        self.head = head
        self.aux_head = aux_head

    def forward(
        self, features: list[torch.Tensor], size: Sequence[int], shared_aux: nn.Module | None = None
    ) -> dict[str, torch.Tensor]:
        # features: shared outputs of layer1..layer3 and of the shared layer4 blocks (layer3 again if none)
        outputs = {"out": _resize(self.head(self.layer4(features[3])), size)}
        aux_head = self.aux_head if self.aux_head is not None else shared_aux
        if aux_head is not None and self.training:
            outputs["aux"] = _resize(aux_head(features[2]), size)
        return outputs


class _HEDBranch(nn.Module):
    """Per-branch part of HED: VGG16 stages 4-5 and all side-output and fusion convolutions."""

    def __init__(self, features: nn.Sequential, head: HEDHead) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(
        self, features: list[torch.Tensor], size: Sequence[int], shared_aux: nn.Module | None = None
    ) -> dict[str, torch.Tensor]:
        stages = list(features) + run_vgg_stages(self.features, features[-1])
        out, sides = self.head(stages, size)
        return {"out": out, "side": sides}


class DualBranchNet(nn.Module):
    """Two branches of the same segmentation network with shared early stages (dual-branch DSM method).

    Sharing: PSPNet/DeepLabv3 share the ResNet stem and layer1..layer3 (module ``shared``); each branch
    (``large``, ``small``) has its own layer4 (by default; see ``branch_layer4_blocks``) and its own head. The
    auxiliary classifier on the layer3 features is one module shared by both branches (``shared_aux_head``, as the
    authors' ``Dual_PSPNet``/``Dual_Deeplabv3``, whose ``dsn`` head sits in the shared ``BackboneBlock``: PSPNet and
    DeepLabv3 both have it) or, without it, one per branch for PSPNet and none for DeepLabv3. HED shares VGG16
    stages 1-3; each branch has its own stages 4-5 and all five side convs and the fusion. A pretrained backbone
    initialises the shared stages and both copies of the per-branch stages. ``shared`` is the backbone module with
    its per-branch stages moved into the branches (its ``out_channels`` still describe the complete backbone's
    features).

    Training mode: ``forward(x, x_small)`` returns ``{"large": dict, "small": dict}`` of logits at the input sizes
    (``"out"``, plus ``"aux"`` where there is an auxiliary head and the five ``"side"`` logits for HED, where
    ``"out"`` is the fusion);
    ``x`` feeds the large-exudate branch and ``x_small`` the small-exudate branch (batch sizes may differ).
    Eval mode: ``forward(x)`` runs the shared stages once and returns both branches' ``"out"`` logits stacked on the
    channels, ``[B, 2 * C, H, W]`` (large first); fusing them is a post-processing step
    (:func:`~monai_exudate.networks.fusion.fuse_branch_logits`,
    :class:`~monai_exudate.inference.postprocessing.FuseBranchLogitsd`).

    Args:
        arch: "pspnet", "deeplabv3" or "hed".
        in_channels: image channels.
        out_channels: number of output channels.
        width: ResNet stem width or, for HED, VGG16 stage-1 width (64 at full size).
        layers: bottleneck blocks per ResNet stage (ignored for HED).
        dropout: dropout probability in the PSPNet/DeepLabv3 heads.
        pretrained_path: optional local torchvision-format backbone checkpoint.
        branch_layer4_blocks: ResNet only: number of trailing layer4 blocks duplicated per branch, the leading ones
            being shared; None duplicates all of layer4. The authors' released code duplicates only the last block
            (``branch_layer4_blocks=1``), which gives their ~1.5x parameter ratio.
        shared_aux_head: ResNet only: one auxiliary classifier on the shared layer3 features for both branches (the
            authors'); False gives PSPNet one per branch and DeepLabv3 none (the bundles before 0.7.0).
        pooling_norm: ResNet only: normalisation of the heads' pooled branches, "batch" or "group" (the authors',
            which trains on one image per branch; :func:`~monai_exudate.networks.blocks.pooled_projection`).
    """

    def __init__(
        self,
        arch: str = "pspnet",
        in_channels: int = 3,
        out_channels: int = 1,
        width: int = 64,
        layers: Sequence[int] = (3, 4, 6, 3),
        dropout: float = 0.1,
        pretrained_path: str | None = None,
        branch_layer4_blocks: int | None = None,
        shared_aux_head: bool = False,
        pooling_norm: str = "batch",
    ) -> None:
        super().__init__()
        if arch not in _BACKBONE_ARCHITECTURES:
            raise ValueError(f"arch must be one of {_BACKBONE_ARCHITECTURES}, got '{arch}' (use DualUNet for 'unet').")
        self.arch = arch
        self.aux_head: nn.Module | None = None
        if arch == "hed":
            if branch_layer4_blocks is not None:
                raise ValueError("branch_layer4_blocks applies to the ResNet architectures only, not to 'hed'.")
            backbone = VGG16Backbone(in_channels, width, pretrained_path)
            tail = backbone.features[_HED_SHARED_END + 1 :]
            backbone.features = backbone.features[: _HED_SHARED_END + 1]
            self.shared = backbone
            self.large = _HEDBranch(tail, HEDHead(backbone.out_channels, out_channels))
            self.small = _HEDBranch(copy.deepcopy(tail), HEDHead(backbone.out_channels, out_channels))
            return
        backbone = DilatedResNet(in_channels, layers, width, pretrained_path)
        n_blocks = backbone.layers[3]
        n_branch = n_blocks if branch_layer4_blocks is None else int(branch_layer4_blocks)
        if not 1 <= n_branch <= n_blocks:
            raise ValueError(f"branch_layer4_blocks must be in [1, {n_blocks}] (layer4 blocks), got {n_branch}.")
        # slices of a Sequential keep the block indices, so keys stay `layer4.<i>.*` in both places
        tail = backbone.layer4[n_blocks - n_branch :]
        backbone.layer4 = backbone.layer4[: n_blocks - n_branch]
        self.shared = backbone
        channels = backbone.out_channels  # layer1..layer4
        branches = []
        for layer4 in (tail, copy.deepcopy(tail)):
            if arch == "pspnet":
                head = PSPHead(channels[3], out_channels, dropout=dropout, pooling_norm=pooling_norm)
                aux = None if shared_aux_head else AuxHead(channels[2], out_channels, dropout=dropout)
            else:
                head, aux = ASPPHead(channels[3], out_channels, dropout=dropout, pooling_norm=pooling_norm), None
            branches.append(_ResNetBranch(layer4, head, aux))
        self.large, self.small = branches
        if shared_aux_head:
            self.aux_head = AuxHead(channels[2], out_channels, dropout=dropout)

    def forward_branches(self, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """Run both branches on the same input (shared stages once); logits at the input size, in either mode.

        The auxiliary ``"aux"`` logits are only computed in training mode.
        """
        check_image_batch("x", x)
        features = self.shared(x)
        size = x.shape[-2:]
        return {"large": self.large(features, size, self.aux_head), "small": self.small(features, size, self.aux_head)}

    def forward(
        self, x: torch.Tensor, x_small: torch.Tensor | None = None
    ) -> dict[str, dict[str, torch.Tensor]] | torch.Tensor:
        check_dual_inputs("DualBranchNet", self.training, x, x_small)
        if self.training:
            return {
                "large": self.large(self.shared(x), x.shape[-2:], self.aux_head),
                "small": self.small(self.shared(x_small), x_small.shape[-2:], self.aux_head),
            }
        outputs = self.forward_branches(x)
        return torch.cat([outputs["large"]["out"], outputs["small"]["out"]], dim=1)


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
    """Build a single-branch (``PSPNet``, ``DeepLabV3``, ``HED``, ``UNet``) or dual-branch (``DualBranchNet``,
    ``DualUNet``) network.

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
        branch_layer4_blocks: dual PSPNet/DeepLabv3 only, see ``DualBranchNet``; HED and U-Net have no layer4 and
            ignore it, so that a dataset overlay's ResNet recipe leaves them as they are.
        head_prior: "unet" only: initial foreground probability of the classifier bias
            (:func:`~monai_exudate.networks.unet.init_prior_bias`); None keeps the default initialisation.
        shared_aux_head: dual PSPNet/DeepLabv3: one auxiliary classifier shared by the branches (see
            ``DualBranchNet``); the other networks have no auxiliary head to share, and it changes nothing there.
        pooling_norm: PSPNet/DeepLabv3: normalisation of the heads' pooled branches, "batch" or "group" (the
            authors'; see :func:`~monai_exudate.networks.blocks.pooled_projection`); HED and U-Net have no pooled
            branch and ignore it.

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
            return DualUNet(in_channels, out_channels, width, dropout, head_prior)
        return UNet(in_channels, out_channels, width, dropout, head_prior)
    if head_prior is not None:
        raise ValueError(f"head_prior applies to arch 'unet' only, got it for {arch!r}.")
    layers = tuple(layers)
    if dual:
        return DualBranchNet(
            arch, in_channels, out_channels, width, layers, dropout, pretrained_path, branch_layer4_blocks,
            bool(shared_aux_head), pooling_norm,
        )  # fmt: skip
    if branch_layer4_blocks is not None:
        raise ValueError("branch_layer4_blocks applies to dual-branch networks only (dual=True).")
    if arch == "pspnet":
        return PSPNet(in_channels, out_channels, layers, width, dropout, pretrained_path, pooling_norm)
    if arch == "deeplabv3":
        return DeepLabV3(in_channels, out_channels, layers, width, dropout, pretrained_path, pooling_norm=pooling_norm)
    return HED(in_channels, out_channels, width, pretrained_path)
