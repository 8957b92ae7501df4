"""One photograph's files from its 8-bit levels: the metrics' mask rule, each asked format, the legend's model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from monai_exudate.inference.image_outputs import ImageOutputs, model_line
from monai_exudate.inference.writers import OutputLayout


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 128 / 255, 1.0])
def test_masks_follow_the_metrics_rule_on_every_level(tmp_path, threshold):
    layout = OutputLayout(tmp_path, ["EX"], ("prob", "mask"))
    outputs = ImageOutputs(layout, ["EX"], threshold, ("prob", "mask"))
    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    masks = outputs.write("a", levels, None, None)
    np.testing.assert_array_equal(masks, levels / 255.0 > threshold)  # q / 255 > threshold, level by level
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a_EX_prob.png")), levels[0])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a_EX_mask.png")) == 255, masks[0])


def test_overlay_and_nifti_are_written_when_asked(tmp_path):
    layout = OutputLayout(tmp_path, ["EX", "HE"], ("overlay",), nifti=True, overlay_format="jpeg")
    outputs = ImageOutputs(layout, ["EX", "HE"], 0.5, ("overlay",), overlay_format="jpeg", overlay_side_by_side=True)
    levels = np.zeros((2, 20, 30), np.uint8)
    levels[0, 5:10, 5:10] = 200
    original = torch.full((3, 30, 20), 120, dtype=torch.uint8)  # (3, W, H) as MONAI's reader gives it
    outputs.write("b", levels, levels / 255.0, original)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b_overlay.jpg", "b_prob.nii.gz"]
    assert Image.open(tmp_path / "b_overlay.jpg").size == (60, 20)  # photograph and painted copy side by side


def test_the_legend_says_where_the_model_came_from():
    net = torch.nn.Identity()
    assert model_line(net, {}) == "Identity, origin unknown"
    assert model_line(net, {"model": {"known": True, "synthetic": True}}) == "Identity, DEMO: synthetic data only"
    trained = {"model": {"known": True, "synthetic": False, "trained_on": "/data/IDRiD"}}
    assert model_line(net, trained) == "Identity, trained on IDRiD"
