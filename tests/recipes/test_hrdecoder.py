"""The fundus_lesion_hrdecoder recipe: the network, preprocessing and inferer a settings dict describes."""

from __future__ import annotations

import torch
from monai.inferers import SlidingWindowInferer

from monai_exudate.recipes import hrdecoder

SETTINGS = {
    "lesions": ["EX", "HE", "SE", "MA"], "net_width": 4, "net_blocks": 1, "net_modules": 1, "stage1_channels": 8,
    "stem_channels": 8, "head_channels": 8, "head_kernel_size": 3, "head_num_convs": 1, "hr_scale": 32,
    "downscale": 2, "divisor": 8, "lr_only": "no", "resize_size": [96, 64], "resize_size_mode": "all",
    "crop_size": [64, 64], "image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0],
}  # fmt: skip


def test_the_settings_build_the_network_and_the_sliding_window_inferer():
    net = hrdecoder.network(SETTINGS).eval()
    assert net.num_crops == 0 and not net.lr_only  # evaluation and inference: no training crops
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 64, 64)
    trained = hrdecoder.network(SETTINGS, num_crops=2, crop_jitter=(0.75, 1.25))
    assert trained.num_crops == 2
    windows = hrdecoder.inferer(SETTINGS, sw_batch_size=1, overlap=0.5)
    assert isinstance(windows.inferer, SlidingWindowInferer) and list(windows.inferer.roi_size) == [64, 64]
    assert hrdecoder.run_name(18, "yes", 2) == "hrdecoder_w18_lr_only" and hrdecoder.run_name(18, False, 2) == (
        "hrdecoder_w18_m2")


def test_training_caches_8_bit_photographs_and_normalises_after_its_augmentation():
    cached = hrdecoder.preprocessing(SETTINGS, labels="resize", resize=False, normalize=False)
    names = [type(t).__name__ for t in cached]
    assert "AntialiasedResized" not in names and "NormalizeIntensityd" not in names
    validation = [type(t).__name__ for t in hrdecoder.preprocessing(SETTINGS, labels="resize")]
    assert "AntialiasedResized" in validation and validation[-2:] == ["EnsureTyped", "NormalizeIntensityd"]


def test_the_recipe_chooses_uniform_or_lesion_biased_crops():
    recipe = {
        "scale_range": [0.5, 2.0], "lesion_biased_crops": False, "crop_pos": 1.0, "crop_neg": 1.0, "flip_prob": 0.5,
        "rotate_degrees": 45, "rotate_prob": 0.5,
    }  # fmt: skip
    names = [type(t).__name__ for t in hrdecoder.augmentation(SETTINGS, recipe)]
    assert names == ["RandRescaled", "SpatialPadd", "RandSpatialCropd", "RandFlipd", "RandRotated"]
    biased = hrdecoder.augmentation(SETTINGS, {**recipe, "lesion_biased_crops": "yes", "crop_pos": 3.0})
    assert type(biased[2]).__name__ == "RandCropByPosNegLabeld" and list(biased[2].cropper.spatial_size) == [64, 64]
