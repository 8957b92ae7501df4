"""HRDecoder: one backbone pass on a down-scaled image, HR fusion of decoded feature windows and HR crop learning.

Geometry. The input ``x`` is a full-resolution crop ``[B, C, H, W]``. The backbone sees ``x`` down-scaled by
``downscale`` and returns features at 1/4 of that, so one feature cell covers ``s = 4 * downscale`` full-resolution
pixels; ``H``, ``W``, ``hr_scale`` and ``divisor`` must be multiples of ``s`` so every box in image coordinates
maps to whole feature cells (with the published ``downscale=2`` this is why boxes are multiples of 8).

* LR path: features -> head -> LR logits at ``1/s``.
* HR fusion (training and inference, no parameters): the image is tiled into ``hr_scale`` windows (stride
  ``hr_scale``, the last window of a row/column shifted back inside the image; a side shorter than ``hr_scale`` is
  one window). Each window's feature crop is upsampled by ``downscale`` to 1/4 of full resolution (the feature size
  an ``hr_scale`` input would give), decoded by the same head, and averaged with the LR logits upsampled to 1/4;
  pixels covered by two shifted windows average their HR logits first. The fused 1/4 map is upsampled to ``H x W``.
* HR crops (training only): ``num_crops`` square boxes share a side ``round(hr_scale * r / divisor) * divisor``,
  ``r ~ U(crop_jitter)`` drawn once per forward; offsets are multiples of ``divisor`` and boxes lie inside the image
  (the side is clamped to the image). The same boxes are used for every image of the batch. Each feature crop is
  upsampled to the feature size of an ``hr_scale`` input (``hr_scale / 4``, the full feature-map size at the
  published geometry ``H = W = downscale * hr_scale``) and decoded by the same head. The loss upsamples these
  logits to the box side and compares them with the full-resolution label crop (as the authors' decode-head loss
  resizes logits to the label).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from monai_exudate.networks.hrnet import HRNetV2
from monai_exudate.networks.segmentation_model import SegmentationModel

__all__ = ["FCNHead", "HRDecoder", "build_hrdecoder", "window_boxes"]


class FCNHead(nn.Module):
    """FCN head: 1x1 compression with BN+ReLU, ``num_convs`` k x k conv+BN+ReLU, then a 1x1 classifier.

    The authors' configuration compresses 15w -> 64 channels and follows with one 7x7 convolution.
    The classifier is initialised from N(0, 0.01) with zero bias.
    """

    def __init__(
        self, in_channels: int, channels: int = 64, num_classes: int = 4, kernel_size: int = 7, num_convs: int = 1
    ) -> None:
        super().__init__()
        if min(in_channels, channels, num_classes) < 1 or num_convs < 0:
            raise ValueError("in_channels, channels and num_classes must be positive and num_convs non-negative.")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}.")
        self.compress = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )
        convs = []
        for _ in range(num_convs):
            convs += [
                nn.Conv2d(channels, channels, kernel_size=kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.convs = nn.Sequential(*convs)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.classifier.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.convs(self.compress(x)))


def window_boxes(height: int, width: int, window: int) -> list[tuple[int, int, int, int]]:
    """Tiles ``height x width`` by ``window`` squares with stride ``window`` as ``(y0, x0, y1, x1)`` boxes.

    The last window of a row or column is shifted back to end at the border; a side shorter than ``window``
    gives one window spanning it.
    """

    def starts(size: int) -> tuple[int, list[int]]:
        side = min(window, size)
        return side, sorted({min(s, size - side) for s in range(0, size, window)})

    hy, ys = starts(height)
    hx, xs = starts(width)
    return [(y, x, y + hy, x + hx) for y in ys for x in xs]


class HRDecoder(SegmentationModel):
    """Segmentation network with the HRDecoder fusion and HR crop learning around a backbone and an FCN head.

    Args:
        backbone: maps ``[B, 3, h, w]`` to features ``[B, backbone_channels, h / 4, w / 4]``.
        num_classes: output channels (EX, HE, SE, MA), each with its own sigmoid.
        head_channels: channels the head compresses the features to.
        hr_scale: side of the fusion windows and base side of the HR crops, full-resolution pixels.
        downscale: factor between the full-resolution input and the backbone input.
        num_crops: HR crops per training iteration (0 disables HR crop learning).
        crop_jitter: range of the crop side ratio ``r``.
        divisor: crop sides and offsets are multiples of it; must be a multiple of ``4 * downscale``.
        backbone_channels: feature channels; read from ``backbone.out_channels`` when omitted.
        head_kernel_size: kernel of the head convolutions after the 1x1 compression.
        head_num_convs: number of those convolutions.
        lr_only: skip fusion and HR crops (the low-resolution baseline).
        generator: random generator for the crop boxes; the global generator when omitted.

    ``forward(x)`` returns the ``fused`` logits ``[B, C, H, W]`` (``lr`` when ``lr_only``), in either mode; the
    per-lesion sigmoid is a post-processing step. ``forward_with_aux(x)`` (:class:`SegmentationModel`) returns a
    dict: ``fused`` and ``lr`` logits ``[B, C, H, W]``, and unless ``lr_only`` or ``num_crops == 0``, ``hr`` logits
    ``[M * B, C, hr_scale / 4, hr_scale / 4]`` (index ``m * B + b`` is box ``m`` of image ``b``, boxes drawn anew
    at each call) with ``hr_boxes`` ``[M, 4]`` as ``(y0, x0, y1, x1)`` in input pixels.

    Sliding-window inference over a larger image (the authors tile 1920 windows with stride 960) equals
    whole-image inference only when the image is one window: otherwise each window has its own down-scaling,
    backbone context, zero padding at its borders and fusion tiling, and the overlaps are averaged.
    """

    logits_key = "fused"

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 4,
        head_channels: int = 64,
        hr_scale: int = 960,
        downscale: int = 2,
        num_crops: int = 2,
        crop_jitter: Sequence[float] = (0.75, 1.25),
        divisor: int = 8,
        backbone_channels: int | None = None,
        head_kernel_size: int = 7,
        head_num_convs: int = 1,
        lr_only: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if backbone_channels is None:
            backbone_channels = getattr(backbone, "out_channels", None)
            if not isinstance(backbone_channels, int):
                raise ValueError("backbone_channels is required when the backbone has no int `out_channels`.")
        if not isinstance(downscale, int) or downscale < 1:
            raise ValueError(f"downscale must be a positive int, got {downscale!r}.")
        self.stride = 4 * downscale
        if hr_scale < self.stride or hr_scale % self.stride:
            raise ValueError(f"hr_scale must be a positive multiple of 4 * downscale = {self.stride}, got {hr_scale}.")
        if divisor < self.stride or divisor % self.stride:
            raise ValueError(f"divisor must be a positive multiple of 4 * downscale = {self.stride}, got {divisor}.")
        if num_crops < 0:
            raise ValueError(f"num_crops must be >= 0, got {num_crops}.")
        lo, hi = (float(v) for v in crop_jitter)
        if not 0 < lo <= hi:
            raise ValueError(f"crop_jitter must be (low, high) with 0 < low <= high, got {tuple(crop_jitter)}.")
        self.backbone = backbone
        self.head = FCNHead(backbone_channels, head_channels, num_classes, head_kernel_size, head_num_convs)
        self.num_classes = num_classes
        self.hr_scale = hr_scale
        self.downscale = downscale
        self.num_crops = num_crops
        self.crop_jitter = (lo, hi)
        self.divisor = divisor
        self.lr_only = lr_only
        self.generator = generator

    @staticmethod
    def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)

    def _crop_features(self, feats: torch.Tensor, boxes: Sequence[Sequence[int]]) -> torch.Tensor:
        """Feature crops of full-resolution boxes, concatenated box-major along the batch dimension."""
        s = self.stride
        return torch.cat([feats[:, :, y0 // s : y1 // s, x0 // s : x1 // s] for y0, x0, y1, x1 in boxes], dim=0)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features and LR logits (both at ``1 / (4 * downscale)``) of a full-resolution input."""
        height, width = x.shape[-2], x.shape[-1]
        if height % self.stride or width % self.stride:
            raise ValueError(f"input size {(height, width)} must be a multiple of 4 * downscale = {self.stride}.")
        small = x if self.downscale == 1 else self._resize(x, (height // self.downscale, width // self.downscale))
        feats = self.backbone(small)
        expected = (height // self.stride, width // self.stride)
        if tuple(feats.shape[-2:]) != expected:
            raise ValueError(f"backbone features have size {tuple(feats.shape[-2:])}, expected 1/4 of its input.")
        return feats, self.head(feats)

    def fuse(self, feats: torch.Tensor, lr_logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """HR fusion: average of LR logits and decoded window crops, at 1/4 of ``height x width``."""
        boxes = window_boxes(height, width, self.hr_scale)
        wy, wx = (boxes[0][2] - boxes[0][0]) // 4, (boxes[0][3] - boxes[0][1]) // 4
        lr4 = lr_logits if self.downscale == 1 else self._resize(lr_logits, (height // 4, width // 4))
        total = lr4.new_zeros(lr4.shape)
        count = lr4.new_zeros((1, 1, height // 4, width // 4))
        # training decodes every window in one batch, so the head's BatchNorm sees them together as published; in
        # eval mode (running statistics) one window at a time gives the same logits and keeps only one window's
        # up-scaled features in memory
        groups = [boxes] if self.training else [[box] for box in boxes]
        for group in groups:
            crops = self._crop_features(feats, group)
            hr_logits = self.head(crops if self.downscale == 1 else self._resize(crops, (wy, wx)))
            batch = feats.shape[0]
            for k, (y0, x0, _, _) in enumerate(group):
                window = (slice(None), slice(None), slice(y0 // 4, y0 // 4 + wy), slice(x0 // 4, x0 // 4 + wx))
                total[window] += hr_logits[k * batch : (k + 1) * batch]
                count[window] += 1
        return 0.5 * (lr4 + total / count)

    def sample_boxes(self, height: int, width: int) -> torch.Tensor:
        """``num_crops`` random square boxes ``(y0, x0, y1, x1)`` sharing one side, inside ``height x width``."""
        d = self.divisor
        limit = min(height, width) // d * d
        if limit == 0:
            raise ValueError(f"input size {(height, width)} is smaller than divisor = {d}.")
        lo, hi = self.crop_jitter
        ratio = lo + (hi - lo) * torch.rand((), generator=self.generator).item()
        side = min(max(round(self.hr_scale * ratio / d), 1) * d, limit)
        ys = torch.randint(0, (height - side) // d + 1, (self.num_crops,), generator=self.generator) * d
        xs = torch.randint(0, (width - side) // d + 1, (self.num_crops,), generator=self.generator) * d
        return torch.stack([ys, xs, ys + side, xs + side], dim=1)

    def decode_boxes(self, feats: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """HR crop logits ``[M * B, C, hr_scale / 4, hr_scale / 4]`` for full-resolution ``boxes`` ``[M, 4]``."""
        crops = self._crop_features(feats, boxes.tolist())
        return self.head(self._resize(crops, (self.hr_scale // 4, self.hr_scale // 4)))

    def decode(
        self, features: tuple[torch.Tensor, torch.Tensor], size: Sequence[int], with_aux: bool
    ) -> dict[str, Any]:
        """Fused logits at ``size`` from :meth:`encode`'s features and LR logits; with ``with_aux`` also the LR
        logits at ``size`` and, unless ``lr_only`` or ``num_crops == 0``, the HR crops of fresh random boxes."""
        feats, lr_logits = features
        height, width = int(size[0]), int(size[1])
        if self.lr_only:
            lr = self._resize(lr_logits, (height, width))
            return {"fused": lr, "lr": lr} if with_aux else {"fused": lr}
        fused = self._resize(self.fuse(feats, lr_logits, height, width), (height, width))
        if not with_aux:
            return {"fused": fused}
        outputs = {"fused": fused, "lr": self._resize(lr_logits, (height, width))}
        if self.num_crops > 0:
            boxes = self.sample_boxes(height, width)
            outputs["hr"] = self.decode_boxes(feats, boxes)
            outputs["hr_boxes"] = boxes.to(feats.device)
        return outputs


def build_hrdecoder(
    width: int = 48,
    num_classes: int = 4,
    hr_scale: int = 960,
    downscale: int = 2,
    num_crops: int = 2,
    crop_jitter: Sequence[float] = (0.75, 1.25),
    divisor: int = 8,
    head_channels: int = 64,
    head_kernel_size: int = 7,
    head_num_convs: int = 1,
    lr_only: bool = False,
    pretrained_path: str | None = None,
    in_channels: int = 3,
    num_blocks: int | Sequence[int] = 4,
    num_modules: int | Sequence[int] = (1, 4, 3),
    stage1_channels: int = 64,
    stem_channels: int = 64,
    generator: torch.Generator | None = None,
) -> HRDecoder:
    """HRDecoder on an HRNetV2-W``width`` backbone (``pretrained_path``: local ImageNet HRNet checkpoint)."""
    backbone = HRNetV2(
        width=width,
        in_channels=in_channels,
        pretrained_path=pretrained_path,
        num_blocks=num_blocks,
        num_modules=num_modules,
        stage1_channels=stage1_channels,
        stem_channels=stem_channels,
    )
    return HRDecoder(
        backbone,
        num_classes=num_classes,
        head_channels=head_channels,
        hr_scale=hr_scale,
        downscale=downscale,
        num_crops=num_crops,
        crop_jitter=crop_jitter,
        divisor=divisor,
        head_kernel_size=head_kernel_size,
        head_num_convs=head_num_convs,
        lr_only=lr_only,
        generator=generator,
    )
