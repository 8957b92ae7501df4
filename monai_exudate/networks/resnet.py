"""Dilated ResNet backbone (bottleneck blocks, output stride 8) with torchvision-compatible parameter names."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monai_exudate.networks.pretrained import load_pretrained_backbone

__all__ = ["Bottleneck", "DilatedResNet"]


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1, 3x3, 1x1 convolutions) with an optional dilation of the 3x3 convolution.

    Args:
        in_channels: input channels.
        planes: width of the inner convolutions; the block outputs ``planes * 4`` channels.
        stride: stride of the 3x3 convolution.
        dilation: dilation (and padding) of the 3x3 convolution.
        downsample: projection of the identity path when its shape changes, else None.
    """

    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, kernel_size=3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


def _make_layer(in_channels: int, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    out_channels = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    modules = [Bottleneck(in_channels, planes, stride, dilation, downsample)]
    modules += [Bottleneck(out_channels, planes, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*modules)


class DilatedResNet(nn.Module):
    """ResNet with bottleneck blocks whose last two stages are dilated instead of strided (output stride 8).

    layer3 uses dilation 2 and layer4 dilation 4 in every block, as in PSPNet/DeepLabv3 backbones. Parameter names
    follow torchvision's ``resnet50`` (``conv1.weight``, ``bn1.*``, ``layer1.0.downsample.0.weight``, ...) so that
    an ImageNet checkpoint loads directly; the ``fc`` classifier is omitted.

    Stages: the stem (``conv1``, ``bn1``, ``relu``, ``maxpool``; see :meth:`forward_stem`) and ``layer1``..``layer4``;
    ``out_channels`` gives the channels of the four features :meth:`forward` returns (layer1..layer4).

    Args:
        in_channels: image channels.
        layers: number of bottleneck blocks in layer1..layer4; (3, 4, 6, 3) is ResNet-50.
        base_width: stem width; layer widths are ``base_width * (1, 2, 4, 8)`` and outputs 4 times that.
        pretrained_path: optional local torchvision-format checkpoint to load (see ``load_pretrained_backbone``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        layers: Sequence[int] = (3, 4, 6, 3),
        base_width: int = 64,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        layers = tuple(int(n) for n in layers)
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be four positive block counts, got {layers}.")
        if in_channels < 1 or base_width < 1:
            raise ValueError(f"in_channels and base_width must be positive, got {in_channels} and {base_width}.")
        self.layers = layers
        w = base_width
        self.conv1 = nn.Conv2d(in_channels, w, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        e = Bottleneck.expansion
        self.layer1 = _make_layer(w, w, layers[0], stride=1, dilation=1)
        self.layer2 = _make_layer(w * e, 2 * w, layers[1], stride=2, dilation=1)
        self.layer3 = _make_layer(2 * w * e, 4 * w, layers[2], stride=1, dilation=2)
        self.layer4 = _make_layer(4 * w * e, 8 * w, layers[3], stride=1, dilation=4)
        self.out_channels: tuple[int, ...] = (w * e, 2 * w * e, 4 * w * e, 8 * w * e)
        self._init_weights()
        if pretrained_path is not None:
            load_pretrained_backbone(self, pretrained_path)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Stem: 7x7 stride-2 convolution, BatchNorm, ReLU and 3x3 stride-2 max pooling (stride 4 overall)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the outputs of layer1..layer4 (strides 4, 8, 8, 8)."""
        c1 = self.layer1(self.forward_stem(x))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [c1, c2, c3, self.layer4(c3)]
