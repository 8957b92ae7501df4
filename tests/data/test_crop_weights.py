"""Component-balanced crop-centre weights for the DSM small-exudate branch's loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import RandWeightedCropd

from monai_exudate.data.crop_weights import ComponentBalancedWeightd, component_balanced_weights


def _label() -> np.ndarray:
    label = np.zeros((1, 40, 60), dtype=np.float32)
    label[0, 2:22, 2:22] = 1  # a 400-pixel plaque
    label[0, 30, 50] = 1  # a 1-pixel dot
    label[0, 35:37, 10:12] = 1  # a 4-pixel dot
    return label


def test_every_component_gets_the_same_share_whatever_its_size():
    weights = component_balanced_weights(_label(), pos=1.0, neg=1.0)
    assert weights.shape == (40, 60) and weights.dtype == np.float32
    assert weights.sum() == pytest.approx(1.0, rel=1e-5)
    shares = [weights[2:22, 2:22].sum(), weights[30, 50], weights[35:37, 10:12].sum()]
    assert shares == pytest.approx([1 / 6] * 3, rel=1e-5)  # half the weight on lesions, a third of it each
    background = _label()[0] == 0
    assert np.allclose(weights[background], 0.5 / background.sum())


def test_shares_follow_pos_and_neg_and_are_checked():
    weights = component_balanced_weights(_label(), pos=3.0, neg=1.0)
    assert weights[_label()[0] > 0].sum() == pytest.approx(0.75, rel=1e-5)
    with pytest.raises(ValueError, match="pos and neg"):
        component_balanced_weights(_label(), pos=0.0, neg=0.0)


def test_a_map_without_lesion_is_weighted_uniformly_and_channels_are_united():
    assert np.allclose(component_balanced_weights(np.zeros((1, 4, 5))), 1 / 20)
    two = np.zeros((2, 10, 10))
    two[0, 1, 1] = two[1, 8, 8] = 1  # one component in each channel: two components of the union
    weights = component_balanced_weights(two, pos=1.0, neg=0.0)
    assert weights[1, 1] == pytest.approx(0.5) and weights[8, 8] == pytest.approx(0.5)


def test_dictionary_transform_feeds_monai_weighted_crops_onto_small_lesions():
    data = {"image": torch.rand(3, 40, 60), "label": torch.from_numpy(_label())}
    out = ComponentBalancedWeightd("label", pos=1.0, neg=0.0)(data)
    assert out["crop_weight"].shape == (1, 40, 60) and "crop_weight" not in data
    crop = RandWeightedCropd(["image", "label"], w_key="crop_weight", spatial_size=(8, 8), num_samples=60)
    crop.set_random_state(0)
    crops = crop(out)
    # pos only: every crop holds lesion; the two dots (5 of 405 lesion pixels) centre about two thirds of the crops
    assert all(bool(c["label"].any()) for c in crops)
    on_a_dot = sum(int(c["label"].sum()) <= 5 for c in crops)  # a plaque crop holds at least 16 lesion pixels
    assert on_a_dot >= 25
    with pytest.raises(ValueError, match="one label key"):
        ComponentBalancedWeightd(["label", "other"])
