"""Run inference from an exported model file: TorchScript (``.ts``/``.pt``) or ONNX (``.onnx``, onnxruntime)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn


class OnnxRuntimeNetwork(nn.Module):
    """An ONNX model behind the ``nn.Module`` interface: ``forward(x)`` runs an onnxruntime CPU session."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        try:
            import onnxruntime
        except ImportError as err:
            raise ImportError("running an ONNX model needs onnxruntime: pip install 'monai_exudate[export]'") from err
        self.path = str(path)
        self.session = onnxruntime.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[:1]
        return torch.from_numpy(np.asarray(out)).to(x.device)


def load_exported_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load an exported network for inference; the format follows from the file suffix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    if path.suffix.lower() == ".onnx":
        return OnnxRuntimeNetwork(path)
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError as err:
        raise ValueError(f"{path}: not a TorchScript model ({err})") from err
