"""Losses over a network's ``forward_with_aux`` outputs: logits, auxiliary classifier and deeply supervised sides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monai_exudate.losses.dsm import DSMLoss

__all__ = ["DualBranchLoss", "DualHEDLoss", "SingleBranchLoss", "split_outputs"]

_INTERP_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def split_outputs(outputs: Mapping) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
    """``(out, aux or None, side list)`` from a network's ``forward_with_aux`` dict, ``{"out": T, "aux": T (optional),
    "side": [T, ...] (optional)}`` (:class:`~monai_exudate.networks.SegmentationModel`)."""
    if not isinstance(outputs, Mapping) or "out" not in outputs:
        raise ValueError(
            f"outputs must be a network's forward_with_aux dict with an 'out' entry, got {type(outputs).__name__} "
            "(a trainer passes it with monai_exudate.engines.ForwardWithAuxInferer; forward gives the logits alone)"
        )
    side = outputs.get("side")
    if side is None:
        side = []
    if isinstance(side, torch.Tensor) or not isinstance(side, Sequence):
        raise ValueError("outputs['side'] must be a list of tensors.")
    return outputs["out"], outputs.get("aux"), list(side)


def _match_size(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Upsample logits to the target's spatial size (auxiliary heads may predict at a lower resolution)."""
    if logits.shape[2:] == target.shape[2:]:
        return logits
    mode = _INTERP_MODES.get(target.ndim - 2)
    if mode is None:
        raise ValueError(f"cannot resize logits of shape {tuple(logits.shape)} to target {tuple(target.shape)}.")
    return F.interpolate(logits, size=target.shape[2:], mode=mode, align_corners=False)


class _WeightedSupervision(nn.Module):
    """A loss with the weights of the auxiliary-classifier and side-output terms and its overall scale, checked once."""

    def __init__(self, loss: nn.Module, aux_weight: float = 0.2, side_weight: float = 1.0, scale: float = 1.0) -> None:
        super().__init__()
        if aux_weight < 0 or side_weight < 0:
            raise ValueError(f"aux_weight and side_weight must be non-negative, got {aux_weight} and {side_weight}.")
        if not scale > 0:
            raise ValueError(f"loss_scale must be positive, got {scale}.")
        self.loss = loss
        self.aux_weight = float(aux_weight)
        self.side_weight = float(side_weight)
        self.scale = float(scale)


