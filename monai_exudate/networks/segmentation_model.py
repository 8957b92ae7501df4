"""The output contract of every network: encoder, then decoder and heads; ``forward`` gives logits, always."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOGITS", "SegmentationModel", "check_image_batch", "resize_logits"]

# the entry of ``forward_with_aux``'s dict that holds the logits ``forward`` returns (HRDecoder names it "fused")
LOGITS = "out"


def check_image_batch(name: str, x: torch.Tensor) -> None:
    """Refuse an input that is not a ``(B, C, H, W)`` batch, naming the argument."""
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}.")


def resize_logits(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of a logit map to ``size`` (``align_corners=False``, as every head here upsamples).

    ``size`` is passed on as given: an input's ``x.shape[-2:]`` stays symbolic when the network is traced."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module, metaclass=abc.ABCMeta):
    """A segmentation network as segmentation_models.pytorch composes one (``SegmentationModel``: encoder, decoder,
    segmentation head and optional auxiliary heads), with one output contract in training and evaluation.

    - ``forward(x)`` returns the logits tensor ``[B, C, H, W]`` at the input size, in either mode; activations,
      branch fusion and thresholds are post-processing steps.
    - ``forward_with_aux(x)`` returns a dict: the same logits under :attr:`logits_key` and every auxiliary output the
      training losses use (``aux``: an auxiliary classifier's logits; ``side``: HED's side outputs; ``lr``, ``hr``,
      ``hr_boxes``: HRDecoder's low-resolution logits and HR crops), in either mode. The trainers call it through
      :class:`~monai_exudate.engines.ForwardWithAuxInferer`.

    Subclasses give :meth:`encode` (the encoder: image to features) and :meth:`decode` (the decoder, the head and,
    when ``with_aux``, the auxiliary heads: features to the dict); both are abstract, so a network missing one is
    refused when it is built, not at its first forward. Why not SMP itself: its encoders are not the
    dilated ResNet, VGG16 and HRNet of the papers, and checkpoints keep their parameter names (``backbone.*``,
    ``head.*``), which SMP's ``encoder.*``/``decoder.*`` would change.
    """

    logits_key: str = LOGITS

    @abc.abstractmethod
    def encode(self, x: torch.Tensor) -> Any:
        """The encoder's features of an image batch ``x``."""

    @abc.abstractmethod
    def decode(self, features: Any, size: Sequence[int], with_aux: bool) -> dict[str, Any]:
        """Logits at spatial ``size`` under :attr:`logits_key`, plus the auxiliary outputs when ``with_aux``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch("x", x)
        return self.decode(self.encode(x), x.shape[-2:], with_aux=False)[self.logits_key]

    def forward_with_aux(self, x: torch.Tensor) -> dict[str, Any]:
        """The logits (under :attr:`logits_key`) and the auxiliary outputs of ``x``, in either mode."""
        check_image_batch("x", x)
        return self.decode(self.encode(x), x.shape[-2:], with_aux=True)
