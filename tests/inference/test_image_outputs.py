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


def test_each_lesion_is_masked_at_its_own_threshold(tmp_path):
    lesions = ["EX", "HE", "SE", "MA"]
    thresholds = [0.5, 0.22, 0.17, 0.0]
    outputs = ImageOutputs(OutputLayout(tmp_path, lesions, ("mask",)), lesions, thresholds, ("mask",))
    levels = np.tile(np.arange(256, dtype=np.uint8).reshape(1, 16, 16), (4, 1, 1))
    masks = outputs.write("a", levels, None, None)
    for c, threshold in enumerate(thresholds):
        np.testing.assert_array_equal(masks[c], levels[c] / 255.0 > threshold)
    assert ImageOutputs(OutputLayout(tmp_path, lesions, ("mask",)), lesions, 0.3, ("mask",)).thresholds == [0.3] * 4


@pytest.mark.parametrize("threshold, message", [([0.5, 0.5], "one per lesion"), ([0.5, 0.2, 0.1, 1.5], r"\[0, 1\]")])
def test_a_wrong_threshold_list_is_refused_naming_it(tmp_path, threshold, message):
    lesions = ["EX", "HE", "SE", "MA"]
    with pytest.raises(ValueError, match=message):
        ImageOutputs(OutputLayout(tmp_path, lesions, ("mask",)), lesions, threshold, ("mask",))