class SingleBranchLoss(_WeightedSupervision):
    """``loss(out) + aux_weight * loss(aux) + side_weight * sum(loss(side_k))`` against one target.

    ``outputs`` is the network's ``forward_with_aux`` dict; auxiliary outputs it lacks are skipped, and outputs
    smaller than the target are upsampled bilinearly.

    Args:
        loss: a loss ``loss(logits, target)`` (e.g. MONAI ``DiceLoss(sigmoid=True)`` or ``ClassBalancedBCELoss``).
        aux_weight: weight of the auxiliary-classifier term (0.2 in the authors' PSPNet code).
        side_weight: weight of each side-output term (HED deep supervision).
        scale: factor on the whole sum.
    """

    def forward(self, outputs: Mapping, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of the network's ``forward_with_aux`` ``outputs`` against ``target``."""
        out, aux, side = split_outputs(outputs)
        total = self.loss(_match_size(out, target), target)
        if aux is not None:
            total = total + self.aux_weight * self.loss(_match_size(aux, target), target)
        for s in side:
            total = total + self.side_weight * self.loss(_match_size(s, target), target)
        return self.scale * total


class DualBranchLoss(_WeightedSupervision):
    """DSM loss applied to every matching output pair of the large and small branches of a dual network.

    ``outputs`` is the dual network's ``forward_with_aux`` dict, ``{"large": branch, "small": branch}``, each
    branch ``{"out": T, "aux": T (optional), "side": [T, ...] (optional)}``; both must carry the same entries.
    Returns ``loss(out_L, y_L, out_S, y_S) + aux term + side_weight * sum_k loss(side_L[k], y_L, side_S[k], y_S)``.

    The auxiliary term follows ``aux_loss``: given (the authors' rule), ``aux_weight * (aux_loss(aux_L, y_L) +
    aux_loss(aux_S, y_S))``, each branch's auxiliary logits against its own image, neither weighted by alpha nor
    re-sampled (``ToolboxCombiner.dual_forward`` in the authors' ``dual/combiner.py``: ``alpha * loss1 + 0.2 *
    loss2`` on one rank, the small image's on the other); None, the DSM pair ``aux_weight * loss(aux_L, y_L, aux_S,
    y_S)``.

    Args:
        loss: the :class:`DSMLoss` (its ``alpha`` is shared by all DSM terms).
        aux_weight: weight of the auxiliary-classifier term (0.2 in the authors' PSPNet code).
        side_weight: weight of each side-output pair (HED deep supervision).
        aux_loss: plain loss ``aux_loss(logits, target)`` of each branch's auxiliary output, or None (see above).
        scale: factor on the whole sum. The authors train a dual network on two GPUs, one branch per GPU, and their
            DDP averages the two ranks' gradients, so their step follows 0.5 x this sum; ``scale=0.5`` reproduces
            that step on any number of devices.
    """

    def __init__(
        self,
        loss: DSMLoss,
        aux_weight: float = 0.2,
        side_weight: float = 1.0,
        aux_loss: nn.Module | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__(loss, aux_weight, side_weight, scale)
        self.aux_loss = aux_loss

    def _pair(
        self, large: torch.Tensor, target_large: torch.Tensor, small: torch.Tensor, target_small: torch.Tensor
    ) -> torch.Tensor:
        return self.loss(_match_size(large, target_large), target_large, _match_size(small, target_small), target_small)

    def _aux(
        self, large: torch.Tensor, target_large: torch.Tensor, small: torch.Tensor, target_small: torch.Tensor
    ) -> torch.Tensor:
        if self.aux_loss is None:
            return self.aux_weight * self._pair(large, target_large, small, target_small)
        plain_large = self.aux_loss(_match_size(large, target_large), target_large)
        return self.aux_weight * (plain_large + self.aux_loss(_match_size(small, target_small), target_small))

    def forward(self, outputs: Mapping, target_large: torch.Tensor, target_small: torch.Tensor) -> torch.Tensor:
        """Scalar loss of the dual network's ``forward_with_aux`` ``outputs`` against the two branches' targets."""
        if not isinstance(outputs, Mapping) or "large" not in outputs or "small" not in outputs:
            raise ValueError("outputs must be a mapping with 'large' and 'small' entries.")
        out_l, aux_l, side_l = split_outputs(outputs["large"])
        out_s, aux_s, side_s = split_outputs(outputs["small"])
        if (aux_l is None) != (aux_s is None):
            raise ValueError("outputs: 'aux' must be given for both branches or for neither.")
        if len(side_l) != len(side_s):
            raise ValueError(f"outputs: the branches have {len(side_l)} and {len(side_s)} side outputs.")
        total = self._pair(out_l, target_large, out_s, target_small)
        if aux_l is not None:
            total = total + self._aux(aux_l, target_large, aux_s, target_small)
        for s_l, s_s in zip(side_l, side_s, strict=True):
            total = total + self.side_weight * self._pair(s_l, target_large, s_s, target_small)
        return self.scale * total


class DualHEDLoss(nn.Module):
    """The authors' supervision of the dual HED: side outputs 4-5 and the fusion only, half DSM and half plain Dice.

    With ``s4, s5, f`` the fourth and fifth side logits and the fusion of each branch (``outputs[b]["side"][3]``,
    ``["side"][4]``, ``["out"]``), the loss is ``scale * (dsm_term + share_term) / 2`` where
    ``dsm_term = (DSM(s5_L, s5_S) + DSM(f_L, f_S)) / 2`` and ``share_term = sum over o in (s4, s5, f) and both
    branches of Dice(o_b, y_b) / 8``. Side outputs 1-3 feed the fusion but get no loss of their own. This is
    ``Combiner.dual_mix_forward`` with ``--dual-stages 2`` in the authors' ``dual-HED/dual/combiner.py``: their
    ``HeadBlock`` returns ``[crop4, crop5, fuse]``, the DSM pair covers the last two and ``forward_share_features``
    divides the plain Dice sum by ``2 * (6 - 2)``.

    Args:
        loss: the :class:`DSMLoss` (its ``alpha`` is set by the alpha schedule).
        plain: the plain loss ``plain(logits, target)`` (the authors' Dice).
        scale: factor on the whole loss (see :class:`DualBranchLoss`).
    """

    def __init__(self, loss: DSMLoss, plain: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"loss_scale must be positive, got {scale}.")
        self.loss = loss
        self.plain = plain
        self.scale = float(scale)

    @staticmethod
    def _supervised(branch: Mapping) -> list[torch.Tensor]:
        out, _, side = split_outputs(branch)
        if len(side) != 5:
            raise ValueError(f"the dual HED loss needs the five side outputs of HED, got {len(side)}.")
        return [side[3], side[4], out]

    def forward(self, outputs: Mapping, target_large: torch.Tensor, target_small: torch.Tensor) -> torch.Tensor:
        """Scalar loss of the dual HED's ``forward_with_aux`` ``outputs`` against the two branches' targets."""
        if not isinstance(outputs, Mapping) or "large" not in outputs or "small" not in outputs:
            raise ValueError("outputs must be a mapping with 'large' and 'small' entries.")
        large, small = self._supervised(outputs["large"]), self._supervised(outputs["small"])
        dsm = sum(self.loss(a, target_large, b, target_small) for a, b in zip(large[1:], small[1:], strict=True)) / 2
        share = sum(
            self.plain(a, target_large) + self.plain(b, target_small) for a, b in zip(large, small, strict=True)
        )
        return self.scale * (dsm + share / 8) / 2
