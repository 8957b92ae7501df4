"""Dual-branch network: the large- and small-exudate branches of one architecture on a shared encoder part."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from monai_exudate.networks.hed import HEDHead
from monai_exudate.networks.segmentation_model import SegmentationModel, check_image_batch, resize_logits
from monai_exudate.networks.vgg import run_vgg_stages

__all__ = ["DualBranchNet", "HEDBranch", "ResNetBranch"]


class ResNetBranch(nn.Module):
    """Per-branch part of a dual PSPNet/DeepLabv3: the unshared layer4 blocks, the head and, without a shared one,
    an auxiliary classifier (PSPNet) on the layer3 features."""

    def __init__(self, layer4: nn.Sequential, head: nn.Module, aux_head: nn.Module | None) -> None:
        super().__init__()
        self.layer4 = layer4
        self.head = head
        self.aux_head = aux_head

    def forward(self, features: list[torch.Tensor], size: Sequence[int], with_aux: bool) -> dict[str, torch.Tensor]:
        # features: shared outputs of layer1..layer3 and of the shared layer4 blocks (layer3 again if none)
        outputs = {"out": resize_logits(self.head(self.layer4(features[3])), size)}
        if with_aux and self.aux_head is not None:
            outputs["aux"] = resize_logits(self.aux_head(features[2]), size)
        return outputs


class HEDBranch(nn.Module):
    """Per-branch part of a dual HED: VGG16 stages 4-5 and all side-output and fusion convolutions."""

    def __init__(self, features: nn.Sequential, head: HEDHead) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, features: list[torch.Tensor], size: Sequence[int], with_aux: bool) -> dict[str, Any]:
        stages = list(features) + run_vgg_stages(self.features, features[-1])
        out, sides = self.head(stages, size)
        return {"out": out, "side": sides} if with_aux else {"out": out}


class DualBranchNet(SegmentationModel):
    """Two branches of the same segmentation network on a shared encoder part (the dual-branch DSM method of Liu,
    Liu and Liang 2022), for every architecture: what is shared and what each branch has is the builder's choice
    (:func:`~monai_exudate.networks.factory.build_exudate_network`).

    ``shared`` maps an image batch to features; each branch (``large``, ``small``) is called as
    ``branch(features, size, with_aux)`` and returns ``{"out": logits at size, ...its auxiliary outputs}``
    (:class:`ResNetBranch`, :class:`HEDBranch`, :class:`~monai_exudate.networks.unet.UNetBranch`). ``aux_head``,
    when given, is one auxiliary classifier for both branches on the shared features ``features[aux_level]`` (the
    authors' ``Dual_PSPNet``/``Dual_Deeplabv3``, whose ``dsn`` head sits in the shared ``BackboneBlock``); its
    logits are each branch's ``"aux"``.

    ``forward(x)`` runs the shared part once and returns both branches' logits stacked on the channels,
    ``[B, 2 * C, H, W]`` (large first), in either mode; fusing them is a post-processing step
    (:func:`~monai_exudate.networks.fusion.fuse_branch_logits`,
    :class:`~monai_exudate.inference.postprocessing.FuseBranchLogitsd`).
    ``forward_with_aux(x, x_small)`` returns ``{"large": dict, "small": dict}``, each branch's logits and auxiliary
    outputs at its input's size (``"out"``, ``"aux"`` where there is an auxiliary head, the five ``"side"`` logits of
    HED, whose ``"out"`` is the fusion); ``x`` feeds the large-exudate branch and ``x_small`` the small-exudate
    branch (batch sizes may differ), the DSM training's two batches; without ``x_small`` both branches see ``x``.

    Args:
        shared: the encoder part both branches share.
        large: the large-exudate branch.
        small: the small-exudate branch (the same architecture as ``large``).
        aux_head: optional auxiliary classifier on the shared features, common to both branches.
        aux_level: index of the shared features ``aux_head`` reads.
    """

    def __init__(
        self,
        shared: nn.Module,
        large: nn.Module,
        small: nn.Module,
        aux_head: nn.Module | None = None,
        aux_level: int = 2,
    ) -> None:
        super().__init__()
        self.shared = shared
        self.large = large
        self.small = small
        self.aux_head = aux_head
        self.aux_level = int(aux_level)

    def encode(self, x: torch.Tensor) -> Any:
        return self.shared(x)

    def decode_branch(self, branch: nn.Module, features: Any, size: Sequence[int], with_aux: bool) -> dict[str, Any]:
        """One branch's outputs (``large`` or ``small``) on shared features, with the shared auxiliary head's."""
        outputs = branch(features, size, with_aux)
        if with_aux and self.aux_head is not None:
            outputs["aux"] = resize_logits(self.aux_head(features[self.aux_level]), size)
        return outputs

    def decode(self, features: Any, size: Sequence[int], with_aux: bool) -> dict[str, Any]:
        """Both branches' outputs on the same shared features: ``{"large": dict, "small": dict}``."""
        return {
            "large": self.decode_branch(self.large, features, size, with_aux),
            "small": self.decode_branch(self.small, features, size, with_aux),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch("x", x)
        outputs = self.decode(self.encode(x), x.shape[-2:], with_aux=False)
        return torch.cat([outputs["large"]["out"], outputs["small"]["out"]], dim=1)

    def forward_with_aux(self, x: torch.Tensor, x_small: torch.Tensor | None = None) -> dict[str, Any]:
        """Both branches' logits and auxiliary outputs, ``x`` through the large branch and ``x_small`` (``x`` when
        omitted) through the small branch, in either mode."""
        check_image_batch("x", x)
        if x_small is None:
            return self.decode(self.encode(x), x.shape[-2:], with_aux=True)
        check_image_batch("x_small", x_small)
        return {
            "large": self.decode_branch(self.large, self.encode(x), x.shape[-2:], with_aux=True),
            "small": self.decode_branch(self.small, self.encode(x_small), x_small.shape[-2:], with_aux=True),
        }
