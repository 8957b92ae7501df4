"""HED: holistically-nested edge detection network (five deeply supervised side outputs and a fusion) on VGG16."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from monai_exudate.networks.pretrained import init_head_weights
from monai_exudate.networks.segmentation_model import SegmentationModel
from monai_exudate.networks.vgg import VGG16_STAGE_ENDS, VGG16Backbone

__all__ = ["HEDHead", "HED", "HED_LR_MULTIPLIERS", "hed_parameter_groups"]


class HEDHead(nn.Module):
    """Side outputs (a 1x1 conv per stage, upsampled to the image size) and their 1x1 fusion.

    Side convs start from N(0, 0.01) with zero bias; the fusion starts as the average of the side logits of the
    same class (weight 0.2 for each of the five, as in HED).

    Args:
        stage_channels: channels of the stage feature maps, one side output each.
        out_channels: number of output logits.
    """

    def __init__(self, stage_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        n = len(stage_channels)
        self.side = nn.ModuleList(nn.Conv2d(int(c), out_channels, kernel_size=1) for c in stage_channels)
        self.fuse = nn.Conv2d(n * out_channels, out_channels, kernel_size=1)
        init_head_weights(self.side)
        with torch.no_grad():
            self.fuse.weight.zero_()
            self.fuse.bias.zero_()
            # concatenated side logits are ordered (side, class): class c of side k sits at channel k * C + c
            for k in range(n):
                for c in range(out_channels):
                    self.fuse.weight[c, k * out_channels + c] = 1.0 / n

    def forward(self, features: Sequence[torch.Tensor], size: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the fused logits and the list of side logits, all at spatial ``size``."""
        if len(features) != len(self.side):
            raise ValueError(f"HEDHead expects {len(self.side)} feature maps, got {len(features)}.")
        sides = [
            F.interpolate(conv(f), size=size, mode="bilinear", align_corners=False)
            for conv, f in zip(self.side, features, strict=True)
        ]
        return self.fuse(torch.cat(sides, dim=1)), sides


class HED(SegmentationModel):
    """HED on the five VGG16 stages.

    ``forward(x)`` returns the fused logits ``[B,C,H,W]`` at the input size; ``forward_with_aux(x)`` returns
    ``{"out": fused [B,C,H,W], "side": [5 x [B,C,H,W]]}`` (:class:`SegmentationModel`).

    Args:
        in_channels: image channels.
        out_channels: number of output channels (1 for binary exudate segmentation).
        width: VGG16 stage-1 width (64 at full size).
        pretrained_path: optional local torchvision VGG16 checkpoint for the backbone.
    """

    def __init__(
        self, in_channels: int = 3, out_channels: int = 1, width: int = 64, pretrained_path: str | None = None
    ) -> None:
        super().__init__()
        self.backbone = VGG16Backbone(in_channels, width, pretrained_path)
        self.head = HEDHead(self.backbone.out_channels, out_channels)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)

    def decode(self, features: list[torch.Tensor], size: Sequence[int], with_aux: bool) -> dict[str, Any]:
        out, sides = self.head(features, size)
        return {"out": out, "side": sides} if with_aux else {"out": out}


# the authors' per-layer learning-rate multipliers of HED, (weights, biases); biases take no weight decay
# (dual-HED/models/dual_hed_vgg16.py, get_optimizer)
HED_LR_MULTIPLIERS = {"conv1-4": (1.0, 2.0), "conv5": (100.0, 200.0), "side": (0.01, 0.02), "fuse": (0.001, 0.002)}


def _hed_layer(name: str) -> str:
    """Which of the authors' layer groups a parameter of ``HED`` or the dual HED belongs to."""
    parts = name.split(".")
    if "head" in parts:
        return "side" if parts[parts.index("head") + 1] == "side" else "fuse"
    if "features" in parts:
        return "conv5" if int(parts[parts.index("features") + 1]) > VGG16_STAGE_ENDS[3] else "conv1-4"
    raise ValueError(f"parameter {name!r} is not a HED parameter (VGG16 features, side outputs or fusion)")


def hed_parameter_groups(network: nn.Module, learning_rate: float, weight_decay: float) -> list[dict]:
    """SGD parameter groups of a (single or dual) HED with the authors' per-layer rates (:data:`HED_LR_MULTIPLIERS`).

    Weights take ``weight_decay``, biases none; each group's ``lr`` is ``learning_rate`` times its multiplier, so a
    learning-rate scheduler scales all of them alike.
    """
    groups: dict[tuple[str, str], list[nn.Parameter]] = {}
    for name, parameter in network.named_parameters():
        kind = "bias" if name.endswith("bias") else "weight"
        groups.setdefault((_hed_layer(name), kind), []).append(parameter)
    return [
        {
            "params": params,
            "lr": learning_rate * HED_LR_MULTIPLIERS[layer][kind == "bias"],
            "weight_decay": 0.0 if kind == "bias" else weight_decay,
        }
        for (layer, kind), params in groups.items()
    ]
