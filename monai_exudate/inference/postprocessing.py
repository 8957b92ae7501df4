"""Post-processing of network logits: branch fusion of a dual-branch network's output, logits to probabilities."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_exudate.networks.fusion import check_fusion, fuse_branch_logits, split_branches

__all__ = ["FuseBranchLogitsd", "check_logit_batch", "to_probabilities"]


class FuseBranchLogitsd(MapTransform):
    """Fuse a dual-branch network's logits ``[2 * C, *spatial]`` (large branch first) into logits ``[C, *spatial]``.

    The networks return logits in every mode; this step and MONAI's ``Activationsd(sigmoid=True)`` after it turn
    them into lesion probabilities, in the evaluators' and the inference runner's post-processing. With
    ``num_branches=1`` (a single-branch network) the values pass unchanged, so one chain serves both.

    Args:
        keys: keys of the channel-first logits (one item, no batch dimension, as after ``decollate_batch``).
        num_branches: 2 for a dual-branch network, 1 for a single-branch one.
        fusion: rule of :func:`~monai_exudate.networks.fusion.fuse_branch_logits` ("logits": the authors' code,
            "probabilities": the paper's wording).
        allow_missing_keys: skip keys that are absent.
    """

    def __init__(
        self, keys: KeysCollection, num_branches: int, fusion: str = "logits", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if num_branches not in (1, 2):
            raise ValueError(f"num_branches must be 1 (single-branch) or 2 (dual-branch), got {num_branches!r}")
        self.num_branches = int(num_branches)
        self.fusion = check_fusion(fusion)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            logits = d[key]
            if not isinstance(logits, torch.Tensor) or logits.ndim < 2:
                raise ValueError(f"{key!r} must be channel-first logits (C, *spatial), got {_describe(logits)}")
            if self.num_branches == 2:
                large, small = split_branches(logits, 2, dim=0)
                d[key] = fuse_branch_logits(large, small, self.fusion)
        return d


def check_logit_batch(logits: Any, images: torch.Tensor) -> torch.Tensor:
    """A network's output as float, checked to hold one map per image at the input size ``(B, K, *spatial)``."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"the network returned {type(logits).__name__}; in eval mode it must return a logit tensor")
    if logits.ndim != images.ndim or logits.shape[0] != images.shape[0] or logits.shape[2:] != images.shape[2:]:
        raise ValueError(
            f"the network returned shape {tuple(logits.shape)} for inputs of shape {tuple(images.shape)}: "
            "expected (batch, channels, input size)"
        )
    return logits.detach().float()


def to_probabilities(
    postprocessing: Callable[[Mapping[str, Any]], Mapping[str, Any]], logits: torch.Tensor, lesion_names: Sequence[str]
) -> torch.Tensor:
    """One image's probabilities ``(len(lesion_names), *spatial)`` from its logits ``(K, *spatial)``.

    Raises ``ValueError`` when the post-processing gives another channel count (e.g. a dual network's two branches
    without the branch fusion) or values outside [0, 1] (no activation).
    """
    with torch.no_grad():
        prob = postprocessing({"pred": logits})["pred"]
    prob = torch.as_tensor(prob).float()
    expected = (len(lesion_names), *logits.shape[1:])
    if tuple(prob.shape) != expected:
        raise ValueError(
            f"the post-processing returned shape {tuple(prob.shape)}, expected {expected} (one channel per lesion in "
            f"{list(lesion_names)}, input size); does it match the network ({logits.shape[0]} output channels)?"
        )
    if prob.numel():
        low, high = float(prob.min()), float(prob.max())
        if low < -1e-3 or high > 1.0 + 1e-3:
            raise ValueError(
                f"the post-processed output spans [{low:.3g}, {high:.3g}]: the post-processing must end in "
                "probabilities (e.g. Activationsd(sigmoid=True))"
            )
    return prob


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else type(value).__name__
