"""Five-stage VGG16 convolutional backbone with torchvision-compatible ``features.N`` parameter names."""

from __future__ import annotations

import torch
from torch import nn

from monai_exudate.networks.pretrained import load_pretrained_backbone

__all__ = ["VGG16Backbone", "VGG16_STAGE_ENDS", "run_vgg_stages"]

# (width multiplier, number of 3x3 convolutions) of the five VGG16 stages
_VGG16_STAGES = ((1, 2), (2, 2), (4, 3), (8, 3), (8, 3))
# index in `features` of the last ReLU of each stage (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3), as in torchvision
VGG16_STAGE_ENDS = (3, 8, 15, 22, 29)


def run_vgg_stages(features: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Run (a slice of) a VGG16 ``features`` Sequential and return the output of every stage end it contains.

    Slices of an ``nn.Sequential`` keep the original indices as names, which is how stage ends are recognised.
    """
    outputs = []
    for name, module in features.named_children():
        x = module(x)
        if int(name) in VGG16_STAGE_ENDS:
            outputs.append(x)
    return outputs


class VGG16Backbone(nn.Module):
    """The 13 convolutions of VGG16 in five stages (2, 2, 3, 3, 3 convolutions), without pool5 and classifier.

    ``features`` reproduces torchvision's ``vgg16().features`` indices (``features.0.weight`` ... ``features.28``),
    so an ImageNet checkpoint loads directly. Max pooling uses ``ceil_mode=True`` as in HED so that odd image
    sizes keep their border pixels (pooling has no parameters, the key format is unaffected).

    Args:
        in_channels: image channels.
        width: channels of stage 1; stages have ``width * (1, 2, 4, 8, 8)`` channels (64 is VGG16).
        pretrained_path: optional local torchvision-format checkpoint to load (see ``load_pretrained_backbone``).
    """

    def __init__(self, in_channels: int = 3, width: int = 64, pretrained_path: str | None = None) -> None:
        super().__init__()
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be positive, got {in_channels} and {width}.")
        modules: list[nn.Module] = []
        channels = in_channels
        for stage, (multiplier, convs) in enumerate(_VGG16_STAGES):
            if stage > 0:
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            for _ in range(convs):
                modules += [nn.Conv2d(channels, multiplier * width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = multiplier * width
        self.features = nn.Sequential(*modules)
        self.out_channels: tuple[int, ...] = tuple(m * width for m, _ in _VGG16_STAGES)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if pretrained_path is not None:
            load_pretrained_backbone(self, pretrained_path)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the outputs of the five stages (strides 1, 2, 4, 8, 16)."""
        return run_vgg_stages(self.features, x)
