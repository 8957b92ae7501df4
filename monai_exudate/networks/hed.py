"""HED: holistically-nested edge detection network (five deeply supervised side outputs and a fusion) on VGG16."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_exudate.networks.pretrained import init_head_weights
from monai_exudate.networks.vgg import VGG16Backbone

__all__ = ["HEDHead", "HED"]


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


class HED(nn.Module):
    """HED on the five VGG16 stages.

    Training mode: ``forward(x)`` returns logits at the input size, ``{"out": fused [B,C,H,W], "side": [5 x
    [B,C,H,W]]}``. Eval mode: returns the fused logits ``out`` as a ``[B,C,H,W]`` tensor.

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

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]] | torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}.")
        out, sides = self.head(self.backbone(x), x.shape[-2:])
        return {"out": out, "side": sides} if self.training else out
