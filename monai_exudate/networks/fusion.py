"""Branch fusion of a dual-branch network at evaluation: how the two branches' logits become one probability map."""

from __future__ import annotations

import torch

__all__ = ["BRANCH_FUSIONS", "check_fusion", "fuse_branches", "fuse_branch_logits", "fuse_branch_probabilities"]

# "probabilities": the paper (Liu, Liu, Liang 2022) averages the two branches' probability maps;
# "logits": the authors' released code averages the branches' scores before the sigmoid
# (dual-segmentation-toolbox/networks/dual_pspnet.py, Dual_PSPNet.forward: 0.5 * cb + 0.5 * rb, then test.py's sigmoid).
BRANCH_FUSIONS = ("probabilities", "logits")


def fuse_branch_probabilities(large_logits: torch.Tensor, small_logits: torch.Tensor) -> torch.Tensor:
    """The mean of the two branches' sigmoid probabilities."""
    return 0.5 * (torch.sigmoid(large_logits) + torch.sigmoid(small_logits))


def fuse_branch_logits(large_logits: torch.Tensor, small_logits: torch.Tensor) -> torch.Tensor:
    """The sigmoid of the mean of the two branches' logits (a branch's confidence counts, not only its vote)."""
    return torch.sigmoid(0.5 * (large_logits + small_logits))


def check_fusion(fusion: str) -> str:
    """Return ``fusion`` if it names a known rule, else raise naming the setting."""
    if fusion not in BRANCH_FUSIONS:
        raise ValueError(f"fusion must be one of {BRANCH_FUSIONS}, got {fusion!r}.")
    return fusion


def fuse_branches(large_logits: torch.Tensor, small_logits: torch.Tensor, fusion: str = "logits") -> torch.Tensor:
    """Probability map of a dual-branch network from its branches' logits by the rule ``fusion``."""
    if check_fusion(fusion) == "logits":
        return fuse_branch_logits(large_logits, small_logits)
    return fuse_branch_probabilities(large_logits, small_logits)
