"""Loading of local torchvision-format backbone checkpoints and initialisation of head weights."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_pretrained_backbone", "init_head_weights"]

# classifier layers of torchvision's ResNet (fc) and VGG (classifier) are not part of a backbone
_IGNORED_PREFIXES = ("fc.", "classifier.")
_MAX_LISTED = 5


def _list_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return f"{shown}, ... ({more} more)" if more > 0 else shown


def _extract_state_dict(checkpoint: object, path: str) -> dict[str, torch.Tensor]:
    """Return the tensor mapping of a checkpoint that is a state_dict or wraps one under "state_dict"/"model"."""
    if isinstance(checkpoint, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(checkpoint.get(wrapper), Mapping):
                checkpoint = checkpoint[wrapper]
                break
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"pretrained checkpoint '{path}' is not a state_dict (got {type(checkpoint).__name__}).")
    state = {str(k): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"pretrained checkpoint '{path}' holds no tensors.")
    return state


def load_pretrained_backbone(module: nn.Module, path: str | Path, strict_shapes: bool = True) -> nn.Module:
    """Load a local torchvision-format checkpoint (e.g. ImageNet ``resnet50``/``vgg16`` weights) into a backbone.

    The file may hold a state_dict or a dict with it under ``"state_dict"`` or ``"model"``; a ``"module."`` prefix
    (data-parallel training) is stripped and classifier keys (``fc.*``, ``classifier.*``) are ignored.

    Args:
        module: backbone whose ``state_dict`` keys follow torchvision's naming.
        path: checkpoint file.
        strict_shapes: when False, keys whose shapes differ keep their current values instead of raising.

    Returns:
        ``module``, with the checkpoint weights loaded in place.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the checkpoint does not fit ``module`` (missing, unexpected or mismatched-shape keys).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained_path '{path}' does not exist or is not a file.")
    state = _extract_state_dict(torch.load(path, map_location="cpu", weights_only=True), str(path))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIXES)}

    own = module.state_dict()
    # BatchNorm counters are absent from older torchvision checkpoints and carry no weights
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]

    problems = []
    if missing:
        problems.append(f"missing keys: {_list_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_list_keys(unexpected)}")
    if mismatched and strict_shapes:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched]
        problems.append(f"mismatched shapes (checkpoint vs model): {_list_keys(shapes)}")
    if problems:
        raise ValueError(
            f"pretrained checkpoint '{path}' does not fit {type(module).__name__}: " + "; ".join(problems) + "."
        )

    compatible = {k: v for k, v in state.items() if k not in mismatched}
    module.load_state_dict(compatible, strict=False)
    return module


def init_head_weights(module: nn.Module, std: float = 0.01) -> None:
    """Initialise a head: conv weights from N(0, std), conv biases 0, BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
