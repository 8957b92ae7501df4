"""Branch fusion of a dual-branch network: the rule that turns its two branches' logits into one logit map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["BRANCH_FUSIONS", "check_fusion", "fuse_branch_logits", "split_branches"]

# "probabilities": the paper (Liu, Liu, Liang 2022) averages the two branches' probability maps;
# "logits": the authors' released code averages the branches' scores before the sigmoid
# (dual-segmentation-toolbox/networks/dual_pspnet.py, Dual_PSPNet.forward: 0.5 * cb + 0.5 * rb, then test.py's sigmoid).
BRANCH_FUSIONS = ("probabilities", "logits")


def check_fusion(fusion: str) -> str:
    """Return ``fusion`` if it names a known rule, else raise naming the setting."""
    if fusion not in BRANCH_FUSIONS:
        raise ValueError(f"fusion must be one of {BRANCH_FUSIONS}, got {fusion!r}.")
    return fusion


def fuse_branch_logits(large_logits: torch.Tensor, small_logits: torch.Tensor, fusion: str = "logits") -> torch.Tensor:
    """One logit map from the two branches' logits; its sigmoid is the fused probability.

    ``"logits"``: the mean of the logits (a branch's confidence counts, not only its vote). ``"probabilities"``: the
    logit of the mean of the two sigmoids, ``log(mean p) - log(mean (1 - p))`` evaluated in log space, so that
    ``sigmoid`` of the result equals ``(sigmoid(l) + sigmoid(s)) / 2`` without overflow at large logits.
    """
    if check_fusion(fusion) == "logits":
        return 0.5 * (large_logits + small_logits)
    log_positive = torch.logaddexp(F.logsigmoid(large_logits), F.logsigmoid(small_logits))
    log_negative = torch.logaddexp(F.logsigmoid(-large_logits), F.logsigmoid(-small_logits))
    return log_positive - log_negative


def split_branches(logits: torch.Tensor, num_branches: int, dim: int = 0) -> tuple[torch.Tensor, ...]:
    """Split a channel-stacked output (branch by branch, each with the same channels) into its branches.

    A dual-branch network in eval mode returns ``[large channels..., small channels...]`` along ``dim``.
    """
    if num_branches < 1 or logits.shape[dim] % num_branches:
        raise ValueError(
            f"an output with {logits.shape[dim]} channels cannot hold {num_branches} branches of equal channels"
        )
    return torch.chunk(logits, num_branches, dim=dim)
