"""Export of both bundles' networks: TorchScript and ONNX equal the eager model; inference runs from both files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, onnx_export, run
from PIL import Image

from monai_exudate.inference import load_exported_network

REPO = Path(__file__).resolve().parents[2]
BUNDLES = {
    # bundle: (tiny overrides, traced input shape)
    "exudate_dsm": ({"net_width": 8, "spatial_size": [96, 64]}, [1, 3, 96, 64]),
    "fundus_lesion_hrdecoder": (
        {
            "net_width": 4, "stage1_channels": 8, "stem_channels": 8, "head_channels": 8, "hr_scale": 32,
            "resize_size": [64, 64], "crop_size": [64, 64],
        },
        [1, 3, 64, 64],
    ),
}  # fmt: skip


def _network(bundle: str, ckpt_dir: Path) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "configs" / "inference.json"))
    # no model package in ckpt_dir (not the shipped model's): the tiny settings are the weights' description
    parser.update({"unpackaged_settings": BUNDLES[bundle][0], "ckpt_dir": str(ckpt_dir)})
    return parser.get_parsed_content("network_def").eval()


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
@pytest.mark.parametrize("kind", ["ts", "onnx"])
def test_exported_equals_eager_and_runs_inference(bundle, kind, tmp_path):
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    configs = REPO / "bundles" / bundle / "configs"
    overrides, shape = BUNDLES[bundle]
    net = _network(bundle, tmp_path / "no_model")
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)  # a one-item save_dict is saved bare, as CheckpointSaver does
    exported_path = tmp_path / f"model.{kind}"
    exporter = {"ts": ckpt_export, "onnx": onnx_export}[kind]
    exporter(
        net_id="network_def",
        filepath=str(exported_path),
        ckpt_file=str(ckpt),
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
        input_shape=shape,
        ckpt_dir=str(tmp_path / "no_model"),  # the settings are this test's, not the shipped model package's
        **({"use_trace": True} if kind == "ts" else {}),
        unpackaged_settings=overrides,
    )
    exported = load_exported_network(exported_path)
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), atol=1e-4, rtol=1e-3)

    photo = tmp_path / "photo.png"
    yy, xx = np.mgrid[:90, :130]
    img = np.zeros((90, 130, 3), dtype=np.uint8)
    img[(xx - 65) ** 2 + (yy - 45) ** 2 < 44**2] = (170, 90, 40)
    Image.fromarray(img).save(photo)
    out = tmp_path / "out"
    run(
        config_file=str(configs / "inference.json"),
        meta_file=str(configs / "metadata.json"),
        dataset_dir=str(photo),
        output_dir=str(out),
        exported_model=str(exported_path),
        num_workers=0,
        progress=False,
        unpackaged_settings=overrides,
    )
    prob = out / "photo_EX_prob.png"
    assert prob.is_file() and Image.open(prob).size == (130, 90)


def test_exports_say_they_output_logits_and_older_probability_exports_are_refused(tmp_path, caplog):
    for bundle in BUNDLES:
        meta = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
        assert meta["network_data_format"]["outputs"]["pred"]["format"] == "logits"
        assert meta["network_data_format"]["post_processed_outputs"]["pred"]["value_range"] == [0, 1]
        # the documented run's figures, as numbers the model zoo can read
        assert meta["eval_metrics"] and all(isinstance(v, float) for v in meta["eval_metrics"].values())
    traced = torch.jit.trace(torch.nn.Conv2d(3, 2, 1), torch.randn(1, 3, 8, 8))
    old = {"version": "0.4.0", "network_data_format": {"outputs": {"pred": {"format": "probabilities"}}}}
    torch.jit.save(traced, str(tmp_path / "old.ts"), _extra_files={"metadata.json": json.dumps(old)})
    with pytest.raises(ValueError, match=r"old\.ts: its metadata says the network outputs 'probabilities'"):
        load_exported_network(tmp_path / "old.ts")
    torch.jit.save(traced, str(tmp_path / "bare.ts"))
    with caplog.at_level("WARNING"):
        load_exported_network(tmp_path / "bare.ts")
    assert "taken to be logits" in caplog.text
