"""A model trained by exudate_dsm 0.6.0 still runs: its package's old names and per-branch auxiliary heads load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from PIL import Image

from monai_exudate.networks import build_exudate_network

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "exudate_dsm" / "configs"
# the settings a 0.6.0 package held: the dual switch named "branches", no shared_aux_head (one aux head per branch)
SETTINGS_060 = {
    "lesions": ["EX"], "arch": "pspnet", "branches": "dual", "net_width": 8, "net_layers": [1, 1, 1, 1],
    "branch_layer4_blocks": None, "net_dropout": 0.1, "head_prior": None, "fusion": "logits",
    "spatial_size": [64, 48], "fov_crop": False, "pad_below": 0, "patch_training": False, "patch_size": [64, 64],
    "image_mean": [123.675, 116.28, 103.53], "image_std": [58.395, 57.12, 57.375],
}  # fmt: skip


def test_a_060_model_loads_and_segments_with_its_per_branch_auxiliary_heads(tmp_path):
    torch.manual_seed(0)
    network = build_exudate_network("pspnet", True, 1, width=8, layers=(1, 1, 1, 1))  # per-branch aux heads
    models = tmp_path / "models"
    models.mkdir()
    torch.save({"model": network.state_dict()}, models / "model.pt")
    package = {"format": 1, "bundle": "exudate_dsm", "version": "0.6.0", "weights": "model.pt",
               "settings": SETTINGS_060, "recipe": {}, "threshold_file": "threshold.json", "validation": None,
               "provenance": {"synthetic": True}}  # fmt: skip
    (models / "model_package.json").write_text(json.dumps(package))
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"ckpt_path": str(models / "model.pt")})
    loaded = parser.get_parsed_content("network")
    described = parser.get_parsed_content("model_description")  # the package upgraded to today's names
    assert described["dual"] is True and described["shared_aux_head"] is False and "branches" not in described
    for key, value in network.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    photo = np.full((48, 64, 3), 90, np.uint8)
    Image.fromarray(photo).save(tmp_path / "a.png")
    image = parser.get_parsed_content("preprocessing")({"image": str(tmp_path / "a.png")})["image"]
    with torch.no_grad():
        assert loaded.eval()(image[None]).shape == (1, 2, 64, 48)
