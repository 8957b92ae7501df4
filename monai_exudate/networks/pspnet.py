"""PSPNet: pyramid pooling head and auxiliary classifier on a dilated ResNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_exudate.networks.blocks import conv_bn_relu, pooled_projection
from monai_exudate.networks.pretrained import init_head_weights
from monai_exudate.networks.resnet import DilatedResNet
from monai_exudate.networks.segmentation_model import SegmentationModel, resize_logits

__all__ = ["PSPHead", "AuxHead", "PSPNet", "check_batch_for_pooling"]


def check_batch_for_pooling(x: torch.Tensor, training: bool, name: str, pooling_norm: str = "batch") -> None:
    """Raise when BatchNorm after global pooling would see a single value per channel (batch 1 in training)."""
    if pooling_norm == "batch" and training and x.shape[0] < 2:
        raise ValueError(
            f"{name} needs a batch of at least 2 per branch in training mode (BatchNorm after 1x1 pooling), "
            f"got batch {x.shape[0]}; pooling_norm 'group' trains on one image."
        )


class PSPHead(nn.Module):
    """Pyramid pooling module followed by a 3x3 conv, BatchNorm, ReLU, dropout and a 1x1 classifier.

    Each pyramid level average-pools to ``bin x bin``, reduces to ``in_channels // len(bins)`` channels with a
    1x1 conv and its normalisation (``pooling_norm``, see :func:`~monai_exudate.networks.blocks.pooled_projection`)
    and is upsampled back; the levels are concatenated with the input. The 3x3 conv has
    ``in_channels // 4`` channels (512 for ResNet-50). Weights start from N(0, 0.01).

    Args:
        in_channels: channels of the input feature map.
        out_channels: number of output logits.
        bins: pooled grid sizes of the pyramid.
        dropout: Dropout2d probability before the classifier.
        pooling_norm: "batch" (BatchNorm + ReLU) or "group" (the authors' GroupNorm, one image per batch allowed).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        pooling_norm: str = "batch",
    ) -> None:
        super().__init__()
        self.pooling_norm = pooling_norm
        pool_channels = max(in_channels // len(bins), 1)
        mid_channels = max(in_channels // 4, 1)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(int(b)), *pooled_projection(in_channels, pool_channels, pooling_norm))
            for b in bins
        )
        self.bottleneck = conv_bn_relu(in_channels + len(bins) * pool_channels, mid_channels, 3, dropout=dropout)
        self.classifier = nn.Conv2d(mid_channels, out_channels, kernel_size=1)
        init_head_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch_for_pooling(x, self.training, "PSPHead", self.pooling_norm)
        size = x.shape[-2:]
        pyramid = [x] + [F.interpolate(s(x), size=size, mode="bilinear", align_corners=False) for s in self.stages]
        return self.classifier(self.bottleneck(torch.cat(pyramid, dim=1)))


class AuxHead(nn.Module):
    """PSPNet's auxiliary classifier: 3x3 conv (``in_channels // 4``), BatchNorm, ReLU, dropout, 1x1 classifier.

    Args:
        in_channels: channels of the input feature map (layer3 of the backbone).
        out_channels: number of output logits.
        dropout: Dropout2d probability before the classifier.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.1) -> None:
        super().__init__()
        mid_channels = max(in_channels // 4, 1)
        self.block = conv_bn_relu(in_channels, mid_channels, 3, dropout=dropout)
        self.classifier = nn.Conv2d(mid_channels, out_channels, kernel_size=1)
        init_head_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.block(x))


class PSPNet(SegmentationModel):
    """PSPNet on a dilated ResNet (output stride 8) with an auxiliary classifier on layer3.

    ``forward(x)`` returns the logits ``[B,C,H,W]`` at the input size (the auxiliary head is skipped);
    ``forward_with_aux(x)`` returns ``{"out": [B,C,H,W], "aux": [B,C,H,W]}`` (:class:`SegmentationModel`).

    Args:
        in_channels: image channels.
        out_channels: number of output channels (1 for binary exudate segmentation).
        layers: bottleneck blocks per ResNet stage ((3, 4, 6, 3) is ResNet-50).
        base_width: ResNet stem width (64 at full size); head widths scale with it.
        dropout: dropout probability in the heads.
        pretrained_path: optional local torchvision ResNet checkpoint for the backbone.
        pooling_norm: normalisation of the pyramid levels, see ``PSPHead``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        layers: Sequence[int] = (3, 4, 6, 3),
        base_width: int = 64,
        dropout: float = 0.1,
        pretrained_path: str | None = None,
        pooling_norm: str = "batch",
    ) -> None:
        super().__init__()
        self.backbone = DilatedResNet(in_channels, layers, base_width, pretrained_path)
        channels = self.backbone.out_channels  # layer1..layer4
        self.head = PSPHead(channels[3], out_channels, dropout=dropout, pooling_norm=pooling_norm)
        self.aux_head = AuxHead(channels[2], out_channels, dropout=dropout)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)

    def decode(self, features: list[torch.Tensor], size: Sequence[int], with_aux: bool) -> dict[str, torch.Tensor]:
        outputs = {"out": resize_logits(self.head(features[3]), size)}
        if with_aux:
            outputs["aux"] = resize_logits(self.aux_head(features[2]), size)
        return outputs
