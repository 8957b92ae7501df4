"""Export of the exudate_dsm network: TorchScript and ONNX equal the eager model; inference runs from both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, onnx_export, run
from PIL import Image

from monai_exudate.inference import load_exported_network

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "exudate_dsm" / "configs"
OVERRIDES = {"net_width": 8, "spatial_size": [96, 64]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A checkpoint of the inference config's network with random weights, in the best-model format."""
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update(OVERRIDES)
    net = parser.get_parsed_content("network_def").eval()
    path = tmp_path_factory.mktemp("export") / "model.pt"
    torch.save(net.state_dict(), path)  # a one-item save_dict is saved bare, as CheckpointSaver does
    return path, net


def _export(kind: str, ckpt: Path, out: Path) -> None:
    exporter = {"ts": ckpt_export, "onnx": onnx_export}[kind]
    kwargs = {"use_trace": True} if kind == "ts" else {}
    exporter(
        net_id="network_def",
        filepath=str(out),
        ckpt_file=str(ckpt),
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        input_shape=[1, 3, 96, 64],
        **OVERRIDES,
        **kwargs,
    )


@pytest.mark.parametrize("kind", ["ts", "onnx"])
def test_exported_equals_eager_and_runs_inference(kind, checkpoint, tmp_path):
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    ckpt, net = checkpoint
    exported_path = tmp_path / f"model.{kind}"
    _export(kind, ckpt, exported_path)
    exported = load_exported_network(exported_path)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), atol=1e-4, rtol=1e-3)

    photo = tmp_path / "photo.png"
    yy, xx = np.mgrid[:90, :130]
    img = np.zeros((90, 130, 3), dtype=np.uint8)
    img[(xx - 65) ** 2 + (yy - 45) ** 2 < 40**2] = (170, 90, 40)
    Image.fromarray(img).save(photo)
    out = tmp_path / "out"
    run(
        config_file=str(CONFIGS / "inference.json"),
        meta_file=str(CONFIGS / "metadata.json"),
        dataset_dir=str(photo),
        output_dir=str(out),
        exported_model=str(exported_path),
        num_workers=0,
        progress=False,
        **OVERRIDES,
    )
    prob = out / "photo_EX_prob.png"
    assert prob.is_file() and Image.open(prob).size == (130, 90)
