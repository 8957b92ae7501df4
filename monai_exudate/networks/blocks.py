"""Convolution blocks shared by the segmentation heads."""

from __future__ import annotations

from torch import nn

__all__ = ["conv_bn_relu"]


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1, dropout: float | None = None
) -> nn.Sequential:
    """Conv (no bias, "same" padding), BatchNorm, ReLU and, when ``dropout`` is given, Dropout2d."""
    padding = dilation * (kernel_size // 2)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if dropout is not None:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)
