"""Load trained weights into a network for inference, from the checkpoints the bundles' trainers save."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


def load_network_weights(
    network: nn.Module,
    path: str | os.PathLike,
    key: str = "model",
    map_location: str | torch.device = "cpu",
    strict: bool = True,
) -> nn.Module:
    """Load ``path`` into ``network`` and return it.

    The file is a dict holding the state dict under ``key`` (``{"model": state_dict}``, as the bundles'
    ``CheckpointSaver`` writes) or the state dict itself; a ``module.`` prefix left by DistributedDataParallel is
    dropped. Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when the weights do
    not fit the network.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    state = checkpoint[key] if key in checkpoint else checkpoint
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: no state dict under key {key!r} (keys: {sorted(checkpoint)[:10]})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        network.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the network: {err}") from err
    return network
