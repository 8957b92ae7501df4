"""DeepLabv3: atrous spatial pyramid pooling (ASPP) head on a dilated ResNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_exudate.networks.blocks import conv_bn_relu, pooled_projection
from monai_exudate.networks.pretrained import init_head_weights
from monai_exudate.networks.pspnet import check_batch_for_pooling
from monai_exudate.networks.resnet import DilatedResNet
from monai_exudate.networks.segmentation_model import SegmentationModel, resize_logits

__all__ = ["ASPPHead", "DeepLabV3"]


class ASPPHead(nn.Module):
    """ASPP (1x1 conv, three 3x3 atrous convs, image pooling), 1x1 projection with dropout, 3x3 conv, classifier.

    Every ASPP branch has ``in_channels // 8`` channels (256 for ResNet-50). Weights start from N(0, 0.01).

    Args:
        in_channels: channels of the input feature map.
        out_channels: number of output logits.
        rates: dilation rates of the atrous branches ((12, 24, 36) for output stride 8).
        dropout: dropout probability after the projection.
        pooling_norm: normalisation of the image-pooling branch: "batch" (BatchNorm + ReLU) or "group" (the
            authors' GroupNorm, one image per batch allowed; :func:`~monai_exudate.networks.blocks.pooled_projection`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        rates: Sequence[int] = (12, 24, 36),
        dropout: float = 0.1,
        pooling_norm: str = "batch",
    ) -> None:
        super().__init__()
        self.pooling_norm = pooling_norm
        channels = max(in_channels // 8, 1)
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, channels)] + [conv_bn_relu(in_channels, channels, 3, int(r)) for r in rates]
        )
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), pooled_projection(in_channels, channels, pooling_norm))
        self.project = nn.Sequential(conv_bn_relu((len(rates) + 2) * channels, channels), nn.Dropout2d(dropout))
        self.bottleneck = conv_bn_relu(channels, channels, kernel_size=3)
        self.classifier = nn.Conv2d(channels, out_channels, kernel_size=1)
        init_head_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch_for_pooling(x, self.training, "ASPPHead", self.pooling_norm)
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        y = torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1)
        return self.classifier(self.bottleneck(self.project(y)))


class DeepLabV3(SegmentationModel):
    """DeepLabv3 on a dilated ResNet (output stride 8).

    ``forward(x)`` returns the logits ``[B,C,H,W]`` at the input size; ``forward_with_aux(x)`` returns
    ``{"out": [B,C,H,W]}`` (no auxiliary head; :class:`SegmentationModel`).

    Args:
        in_channels: image channels.
        out_channels: number of output channels (1 for binary exudate segmentation).
        layers: bottleneck blocks per ResNet stage ((3, 4, 6, 3) is ResNet-50).
        base_width: ResNet stem width (64 at full size); head widths scale with it.
        dropout: dropout probability in the head.
        pretrained_path: optional local torchvision ResNet checkpoint for the backbone.
        atrous_rates: ASPP dilation rates.
        pooling_norm: normalisation of the image-pooling branch, see ``ASPPHead``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        layers: Sequence[int] = (3, 4, 6, 3),
        base_width: int = 64,
        dropout: float = 0.1,
        pretrained_path: str | None = None,
        atrous_rates: Sequence[int] = (12, 24, 36),
        pooling_norm: str = "batch",
    ) -> None:
        super().__init__()
        self.backbone = DilatedResNet(in_channels, layers, base_width, pretrained_path)
        self.head = ASPPHead(self.backbone.out_channels[3], out_channels, atrous_rates, dropout, pooling_norm)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)

    def decode(self, features: list[torch.Tensor], size: Sequence[int], with_aux: bool) -> dict[str, torch.Tensor]:
        return {"out": resize_logits(self.head(features[3]), size)}
