"""Run inference from an exported model file: TorchScript (``.ts``/``.pt``) or ONNX (``.onnx``, onnxruntime)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

# the networks return logits from bundle version 0.5.0; earlier exports applied the sigmoid inside the model
OUTPUT_FORMAT = "logits"


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
    """Load an exported network for inference; the format follows from the file suffix.

    A TorchScript file made by MONAI's ``ckpt_export`` carries the bundle's ``metadata.json``; a model whose metadata
    says it outputs anything but logits (an export from before bundle version 0.5.0, which applied the sigmoid
    itself) is refused, since the bundles' post-processing would apply the sigmoid a second time. ONNX files carry
    no metadata (MONAI's ``onnx_export`` drops it): they are taken to output logits, with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    if path.suffix.lower() == ".onnx":
        logger.warning("%s: an ONNX model carries no metadata; its outputs are taken to be logits", path)
        return OnnxRuntimeNetwork(path)
    extra_files = {"metadata.json": ""}
    try:
        network = torch.jit.load(str(path), map_location=device, _extra_files=extra_files).eval()
    except RuntimeError as err:
        raise ValueError(f"{path}: not a TorchScript model ({err})") from err
    check_exported_outputs(path, _parse_metadata(path, extra_files["metadata.json"]))
    return network


def check_exported_outputs(path: str | os.PathLike, metadata: dict[str, Any] | None) -> None:
    """Refuse an exported model whose metadata says its ``pred`` output is not logits; warn when it says nothing."""
    output = ((metadata or {}).get("network_data_format") or {}).get("outputs", {}).get("pred", {})
    kind = output.get("format")
    if kind is None:
        logger.warning("%s: no output format in its metadata; its outputs are taken to be logits", path)
    elif kind != OUTPUT_FORMAT:
        version = (metadata or {}).get("version", "unknown")
        raise ValueError(
            f"{path}: its metadata says the network outputs {kind!r} (bundle version {version}), but the bundles' "
            f"post-processing expects {OUTPUT_FORMAT!r} and applies the sigmoid itself; re-export the checkpoint "
            "with this version's ckpt_export (checkpoints are unchanged)"
        )


def _parse_metadata(path: Path, text: str | bytes) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: its embedded metadata.json is not JSON ({err})") from err
    return metadata if isinstance(metadata, dict) else None
