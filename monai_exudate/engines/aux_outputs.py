"""Training inferer: the network's logits with its auxiliary outputs (``forward_with_aux``), for the losses."""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer
from torch.nn.parallel import DistributedDataParallel

__all__ = ["ForwardWithAuxInferer", "forward_with_aux"]


def forward_with_aux(network: torch.nn.Module, *inputs: Any, **kwargs: Any) -> Any:
    """``network.forward_with_aux(*inputs, **kwargs)``, also when ``network`` is wrapped in DistributedDataParallel.

    DDP synchronises gradients only for what runs inside its own ``forward`` (it prepares the reducer there, and with
    ``find_unused_parameters`` walks the outputs), so the call goes through the wrapper with the wrapped module's
    ``forward`` redirected to ``forward_with_aux`` for that one call: the "forward redirection" of PyTorch
    Lightning (``lightning.pytorch.strategies.strategy._ForwardRedirection``), which runs a LightningModule's
    ``training_step`` inside DDP the same way.
    """
    module = network.module if isinstance(network, DistributedDataParallel) else network
    method = getattr(module, "forward_with_aux", None)
    if method is None:
        raise TypeError(
            f"{type(module).__name__} has no forward_with_aux: training needs a network of monai_exudate.networks "
            "(its logits and auxiliary outputs)"
        )
    if module is network:
        return method(*inputs, **kwargs)
    patched = "forward" in module.__dict__
    original = module.__dict__.get("forward")
    module.forward = method
    try:
        return network(*inputs, **kwargs)
    finally:
        if patched:
            module.forward = original
        else:
            del module.forward


class ForwardWithAuxInferer(Inferer):
    """MONAI inferer for the trainers: calls ``network.forward_with_aux(inputs, *args, **kwargs)`` (see
    :func:`forward_with_aux`) so that the loss receives the dict of logits and auxiliary outputs, while
    ``forward``, which evaluation and inference call, returns the logits alone. A dual-branch network gets the
    small branch's batch as ``args`` (:class:`~monai_exudate.engines.DualBranchPrepareBatch`)."""

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        return forward_with_aux(network, inputs, *args, **kwargs)
