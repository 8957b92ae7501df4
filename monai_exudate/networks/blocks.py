"""Convolution blocks shared by the segmentation heads."""

from __future__ import annotations

from torch import nn

__all__ = ["conv_bn_relu", "pooled_projection", "POOLING_NORMS"]

# normalisation after the 1x1 conv of a globally pooled branch (PSP pyramid levels, ASPP image pooling)
POOLING_NORMS = ("batch", "group")


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


def pooled_projection(in_channels: int, out_channels: int, norm: str = "batch") -> nn.Sequential:
    """1x1 conv of a pooled branch followed by its normalisation: ``"batch"`` is BatchNorm and ReLU, which needs
    two images per batch in training (a 1x1 pooled map gives one value per channel and image); ``"group"`` is
    GroupNorm with one group and no activation, the authors' choice (``PSPModule._make_stage`` in
    ``dual_pspnet.py``, ``ASPPModule.conv1`` in ``dual_deeplabv3.py``), which trains on one image per GPU."""
    if norm == "batch":
        return conv_bn_relu(in_channels, out_channels)
    if norm == "group":
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), nn.GroupNorm(1, out_channels)
        )
    raise ValueError(f"pooling_norm must be one of {POOLING_NORMS}, got {norm!r}.")
